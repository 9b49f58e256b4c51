"""Distance matrices against brute-force loops; flip averaging; normalisation."""

import numpy as np
import pytest

from reid_jax.evaluation import distances, ranking


def _loops(qf, gf, metric):
  out = np.zeros((len(qf), len(gf)))
  for i, q in enumerate(qf.astype(np.float64)):
    for j, g in enumerate(gf.astype(np.float64)):
      if metric == "cosine":
        out[i, j] = 1 - q @ g / (np.linalg.norm(q) * np.linalg.norm(g))
      else:
        out[i, j] = np.sum((q - g) ** 2)
        if metric == "euclidean":
          out[i, j] = np.sqrt(out[i, j])
  return out


@pytest.mark.parametrize("metric", distances.METRICS)
def test_matches_loops_in_chunks(metric):
  rng = np.random.default_rng(0)
  qf = rng.normal(size=(13, 9)).astype(np.float32)
  gf = rng.normal(size=(17, 9)).astype(np.float32)
  ref = _loops(qf, gf, metric)
  for chunk in (1, 5, 13, 100):
    out = distances.compute_distance_matrix(qf, gf, metric, chunk_size=chunk)
    assert out.dtype == np.float32 and out.shape == (13, 17)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_identical_rows_have_zero_distance():
  x = np.random.default_rng(1).normal(size=(4, 32)).astype(np.float32) * 10
  out = distances.compute_distance_matrix(x, x, "sqeuclidean")
  assert np.all(out >= 0)  # clamped, never negative from rounding
  np.testing.assert_allclose(np.diag(out), 0, atol=1e-3)


def test_sqeuclidean_and_euclidean_rank_the_same():
  rng = np.random.default_rng(2)
  qf, gf = rng.normal(size=(10, 8)), rng.normal(size=(40, 8))
  euclidean = distances.compute_distance_matrix(qf, gf, "euclidean")
  squared = distances.compute_distance_matrix(qf, gf, "sqeuclidean")
  np.testing.assert_array_equal(np.argsort(euclidean, axis=1, kind="stable"),
                                np.argsort(squared, axis=1, kind="stable"))
  # For L2-normalised features, squared Euclidean = 2 - 2 cos = 2 * cosine distance (docs/hhl.md §8).
  qn, gn = distances.l2_normalize(qf), distances.l2_normalize(gf)
  np.testing.assert_allclose(distances.compute_distance_matrix(qn, gn, "sqeuclidean"),
                             2 * distances.compute_distance_matrix(qf, gf, "cosine"), atol=1e-5)
  pids = rng.integers(0, 4, 50)
  cams = rng.integers(0, 2, 50)
  a = ranking.evaluate(qf, gf, pids[:10], pids[10:], cams[:10], cams[10:], metric="euclidean")
  b = ranking.evaluate(qf, gf, pids[:10], pids[10:], cams[:10], cams[10:], metric="sqeuclidean")
  assert a["mAP"] == b["mAP"] and a["cmc"] == b["cmc"]


def test_l2_normalize():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(5, 7)).astype(np.float32)
  np.testing.assert_allclose(np.linalg.norm(distances.l2_normalize(x), axis=1), 1, rtol=1e-6)
  np.testing.assert_array_equal(distances.l2_normalize(np.zeros((2, 3))), 0)  # no NaN at 0
