"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), docs/arn_triplet_eval.md §3.6, in bounded memory.

One implementation of the seven steps, fed by one of two distance sources:

- `re_ranking(q_g, q_q, g_g)` (torchreid's signature): the three plain Euclidean matrices in, one
  dense N x N float32 matrix held (N = Nq + Ng; Market ~3 GB). `check_memory` refuses what will
  not fit.
- `re_ranking_blocks(qf, gf)` (and `re_ranking_features`, its blocks stacked): features in. The
  steps only need each image's k1 + 1 nearest neighbours (steps 1-3), the distances of the members
  of each R*(i) (step 4), the sparse encodings V (steps 5-6) and the query rows (step 7), so the
  N x N matrix is never held: one pass over blocks of rows finds the neighbours, the member
  distances are recomputed pair by pair and the query rows block by block. Memory is O(N k) for
  the neighbour lists and V, O(N D) for the features and one `[row block, N]` block; MSMT17
  (N = 93,820) fits in a few GB instead of ~70.

Step 1 squares the Euclidean distances exactly once (torchreid feeds its already-squared matrix
and so works on the 4th power) and divides each row by its maximum, on the host in float32 in both
sources, so a row gives the same normalised values either way. Neighbour lists are ordered by
(distance, index), i.e. a stable sort, exactly, ties at the k-th neighbour included (`lax.top_k`
keeps the lower index first). V is float64 (torchreid: float16); the Jaccard term is computed for
gallery columns only (the only ones kept).

Progress: one bar on stdout (`reid_jax.progress`), in percent of the whole job with the step it is
in; the steps are weighted by their measured share of the time (2 cores), so the ETA holds across
them.
"""

import functools
import os
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from reid_jax import progress as progress_lib
from reid_jax.errors import ReidError
from reid_jax.evaluation import distances

_ROW_BLOCK = 1024  # rows of distances computed (features) or ranked at once
_PAIRS = 1 << 15  # step 4 with features: (image, R* member) distances computed at once
_ENCODING_ROWS = 8192  # step 5: rows expanded at once
_MAX_PAIRS = 1 << 22  # Jaccard step: pairs gathered at once
_MAX_OVERLAP_ELEMENTS = 1 << 22  # Jaccard step: float64 overlap block
_TINY = np.finfo(np.float32).tiny


def _available_bytes():
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return 16 << 30


def memory_estimate(num_images: int) -> int:
  """Bytes dense re-ranking of N images needs: the input blocks plus the normalised N x N
  matrix, plus the bounded working set of the other steps and the sparse encodings (~0.5 GiB)."""
  return 2 * 4 * num_images * num_images + (512 << 20)


def bounded_memory_estimate(num_images: int, dim: int) -> int:
  """Bytes `re_ranking_blocks` needs beyond its inputs: the features twice (host and device),
  four `[row block, N]` float32 blocks, and the neighbour lists and V (~400 bytes a row)."""
  return 2 * 4 * num_images * dim + 4 * 4 * _ROW_BLOCK * num_images + 400 * num_images + (256 << 20)


def _check_limit(need: int, num_query: int, num_gallery: int, what: str, max_bytes, advice):
  limit = int(0.6 * _available_bytes()) if max_bytes is None else max_bytes
  if need > limit:
    raise ReidError(
        f"re-ranking {num_query} queries + {num_gallery} gallery images needs about "
        f"{need / 2**30:.1f} GiB for {what} (docs/arn_triplet_eval.md §3.6) but the limit is "
        f"{limit / 2**30:.1f} GiB; {advice}")


def check_memory(num_query: int, num_gallery: int, max_bytes: int | None = None):
  """Raises ReidError when dense re-ranking of Nq + Ng images would not fit (default: 60% of RAM)."""
  num_images = num_query + num_gallery
  _check_limit(memory_estimate(num_images), num_query, num_gallery,
               f"the dense {num_images} x {num_images} distance matrices", max_bytes,
               "re-rank from features (re_ranking_blocks), evaluate without re-ranking "
               "(rerank=False) or on a subset")


def check_bounded_memory(num_query: int, num_gallery: int, dim: int,
                         max_bytes: int | None = None):
  """Raises ReidError when `re_ranking_blocks` would not fit (default: 60% of RAM)."""
  _check_limit(bounded_memory_estimate(num_query + num_gallery, dim), num_query, num_gallery,
               "the features, one block of distance rows and the sparse encodings", max_bytes,
               "evaluate without re-ranking (rerank=False) or on a subset")


# Seconds each step takes on 2 cores, roughly: the bar's weights (dense: N = 12,000, Nq = 2,000;
# features: the MSMT17-sized problem of benchmarks.rerank, where the neighbour pass computes the
# distances and takes about 60% of the 380 s).
_DENSE_WEIGHTS = {"distances": 1.5, "step 1": 1.7, "neighbours": 1.0, "k-reciprocal sets": 0.25,
                  "encodings": 0.3, "Jaccard": 1.3}
_FEATURE_WEIGHTS = {"neighbours": 170.0, "k-reciprocal sets": 10.0, "encodings": 40.0,
                    "Jaccard": 60.0}
_BAR_UNITS = 1000


class _Progress:
  """The re-ranking bar: `advance(step, fraction)` moves it by that share of the step's weight."""

  def __init__(self, weights: dict, enabled: bool):
    self.bar = progress_lib.Bar(_BAR_UNITS, "re-ranking", enabled=enabled,
                                bar_format=progress_lib.PERCENT_FORMAT)
    total = sum(weights.values())
    self._share = {name: _BAR_UNITS * weight / total for name, weight in weights.items()}
    self._done = 0.0
    self._step = None

  def advance(self, step: str, fraction: float = 1.0) -> None:
    if step != self._step:
      self._step = step
      self.bar.set_postfix(step=step)
    self._done += self._share[step] * fraction
    self.bar.update_to(min(_BAR_UNITS, int(round(self._done))))

  def finish(self):
    self.bar.update_to(_BAR_UNITS)

  def close(self) -> None:
    self.bar.close()


def _normalise_rows(euclidean):
  """Step 1 for whole rows, on the host in float32: `(d^2 / max_j d^2, max_j d^2)`."""
  squared = np.square(np.asarray(euclidean, np.float32))
  row_max = np.maximum(squared.max(axis=1), _TINY)
  squared /= row_max[:, None]
  return squared, row_max


@functools.partial(jax.jit, static_argnames=("count",))
def _smallest(rows, count):
  return lax.top_k(-rows, count)[1]  # ties: the lower index first


def _stable_smallest(rows, count: int):
  """`[b, count]` int32: each row's `count` smallest columns ordered by (value, index)."""
  num_rows = rows.shape[0]
  if num_rows < _ROW_BLOCK:  # one shape, one compilation
    rows = np.concatenate([rows, np.zeros((_ROW_BLOCK - num_rows, rows.shape[1]), rows.dtype)])
  return np.asarray(_smallest(rows, count=min(count, rows.shape[1])), np.int32)[:num_rows]


class DenseDistances:
  """Step 1 done on the whole N x N matrix, held (`re_ranking`'s source)."""

  def __init__(self, q_g_dist, q_q_dist, g_g_dist):
    q_g_dist = np.asarray(q_g_dist, np.float32)
    self.num_query, self.num_gallery = q_g_dist.shape
    num_images = self.num_query + self.num_gallery
    # Row i of the normalised matrix is column i of torchreid's `original_dist`, divided by that
    # column's maximum; for a symmetric input the same as row i.
    dist = np.empty((num_images, num_images), np.float32)
    dist[:self.num_query, :self.num_query] = np.asarray(q_q_dist, np.float32).T
    dist[:self.num_query, self.num_query:] = q_g_dist
    dist[self.num_query:, :self.num_query] = q_g_dist.T
    dist[self.num_query:, self.num_query:] = np.asarray(g_g_dist, np.float32).T
    for start in range(0, num_images, _ROW_BLOCK):
      dist[start:start + _ROW_BLOCK] = _normalise_rows(dist[start:start + _ROW_BLOCK])[0]
    self.dist = dist

  def nearest(self, count: int, on_rows=None):
    out = []
    for start in range(0, self.dist.shape[0], _ROW_BLOCK):
      out.append(_stable_smallest(self.dist[start:start + _ROW_BLOCK], count))
      if on_rows is not None:
        on_rows(out[-1].shape[0])
    return np.concatenate(out)

  def members(self, columns):
    """Normalised distances `[N, S]` from each row to its columns (-1: absent, value unused)."""
    return np.take_along_axis(self.dist, np.maximum(columns, 0), axis=1)

  def query_rows(self) -> Iterator[tuple[int, np.ndarray]]:
    """`(start, normalised query-gallery rows)` a block of queries at a time."""
    for start in range(0, self.num_query, _ROW_BLOCK):
      yield start, self.dist[start:min(start + _ROW_BLOCK, self.num_query), self.num_query:]


@jax.jit
def _pair_euclidean(features, squared_norms, rows, columns):
  """`[P]` Euclidean distances between images `rows[p]` and `columns[p]` (gathered, fused)."""
  dots = jnp.sum(features[rows] * features[columns], axis=1)
  d2 = squared_norms[rows] + squared_norms[columns] - 2.0 * dots
  return jnp.sqrt(jnp.maximum(d2, 0.0))


class FeatureDistances:
  """Distances recomputed from features a block of rows at a time (`re_ranking_blocks`'s source).

  Rows are computed `_ROW_BLOCK` at a time, always at the same block boundaries and shape, so the
  neighbour pass and the query pass see bitwise the same rows (`euclidean_rows`).
  """

  def __init__(self, qf, gf):
    qf, gf = np.asarray(qf, np.float32), np.asarray(gf, np.float32)
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
      raise ValueError(f"features must be [N, D] with the same D, got {qf.shape} and {gf.shape}")
    self.num_query, self.num_gallery = qf.shape[0], gf.shape[0]
    self.features = np.concatenate([qf, gf])
    self._device_features = jnp.asarray(self.features)
    self._squared_norms = jnp.sum(self._device_features * self._device_features, axis=1)
    self.row_max = None  # step 1's per-row maxima, set by `nearest`

  def euclidean_rows(self, start: int) -> np.ndarray:
    """Euclidean distances of images `[start, start + _ROW_BLOCK)` to all N images."""
    num_images = self.features.shape[0]
    rows = self.features[start:start + _ROW_BLOCK]
    count = rows.shape[0]
    if count < _ROW_BLOCK:
      rows = np.concatenate([rows, np.zeros((_ROW_BLOCK - count, rows.shape[1]), np.float32)])
    block = distances.distance_block(jnp.asarray(rows), self._device_features, "euclidean")
    return np.asarray(block)[:min(count, num_images - start)]

  def nearest(self, count: int, on_rows=None):
    num_images = self.features.shape[0]
    out, row_max = [], []
    for start in range(0, num_images, _ROW_BLOCK):
      normalised, maxima = _normalise_rows(self.euclidean_rows(start))
      out.append(_stable_smallest(normalised, count))
      row_max.append(maxima)
      if on_rows is not None:
        on_rows(normalised.shape[0])
    self.row_max = np.concatenate(row_max)
    return np.concatenate(out)

  def members(self, columns):
    out = np.zeros(columns.shape, np.float32)
    rows, slots = np.nonzero(columns >= 0)
    rows = rows.astype(np.int32)
    cols = columns[rows, slots].astype(np.int32)
    values = np.empty(rows.shape[0], np.float32)
    for start in range(0, rows.shape[0], _PAIRS):
      stop = min(start + _PAIRS, rows.shape[0])
      index = np.arange(start, start + _PAIRS) % rows.shape[0]  # fixed shape, one compilation
      euclidean = _pair_euclidean(self._device_features, self._squared_norms, rows[index],
                                  cols[index])
      values[start:stop] = np.asarray(euclidean)[:stop - start]
    out[rows, slots] = np.square(values) / self.row_max[rows]
    return out

  def query_rows(self) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, self.num_query, _ROW_BLOCK):
      rows = self.euclidean_rows(start)[:min(_ROW_BLOCK, self.num_query - start)]
      squared = np.square(rows[:, self.num_query:])
      squared /= self.row_max[start:start + rows.shape[0], None]
      yield start, squared


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


