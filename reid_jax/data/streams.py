"""The input streams of the re-ID trainers and the combinator that steps them together.

  ce = ce_stream(source, config.data, seed)                    # (epoch, start) -> CE batches
  triplet = pk_stream(source, config.data, seed)               # Stream: P x K source batches
  target = target_stream(target, folder, C, config.data, seed) # Stream: reals + their fakes
  epoch_batches = combine(ce, steps_per_epoch, {"triplet": triplet, "target": target})

docs/hhl.md §5's epoch rule: an epoch is one pass over the CE stream; for each CE step the
trainer takes the next batch of every other stream from iterators created at the epoch's start,
and when any of them runs out all of them are recreated. With R = the shortest of those streams
(in batches), step s of an epoch therefore reads position s mod R of the restarting streams' pass
number s div R of that epoch (Duke -> Market: R = 87 triplet batches, reset at step 88 of 129).
Every pass is a pure function of (seed, pass index), so `combine(...)(epoch, start)` resumes
exactly mid-epoch (training/loop.py's contract).

Streams draw independently: each has its own augmentation salt (`stream` of
`pipeline.image_rng`) and sampler salt.
"""

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np

from reid_jax.data import pipeline
from reid_jax.data import samplers
from reid_jax.data import tfds_builders
from reid_jax.data import transforms
from reid_jax.errors import ReidError

# Salts of the streams' random draws. The CE stream keeps 0, the baseline's draws since its start.
CE_STREAM, TRIPLET_STREAM, TARGET_STREAM, ARN_SOURCE_STREAM = 0, 1, 2, 3
TRAIN_KEYS = ("image", "label")  # what a loss needs from a labelled batch
TARGET_KEYS = ("image", "label", "is_fake")

