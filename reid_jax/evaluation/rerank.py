"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), docs/arn_triplet_eval.md §3.6.

Same algorithm as torchreid's `re_ranking` (the Python port of the authors' code), vectorised with
numpy instead of per-image Python loops. Inputs are **plain Euclidean** distances; step 1 squares
them exactly once (torchreid feeds its already-squared matrix and so works on the 4th power).

Memory is O(N^2) for N = Nq + Ng images: one dense N x N float32 matrix (the normalised squared
distances), plus the caller's three input blocks (another N^2 floats together). The k-reciprocal
encodings V are kept sparse (a few hundred entries per row). Market (N = 19,281) needs ~3 GB;
MSMT17 (N = 93,820) ~70 GB, so `check_memory` refuses it on ordinary machines.

Differences from torchreid: V is float64 (torchreid: float16); near-neighbour lists come from a
partial sort ordered by (distance, index), i.e. a stable sort except for exact ties at the k-th
neighbour; the Jaccard term is computed for gallery columns only (the only ones kept).

Progress: one bar on stdout (`reid_jax.progress`), in percent of the whole job with the step it is
in; the steps are weighted by their measured share of the time (2 cores, N = 12,000), so the ETA
holds across them.
"""

import os

import numpy as np

from reid_jax import progress as progress_lib
from reid_jax.errors import ReidError
from reid_jax.evaluation import distances

_ROW_BLOCK = 1024
_MAX_PAIRS = 1 << 22  # Jaccard step: pairs gathered at once
_MAX_OVERLAP_ELEMENTS = 1 << 22  # Jaccard step: float64 overlap block


def _available_bytes():
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return 16 << 30


def memory_estimate(num_images: int) -> int:
  """Bytes re-ranking N images needs: the input blocks plus the normalised N x N matrix, plus
  the bounded working set of the Jaccard step and the sparse encodings (~0.5 GiB)."""
  return 2 * 4 * num_images * num_images + (512 << 20)


def check_memory(num_query: int, num_gallery: int, max_bytes: int | None = None):
  """Raises ReidError when re-ranking Nq + Ng images would not fit (default: 60% of RAM)."""
  num_images = num_query + num_gallery
  limit = int(0.6 * _available_bytes()) if max_bytes is None else max_bytes
  need = memory_estimate(num_images)
  if need > limit:
    raise ReidError(
        f"re-ranking {num_query} queries + {num_gallery} gallery images needs about "
        f"{need / 2**30:.1f} GiB for the dense {num_images} x {num_images} distance matrices "
        f"(docs/arn_triplet_eval.md §3.6) but the limit is {limit / 2**30:.1f} GiB; evaluate without "
        "re-ranking (rerank=False) or on a subset")


# Seconds each step took on 2 cores for N = 12,000 (Nq = 2,000): the bar's weights.
_STEP_WEIGHTS = {"distances": 1.5, "step 1": 1.7, "neighbours": 1.0, "k-reciprocal sets": 0.25,
                 "encodings": 0.15, "Jaccard": 1.3}
_BAR_UNITS = 1000


class _Progress:
  """The re-ranking bar: `advance(step, fraction)` moves it by that share of the step's weight."""

  def __init__(self, steps, enabled: bool):
    self.bar = progress_lib.Bar(_BAR_UNITS, "re-ranking", enabled=enabled,
                                bar_format=progress_lib.PERCENT_FORMAT)
    total = sum(_STEP_WEIGHTS[name] for name in steps)
    self._share = {name: _BAR_UNITS * _STEP_WEIGHTS[name] / total for name in steps}
    self._done = 0.0
    self._step = None

  def advance(self, step: str, fraction: float = 1.0) -> None:
    if step != self._step:
      self._step = step
      self.bar.set_postfix(step=step)
    self._done += self._share[step] * fraction
    self.bar.update_to(min(_BAR_UNITS, int(round(self._done))))

  def finish(self, result):
    self.bar.update_to(_BAR_UNITS)
    return result

  def close(self) -> None:
    self.bar.close()


def _nearest(dist, count, on_rows=None):
  """`[N, count]` int32: each row's `count` nearest columns ordered by (distance, index)."""
  num_rows, num_cols = dist.shape
  count = min(count, num_cols)
  out = np.empty((num_rows, count), np.int32)
  for start in range(0, num_rows, _ROW_BLOCK):
    block = dist[start:start + _ROW_BLOCK]
    if count < num_cols:
      candidates = np.argpartition(block, count - 1, axis=1)[:, :count]
    else:
      candidates = np.broadcast_to(np.arange(num_cols), block.shape)
    values = np.take_along_axis(block, candidates, axis=1)
    # lexsort: last key is primary -> by distance, ties by column index (stable-sort order).
    order = np.lexsort((candidates, values), axis=1)
    out[start:start + block.shape[0]] = np.take_along_axis(candidates, order, axis=1)
    if on_rows is not None:
      on_rows(block.shape[0])
  return out


