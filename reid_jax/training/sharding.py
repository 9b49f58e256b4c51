"""Data parallelism with one `Mesh` and a 'data' axis over `jax.devices()` (docs/style.md).

Batches are split along their leading axis over the 'data' axis; the train state is replicated.
With one device this is a no-op layout, so the same code runs on a CPU, a GPU node or a TPU VM.
"""

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
  """Puts every array of a host batch (a pytree of numpy arrays `[B, ...]`) onto the mesh."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.device_put(np.asarray(x), sharding), batch)


def replicate(tree, mesh: Mesh):
  return jax.device_put(tree, replicated(mesh))