def _query_expansion(indptr, indices, data, neighbours, k2, on_rows=None):
  """Step 5: V[i] <- mean of V over the first k2 entries of R0[i], a block of rows at a time."""
  num_images = neighbours.shape[0]
  row_counts, all_columns, all_values = [], [], []
  for start in range(0, num_images, _ENCODING_ROWS):
    stop = min(start + _ENCODING_ROWS, num_images)
    position, columns, values = _gather_rows(indptr, indices, data,
                                             neighbours[start:stop, :k2].reshape(-1))
    key = (position // k2) * num_images + columns
    unique_key, inverse = np.unique(key, return_inverse=True)
    all_values.append(np.bincount(inverse, weights=values) / k2)
    all_columns.append(unique_key % num_images)
    row_counts.append(np.bincount(unique_key // num_images, minlength=stop - start))
    if on_rows is not None:
      on_rows(stop - start)
  indptr = np.concatenate([[0], np.cumsum(np.concatenate(row_counts))])
  return indptr, np.concatenate(all_columns), np.concatenate(all_values)


def _re_ranking(source, k1, k2, lambda_value, bar) -> Iterator[tuple[int, np.ndarray]]:
  """Yields `(start, re-ranked query-gallery rows [b, Ng] float32)` in query order."""
  num_query, num_gallery = source.num_query, source.num_gallery
  num_images = num_query + num_gallery

  half = int(np.around(k1 / 2.0))
  neighbours = source.nearest(max(k1 + 1, k2),
                              on_rows=lambda rows: bar.advance("neighbours", rows / num_images))
  neighbours_k1 = neighbours[:, :k1 + 1]
  neighbours_half = neighbours[:, :half + 1]
  # Steps 2-3: k-reciprocal sets and their expansion.
  expansion = _expansion_sets(
      neighbours_k1, _reciprocal(neighbours_k1), neighbours_half, _reciprocal(neighbours_half),
      on_rows=lambda rows: bar.advance("k-reciprocal sets", rows / num_images))
  # Step 4: V[i, j] = exp(-d[i, j]) normalised over R*(i).
  weights = np.exp(-source.members(expansion).astype(np.float64))
  weights = np.where(expansion >= 0, weights, 0.0)
  # An empty R*(i) (more than k1 exact duplicates of image i before it) leaves V[i] = 0, as in
  # the reference code.
  weights /= np.maximum(weights.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
  indptr, indices, data = _csr_from_padded(expansion, weights)
  del weights, expansion
  if k2 > 1:
    indptr, indices, data = _query_expansion(
        indptr, indices, data, neighbours, k2,
        on_rows=lambda rows: bar.advance("encodings", rows / num_images))
  else:
    bar.advance("encodings")

  # Step 6: Jaccard distance, queries x gallery, through the gallery rows' inverted index.
  row_of_entry = np.repeat(np.arange(num_images), np.diff(indptr))
  gallery_entry = row_of_entry >= num_query
  column_order = np.argsort(indices[gallery_entry], kind="stable")
  inv_rows = row_of_entry[gallery_entry][column_order] - num_query
  inv_values = data[gallery_entry][column_order]
  inv_indptr = np.concatenate(
      [[0], np.cumsum(np.bincount(indices[gallery_entry], minlength=num_images))])
  del column_order, gallery_entry

  # Query blocks bounded by the number of (query entry, gallery entry) pairs they expand to
  # (~48 bytes each while gathered) and by the size of the dense overlap block.
  column_nnz = np.diff(inv_indptr)
  query_entries = slice(0, indptr[num_query])
  pairs_per_query = np.bincount(row_of_entry[query_entries],
                                weights=column_nnz[indices[query_entries]], minlength=num_query)
  max_rows = max(1, _MAX_OVERLAP_ELEMENTS // max(num_gallery, 1))
  for block_start, original in source.query_rows():
    block_stop = block_start + original.shape[0]
    start = block_start
    while start < block_stop:
      cumulative = np.cumsum(pairs_per_query[start:min(start + max_rows, block_stop)])
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
      final = ((1.0 - lambda_value) * jaccard
               + lambda_value * original[start - block_start:stop - block_start])
      bar.advance("Jaccard", (stop - start) / num_query)
      yield start, final.astype(np.float32)
      start = stop


def _stacked(blocks, num_query: int, num_gallery: int) -> np.ndarray:
  out = np.empty((num_query, num_gallery), np.float32)
  for start, block in blocks:
    out[start:start + block.shape[0]] = block
  return out


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
  num_query, num_gallery = np.shape(q_g_dist)
  if np.shape(q_q_dist) != (num_query, num_query) or np.shape(g_g_dist) != (num_gallery,
                                                                             num_gallery):
    raise ValueError(f"distance blocks do not fit: q_g {np.shape(q_g_dist)}, q_q "
                     f"{np.shape(q_q_dist)}, g_g {np.shape(g_g_dist)}")
  check_memory(num_query, num_gallery, max_bytes)
  weights = {name: w for name, w in _DENSE_WEIGHTS.items() if name != "distances"}
  bar = _Progress(weights, progress)
  try:
    source = DenseDistances(q_g_dist, q_q_dist, g_g_dist)
    bar.advance("step 1")
    out = _stacked(_re_ranking(source, k1, k2, lambda_value, bar), num_query, num_gallery)
    bar.finish()
    return out
  finally:
    bar.close()


def re_ranking_blocks(qf, gf, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                      max_bytes: int | None = None, progress: bool = True):
  """Yields `(start, re-ranked rows [b, Ng] float32)` from features qf `[Nq, D]`, gf `[Ng, D]`.

  Plain Euclidean distances between the features, recomputed a block at a time (never the
  N x N matrix); equal to `re_ranking` of those distances. Rows come in query order; a caller
  that scores them block by block (`ranking.evaluate(rerank=True)`) never holds `[Nq, Ng]`.
  `max_bytes`: limit for `check_bounded_memory` (default 60% of RAM).
  """
  num_query, num_gallery = np.shape(qf)[0], np.shape(gf)[0]
  check_bounded_memory(num_query, num_gallery, np.shape(qf)[1], max_bytes)
  bar = _Progress(_FEATURE_WEIGHTS, progress)
  try:
    yield from _re_ranking(FeatureDistances(qf, gf), k1, k2, lambda_value, bar)
    bar.finish()
  finally:
    bar.close()


def re_ranking_features(qf, gf, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                        max_bytes: int | None = None, progress: bool = True):
  """`re_ranking_blocks` stacked into `[Nq, Ng]` float32 (which it then holds)."""
  num_query, num_gallery = np.shape(qf)[0], np.shape(gf)[0]
  return _stacked(re_ranking_blocks(qf, gf, k1, k2, lambda_value, max_bytes, progress),
                  num_query, num_gallery)
