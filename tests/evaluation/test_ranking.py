"""CMC/mAP: hand-worked cases of docs/arn_triplet_eval.md §3.3 and brute-force per-query loops."""

import numpy as np
import pytest

from reid_jax.errors import ReidError
from reid_jax.evaluation import ranking

AP_VARIANTS = ("step", "trapezoid", "sklearn")


def _single_query(distances, g_pids, g_camids, q_pid=1, q_camid=0, **kwargs):
  dist = np.asarray([distances], np.float32)
  return ranking.rank_metrics(dist, np.array([q_pid]), np.asarray(g_pids), np.array([q_camid]),
                              np.asarray(g_camids), **kwargs)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_hand_worked_relevance_0101(backend):
  # Filtered relevance [0, 1, 0, 1], no ties (§3.3): step 0.5, sklearn 0.5, trapezoid 1/3.
  args = ([0.1, 0.2, 0.3, 0.4], [2, 1, 3, 1], [1, 1, 1, 1])
  expected = {"step": 0.5, "sklearn": 0.5, "trapezoid": 1 / 3}
  for ap, value in expected.items():
    result = _single_query(*args, ap=ap, sort_backend=backend)
    np.testing.assert_allclose(result["mAP"], value, rtol=1e-6)
    np.testing.assert_allclose(result["cmc"], [0, 1, 1, 1])
    assert result["first_match_rank"][0] == 2


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_tie_case(backend):
  # Two gallery items at the same distance, in gallery order (wrong, right).
  args = ([0.5, 0.5], [2, 1], [1, 1])
  step = _single_query(*args, ap="step", sort_backend=backend)
  np.testing.assert_allclose(step["mAP"], 0.5)  # stable sort keeps (wrong, right)
  np.testing.assert_allclose(step["cmc"], [0, 1])
  for order in ([2, 1], [1, 2]):  # sklearn: one threshold, whatever the order
    result = _single_query([0.5, 0.5], order, [1, 1], ap="sklearn", sort_backend=backend)
    np.testing.assert_allclose(result["mAP"], 0.5)
  # A tie group inside a longer list: hits (d=0.1) + tie {0.2: wrong, right, right} + wrong.
  result = _single_query([0.1, 0.2, 0.2, 0.2, 0.3], [1, 2, 1, 1, 2], [1] * 5, ap="sklearn",
                         sort_backend=backend)
  np.testing.assert_allclose(result["mAP"], (1 / 3) * 1 + (2 / 3) * (3 / 4), rtol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_same_camera_junk_and_distractor_rules(backend):
  # Gallery in distance order: same pid same camera (removed), junk -1 (removed), distractor 0
  # (kept, wrong), true match in another camera.
  result = _single_query([0.1, 0.2, 0.3, 0.4], [1, -1, 0, 1], [0, 1, 1, 1], q_camid=0,
                         ap="step", sort_backend=backend)
  np.testing.assert_allclose(result["mAP"], 0.5)  # the match is second among valid items
  np.testing.assert_allclose(result["cmc"], [0, 1, 1, 1])
  # Without the distractor the match would be first.
  result = _single_query([0.1, 0.2, 0.4], [1, -1, 1], [0, 1, 1], q_camid=0, sort_backend=backend)
  np.testing.assert_allclose(result["mAP"], 1.0)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_query_without_valid_match_is_skipped(backend):
  dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.1, 0.2, 0.3]], np.float32)
  q_pids, q_camids = np.array([1, 2, 7]), np.array([0, 0, 0])
  g_pids, g_camids = np.array([1, 2, 2]), np.array([1, 0, 1])
  # Query 0: match first. Query 1: pid 2 in camera 0 is removed, the camera-1 one is ranked 1st.
  # Query 2: pid 7 absent -> skipped.
  result = ranking.rank_metrics(dist, q_pids, g_pids, q_camids, g_camids, sort_backend=backend)
  assert result["n_query"] == 3 and result["n_valid_query"] == 2
  np.testing.assert_allclose(result["mAP"], 1.0)
  assert np.isnan(result["ap_per_query"][2])
  # Query 1 with its only match in the same camera: skipped as well.
  with pytest.raises(ReidError, match="no query has a true match"):
    ranking.rank_metrics(dist[1:2], q_pids[1:2], np.array([1, 2, 0]), q_camids[1:2],
                         np.array([1, 0, 1]), sort_backend=backend)


