"""Evaluator speed and memory: `reid_jax.evaluation.ranking.evaluate` vs a per-query numpy loop.

Usage: python -m benchmarks.evaluator [--quick]

Problem: a random Market-sized test set (3,368 queries x 15,913 gallery images, 2048-d features,
750 identities in 6 cameras plus 2,798 distractors of pid 0; docs/arn_triplet_eval.md §4.1), features
= identity centre + noise, L2-normalised. --quick uses 600 x 3,000, 256-d.

Reference, run in the same process: the straightforward implementation (full float32 distance
matrix with numpy, then for each query a stable argsort, the same-pid-same-camera/junk filter,
step AP and CMC). Both must give the same CMC and mAP. Peak memory is the tracemalloc peak of
host (numpy) allocations; JAX's CPU buffers are outside tracemalloc (ours holds one
`[chunk, Ng]` float32 block there at a time, 8 MB at the default chunk).
"""

import time
import tracemalloc

import numpy as np
from absl import app, flags

from benchmarks import report
from reid_jax.evaluation import distances, ranking

_QUICK = flags.DEFINE_bool("quick", False, "small problem, finishes in well under a minute")
_CHUNK = flags.DEFINE_integer("chunk_size", ranking.DEFAULT_CHUNK_SIZE, "query rows per block")


def market_like_problem(num_query, num_gallery, dim, num_ids=750, num_cameras=6,
                        num_distractors=2798, seed=0):
  """Random features and labels with Market's structure; junk already dropped (pid 0 kept)."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_ids + 1, dim)).astype(np.float32)
  q_pids = rng.integers(1, num_ids + 1, num_query)
  g_pids = np.concatenate([rng.integers(1, num_ids + 1, num_gallery - num_distractors),
                           np.zeros(num_distractors, np.int64)])
  q_camids = rng.integers(0, num_cameras, num_query)
  g_camids = rng.integers(0, num_cameras, num_gallery)
  # Scaled so that rank-1/mAP look like a weak (direct-transfer-like) model at any dimension:
  # identity separation grows like sqrt(dim) relative to the noise's fluctuation.
  noise = 2.4 * (dim / 256) ** 0.25

  def features(pids):
    out = centres[pids] + noise * rng.normal(size=(len(pids), dim)).astype(np.float32)
    out[pids == 0] = noise * rng.normal(size=(int((pids == 0).sum()), dim))
    return distances.l2_normalize(out)

  return features(q_pids), features(g_pids), q_pids, g_pids, q_camids, g_camids


def reference_distances(qf, gf):
  """Full Euclidean distance matrix with numpy in float32."""
  d2 = (qf * qf).sum(1)[:, None] + (gf * gf).sum(1)[None, :] - 2.0 * qf @ gf.T
  return np.sqrt(np.maximum(d2, 0.0))


def reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
  """Per-query loop (torchreid's Python evaluator, with a stable sort)."""
  all_cmc, all_ap = [], []
  for q in range(distmat.shape[0]):
    order = np.argsort(distmat[q], kind="stable")
    keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
    keep &= g_pids[order] != -1
    rel = (g_pids[order] == q_pids[q])[keep].astype(np.float64)
    if not rel.any():
      continue
    cmc = rel.cumsum()
    cmc[cmc > 1] = 1
    all_cmc.append(cmc[:max_rank])
    precision = rel.cumsum() / np.arange(1, len(rel) + 1)
    all_ap.append((precision * rel).sum() / rel.sum())
  return np.mean(all_cmc, axis=0), float(np.mean(all_ap))


def measure(fn):
  tracemalloc.start()
  tracemalloc.reset_peak()
  start = time.perf_counter()
  out = fn()
  seconds = time.perf_counter() - start
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  return out, seconds, peak / 2**20


def main(argv):
  del argv
  if _QUICK.value:
    num_query, num_gallery, dim, distractors = 600, 3000, 256, 500
  else:
    num_query, num_gallery, dim, distractors = 3368, 15913, 2048, 2798
  qf, gf, q_pids, g_pids, q_camids, g_camids = market_like_problem(
      num_query, num_gallery, dim, num_distractors=distractors)
  config = f"market-like {num_query}x{num_gallery} d{dim} step AP chunk {_CHUNK.value}"

  def ours():
    return ranking.evaluate(qf, gf, q_pids, g_pids, q_camids, g_camids, metric="euclidean",
                            ap="step", chunk_size=_CHUNK.value, progress=False)

  ours()  # compile the distance block once, outside the timing
  record, ours_s, ours_mb = measure(ours)

  def reference():
    distmat = reference_distances(qf, gf)
    return distmat, reference_rank(distmat, q_pids, g_pids, q_camids, g_camids)

  (distmat, (ref_cmc, ref_map)), ref_s, ref_mb = measure(reference)

  # Ranking alone, on the very same matrix: the results must agree to rounding.
  same_matrix, rank_s, _ = measure(lambda: ranking.rank_metrics(
      distmat, q_pids, g_pids, q_camids, g_camids, chunk_size=_CHUNK.value))
  assert np.allclose(same_matrix["cmc"], ref_cmc, atol=1e-12), "CMC differs on the same matrix"
  assert abs(same_matrix["mAP"] - ref_map) < 1e-12, (same_matrix["mAP"], ref_map)
  # End to end (JAX float32 distances vs numpy float32): near-tie reorderings only.
  map_gap = abs(record["mAP"] - ref_map)
  cmc_gap = float(np.abs(np.asarray(record["cmc"]) - ref_cmc).max())
  assert map_gap < 1e-4 and cmc_gap < 1e-3, (map_gap, cmc_gap)

  _, ref_rank_s, _ = measure(lambda: reference_rank(distmat, q_pids, g_pids, q_camids, g_camids))
  print(f"problem: {config}; valid queries {record['n_valid_query']}/{record['n_query']}; "
        f"rank-1 {record['rank1']:.4f}, mAP {record['mAP']:.4f}")
  print(f"end to end: ours {ours_s:.2f} s, {ours_mb:.0f} MiB host peak | reference "
        f"{ref_s:.2f} s, {ref_mb:.0f} MiB | time ratio {ref_s / ours_s:.2f}, "
        f"memory ratio {ref_mb / ours_mb:.2f}")
  print(f"ranking only (same matrix): ours {rank_s:.2f} s | reference {ref_rank_s:.2f} s | "
        f"ratio {ref_rank_s / rank_s:.2f}; |mAP gap| end to end {map_gap:.1e}, "
        f"max |CMC gap| {cmc_gap:.1e}")
  for metric, ours_value, ref_value in [("evaluate_seconds", ours_s, ref_s),
                                        ("evaluate_host_peak_mib", ours_mb, ref_mb),
                                        ("ranking_seconds_same_matrix", rank_s, ref_rank_s)]:
    print(report.comparison(metric, ours_value, "numpy_per_query_loop", ref_value, config,
                            lower_is_better=True))


if __name__ == "__main__":
  app.run(main)