def _reciprocal(neighbours):
  """`[N, k+1]` bool: is row i in the (k+1)-list of its t-th neighbour (the k-reciprocal test)."""
  rows = np.arange(neighbours.shape[0], dtype=np.int32)[:, None, None]
  out = np.empty(neighbours.shape, bool)
  for start in range(0, neighbours.shape[0], _ROW_BLOCK):
    stop = start + _ROW_BLOCK
    out[start:stop] = (neighbours[neighbours[start:stop]] == rows[start:stop]).any(axis=-1)
  return out


def _expansion_sets(neighbours_k1, reciprocal_k1, neighbours_half, reciprocal_half,
                    on_rows=None):
  """Padded R*(i) (§3.6 step 3): `[N, S]` int32 indices, -1 where empty, deduplicated per row."""
  num_images = neighbours_k1.shape[0]
  pieces = []
  for start in range(0, num_images, _ROW_BLOCK):
    stop = min(start + _ROW_BLOCK, num_images)
    forward = neighbours_k1[start:stop]  # [b, k1+1]
    in_set = reciprocal_k1[start:stop]  # R(i, k1) membership of each forward entry
    candidate_members = neighbours_half[forward]  # [b, k1+1, half+1]
    candidate_in_set = reciprocal_half[forward]  # R(c, half) membership
    # For each member m of R(c, half): m in R(i, k1)?
    member_in_r = ((candidate_members[..., None] == forward[:, None, None, :])
                   & in_set[:, None, None, :]).any(axis=-1)
    overlap = (member_in_r & candidate_in_set).sum(axis=-1)
    size = candidate_in_set.sum(axis=-1)
    accepted = in_set & (overlap > 2.0 / 3.0 * size)
    expansion = np.where(accepted[..., None] & candidate_in_set, candidate_members, num_images)
    merged = np.concatenate([np.where(in_set, forward, num_images),
                             expansion.reshape(stop - start, -1)], axis=1)
    merged.sort(axis=1)
    duplicate = np.zeros_like(merged, dtype=bool)
    duplicate[:, 1:] = merged[:, 1:] == merged[:, :-1]
    merged[duplicate | (merged == num_images)] = -1
    pieces.append(merged)
    if on_rows is not None:
      on_rows(stop - start)
  return np.concatenate(pieces, axis=0)


def _csr_from_padded(columns, values):
  """CSR (indptr, indices, data) of a row-padded matrix (column -1 = absent)."""
  present = columns >= 0
  indptr = np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int64)
  return indptr, columns[present].astype(np.int64), values[present]


def _gather_rows(indptr, indices, data, source_rows):
  """Entries of CSR rows `source_rows` laid end to end, with the position they came from."""
  lengths = indptr[source_rows + 1] - indptr[source_rows]
  total = int(lengths.sum())
  offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
  entry = np.arange(total) - offsets + np.repeat(indptr[source_rows], lengths)
  return np.repeat(np.arange(len(source_rows)), lengths), indices[entry], data[entry]


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6,
               lambda_value: float = 0.3, max_bytes: int | None = None, progress: bool = True):
  """Re-ranked query-gallery distances `[Nq, Ng]` float32 (docs/arn_triplet_eval.md §3.6).

  Args:
    q_g_dist `[Nq, Ng]`, q_q_dist `[Nq, Nq]`, g_g_dist `[Ng, Ng]`: plain Euclidean distances.
    k1, k2, lambda_value: 20, 6, 0.3 as in the paper and torchreid.
    max_bytes: memory limit for `check_memory` (default 60% of RAM).
    progress: show the bar on stdout.

  lambda_value = 1 returns the normalised squared distance of step 1; 0 the Jaccard distance.
  """
  _check_blocks(q_g_dist, q_q_dist, g_g_dist, max_bytes)
  bar = _Progress([s for s in _STEP_WEIGHTS if s != "distances"], progress)
  try:
    return bar.finish(_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value, bar))
  finally:
    bar.close()


def _check_blocks(q_g_dist, q_q_dist, g_g_dist, max_bytes):
  num_query, num_gallery = np.shape(q_g_dist)
  if np.shape(q_q_dist) != (num_query, num_query) or np.shape(g_g_dist) != (num_gallery,
                                                                             num_gallery):
    raise ValueError(f"distance blocks do not fit: q_g {np.shape(q_g_dist)}, q_q "
                     f"{np.shape(q_q_dist)}, g_g {np.shape(g_g_dist)}")
  check_memory(num_query, num_gallery, max_bytes)


