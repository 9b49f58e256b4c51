"""Numpy input pipeline: index batches in, decoded and augmented batches out, ready for sharding.

A *source* is anything with `__len__`, `labels` (`{'pid': [N], 'camid': [N], ...}` numpy) and
`encoded_many(indices) -> list` of JPEG bytes (or of uint8 `[H, W, 3]` arrays):
`tfds_builders.load_split` returns one.

- `train_batches`: `{'image': float32 [B, H, W, 3], 'label': int32 [B], 'camid': int32 [B],
  'index': int32 [B]}` with the training transform (docs/hhl.md §7); `label` is the pid remapped to
  0..M-1 in sorted pid order (`relabel`).
- `target_batches`: the HHL target batch (docs/hhl.md §4, §5, §10.7): B real target images and their C
  camera-style versions as one `[B (C+1), H, W, 3]` array ordered `[reals | fakes cam 1 | ... |
  fakes cam C]`, each image augmented independently, one pseudo-label per sample shared by its
  C + 1 images.
- `eval_batches`: test transform, fixed batch shape, the last batch zero-padded with `mask`.

Determinism: image k of batch `step` gets its own generator from (seed, epoch, step, k, stream)
(`image_rng`), so the output depends on none of the thread count, the prefetch depth or the
order in which workers finish. Decoding and augmentation run in a thread pool (PIL releases the
GIL); `prefetch` batches are kept in flight ahead of the consumer.
"""

import collections
import concurrent.futures
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from reid_jax.data import transforms
from reid_jax.data.samplers import TargetBatch
from reid_jax.errors import ReidError

TARGET_LABEL_OFFSET = 1_000_000  # index-based target pseudo-labels never meet source labels
_LABEL_PURPOSE = 1  # salt separating a sample's pseudo-label draw from its images' draws


def image_rng(seed: int, epoch: int, step: int, position: int, stream: int = 0,
              purpose: int = 0) -> np.random.Generator:
  """The generator of one image of one batch (or, with `purpose`, another draw of that sample)."""
  return np.random.default_rng(
      np.random.SeedSequence([int(seed), int(epoch), int(step), int(position), int(stream),
                              int(purpose)]))


def share_rows(size: int, share: tuple[int, int]) -> range:
  """The rows of a global batch of `size` that process `share[0]` of `share[1]` reads (a
  multi-process run, training/sharding.py: each process decodes only its rows)."""
  index, count = share
  if size % count:
    raise ReidError(f"a batch of {size} images does not split over {count} processes; choose "
                    f"batch sizes divisible by {count}")
  per = size // count
  return range(index * per, (index + 1) * per)


def relabel(pids) -> tuple[np.ndarray, np.ndarray]:
  """Training labels: `(labels int32 [N] in 0..M-1 by sorted pid, unique pids [M])`."""
  unique, labels = np.unique(np.asarray(pids), return_inverse=True)
  return labels.astype(np.int32), unique


def _encoded(source, indices) -> list:
  if hasattr(source, "encoded_many"):
    return source.encoded_many(indices)
  return [source[int(i)]["image"] for i in indices]


def _run_batches(plans: Iterable[Callable[[], tuple[dict, list[Callable[[], None]]]]],
                 num_threads: int, prefetch: int) -> Iterator[dict]:
  """Runs each plan's image tasks in a pool, keeping `prefetch` batches in flight ahead.

  A plan returns `(batch, tasks)`: `batch` is the dict to yield, each task fills one slot of it.
  """
  plans = iter(plans)
  if num_threads <= 0:
    for plan in plans:
      batch, tasks = plan()
      for task in tasks:
        task()
      yield batch
    return
  pool = concurrent.futures.ThreadPoolExecutor(num_threads)
  in_flight = collections.deque()
  try:
    def submit_next() -> bool:
      plan = next(plans, None)
      if plan is None:
        return False
      batch, tasks = plan()
      in_flight.append((batch, [pool.submit(t) for t in tasks]))
      return True

    for _ in range(max(prefetch, 0) + 1):
      if not submit_next():
        break
    while in_flight:
      batch, futures = in_flight.popleft()
      for f in futures:
        f.result()  # re-raises a worker's ReidError here, in the consumer's thread
      submit_next()
      yield batch
  finally:
    for _, futures in in_flight:
      for f in futures:
        f.cancel()
    pool.shutdown(wait=True, cancel_futures=True)


