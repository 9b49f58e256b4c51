"""Re-ranking speed and memory: bounded (`re_ranking_blocks`, features in) vs dense (`re_ranking`).

Usage: python -m benchmarks.rerank [--size=quick|market|msmt]

Problems: those of `benchmarks.evaluator` (random identity centres + noise, L2-normalised,
2048-d; quick is 600 x 3,000, 256-d). Each side is the whole evaluation with k-reciprocal
re-ranking (k1 20, k2 6, lambda 0.3; docs/arn_triplet_eval.md §3.6) from features to CMC/mAP:
ours `ranking.evaluate(rerank=True)`, which scores the re-ranked rows block by block; the dense
reference holds the N x N Euclidean matrix (the same rows), runs `re_ranking`, then scores the `[Nq, Ng]` result.
The dense side runs where `rerank.check_memory` says it fits (market, not msmt: ~70 GB), and the
two must agree (max |difference| of the re-ranked distances, same mAP). Memory is the peak
resident memory of the whole process during the call (Linux VmHWM, reset before each call).
"""

import numpy as np
from absl import app, flags

from benchmarks import problems
from benchmarks import report
from reid_jax.errors import ReidError
from reid_jax.evaluation import ranking, rerank

_SIZE = flags.DEFINE_enum("size", "market", list(problems.SIZES), "problem size")


def main(argv):
  del argv
  size = _SIZE.value
  num_query, num_gallery, dim, distractors, num_ids, num_cameras = problems.SIZES[size]
  qf, gf, q_pids, g_pids, q_camids, g_camids = problems.market_like_problem(
      num_query, num_gallery, dim, num_ids=num_ids, num_cameras=num_cameras,
      num_distractors=distractors)
  before_mib = report.resident_mib()
  config = f"{size} {num_query}x{num_gallery} d{dim} k1 20 k2 6 lambda 0.3 step AP"
  labels = (q_pids, g_pids, q_camids, g_camids)

  def ours():
    return ranking.evaluate(qf, gf, *labels[:2], *labels[2:], rerank=True, progress=True)

  record, ours_s, ours_mib = report.peak_resident(ours)
  print(f"problem: {config}; the process held {before_mib / 1024:.2f} GiB before, inputs "
        f"included")
  print(f"bounded: {ours_s:.1f} s, {ours_mib / 1024:.2f} GiB peak resident; rank-1 "
        f"{record['rank1']:.4f}, mAP {record['mAP']:.4f} (without re-ranking: see "
        f"benchmarks.evaluator)")
  try:
    rerank.check_memory(num_query, num_gallery)
  except ReidError:
    need = rerank.memory_estimate(num_query + num_gallery) / 2**30
    print(f"dense: not run, it needs about {need:.0f} GiB (two {num_query + num_gallery}^2 "
          f"float32 matrices) on this {rerank._available_bytes() / 2**30:.0f} GiB machine")
    print(report.comparison("rerank_evaluate_seconds", ours_s, "dense (does not fit)",
                            float("nan"), config, lower_is_better=True))
    return

  def dense():
    # Fed the very rows the bounded side computes (row i of step 1's matrix is column i of the
    # original matrix, hence the transposes), so any gap is the algorithm's, not rounding's.
    source = rerank.FeatureDistances(qf, gf)
    full = np.concatenate([source.euclidean_rows(start)
                           for start in range(0, num_query + num_gallery, rerank._ROW_BLOCK)])
    del source
    distmat = rerank.re_ranking(full[num_query:, :num_query].T, full[:num_query, :num_query].T,
                                full[num_query:, num_query:].T, progress=False)
    return distmat, ranking.rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids)

  (distmat, dense_result), dense_s, dense_mib = report.peak_resident(dense)
  bounded = rerank.re_ranking_features(qf, gf, progress=False)
  gap = float(np.abs(bounded - distmat).max())
  print(f"dense: {dense_s:.1f} s, {dense_mib / 1024:.2f} GiB peak resident; mAP "
        f"{dense_result['mAP']:.4f}; max |bounded - dense| {gap:.1e}, |mAP gap| "
        f"{abs(dense_result['mAP'] - record['mAP']):.1e}")
  for metric, ours_value, ref_value in [("rerank_evaluate_seconds", ours_s, dense_s),
                                        ("rerank_evaluate_peak_resident_mib", ours_mib,
                                         dense_mib)]:
    print(report.comparison(metric, ours_value, "dense re_ranking", ref_value, config,
                            lower_is_better=True))


if __name__ == "__main__":
  app.run(main)