EpochBatches = Callable[[int, int], Iterable[Mapping[str, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class Stream:
  """A stream that restarts (docs/hhl.md §5): `num_batches` per pass, every pass the same length;
  `batches(pass_index, start, stop)` yields positions start..stop-1 of that pass."""

  num_batches: int
  batches: Callable[[int, int, int], Iterable[Mapping[str, np.ndarray]]]


def load_split(dataset: str, split: str, data_dir, config):
  """A split of `dataset` at the config's synthetic world size (`data.synthetic_size`)."""
  return tfds_builders.load_split(dataset, split, data_dir,
                                  size=config["data"].get("synthetic_size", "tiny"))


def _train_batches(source, index_batches, data_config, seed, epoch, start, stream, labels,
                   erasing_probability, keys, share):
  for batch in pipeline.train_batches(
      source, index_batches, seed=seed, epoch=epoch, height=data_config.height,
      width=data_config.width, labels=labels, start_step=start, stream=stream,
      erasing_probability=erasing_probability, num_threads=data_config.num_workers,
      transform=transforms.train_transform_for(data_config), share=share):
    yield {k: batch[k] for k in keys}


def ce_stream(source, data_config, seed: int, share: tuple[int, int] = (0, 1)) -> EpochBatches:
  """`(epoch, start) -> batches` of the source CE stream: `data.batch_size` images, uniform
  shuffle, each image once per epoch, last partial batch dropped (docs/hhl.md §5, §9).
  `share`: this process's rows of every batch (`pipeline.share_rows`; every stream takes it)."""
  labels, _ = pipeline.relabel(source.labels["pid"])

  def epoch_batches(epoch, start):
    index_batches = samplers.shuffled_batches(len(source), data_config.batch_size, seed, epoch)
    return _train_batches(source, index_batches, data_config, seed, epoch, start, CE_STREAM,
                          labels, data_config.erasing_probability, TRAIN_KEYS, share)

  return epoch_batches


def pk_stream(source, data_config, seed: int, batch_size: int | None = None,
              salt: int = TRIPLET_STREAM, share: tuple[int, int] = (0, 1)) -> Stream:
  """The source triplet stream: `data.triplet_batch_size` (or `batch_size`) = P identities x
  `data.num_instances` images (docs/hhl.md §5: 8 x 8 = 64, the reference's random-identity sampler
  `pk_batches(..., variant='hhl')`, so every pass has the same length). Labels: the relabelled
  identities. `salt`: the stream's draws (HHL's triplet stream 1; ARN's source stream its own)."""
  labels, _ = pipeline.relabel(source.labels["pid"])
  pids = source.labels["pid"]
  size = data_config.triplet_batch_size if batch_size is None else batch_size
  k = data_config.num_instances

  def index_batches(pass_index):
    return samplers.pk_batches(pids, size, k, seed, pass_index, stream=salt, variant="hhl")

  num_batches = len(index_batches(0))
  if num_batches == 0:
    raise ReidError(f"the source has {len(np.unique(pids))} identities x {k} instances, fewer "
                    f"images than one triplet batch of config data.triplet_batch_size={size}; "
                    "lower it or data.num_instances")

  def batches(pass_index, start, stop):
    return _train_batches(source, index_batches(pass_index)[:stop], data_config, seed,
                          pass_index, start, salt, labels,
                          data_config.erasing_probability, TRAIN_KEYS, share)

  return Stream(num_batches, batches)


def target_stream(target, camstyle_folder, num_cameras: int, data_config, seed: int,
                  label_mode: str = "index", sampling: str = "random",
                  share: tuple[int, int] = (0, 1)) -> Stream:
  """The target stream: `data.target_batch_size` target training images per batch, each with its
  C camera-style versions (docs/hhl.md §5; `camstyle_folder=None` or C = 0: reals only), ordered
  `[reals | fakes of camera 1 | ... | camera C]`, every image augmented independently.

  label_mode: 'index' (one distinct pseudo-label per sampled image, docs/hhl.md §12 row 7's
    default) or 'code_random' (the reference's random labels in [1000, 10999]).
  sampling: 'random' (uniform shuffle, cameras ignored: the reference) or 'oracle' (docs/hhl.md
    §5, Fig. 3 "supervised": the images of a batch have distinct true identities).
  """
  filenames = [str(f) for f in target.labels["filename"]]
  size = data_config.target_batch_size
  if sampling == "random":
    def index_batches(pass_index):
      return samplers.shuffled_batches(len(filenames), size, seed, pass_index, TARGET_STREAM)
  elif sampling == "oracle":
    def index_batches(pass_index):
      return samplers.distinct_identity_batches(target.labels["pid"], size, seed, pass_index,
                                                stream=TARGET_STREAM)
  else:
    raise ReidError(f"config field hhl.target_sampling={sampling!r}: choose 'random' or 'oracle' "
                    "(docs/hhl.md §5; 'kmeans' is not built)")
  num_batches = len(index_batches(0))
  if num_batches == 0:
    raise ReidError(f"the target training split has {len(filenames)} images, fewer than config "
                    f"data.target_batch_size={size}")
  fake_paths = samplers.fake_path_table(filenames, camstyle_folder, num_cameras)

  def sampled(pass_index, stop):
    return samplers.with_fake_paths(index_batches(pass_index)[:stop], fake_paths)

  def batches(pass_index, start, stop):
    for batch in pipeline.target_batches(
        target, sampled(pass_index, stop), seed=seed, epoch=pass_index,
        height=data_config.height, width=data_config.width, label_mode=label_mode,
        start_step=start, stream=TARGET_STREAM, num_threads=data_config.num_workers,
        transform=transforms.train_transform_for(data_config), share=share):
      yield {k: batch[k] for k in TARGET_KEYS}

  return Stream(num_batches, batches)


def restart_period(streams: Mapping[str, Stream]) -> int:
  """R: steps between restarts of the restarting streams (the shortest one's length)."""
  return min(stream.num_batches for stream in streams.values())


def pass_position(epoch: int, step_in_epoch: int, steps_per_epoch: int,
                  period: int) -> tuple[int, int]:
  """(pass index, position) the restarting streams read at `step_in_epoch` of `epoch`.

  Passes are numbered through the run: epoch e owns passes e * ceil(S / R) ... so no two passes
  of a run share their draws.
  """
  passes_per_epoch = math.ceil(steps_per_epoch / period)
  return epoch * passes_per_epoch + step_in_epoch // period, step_in_epoch % period


def combine(ce: EpochBatches | None, steps_per_epoch: int,
            restarting: Mapping[str, Stream]) -> EpochBatches:
  """`(epoch, start) -> {'ce': batch, <name>: batch, ...}` under docs/hhl.md §5's epoch rule
  (module docstring). Without restarting streams it yields `{'ce': batch}`; with `ce=None` (a
  method without a CE stream, e.g. ARN) an epoch is still `steps_per_epoch` steps, of the
  restarting streams only."""
  if ce is None and not restarting:
    raise ValueError("combine needs a CE stream or at least one restarting stream")

  def epoch_batches(epoch: int, start: int) -> Iterator[dict]:
    ce_batches = iter(ce(epoch, start)) if ce is not None else None
    try:
      if not restarting:
        for batch in ce_batches:
          yield {"ce": batch}
        return
      period = restart_period(restarting)
      step = start
      while step < steps_per_epoch:
        pass_index, position = pass_position(epoch, step, steps_per_epoch, period)
        stop = min(period, position + steps_per_epoch - step)
        iterators = {name: iter(stream.batches(pass_index, position, stop))
                     for name, stream in restarting.items()}
        try:
          for _ in range(stop - position):
            batch = {} if ce_batches is None else {"ce": next(ce_batches)}
            yield {**batch, **{name: next(iterator) for name, iterator in iterators.items()}}
            step += 1
        finally:
          for iterator in iterators.values():
            getattr(iterator, "close", lambda: None)()
    finally:
      if ce_batches is not None:
        getattr(ce_batches, "close", lambda: None)()

  return epoch_batches
