"""k-reciprocal re-ranking against a loop transcription of docs/arn_triplet_eval.md §3.6."""

import numpy as np
import pytest

from reid_jax.errors import ReidError
from reid_jax.evaluation import rerank


def loop_rerank(q_g, q_q, g_g, k1, k2, lam):
  """Straightforward transcription of the seven steps of §3.6, one image at a time."""
  nq = q_g.shape[0]
  full = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64) ** 2  # step 1: square once
  n = full.shape[0]
  d = (full / full.max(axis=0)).T  # each column by its max, transposed
  ranking = [sorted(range(n), key=lambda j: (d[i, j], j)) for i in range(n)]

  def reciprocal(i, k):  # step 2
    return {j for j in ranking[i][:k + 1] if i in ranking[j][:k + 1]}

  v = np.zeros((n, n))
  for i in range(n):  # steps 3-4
    r = reciprocal(i, k1)
    expanded = set(r)
    for c in r:
      rc = reciprocal(c, int(round(k1 / 2)))
      if len(rc & r) > 2 / 3 * len(rc):
        expanded |= rc
    members = sorted(expanded)
    weights = np.exp(-d[i, members])
    v[i, members] = weights / weights.sum()
  if k2 > 1:  # step 5
    v = np.stack([v[ranking[i][:k2]].mean(axis=0) for i in range(n)])
  jaccard = np.zeros((nq, n))
  for i in range(nq):  # step 6
    for j in range(n):
      s = np.minimum(v[i], v[j]).sum()
      jaccard[i, j] = 1 - s / (2 - s)
  final = (1 - lam) * jaccard + lam * d[:nq]  # step 7
  return final[:, nq:]


def _features(seed, nq=8, ng=24, dim=6):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(6, dim))
  q = centres[rng.integers(0, 6, nq)] + 0.6 * rng.normal(size=(nq, dim))
  g = centres[rng.integers(0, 6, ng)] + 0.6 * rng.normal(size=(ng, dim))
  dist = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
  return q, g, dist(q, g), dist(q, q), dist(g, g)


@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (5, 3, 0.3), (4, 1, 0.5), (7, 2, 0.0)])
def test_matches_loop_transcription(k1, k2, lam):
  _, _, q_g, q_q, g_g = _features(k1 + k2)
  ours = rerank.re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
  ref = loop_rerank(q_g, q_q, g_g, k1, k2, lam)
  assert ours.shape == (8, 24) and ours.dtype == np.float32
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_invariants():
  q, g, q_g, q_q, g_g = _features(3)
  # lambda = 1: the normalised squared distance of step 1 (row i of the query block divided by
  # the largest squared distance from image i to any image).
  full = np.block([[q_q, q_g], [q_g.T, g_g]]) ** 2
  expected = q_g ** 2 / full[:8].max(axis=1, keepdims=True)
  np.testing.assert_allclose(rerank.re_ranking(q_g, q_q, g_g, lambda_value=1.0), expected,
                             rtol=1e-5)
  jaccard = rerank.re_ranking(q_g, q_q, g_g, k1=5, k2=3, lambda_value=0.0)
  assert np.all(jaccard >= -1e-6) and np.all(jaccard <= 1 + 1e-6)
  # A gallery copy of a query is its own nearest neighbour: it stays ranked first.
  g_copy = np.concatenate([g, q[:1]])
  dist = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
  out = rerank.re_ranking(dist(q, g_copy), q_q, dist(g_copy, g_copy), k1=5, k2=3)
  assert np.argmin(out[0]) == len(g)
  # Features entry point equals the distance entry point.
  np.testing.assert_allclose(rerank.re_ranking_features(q, g, k1=5, k2=3),
                             rerank.re_ranking(q_g, q_q, g_g, k1=5, k2=3), rtol=1e-4, atol=1e-5)


def test_refuses_when_too_large():
  with pytest.raises(ReidError, match="re-ranking 11659 queries"):
    rerank.check_memory(11659, 82161, max_bytes=16 << 30)
  _, _, q_g, q_q, g_g = _features(4)
  with pytest.raises(ReidError, match="rerank=False"):
    rerank.re_ranking(q_g, q_q, g_g, max_bytes=1000)


def test_evaluate_with_rerank_uses_reranked_distances():
  from reid_jax.evaluation import ranking
  q, g, _, _, _ = _features(5)
  rng = np.random.default_rng(5)
  q_pids, g_pids = rng.integers(1, 4, 8), rng.integers(1, 4, 24)
  q_cams, g_cams = np.zeros(8, int), np.ones(24, int)
  record = ranking.evaluate(q, g, q_pids, g_pids, q_cams, g_cams, metric="sqeuclidean",
                            rerank=True, rerank_k1=5, rerank_k2=3, max_rank=10)
  cmc, mean_ap = ranking.evaluate_rank(rerank.re_ranking_features(q, g, k1=5, k2=3), q_pids,
                                       g_pids, q_cams, g_cams, max_rank=10)
  assert record["rerank"] and record["distance"] == "euclidean"
  np.testing.assert_allclose(record["mAP"], mean_ap)
  np.testing.assert_allclose(record["cmc"], cmc)


