"""Random re-ID test sets with the real datasets' sizes, shared by the evaluator benchmarks."""

import numpy as np

from reid_jax.evaluation import distances

SIZES = {  # num_query, num_gallery, dim, distractors, identities, cameras
    "quick": (600, 3000, 256, 500, 750, 6),
    "market": (3368, 15913, 2048, 2798, 750, 6),
    "msmt": (11659, 82161, 2048, 0, 3060, 15),
}


def market_like_problem(num_query, num_gallery, dim, num_ids=750, num_cameras=6,
                        num_distractors=2798, seed=0):
  """Random features and labels with Market's structure; junk already dropped (pid 0 kept)."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((num_ids + 1, dim), dtype=np.float32)
  q_pids = rng.integers(1, num_ids + 1, num_query)
  g_pids = np.concatenate([rng.integers(1, num_ids + 1, num_gallery - num_distractors),
                           np.zeros(num_distractors, np.int64)])
  q_camids = rng.integers(0, num_cameras, num_query)
  g_camids = rng.integers(0, num_cameras, num_gallery)
  # Scaled so that rank-1/mAP look like a weak (direct-transfer-like) model at any dimension:
  # identity separation grows like sqrt(dim) relative to the noise's fluctuation.
  noise = 2.4 * (dim / 256) ** 0.25

  def features(pids):
    out = centres[pids]
    out[pids == 0] = 0.0
    for start in range(0, len(pids), 8192):  # float32 noise a slab at a time: no float64 copy
      stop = min(start + 8192, len(pids))
      out[start:stop] += noise * rng.standard_normal((stop - start, dim), dtype=np.float32)
    return distances.l2_normalize(out)

  return features(q_pids), features(g_pids), q_pids, g_pids, q_camids, g_camids