def train_batches(source, index_batches: Sequence, *, seed: int, epoch: int, height: int = 256,
                  width: int = 128, labels: np.ndarray | None = None, start_step: int = 0,
                  stream: int = 0, erasing_probability: float = 0.0, num_threads: int = 4,
                  prefetch: int = 2, transform=None, share: tuple[int, int] = (0, 1)
                  ) -> Iterator[dict]:
  """Training batches for the index batches of one epoch (from `reid_jax.data.samplers`).

  Args:
    source: the training split (see module docstring).
    index_batches: `[num_batches, B]` indices into `source`.
    seed, epoch, stream: the augmentation randomness (with the step and position in the batch).
    height, width: output size.
    labels: int32 `[N]` training label per source index; default `relabel(source.labels['pid'])`.
    start_step: first batch to produce (resume: `SamplerState.step`).
    erasing_probability: random erasing (docs/hhl.md §7 step 6; 0 = off, the reference's setting).
    num_threads: decode/augment threads (0: in the calling thread).
    prefetch: batches prepared ahead of the consumer.
    transform: `(image, rng, height, width, erasing_probability) -> image`
      (`transforms.train_transform_for`); default HHL's `transforms.train_transform`.
    share: `(process, processes)`: yield only that process's rows of every batch
      (`sharding.share_rows`), each image drawn as in the whole batch.

  Yields:
    `{'image': float32 [B, H, W, 3], 'label': int32 [B], 'camid': int32 [B], 'index': int32 [B]}`
    (B / processes rows with `share`).
  """
  transform = transform or transforms.train_transform
  if labels is None:
    labels, _ = relabel(source.labels["pid"])
  camids = np.asarray(source.labels["camid"])

  def plan_for(step: int, indices):
    def plan():
      rows = share_rows(len(indices), share)
      indices_ = np.asarray(indices)[rows.start:rows.stop]
      encoded = _encoded(source, indices_)
      images = np.empty((len(indices_), height, width, 3), np.float32)

      def task(k: int):
        def run():  # k: the row in this share; rows.start + k: the position in the batch
          images[k] = transform(encoded[k], image_rng(seed, epoch, step, rows.start + k, stream),
                                height, width, erasing_probability)
        return run

      batch = {"image": images, "label": np.asarray(labels)[indices_].astype(np.int32),
               "camid": camids[indices_].astype(np.int32), "index": indices_.astype(np.int32)}
      return batch, [task(k) for k in range(len(indices_))]
    return plan

  plans = (plan_for(step, index_batches[step]) for step in range(start_step, len(index_batches)))
  return _run_batches(plans, num_threads, prefetch)


def _read_file(path) -> bytes:
  try:
    return Path(path).read_bytes()
  except FileNotFoundError:
    raise ReidError(f"camera-style image {path} is missing: the camera-style set is incomplete; "
                    "rerun experiments.stargan to generate it") from None