def _dense_from_rows(qf, gf, **kwargs):
  """Dense `re_ranking` fed the very rows the feature source computes (bitwise the same inputs):
  row i of step 1's matrix is column i of torchreid's original matrix, so pass the transposes."""
  source = rerank.FeatureDistances(qf, gf)
  num_query, num_images = len(qf), len(qf) + len(gf)
  full = np.concatenate([source.euclidean_rows(start)
                         for start in range(0, num_images, rerank._ROW_BLOCK)])
  return rerank.re_ranking(full[num_query:, :num_query].T, full[:num_query, :num_query].T,
                           full[num_query:, num_query:].T, progress=False, **kwargs)


@pytest.mark.parametrize("num_query,num_gallery,dim,k1,k2", [
    (40, 260, 16, 20, 6), (1100, 1500, 32, 20, 6), (30, 90, 8, 7, 1)])
def test_bounded_equals_dense(num_query, num_gallery, dim, k1, k2):
  # Crosses the 1024-row block boundary in the second case (queries and images both).
  rng = np.random.default_rng(num_query)
  centres = rng.normal(size=(25, dim))
  qf = centres[rng.integers(0, 25, num_query)] + 0.5 * rng.normal(size=(num_query, dim))
  gf = centres[rng.integers(0, 25, num_gallery)] + 0.5 * rng.normal(size=(num_gallery, dim))
  bounded = rerank.re_ranking_features(qf, gf, k1=k1, k2=k2, progress=False)
  np.testing.assert_allclose(bounded, _dense_from_rows(qf, gf, k1=k1, k2=k2), rtol=0, atol=1e-6)


def test_ties_at_the_kth_neighbour():
  # Small integer features: squared distances are exact small integers, so many images sit at
  # exactly the same distance, also at the k-th place; the order must be (distance, index).
  rng = np.random.default_rng(7)
  qf = rng.integers(0, 3, (10, 3)).astype(np.float32)
  gf = rng.integers(0, 3, (50, 3)).astype(np.float32)
  dist = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
  q_g, q_q, g_g = dist(qf, gf), dist(qf, qf), dist(gf, gf)
  full = np.block([[q_q, q_g], [q_g.T, g_g]])
  kth = np.sort(full, axis=1)[:, 5]
  assert ((full == kth[:, None]).sum(axis=1) > 1).mean() > 0.5  # the test's premise: ties
  ref = loop_rerank(q_g, q_q, g_g, 5, 3, 0.3)
  dense = rerank.re_ranking(q_g, q_q, g_g, k1=5, k2=3, progress=False)
  bounded = rerank.re_ranking_features(qf, gf, k1=5, k2=3, progress=False)
  np.testing.assert_allclose(dense, ref, rtol=0, atol=1e-6)
  np.testing.assert_allclose(bounded, ref, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_bounded_equals_dense_market_sized():
  # Market's test set: 3,368 queries x 15,913 gallery images (N = 19,281), 64-d features.
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(751, 64)).astype(np.float32)
  qf = centres[rng.integers(0, 751, 3368)] + rng.normal(size=(3368, 64)).astype(np.float32)
  gf = centres[rng.integers(0, 751, 15913)] + rng.normal(size=(15913, 64)).astype(np.float32)
  bounded = rerank.re_ranking_features(qf, gf, progress=False)
  np.testing.assert_allclose(bounded, _dense_from_rows(qf, gf), rtol=0, atol=1e-6)


def test_bounded_refuses_when_too_large():
  with pytest.raises(ReidError, match=r"re-ranking 11659 queries .*\(rerank=False\)"):
    rerank.check_bounded_memory(11659, 82161, 2048, max_bytes=1 << 30)
  rerank.check_bounded_memory(11659, 82161, 2048, max_bytes=24 << 30)  # MSMT17 in 24 GB


def test_workdir_evaluation_scores_blocks_and_keeps_only_the_figure_rows():
  from reid_jax.evaluation import ranking
  from reid_jax.training import evaluate as evaluate_lib
  q, g, _, _, _ = _features(6, nq=40, ng=150)
  rng = np.random.default_rng(6)
  labels_q = {"pid": rng.integers(1, 6, 40), "camid": np.zeros(40, int)}
  labels_g = {"pid": rng.integers(1, 6, 150), "camid": np.ones(150, int)}
  keep = np.array([3, 17, 39])
  entry, rows = evaluate_lib._reranked_entry(q, g, labels_q, labels_g, ap="step", keep=keep)
  expected = ranking.evaluate(q, g, labels_q["pid"], labels_g["pid"], labels_q["camid"],
                              labels_g["camid"], rerank=True, progress=False)
  assert entry["mAP"] == pytest.approx(expected["mAP"]) and entry["rerank"]
  assert rows.shape == (3, 150)
  np.testing.assert_array_equal(rows, rerank.re_ranking_features(q, g, progress=False)[keep])