def brute_force(dist, q_pids, g_pids, q_camids, g_camids, ap, max_rank):
  """Independent per-query transcription of §3.2-3.3 with explicit loops."""
  aps, cmc, valid_queries = [], np.zeros(max_rank), 0
  for q in range(dist.shape[0]):
    order = sorted(range(dist.shape[1]), key=lambda j: (dist[q, j], j))  # stable
    keep = [j for j in order
            if g_pids[j] != -1 and not (g_pids[j] == q_pids[q] and g_camids[j] == q_camids[q])]
    rel = [g_pids[j] == q_pids[q] for j in keep]
    total = sum(rel)
    if total == 0:
      continue
    valid_queries += 1
    first = rel.index(True)
    cmc[first:] += 1
    if ap == "step":
      hits, value = 0, 0.0
      for n, r in enumerate(rel, start=1):
        if r:
          hits += 1
          value += hits / n
      aps.append(value / total)
    elif ap == "trapezoid":
      hits, value, old_recall, old_precision = 0, 0.0, 0.0, 1.0
      for n, r in enumerate(rel, start=1):
        hits += r
        recall, precision = hits / total, hits / n
        value += (recall - old_recall) * (precision + old_precision) / 2
        old_recall, old_precision = recall, precision
        if hits == total:
          break
      aps.append(value)
    else:  # sklearn: one operating point per distinct distance
      distances = [dist[q, j] for j in keep]
      value, old_recall, n, hits = 0.0, 0.0, 0, 0
      while n < len(keep):
        group_end = n
        while group_end < len(keep) and distances[group_end] == distances[n]:
          hits += rel[group_end]
          group_end += 1
        recall, precision = hits / total, hits / group_end
        value += (recall - old_recall) * precision
        old_recall, n = recall, group_end
      aps.append(value)
  return cmc / valid_queries, float(np.mean(aps)), valid_queries


def _random_problem(seed, num_query=23, num_gallery=61, ties=False):
  rng = np.random.default_rng(seed)
  q_pids = rng.integers(1, 10, num_query)  # pid 9 is not in the gallery
  q_camids = rng.integers(0, 3, num_query)
  g_pids = rng.integers(-1, 9, num_gallery)  # includes junk -1, distractor 0 and absent 8
  g_camids = rng.integers(0, 3, num_gallery)
  dist = rng.random((num_query, num_gallery)).astype(np.float32)
  if ties:
    dist = np.round(dist * 6) / 6  # a handful of distinct values: many ties
  return dist, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("ap", AP_VARIANTS)
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_matches_brute_force(ties, ap, backend):
  dist, q_pids, g_pids, q_camids, g_camids = _random_problem(int(ties) * 10 + len(ap), ties=ties)
  result = ranking.rank_metrics(dist, q_pids, g_pids, q_camids, g_camids, max_rank=20, ap=ap,
                                chunk_size=7, sort_backend=backend)
  cmc, mean_ap, valid_queries = brute_force(dist, q_pids, g_pids, q_camids, g_camids, ap, 20)
  assert 0 < valid_queries < dist.shape[0]  # some queries are skipped
  assert result["n_valid_query"] == valid_queries
  np.testing.assert_allclose(result["cmc"], cmc, rtol=1e-6)
  np.testing.assert_allclose(result["mAP"], mean_ap, rtol=1e-5)


def test_ap_variant_ordering_and_cmc_shape():
  dist, q_pids, g_pids, q_camids, g_camids = _random_problem(5, ties=False)
  scores = {ap: ranking.rank_metrics(dist, q_pids, g_pids, q_camids, g_camids, ap=ap)
            for ap in AP_VARIANTS}
  np.testing.assert_allclose(scores["step"]["mAP"], scores["sklearn"]["mAP"], rtol=1e-6)
  assert scores["trapezoid"]["mAP"] < scores["step"]["mAP"]  # §3.3: never above the step AP
  cmc = scores["step"]["cmc"]
  assert cmc.shape == (50,) and np.all(np.diff(cmc) >= 0) and cmc[-1] == 1.0
  small = ranking.rank_metrics(dist[:, :10], q_pids, g_pids[:10], q_camids, g_camids[:10])
  assert small["cmc"].shape == (10,)  # max_rank is cut to the gallery size


