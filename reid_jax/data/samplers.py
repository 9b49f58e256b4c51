"""Index samplers: pure functions of (seed, epoch) returning `[num_batches, B]` index arrays.

- `pk_batches`: P identities x K instances per batch (docs/arn_triplet_eval.md §2.4), torchreid's
  `RandomIdentitySampler` semantics (default, `variant='torchreid'`) or the HHL / open-reid
  reference variant (`variant='hhl'`, docs/hhl.md §5).
- `shuffled_batches`: each image once per epoch in random order, last partial batch dropped
  (the source CE stream and the target stream of docs/hhl.md §5).
- `target_batches`: the target stream with, for each sampled image, its C camera-style files
  (docs/hhl.md §5, §10.7).

Resume state: the batches of an epoch depend only on (seed, epoch), so the exact position of a
stream is `SamplerState(seed, epoch, step)`: regenerate `batches = f(..., seed, epoch)` and continue
at `batches[step]`. For HHL's triplet and target streams, which restart whenever either runs out
(docs/hhl.md §5), `epoch` is the stream's own pass counter. Different streams of one run use different
seeds (or `stream` salts) so that they draw independently.
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reid_jax.data.camstyle import fake_name
from reid_jax.errors import ReidError


@dataclasses.dataclass(frozen=True)
class SamplerState:
  """Where a stream stands: batch `step` of the batches of (`seed`, `epoch`). JSON-friendly."""
  seed: int
  epoch: int = 0
  step: int = 0

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "SamplerState":
    return cls(int(d["seed"]), int(d["epoch"]), int(d["step"]))


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
  """The generator of one (seed, epoch, stream): independent across all three."""
  return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(stream)]))


def shuffled_batches(num_items: int, batch_size: int, seed: int, epoch: int,
                     stream: int = 0, drop_last: bool = True) -> np.ndarray:
  """A random permutation of `range(num_items)` cut into batches: int64 `[num_batches, B]`.

  With `drop_last=False` the last batch is returned short in a list instead of an array.
  """
  if batch_size <= 0:
    raise ReidError(f"batch_size={batch_size} must be positive")
  order = epoch_rng(seed, epoch, stream).permutation(num_items)
  n_full = num_items // batch_size
  full = order[:n_full * batch_size].reshape(n_full, batch_size)
  if drop_last or n_full * batch_size == num_items:
    return full
  return list(full) + [order[n_full * batch_size:]]


def _group_by_pid(pids) -> tuple[np.ndarray, list[np.ndarray]]:
  pids = np.asarray(pids)
  unique, inverse = np.unique(pids, return_inverse=True)
  order = np.argsort(inverse, kind="stable")
  groups = np.split(order, np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1])
  return unique, groups


def pk_batches(pids, batch_size: int, num_instances: int, seed: int, epoch: int,
               stream: int = 0, variant: str = "torchreid") -> np.ndarray:
  """P x K identity batches of one epoch: int64 `[num_batches, batch_size]`.

  Each batch holds P = batch_size // K identities, K consecutive indices each.

  Args:
    pids: `[N]` identity label of every image (any integers).
    batch_size: B, divisible by K.
    num_instances: K images per identity.
    seed, epoch, stream: the randomness (see module docstring).
    variant:
      'torchreid' (docs/arn_triplet_eval.md §2.4): per epoch each pid's indices are shuffled and cut
        into chunks of K (a pid with < K images is first resampled with replacement to exactly K;
        leftovers beyond a multiple of K are dropped); batches draw P pids without replacement
        among those with chunks left and pop one chunk each, until fewer than P pids remain.
      'hhl' (docs/hhl.md §5, open-reid's sampler): one chunk of K per identity in a shuffled identity
        order (without replacement if the pid has >= K images, else with), cut into batches,
        last partial batch dropped.
  """
  if num_instances <= 0 or batch_size % num_instances != 0:
    raise ReidError(f"batch_size={batch_size} must be a positive multiple of "
                    f"num_instances={num_instances} (P x K sampling)")
  num_pids_per_batch = batch_size // num_instances
  unique, groups = _group_by_pid(pids)
  if len(unique) < num_pids_per_batch:
    raise ReidError(f"{len(unique)} training identities, fewer than the {num_pids_per_batch} "
                    f"(batch_size / num_instances) that one P x K batch needs")
  rng = epoch_rng(seed, epoch, stream)
  K = num_instances
  if variant == "hhl":
    chunks = []
    for p in rng.permutation(len(unique)):
      idxs = groups[p]
      chunks.append(rng.choice(idxs, size=K, replace=len(idxs) < K))
    flat = np.concatenate(chunks)
    n = len(flat) // batch_size
    return flat[:n * batch_size].reshape(n, batch_size)
  if variant != "torchreid":
    raise ReidError(f"pk variant {variant!r}: choose 'torchreid' or 'hhl'")
  chunks_per_pid = []
  for idxs in groups:
    if len(idxs) < K:
      idxs = rng.choice(idxs, size=K, replace=True)
    idxs = rng.permutation(idxs)
    n = len(idxs) // K
    chunks_per_pid.append(list(idxs[:n * K].reshape(n, K)))
  available = [p for p in range(len(unique)) if chunks_per_pid[p]]
  batches = []
  while len(available) >= num_pids_per_batch:
    chosen = rng.choice(len(available), size=num_pids_per_batch, replace=False)
    selected = [available[c] for c in chosen]
    batches.append(np.concatenate([chunks_per_pid[p].pop(0) for p in selected]))
    available = [p for p in available if chunks_per_pid[p]]
  if not batches:
    return np.zeros((0, batch_size), np.int64)
  return np.stack(batches).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Target stream with camera-style files (docs/hhl.md §5, §10.7).

def camstyle_files(filenames: Sequence[str], folder, num_cameras: int) -> np.ndarray:
  """`[N, C]` paths of the C camera-style versions of every image, camera j = 1..C in column j-1."""
  folder = Path(folder)
  return np.array([[str(folder / fake_name(Path(f).stem, j)) for j in range(1, num_cameras + 1)]
                   for f in filenames], dtype=object).reshape(len(filenames), num_cameras)


@dataclasses.dataclass(frozen=True)
class TargetBatch:
  """One target batch: the sampled images and their C camera-style files.

  Attributes:
    indices: int64 `[B]` indices into the target training split.
    fake_paths: object `[B, C]` path of image b's version in camera j+1's style.
  """
  indices: np.ndarray
  fake_paths: np.ndarray


def target_batches(filenames: Sequence[str], batch_size: int, seed: int, epoch: int,
                   camstyle_folder=None, num_cameras: int = 0,
                   stream: int = 0) -> list[TargetBatch]:
  """docs/hhl.md §5 target stream: uniform shuffle of the target training list, drop_last.

  Args:
    filenames: `[N]` target training file names (their stems name the fakes).
    batch_size: target images per batch (n_t = 16 in the paper).
    seed, epoch, stream: the randomness.
    camstyle_folder: the folder holding `<stem>_fake_<j>.jpg`; None for no expansion (C = 0).
    num_cameras: C, the target dataset's camera count.
  """
  batches = shuffled_batches(len(filenames), batch_size, seed, epoch, stream)
  return with_fake_paths(batches, fake_path_table(filenames, camstyle_folder, num_cameras))


def fake_path_table(filenames: Sequence[str], camstyle_folder=None,
                    num_cameras: int = 0) -> np.ndarray:
  """`[N, C]` camera-style paths of every image (`[N, 0]` without a folder): built once per
  stream, then indexed by every batch."""
  if camstyle_folder is None or num_cameras == 0:
    return np.zeros((len(filenames), 0), dtype=object)
  return camstyle_files(filenames, camstyle_folder, num_cameras)


def with_fake_paths(index_batches, fake_paths: np.ndarray) -> list[TargetBatch]:
  """`[num_batches, B]` target indices as TargetBatches with their rows of `fake_paths`."""
  return [TargetBatch(b, fake_paths[b]) for b in index_batches]


def distinct_identity_batches(pids, batch_size: int, seed: int, epoch: int,
                              stream: int = 0) -> np.ndarray:
  """docs/hhl.md §5 (Fig. 3, "supervised" target sampling, an oracle): `floor(N / B)` batches of
  B images with B distinct true identities each, drawn uniformly (identities without replacement
  within a batch, then one of the identity's images); int64 `[num_batches, B]`."""
  unique, groups = _group_by_pid(pids)
  if len(unique) < batch_size:
    raise ReidError(f"{len(unique)} target identities, fewer than the {batch_size} distinct ones "
                    "an oracle target batch needs (config data.target_batch_size)")
  rng = epoch_rng(seed, epoch, stream)
  batches = np.empty((len(np.asarray(pids)) // batch_size, batch_size), np.int64)
  for b in range(len(batches)):
    batches[b] = [rng.choice(groups[p]) for p in rng.choice(len(unique), batch_size,
                                                              replace=False)]
  return batches
