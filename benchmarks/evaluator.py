"""Evaluator speed and memory: `reid_jax.evaluation.ranking.evaluate` vs the straightforward one.

Usage: python -m benchmarks.evaluator [--size=quick|market|msmt] [--quick]

Problems (random, features = identity centre + noise, L2-normalised; docs/arn_triplet_eval.md §4.4):
  quick   600 x 3,000, 256-d (also `--quick`).
  market  3,368 queries x 15,913 gallery images, 2048-d, 750 identities in 6 cameras plus 2,798
          distractors of pid 0 (the default).
  msmt    11,659 x 82,161, 2048-d, 3,060 identities in 15 cameras: MSMT17's test set, whose full
          distance matrix alone is 3.8 GB of float32.

Reference, run in the same process: the straightforward implementation (full float32 distance
matrix with numpy, then for each query a stable argsort, the same-pid-same-camera/junk filter,
step AP and CMC). On msmt it runs on the first `--reference_queries` queries and its time and
memory above the inputs are scaled by Nq / that (its matrix grows linearly with the queries); ours
runs on the same subset too, and both must give the same CMC and mAP there. Memory is the peak
resident memory of the whole process during the call (Linux VmHWM, reset before each call: numpy,
JAX's buffers and the inputs all count), and what the process held before the call, inputs included, is printed beside it.
"""

import time

import numpy as np
from absl import app, flags

from benchmarks import report
from benchmarks.problems import SIZES, market_like_problem
from reid_jax.evaluation import distances, ranking

_QUICK = flags.DEFINE_bool("quick", False, "same as --size=quick")
_SIZE = flags.DEFINE_enum("size", "market", list(SIZES), "problem size")
_REFERENCE_QUERIES = flags.DEFINE_integer(
    "reference_queries", 1000, "msmt: queries the reference (and the agreement check) runs on")
_CHUNK = flags.DEFINE_integer("chunk_size", ranking.DEFAULT_CHUNK_SIZE, "query rows per block")


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


def main(argv):
  del argv
  size = "quick" if _QUICK.value else _SIZE.value
  num_query, num_gallery, dim, distractors, num_ids, num_cameras = SIZES[size]
  qf, gf, q_pids, g_pids, q_camids, g_camids = market_like_problem(
      num_query, num_gallery, dim, num_ids=num_ids, num_cameras=num_cameras,
      num_distractors=distractors)
  inputs_mib = report.resident_mib()
  config = f"{size} {num_query}x{num_gallery} d{dim} step AP chunk {_CHUNK.value}"

  def ours(count=num_query):
    return ranking.evaluate(qf[:count], gf, q_pids[:count], g_pids, q_camids[:count], g_camids,
                            metric="euclidean", ap="step", chunk_size=_CHUNK.value,
                            progress=False)

  ours(min(num_query, 2 * _CHUNK.value))  # compile the distance block once, outside the timing
  record, ours_s, ours_mib = report.peak_resident(ours)

  subset = num_query if size != "msmt" else min(num_query, _REFERENCE_QUERIES.value)
  scale = num_query / subset

  def reference():
    distmat = reference_distances(qf[:subset], gf)
    return distmat, reference_rank(distmat, q_pids[:subset], g_pids, q_camids[:subset], g_camids)

  before_mib = report.resident_mib()
  (distmat, (ref_cmc, ref_map)), ref_s, ref_peak_mib = report.peak_resident(reference)
  ref_s *= scale
  ref_mib = before_mib + (ref_peak_mib - before_mib) * scale

  # Ranking alone, on the very same matrix: the results must agree to rounding.
  same_matrix, rank_s, _ = report.peak_resident(lambda: ranking.rank_metrics(
      distmat, q_pids[:subset], g_pids, q_camids[:subset], g_camids, chunk_size=_CHUNK.value))
  assert np.allclose(same_matrix["cmc"], ref_cmc, atol=1e-12), "CMC differs on the same matrix"
  assert abs(same_matrix["mAP"] - ref_map) < 1e-12, (same_matrix["mAP"], ref_map)
  # End to end (JAX float32 distances vs numpy float32): near-tie reorderings only.
  on_subset = record if subset == num_query else ours(subset)
  map_gap = abs(on_subset["mAP"] - ref_map)
  cmc_gap = float(np.abs(np.asarray(on_subset["cmc"]) - ref_cmc).max())
  assert map_gap < 1e-4 and cmc_gap < 1e-3, (map_gap, cmc_gap)

  _, ref_rank_s, _ = report.peak_resident(
      lambda: reference_rank(distmat, q_pids[:subset], g_pids, q_camids[:subset], g_camids))
  ref_rank_s *= scale
  scaled = f" (run on {subset} queries, scaled x{scale:.2f})" if scale != 1 else ""
  print(f"problem: {config}; valid queries {record['n_valid_query']}/{record['n_query']}; "
        f"rank-1 {record['rank1']:.4f}, mAP {record['mAP']:.4f}")
  print(f"end to end: ours {ours_s:.1f} s, {ours_mib / 1024:.2f} GiB peak resident (the process "
        f"held {inputs_mib / 1024:.2f} GiB before, inputs included) | reference{scaled} {ref_s:.1f} s, "
        f"{ref_mib / 1024:.2f} GiB | time ratio {ref_s / ours_s:.2f}, memory ratio "
        f"{ref_mib / ours_mib:.2f}")
  print(f"ranking only (same matrix, {subset} queries): ours {rank_s * scale:.1f} s | reference "
        f"{ref_rank_s:.1f} s | ratio {ref_rank_s / (rank_s * scale):.2f}; on {subset} queries "
        f"|mAP gap| end to end {map_gap:.1e}, max |CMC gap| {cmc_gap:.1e}, same matrix 0")
  for metric, ours_value, ref_value in [("evaluate_seconds", ours_s, ref_s),
                                        ("evaluate_peak_resident_mib", ours_mib, ref_mib),
                                        ("ranking_seconds_same_matrix", rank_s * scale,
                                         ref_rank_s)]:
    print(report.comparison(metric, ours_value, "numpy_per_query_loop" + scaled, ref_value,
                            config, lower_is_better=True))


if __name__ == "__main__":
  app.run(main)