def test_invariant_to_gallery_permutation_without_ties():
  dist, q_pids, g_pids, q_camids, g_camids = _random_problem(6)
  perm = np.random.default_rng(0).permutation(dist.shape[1])
  for ap in AP_VARIANTS:
    a = ranking.rank_metrics(dist, q_pids, g_pids, q_camids, g_camids, ap=ap)
    b = ranking.rank_metrics(dist[:, perm], q_pids, g_pids[perm], q_camids, g_camids[perm], ap=ap)
    np.testing.assert_allclose(a["mAP"], b["mAP"], rtol=1e-12)
    np.testing.assert_array_equal(a["cmc"], b["cmc"])


def test_evaluate_chunked_equals_unchunked_and_brute_force():
  rng = np.random.default_rng(7)
  dist, q_pids, g_pids, q_camids, g_camids = _random_problem(8, num_query=30, num_gallery=90)
  qf = rng.normal(size=(30, 16)).astype(np.float32)
  gf = rng.normal(size=(90, 16)).astype(np.float32)
  results = [ranking.evaluate(qf, gf, q_pids, g_pids, q_camids, g_camids, ap="trapezoid",
                              chunk_size=chunk, max_rank=20) for chunk in (4, 30, 1000)]
  for other in results[1:]:
    assert other == results[0]
  full = ((qf[:, None] - gf[None]) ** 2).sum(-1) ** 0.5
  cmc, mean_ap, valid = brute_force(full, q_pids, g_pids, q_camids, g_camids, "trapezoid", 20)
  record = results[0]
  np.testing.assert_allclose(record["mAP"], mean_ap, rtol=1e-5)
  np.testing.assert_allclose(record["cmc"], cmc)
  assert record["rank1"] == cmc[0] and record["rank20"] == cmc[19]
  assert (record["n_query"], record["n_valid_query"], record["n_gallery"]) == (30, valid, 90)
  assert (record["ap"], record["distance"], record["rerank"]) == ("trapezoid", "euclidean", False)
  # Squared Euclidean ranks identically.
  squared = ranking.evaluate(qf, gf, q_pids, g_pids, q_camids, g_camids, metric="sqeuclidean",
                             ap="trapezoid", max_rank=20)
  assert squared["mAP"] == pytest.approx(record["mAP"], rel=1e-9)
  assert squared["cmc"] == record["cmc"]


def test_stable_argsort_rows_matches_numpy_stable_argsort():
  rng = np.random.default_rng(9)
  dist = (np.round(rng.normal(size=(6, 300)) * 4) / 4).astype(np.float32)  # negatives, many ties
  dist[0, :5] = [0.0, -0.0, 0.0, -0.0, -1e-8]
  dist[1, :3] = [np.inf, -np.inf, 3.0]
  np.testing.assert_array_equal(ranking.stable_argsort_rows(dist),
                                np.argsort(dist, axis=1, kind="stable"))
  positive = np.abs(dist)
  np.testing.assert_array_equal(ranking.stable_argsort_rows(positive),
                                np.argsort(positive, axis=1, kind="stable"))


def test_evaluate_memory_is_bounded_by_the_chunk():
  import tracemalloc
  rng = np.random.default_rng(10)
  num_gallery = 30000
  gf = rng.normal(size=(num_gallery, 4)).astype(np.float32)
  g_pids, g_cams = rng.integers(0, 50, num_gallery), rng.integers(0, 6, num_gallery)

  def peak_bytes(num_query):
    qf = rng.normal(size=(num_query, 4)).astype(np.float32)
    q_pids, q_cams = rng.integers(0, 50, num_query), rng.integers(0, 6, num_query)
    tracemalloc.start()
    record = ranking.evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, chunk_size=32,
                              sort_backend="numpy")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert record["n_valid_query"] == num_query
    return peak

  small, large = peak_bytes(200), peak_bytes(1200)
  assert large < 1.2 * small  # does not grow with the number of queries
  assert large < 1200 * num_gallery * 4 / 4  # a quarter of the full float32 matrix


def test_evaluate_rejects_non_finite_features():
  qf = np.array([[0.0, np.nan]], np.float32)
  with pytest.raises(ReidError, match="query features contain NaN"):
    ranking.evaluate(qf, np.zeros((3, 2)), [1], [1, 1, 2], [0], [1, 1, 1])
