"""CMC and mAP with the standard single-query re-ID rules (docs/arn_triplet_eval.md §3.2-3.4, docs/hhl.md §8).

Per query: sort the gallery by distance with a stable sort; drop gallery items with the query's
pid and camera, and junk (pid -1); distractors (pid 0) stay as ordinary negatives; a query with no
remaining true match is skipped (counted in `n_query`, not in `n_valid_query` or any mean).

The per-query work uses the fixed-shape formulation of §3.3: nothing is compacted; along each
sorted row a validity mask `v` gives `rank = cumsum(v)` (1-based rank among valid items) and
`chits = cumsum(hit)`, from which every AP variant and the first-match rank follow. Rows are
processed a block of queries at a time, so memory is `O(chunk_size * Ng)`.

Sorting backend: numpy on CPU (jnp.argsort is ~9x slower there), as a sort of integer keys that
is a stable argsort by distance; the scores are then read at the true matches only. On GPU/TPU the
whole block (stable sort and dense scores) runs as one jitted function on the device.

AP variants (`ap=`):
  step       (1/R) sum over hits of P@k (torchreid; the default).
  trapezoid  (1/R) sum over hits of (P@k + P@(k-1)) / 2 with P@0 = 1 (official Market-1501 code,
             sklearn <= 0.18, HHL's reported numbers).
  sklearn    sklearn >= 0.19 `average_precision_score(rel, -dist)`: equal distances form one
             threshold, whose hits all take the precision measured after the whole tie group, so
             the order inside a tie does not matter.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from reid_jax import progress as progress_lib
from reid_jax.errors import ReidError
from reid_jax.evaluation import distances
from reid_jax.evaluation import rerank as rerank_lib

AP_VARIANTS = ("step", "trapezoid", "sklearn")
JUNK_PID = -1  # docs/arn_triplet_eval.md §3.2 rule 3; distractors (pid 0) are kept
DEFAULT_MAX_RANK = 50
DEFAULT_CHUNK_SIZE = 128


def query_validity(q_pids, q_camids, g_pids, g_camids):
  """Bool `[Nq, Ng]`: gallery item counts for the query (not same pid+camera, not junk).

  Broadcasts `q_pids[:, None]` against `g_pids[None, :]`; works on numpy and jax arrays.
  """
  q_pids, q_camids = q_pids[:, None], q_camids[:, None]
  g_pids, g_camids = g_pids[None, :], g_camids[None, :]
  return ~((g_pids == q_pids) & (g_camids == q_camids)) & (g_pids != JUNK_PID)


def _check_ap(ap):
  if ap not in AP_VARIANTS:
    raise ValueError(f"ap must be one of {AP_VARIANTS}, got {ap!r}")


def _reverse_cummin(xp, values):
  if xp is np:
    return np.minimum.accumulate(values[:, ::-1], axis=1)[:, ::-1]
  return lax.cummin(values, axis=1, reverse=True)


def _score_sorted_rows(xp, sorted_dist, hit, valid, ap):
  """Per-query AP, first-match rank (0 = none) and number of true matches.

  All inputs `[Bq, Ng]` in ranked order: distances (used by 'sklearn' only), hit (true match and
  valid) and valid. Returns three `[Bq]` arrays.
  """
  float_dtype = np.float64 if xp is np else jnp.float32
  rank = xp.cumsum(valid, axis=1, dtype=xp.int32)
  chits = xp.cumsum(hit, axis=1, dtype=xp.int32)
  num_hits = chits[:, -1]
  precision = chits.astype(float_dtype) / xp.maximum(rank, 1).astype(float_dtype)
  if ap == "step":
    per_hit = precision
  elif ap == "trapezoid":
    previous = (chits - 1).astype(float_dtype) / xp.maximum(rank - 1, 1).astype(float_dtype)
    per_hit = 0.5 * (precision + xp.where(rank > 1, previous, 1.0))
  else:
    # Precision at the end of each run of equal distances (a tie group). Invalid items inside a
    # run change neither counter, so the run's last position carries the group's precision.
    num_gallery = sorted_dist.shape[1]
    positions = xp.arange(num_gallery, dtype=xp.int32)[None, :]
    run_end = xp.concatenate(
        [sorted_dist[:, 1:] != sorted_dist[:, :-1],
         xp.ones((sorted_dist.shape[0], 1), dtype=bool)], axis=1)
    end_index = _reverse_cummin(xp, xp.where(run_end, positions, num_gallery))
    per_hit = xp.take_along_axis(precision, end_index, axis=1)
  ap_value = xp.sum(xp.where(hit, per_hit, 0.0), axis=1) / xp.maximum(num_hits, 1)
  first = xp.argmax(hit, axis=1)
  first_rank = xp.where(num_hits > 0, xp.take_along_axis(rank, first[:, None], axis=1)[:, 0], 0)
  return ap_value, first_rank, num_hits


_LOW_32 = np.uint64(0xFFFFFFFF)


def _sorted_keys(dist):
  """Row-wise sorted uint64 keys `(monotone float32 bits << 32) | column`, `[Bq, Ng]`.

  Sorting these keys is a stable argsort by distance (ties keep gallery order), and runs ~7x
  faster than numpy's stable argsort because numpy sorts plain integers with SIMD code. The low
  32 bits of the result are the order, the high 32 bits the sorted distances' keys.
  """
  dist = np.ascontiguousarray(dist, np.float32) + np.float32(0.0)  # -0.0 -> +0.0
  bits = dist.view(np.uint32)
  if dist.size and dist.min() < 0:  # flip negative floats so that unsigned order = float order
    bits = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
  else:
    bits = bits | np.uint32(0x80000000)
  keys = bits.astype(np.uint64)
  keys <<= np.uint64(32)
  keys |= np.arange(dist.shape[1], dtype=np.uint64)
  keys.sort(axis=1)
  return keys


def stable_argsort_rows(dist):
  """`np.argsort(dist, axis=1, kind='stable')` for float32 `[Bq, Ng]` (int64), computed faster."""
  return (_sorted_keys(dist) & _LOW_32).view(np.int64)


def _score_block_numpy(dist, q_pids, q_camids, g_pids, g_camids, ap):
  """The fixed-shape formulation evaluated at the hits only (sparse, O(Bq * Ng) + sort)."""
  num_rows, num_gallery = dist.shape
  keys = _sorted_keys(dist)
  order = (keys & _LOW_32).view(np.int64)
  match = g_pids[None, :] == q_pids[:, None]
  valid = query_validity(q_pids, q_camids, g_pids, g_camids)
  # One uint8 gather instead of two boolean ones: bit 0 = valid, bit 1 = true match.
  code = valid.astype(np.uint8) | ((match & valid).astype(np.uint8) << 1)
  code = np.take_along_axis(code, order, axis=1)
  # Flat positions (row * Ng + ranked position) of hits and of invalid items, both ascending.
  hit_flat = np.flatnonzero(code & 2)
  invalid_flat = np.flatnonzero((code & 1) == 0)
  hit_row = hit_flat // num_gallery
  num_hits = np.bincount(hit_row, minlength=num_rows)
  hit_row_start = np.cumsum(num_hits) - num_hits
  row_base = np.arange(num_rows, dtype=np.int64) * num_gallery

  def valid_rank(flat, row):
    """1-based rank among valid items of flat position `flat` in `row` (counting it)."""
    invalid_up_to = (np.searchsorted(invalid_flat, flat, side="right")
                     - np.searchsorted(invalid_flat, row_base[row], side="left"))
    return (flat - row_base[row] + 1 - invalid_up_to).astype(np.float64)

  rank = valid_rank(hit_flat, hit_row)
  chits = (np.arange(hit_flat.shape[0]) - hit_row_start[hit_row] + 1).astype(np.float64)
  if ap == "step":
    per_hit = chits / rank
  elif ap == "trapezoid":
    previous = np.where(rank > 1, (chits - 1) / np.maximum(rank - 1, 1), 1.0)
    per_hit = 0.5 * (chits / rank + previous)
  else:
    # Precision at the end of the hit's tie group: the last ranked position with equal distance.
    # Keys (row << 32 | distance bits) are globally ascending, so one searchsorted finds it.
    global_keys = (keys >> np.uint64(32)) | (np.arange(num_rows, dtype=np.uint64)[:, None]
                                            << np.uint64(32))
    global_keys = global_keys.reshape(-1)
    end_flat = np.searchsorted(global_keys, global_keys[hit_flat], side="right") - 1
    hits_up_to_end = np.searchsorted(hit_flat, end_flat, side="right") - hit_row_start[hit_row]
    per_hit = hits_up_to_end / valid_rank(end_flat, hit_row)
  ap_value = np.bincount(hit_row, weights=per_hit, minlength=num_rows) / np.maximum(num_hits, 1)
  first_rank = np.zeros(num_rows, np.int64)
  has_hit = num_hits > 0
  first_rank[has_hit] = rank[hit_row_start[has_hit]].astype(np.int64)
  return ap_value, first_rank, num_hits


@functools.partial(jax.jit, static_argnames=("ap",))
def _score_block_jax(dist, q_pids, q_camids, g_pids, g_camids, ap):
  order = jnp.argsort(dist, axis=1, stable=True)
  valid = query_validity(q_pids, q_camids, g_pids, g_camids)
  hit = (g_pids[None, :] == q_pids[:, None]) & valid
  sorted_dist = jnp.take_along_axis(dist, order, axis=1)
  return _score_sorted_rows(jnp, sorted_dist, jnp.take_along_axis(hit, order, axis=1),
                            jnp.take_along_axis(valid, order, axis=1), ap)


def default_sort_backend():
  """'numpy' on the CPU backend, else 'jax' (sort and score on the accelerator)."""
  return "numpy" if jax.default_backend() == "cpu" else "jax"


class RankAccumulator:
  """Collects per-query scores block by block; `result()` gives the CMC/mAP summary.

  Args:
    g_pids, g_camids: `[Ng]` integer gallery labels.
    max_rank: CMC length (cut to Ng when the gallery is smaller, as torchreid does).
    ap: one of AP_VARIANTS.
    sort_backend: 'numpy', 'jax' or None (`default_sort_backend()`).
  """

  def __init__(self, g_pids, g_camids, max_rank=DEFAULT_MAX_RANK, ap="step", sort_backend=None):
    _check_ap(ap)
    self.g_pids = np.asarray(g_pids, np.int64)
    self.g_camids = np.asarray(g_camids, np.int64)
    if self.g_pids.shape != self.g_camids.shape or self.g_pids.ndim != 1:
      raise ValueError(f"g_pids {self.g_pids.shape} and g_camids {self.g_camids.shape} must be "
                       "equal-length vectors")
    self.max_rank = max(1, min(max_rank, self.g_pids.shape[0]))
    self.ap = ap
    self.sort_backend = sort_backend or default_sort_backend()
    self._aps, self._first_ranks, self._num_hits = [], [], []
    self._g_device = None

  def add(self, dist, q_pids, q_camids):
    """Scores a block: dist `[Bq, Ng]` (numpy or device array), q_pids/q_camids `[Bq]`."""
    q_pids = np.asarray(q_pids, np.int64)
    q_camids = np.asarray(q_camids, np.int64)
    if dist.shape != (q_pids.shape[0], self.g_pids.shape[0]):
      raise ValueError(f"distance block {dist.shape} does not match {q_pids.shape[0]} queries x "
                       f"{self.g_pids.shape[0]} gallery items")
    if self.sort_backend == "numpy":
      scores = _score_block_numpy(np.asarray(dist, np.float32), q_pids, q_camids, self.g_pids,
                                  self.g_camids, self.ap)
    else:
      if self._g_device is None:
        self._g_device = (jnp.asarray(self.g_pids, jnp.int32), jnp.asarray(self.g_camids, jnp.int32))
      scores = _score_block_jax(jnp.asarray(dist, jnp.float32), jnp.asarray(q_pids, jnp.int32),
                                jnp.asarray(q_camids, jnp.int32), *self._g_device, ap=self.ap)
    ap_value, first_rank, num_hits = (np.asarray(s) for s in scores)
    self._aps.append(ap_value.astype(np.float64))
    self._first_ranks.append(first_rank.astype(np.int64))
    self._num_hits.append(num_hits.astype(np.int64))

  def result(self):
    """Dict: cmc `[max_rank]` fractions, mAP, n_query, n_valid_query, and per query
    ap_per_query (NaN when skipped), first_match_rank (1-based among valid items, 0 when skipped).
    """
    if not self._aps:
      raise ReidError("evaluation got no query: the query set is empty")
    aps = np.concatenate(self._aps)
    first_ranks = np.concatenate(self._first_ranks)
    num_hits = np.concatenate(self._num_hits)
    valid_query = num_hits > 0
    n_valid = int(valid_query.sum())
    if n_valid == 0:
      raise ReidError("evaluation: no query has a true match in the gallery (after removing "
                      "same-camera matches and junk); check the query/gallery labels")
    counts = np.bincount(first_ranks[valid_query], minlength=self.max_rank + 1)
    cmc = np.cumsum(counts[1:self.max_rank + 1]) / n_valid
    return {
        "cmc": cmc,
        "mAP": float(aps[valid_query].mean()),
        "n_query": int(aps.shape[0]),
        "n_valid_query": n_valid,
        "ap_per_query": np.where(valid_query, aps, np.nan),
        "first_match_rank": np.where(valid_query, first_ranks, 0),
    }


def rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=DEFAULT_MAX_RANK,
                 ap="step", chunk_size=DEFAULT_CHUNK_SIZE, sort_backend=None):
  """CMC/mAP summary (see `RankAccumulator.result`) of a full distance matrix `[Nq, Ng]`."""
  distmat = np.asarray(distmat)
  accumulator = RankAccumulator(g_pids, g_camids, max_rank, ap, sort_backend)
  q_pids, q_camids = np.asarray(q_pids), np.asarray(q_camids)
  for start in range(0, distmat.shape[0], chunk_size):
    stop = start + chunk_size
    accumulator.add(distmat[start:stop], q_pids[start:stop], q_camids[start:stop])
  return accumulator.result()


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=DEFAULT_MAX_RANK,
                  ap="step", chunk_size=DEFAULT_CHUNK_SIZE, sort_backend=None):
  """torchreid-style `(cmc [max_rank] float fractions, mAP)` of a distance matrix `[Nq, Ng]`."""
  result = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, ap, chunk_size,
                        sort_backend)
  return result["cmc"], result["mAP"]


def summarize(result, ap, distance, rerank, n_gallery):
  """The results.json record (docs/design.md §5) from a `RankAccumulator.result()` dict."""
  cmc = result["cmc"]
  summary = {f"rank{k}": float(cmc[min(k, len(cmc)) - 1]) for k in (1, 5, 10, 20)}
  summary.update({
      "mAP": result["mAP"], "cmc": [float(c) for c in cmc], "n_query": result["n_query"],
      "n_valid_query": result["n_valid_query"], "n_gallery": int(n_gallery), "ap": ap,
      "distance": distance, "rerank": bool(rerank),
  })
  return summary


def rechunk(blocks, chunk_size: int):
  """`(start, rows)` blocks of any heights in row order -> blocks of `chunk_size` rows (the last
  may be shorter), so that a jitted scorer sees one shape."""
  pending, pending_start = [], 0
  for start, block in blocks:
    if not pending:
      pending_start = start
    pending.append(np.asarray(block))
    held = sum(p.shape[0] for p in pending)
    if held >= chunk_size:
      rows = np.concatenate(pending)
      for offset in range(0, held - chunk_size + 1, chunk_size):
        yield pending_start + offset, rows[offset:offset + chunk_size]
      done = (held // chunk_size) * chunk_size
      pending = [rows[done:]] if done < held else []
      pending_start += done
  if pending:
    yield pending_start, np.concatenate(pending)


def evaluate(qf, gf, q_pids, g_pids, q_camids, g_camids, metric="euclidean", ap="step",
             rerank=False, chunk_size=DEFAULT_CHUNK_SIZE, max_rank=DEFAULT_MAX_RANK,
             rerank_k1=20, rerank_k2=6, rerank_lambda=0.3, sort_backend=None, progress=True):
  """Features to the results.json record, one block of queries at a time.

  Args:
    qf `[Nq, D]`, gf `[Ng, D]`: features (normalise them first if the method says so; docs/hhl.md §8
      uses L2-normalised pool5 with 'sqeuclidean').
    q_pids, q_camids `[Nq]`, g_pids, g_camids `[Ng]`: integer labels (junk pid -1 allowed in the
      gallery; it is dropped per query).
    metric: 'euclidean' | 'sqeuclidean' | 'cosine' (docs/arn_triplet_eval.md §3.1).
    ap: 'step' | 'trapezoid' | 'sklearn' (§3.3).
    rerank: k-reciprocal re-ranking (§3.6) on Euclidean distances whatever `metric` says
      (step 1 squares them once; the record then says distance 'euclidean'), in bounded memory
      (`rerank.re_ranking_blocks`: O(N k) plus the features and one block of rows).
    chunk_size: query rows per block; memory is O(chunk_size * Ng) for the scoring.
    progress: bars on stdout (`reid_jax.progress`): re-ranking, then the queries scored. The
      first block compiles the distance (and, off CPU, the sort) and is kept out of the ETA.

  Returns:
    dict with rank1, rank5, rank10, rank20, mAP, cmc (list), n_query, n_valid_query, n_gallery,
    ap, distance, rerank. Scores are fractions in [0, 1].
  """
  _check_ap(ap)
  q_pids, q_camids = np.asarray(q_pids), np.asarray(q_camids)
  g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
  num_query, num_gallery = np.shape(qf)[0], np.shape(gf)[0]
  if q_pids.shape != (num_query,) or q_camids.shape != (num_query,):
    raise ValueError(f"{num_query} query features but q_pids {q_pids.shape}, q_camids "
                     f"{q_camids.shape}")
  if g_pids.shape != (num_gallery,) or g_camids.shape != (num_gallery,):
    raise ValueError(f"{num_gallery} gallery features but g_pids {g_pids.shape}, g_camids "
                     f"{g_camids.shape}")
  for name, features in (("query", qf), ("gallery", gf)):
    if not np.isfinite(np.asarray(features)).all():
      raise ReidError(f"{name} features contain NaN or inf: the model diverged or the checkpoint "
                      "is corrupt; evaluate a finite checkpoint")
  accumulator = RankAccumulator(g_pids, g_camids, max_rank, ap, sort_backend)
  if rerank:  # bounded memory: the re-ranked rows come a block at a time, in query order
    blocks = rechunk(rerank_lib.re_ranking_blocks(qf, gf, k1=rerank_k1, k2=rerank_k2,
                                                  lambda_value=rerank_lambda, progress=progress),
                     chunk_size)
  else:
    on_device = accumulator.sort_backend == "jax"
    blocks = distances.distance_chunks(qf, gf, metric, chunk_size, as_numpy=not on_device)
  # With re-ranking its own bar covers the work (the scoring runs inside its last step).
  with progress_lib.Bar(num_query, "CMC/mAP", unit="query",
                        enabled=progress and not rerank) as bar:
    for start, block in blocks:
      stop = start + block.shape[0]
      accumulator.add(block, q_pids[start:stop], q_camids[start:stop])
      if start == 0:  # it compiled the distance (and sort) programs: no rate to extrapolate
        bar.update_warmup(stop - start)
      else:
        bar.update(stop - start)
  # Re-ranking always starts from Euclidean distances; record what was actually used.
  distance = "euclidean" if rerank else metric
  return summarize(accumulator.result(), ap, distance, rerank, num_gallery)