def target_batches(source, batches: Sequence[TargetBatch], *, seed: int, epoch: int,
                   height: int = 256, width: int = 128, label_mode: str = "index",
                   start_step: int = 0, stream: int = 0, num_threads: int = 4,
                   prefetch: int = 2, transform=None, share: tuple[int, int] = (0, 1)
                   ) -> Iterator[dict]:
  """HHL target batches: reals and their camera-style versions, augmented independently.

  Args:
    source: the target training split.
    batches: from `samplers.target_batches` (indices and `[B, C]` fake paths).
    seed, epoch, stream: the randomness (with the step and the position in the batch).
    label_mode: 'index' (default): sample label `TARGET_LABEL_OFFSET + index`, unique per target
      image; 'code_random': the reference code's `int(U[0, 1) * 10000 + 1000)` drawn per sample
      per load (docs/hhl.md §4; collisions possible, as there).
    start_step, num_threads, prefetch, transform, share: as `train_batches`.

  Yields:
    `{'image': float32 [B (C+1), H, W, 3], 'label': int32 [B (C+1)], 'camid': int32,
    'index': int32, 'is_fake': bool}` in the order `[reals | fakes cam 1 | ... | fakes cam C]`;
    `camid` is the real image's camera for reals and the style's camera (j - 1) for fakes.
  """
  if label_mode not in ("index", "code_random"):
    raise ReidError(f"label_mode={label_mode!r}: choose 'index' or 'code_random'")
  camids = np.asarray(source.labels["camid"])
  transform = transform or transforms.train_transform

  def plan_for(step: int, tb: TargetBatch):
    def plan():
      indices = np.asarray(tb.indices)
      B, C = len(indices), tb.fake_paths.shape[1]
      rows = share_rows(B * (C + 1), share)
      reals = range(rows.start, min(rows.stop, B))  # the real images among this share's rows
      encoded = dict(zip(reals, _encoded(source, indices[reals.start:reals.stop])))
      # Column-major over [B, C]: fakes of camera 1 for all samples first (docs/hhl.md §4 order).
      fake_paths = [tb.fake_paths[b, j] for j in range(C) for b in range(B)]
      images = np.empty((len(rows), height, width, 3), np.float32)

      def task(k: int):  # k: the position in the whole batch
        def run():
          data = encoded[k] if k < B else _read_file(fake_paths[k - B])
          images[k - rows.start] = transform(data, image_rng(seed, epoch, step, k, stream),
                                             height, width, 0.0)
        return run

      if label_mode == "index":
        sample_labels = TARGET_LABEL_OFFSET + indices
      else:
        sample_labels = np.array([
            int(image_rng(seed, epoch, step, b, stream, _LABEL_PURPOSE).uniform() * 10000 + 1000)
            for b in range(B)])
      whole = {
          "label": np.tile(sample_labels, C + 1).astype(np.int32),
          "camid": np.concatenate([camids[indices]] + [np.full(B, j) for j in range(C)]
                                  ).astype(np.int32),
          "index": np.tile(indices, C + 1).astype(np.int32),
          "is_fake": np.arange(B * (C + 1)) >= B,
      }
      batch = {"image": images, **{k: v[rows.start:rows.stop] for k, v in whole.items()}}
      return batch, [task(k) for k in rows]
    return plan

  plans = (plan_for(step, batches[step]) for step in range(start_step, len(batches)))
  return _run_batches(plans, num_threads, prefetch)


def eval_batches(source, batch_size: int, height: int = 256, width: int = 128,
                 num_threads: int = 4, prefetch: int = 2) -> Iterator[dict]:
  """Test-transformed batches in source order, all of shape `[batch_size, H, W, 3]`.

  Yields:
    `{'image': float32 [B, H, W, 3], 'mask': bool [B], 'index': int32 [B], 'pid': int32 [B],
    'camid': int32 [B]}`; the last batch is zero-padded and `mask` marks its real rows (padding
    rows have index -1), so a jitted extractor compiles once.
  """
  n = len(source)
  pids = np.asarray(source.labels["pid"])
  camids = np.asarray(source.labels["camid"])

  def plan_for(start: int):
    def plan():
      indices = np.arange(start, min(start + batch_size, n))
      encoded = _encoded(source, indices)
      images = np.zeros((batch_size, height, width, 3), np.float32)
      valid = len(indices)
      padded = np.full(batch_size, -1, np.int64)
      padded[:valid] = indices

      def task(k: int):
        def run():
          images[k] = transforms.test_transform(encoded[k], height, width)
        return run

      batch = {"image": images, "mask": np.arange(batch_size) < valid,
               "index": padded.astype(np.int32),
               "pid": np.where(padded >= 0, pids[np.maximum(padded, 0)], -1).astype(np.int32),
               "camid": np.where(padded >= 0, camids[np.maximum(padded, 0)], -1).astype(np.int32)}
      return batch, [task(k) for k in range(valid)]
    return plan

  return _run_batches((plan_for(s) for s in range(0, n, batch_size)), num_threads, prefetch)


class InMemory:
  """A source whose images are read and decoded once, then served from memory as uint8 arrays.

  For small training splits (the tiny configs' synthetic worlds: about 0.3 GB for the `medium`
  Duke train split): reading array_record and decoding JPEG cost about as much CPU as the tiny
  train step itself. The transforms receive the same pixels, so batches are identical
  (`data.cache_images`).
  """

  def __init__(self, source, num_threads: int = 2):
    self.labels = source.labels
    names = source.labels.get("filename")
    n = len(source)
    encoded = []
    for start in range(0, n, 256):
      encoded += _encoded(source, np.arange(start, min(start + 256, n)))

    def decode(i):
      return transforms.decode(encoded[i], None if names is None else str(names[i]))

    if num_threads > 0:
      with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        self._images = list(pool.map(decode, range(n)))
    else:
      self._images = [decode(i) for i in range(n)]

  def __len__(self) -> int:
    return len(self._images)

  def encoded_many(self, indices) -> list:
    return [self._images[int(i)] for i in indices]
