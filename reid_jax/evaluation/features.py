"""Test descriptors for retrieval: L2-normalised pool5 in eval mode (hhl.md §3, §8).

  descriptor = features.pool5_descriptor(model)         # (variables, images) -> [B, D]
  feats = features.extract(descriptor, variables, batches, flip=False)   # [N, D] numpy

`batches` is what `reid_jax.data.pipeline.eval_batches` yields: dicts with `image` float32
`[B, H, W, 3]` (normalised) and `mask` bool `[B]` (False marks padding of the last batch). The
batch size is fixed, so the jitted apply compiles once.
"""

from typing import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from reid_jax import xla_options
from reid_jax.models import heads
from reid_jax.training import sharding as sharding_lib

Descriptor = Callable[[dict, jax.Array], jax.Array]


def pool5_descriptor(model) -> Descriptor:
  """`(variables, images [B, H, W, 3]) -> pool5 [B, D]` (not normalised), BN running statistics,
  dropout off; the heads are skipped (HHL's 'pool5' output mode)."""

  def descriptor(variables, images):
    return model.apply(variables, images, train=False, features_only=True)["pool5"]

  return descriptor


def _flip_averaged(descriptor: Descriptor, flip: bool) -> Descriptor:
  """With `flip`, the descriptor of an image plus that of its mirror image, then L2-normalised
  (torchreid's flip test; off in HHL, hhl.md §7); without, L2-normalised as is."""

  def apply(variables, images):
    features = descriptor(variables, images)
    if flip:
      features = features + descriptor(variables, images[:, :, ::-1, :])
    return heads.test_descriptor(features)

  return apply


def make_extractor(descriptor: Descriptor, flip: bool = False, mesh=None):
  """A jitted `(variables, images) -> L2-normalised [B, D]`, batch split over the data mesh."""
  mesh = sharding_lib.data_mesh() if mesh is None else mesh
  replicated = sharding_lib.replicated(mesh)
  return xla_options.jit(_flip_averaged(descriptor, flip),
                         in_shardings=(replicated, sharding_lib.batch_sharding(mesh)),
                         out_shardings=replicated), mesh


def extract(descriptor: Descriptor, variables: Mapping, batches: Iterable[Mapping[str, np.ndarray]],
            flip: bool = False, mesh=None) -> np.ndarray:
  """Descriptors of every unpadded image of `batches`, in order: float32 `[N, D]`, rows of unit norm.

  Args:
    descriptor: `(variables, images) -> [B, D]` before normalisation (e.g. `pool5_descriptor`).
    variables: the model's `{'params', 'batch_stats'}`.
    batches: dicts with `image` `[B, H, W, 3]` and optionally `mask` `[B]` (True = real image).
    flip: average with the horizontally flipped image before normalising.
  """
  extractor, mesh = make_extractor(descriptor, flip, mesh)
  variables = sharding_lib.replicate(dict(variables), mesh)
  sharding_lib_devices = mesh.shape[sharding_lib.DATA_AXIS]
  chunks = []
  for batch in batches:
    images = np.asarray(batch["image"], np.float32)
    mask = np.asarray(batch.get("mask", np.ones(len(images), bool)), bool)
    pad = -len(images) % sharding_lib_devices
    if pad:
      images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    images = jax.device_put(images, sharding_lib.batch_sharding(mesh))
    out = np.asarray(jax.device_get(extractor(variables, images)))[:len(mask)]
    chunks.append(out[mask])
  if not chunks:
    return np.zeros((0, 0), np.float32)
  return np.concatenate(chunks).astype(np.float32)


def jnp_l2_normalise(x):
  """Row-wise L2 normalisation with F.normalize's eps (for callers outside jit)."""
  return heads.test_descriptor(jnp.asarray(x))
