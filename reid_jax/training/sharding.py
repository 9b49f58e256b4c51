"""Data parallelism with one `Mesh` and a 'data' axis over `jax.devices()` (docs/style.md).

Batches are split along their leading axis over the 'data' axis; the train state is replicated.
With one device this is a no-op layout, so the same code runs on a CPU, a GPU node or a TPU VM.
This `jax.jit` over a `Mesh` with `NamedSharding`s is what `jax.pmap` is built on today: one
program for the global batch, so batch-hard mining and BatchNorm see the whole global batch
(`model.bn_groups` splits BatchNorm explicitly, whatever the device count).

Several processes (hosts): `initialize` starts `jax.distributed`; the mesh spans every process's
devices, and each process decodes only its share of every global batch (`process_share`: rows
`[i B / P, (i + 1) B / P)` of the same global batch one process would read,
`data.pipeline.share_rows`), which
`shard_batch` assembles into the global array. Evaluation runs on each process's own devices
(`local_mesh`); files are written by the main process (`is_main_process`).
"""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reid_jax.errors import ReidError

DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
  """A 1-D mesh named 'data' over `devices` (default: all of `jax.devices()`)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data'; other axes whole."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh, field: str = "batch_size") -> None:
  """Raises ReidError unless `batch_size` splits evenly over the mesh's data axis."""
  n = mesh.shape[DATA_AXIS]
  if batch_size % n:
    raise ReidError(f"config field {field}={batch_size} is not divisible by the {n} devices of "
                    f"the data axis; choose a multiple of {n}")


def shard_batch(batch, mesh: Mesh):
  """The global batch on the mesh from this process's share of it (a pytree of numpy arrays
  `[B / P, ...]`; with one process, the whole batch)."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def local_mesh() -> Mesh:
  """The data mesh over this process's own devices (evaluation: every process extracts alone)."""
  return data_mesh(jax.local_devices())


def process_share() -> tuple[int, int]:
  """(this process's index, the number of processes): which rows of a global batch it reads."""
  return jax.process_index(), jax.process_count()


def is_main_process() -> bool:
  """Process 0 writes the workdir's files (config.json, results.json, TensorBoard, figures)."""
  return jax.process_index() == 0


def sync(name: str) -> None:
  """Waits until every process reaches `name` (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
  """Starts `jax.distributed` for a multi-process run and returns True, or returns False when
  nothing asks for one. Asked for by `coordinator_address` (with `num_processes`, `process_id`),
  or by the environment: `JAX_COORDINATOR_ADDRESS` (+ `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`);
  `coordinator_address="auto"`: JAX's cluster detection (Cloud TPU pods, SLURM, Open MPI)."""
  if coordinator_address is None:
    coordinator_address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if coordinator_address is None:
      return False
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
  if coordinator_address == "auto":
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                               process_id=process_id)
  return True


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value is None:
    return None
  try:
    return int(value)
  except ValueError:
    raise ReidError(f"environment variable {name}={value!r} is not an integer") from None


def replicate(tree, mesh: Mesh):
  """`tree` (the same value in every process) on every device of the mesh."""
  if jax.process_count() > 1:  # through the host: a process cannot send to another's devices
    tree = jax.device_get(tree)
  return jax.device_put(tree, replicated(mesh))