def _re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value, bar):
  q_g_dist = np.asarray(q_g_dist, np.float32)
  num_query, num_gallery = q_g_dist.shape
  num_images = num_query + num_gallery

  # Step 1: squared distances, each column divided by its maximum, transposed. `dist` holds the
  # transpose directly: row i = column i of the original matrix, divided by that column's max.
  dist = np.empty((num_images, num_images), np.float32)
  dist[:num_query, :num_query] = np.asarray(q_q_dist, np.float32).T
  dist[:num_query, num_query:] = q_g_dist
  dist[num_query:, :num_query] = q_g_dist.T
  dist[num_query:, num_query:] = np.asarray(g_g_dist, np.float32).T
  np.square(dist, out=dist)
  dist /= np.maximum(dist.max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
  bar.advance("step 1")

  half = int(np.around(k1 / 2.0))
  neighbours = _nearest(dist, max(k1 + 1, k2),
                        on_rows=lambda rows: bar.advance("neighbours", rows / num_images))
  neighbours_k1 = neighbours[:, :k1 + 1]
  neighbours_half = neighbours[:, :half + 1]
  # Steps 2-3: k-reciprocal sets and their expansion.
  expansion = _expansion_sets(
      neighbours_k1, _reciprocal(neighbours_k1), neighbours_half, _reciprocal(neighbours_half),
      on_rows=lambda rows: bar.advance("k-reciprocal sets", rows / num_images))
  # Step 4: V[i, j] = exp(-d[i, j]) normalised over R*(i).
  weights = np.exp(-np.take_along_axis(dist, np.maximum(expansion, 0), axis=1).astype(np.float64))
  weights = np.where(expansion >= 0, weights, 0.0)
  weights /= weights.sum(axis=1, keepdims=True)
  indptr, indices, data = _csr_from_padded(expansion, weights)

  # Step 5: local query expansion, V[i] <- mean of V over the first k2 entries of R0[i].
  if k2 > 1:
    source_rows = neighbours[:, :k2].reshape(-1)
    position, columns, values = _gather_rows(indptr, indices, data, source_rows)
    rows = position // k2
    key = rows * num_images + columns
    unique_key, inverse = np.unique(key, return_inverse=True)
    summed = np.bincount(inverse, weights=values) / k2
    rows, indices, data = unique_key // num_images, unique_key % num_images, summed
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=num_images))])

  bar.advance("encodings")

  # Step 6: Jaccard distance, queries x gallery, through the gallery rows' inverted index.
  row_of_entry = np.repeat(np.arange(num_images), np.diff(indptr))
  gallery_entry = row_of_entry >= num_query
  column_order = np.argsort(indices[gallery_entry], kind="stable")
  inv_rows = row_of_entry[gallery_entry][column_order] - num_query
  inv_values = data[gallery_entry][column_order]
  inv_indptr = np.concatenate(
      [[0], np.cumsum(np.bincount(indices[gallery_entry], minlength=num_images))])

  # Query blocks bounded by the number of (query entry, gallery entry) pairs they expand to
  # (~48 bytes each while gathered) and by the size of the dense overlap block.
  column_nnz = np.diff(inv_indptr)
  query_entries = slice(0, indptr[num_query])
  pairs_per_query = np.bincount(row_of_entry[query_entries],
                                weights=column_nnz[indices[query_entries]], minlength=num_query)
  max_rows = max(1, _MAX_OVERLAP_ELEMENTS // max(num_gallery, 1))
  final = np.empty((num_query, num_gallery), np.float32)
  start = 0
  while start < num_query:
    cumulative = np.cumsum(pairs_per_query[start:start + max_rows])
    stop = start + max(1, int(np.searchsorted(cumulative, _MAX_PAIRS, side="right")))
    local_rows, columns, query_values = _gather_rows(indptr, indices, data,
                                                     np.arange(start, stop))
    pair_entry, gallery_rows, gallery_values = _gather_rows(inv_indptr, inv_rows, inv_values,
                                                            columns)
    minimum = np.minimum(query_values[pair_entry], gallery_values)
    flat = local_rows[pair_entry] * num_gallery + gallery_rows
    overlap = np.bincount(flat, weights=minimum, minlength=(stop - start) * num_gallery)
    overlap = overlap.reshape(stop - start, num_gallery)
    jaccard = 1.0 - overlap / (2.0 - overlap)
    # Step 7.
    final[start:stop] = ((1.0 - lambda_value) * jaccard
                         + lambda_value * dist[start:stop, num_query:])
    bar.advance("Jaccard", (stop - start) / num_query)
    start = stop
  return final


def re_ranking_features(qf, gf, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                        max_bytes: int | None = None, progress: bool = True):
  """`re_ranking` from features qf `[Nq, D]`, gf `[Ng, D]` (Euclidean distances computed here)."""
  check_memory(np.shape(qf)[0], np.shape(gf)[0], max_bytes)
  bar = _Progress(list(_STEP_WEIGHTS), progress)
  try:
    num_query, num_gallery = np.shape(qf)[0], np.shape(gf)[0]
    blocks = {}
    for name, a, b in (("q_g", qf, gf), ("q_q", qf, qf), ("g_g", gf, gf)):
      blocks[name] = distances.compute_distance_matrix(a, b, "euclidean")
      share = len(a) * len(b) / max((num_query + num_gallery) ** 2 - num_gallery * num_query, 1)
      bar.advance("distances", share)
    _check_blocks(blocks["q_g"], blocks["q_q"], blocks["g_g"], max_bytes)
    return bar.finish(_re_ranking(blocks["q_g"], blocks["q_q"], blocks["g_g"], k1, k2,
                                  lambda_value, bar))
  finally:
    bar.close()
