"""Distance diagnostics of an embedding on a labelled set (docs/hhl.md §11.1, Table 1; docs/testbed.md)."""

import numpy as np


def camera_gap_ratio(features, pids, camids) -> float:
  """Mean over identities of (mean cross-camera distance) / (mean same-camera distance).

  Euclidean distances between the identity's own images; an identity counts when it has both a
  same-camera pair and a cross-camera pair. Above 1: one person's images from other cameras are
  farther apart than those from one camera (the camera gap HHL's camera invariance closes).
  Non-positive pids (junk, distractors) are left out.
  """
  features, pids, camids = np.asarray(features, np.float64), np.asarray(pids), np.asarray(camids)
  ratios = []
  for pid in np.unique(pids[pids > 0]):
    x, cams = features[pids == pid], camids[pids == pid]
    d = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0.0))
    same = (cams[:, None] == cams[None]) & ~np.eye(len(cams), dtype=bool)
    cross = cams[:, None] != cams[None]
    if same.any() and cross.any():
      ratios.append(d[cross].mean() / d[same].mean())
  if not ratios:
    raise ValueError("no identity has both a same-camera and a cross-camera pair")
  return float(np.mean(ratios))
