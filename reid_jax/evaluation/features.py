"""Test descriptors for retrieval: L2-normalised pool5 in eval mode (docs/hhl.md §3, §8).

  descriptor = features.pool5_descriptor(model)         # (variables, images) -> [B, D]
  feats = features.extract(descriptor, variables, batches, flip=False,
                           total=len(source), desc="market query")   # [N, D] numpy

`batches` is what `reid_jax.data.pipeline.eval_batches` yields: dicts with `image` float32
`[B, H, W, 3]` (normalised) and `mask` bool `[B]` (False marks padding of the last batch). The
batch size is fixed, so the jitted apply compiles once; the jitted extractor is kept per
(descriptor, flip, mesh), so extracting the gallery after the query compiles nothing. A progress
bar (`reid_jax.progress`) counts images; the compiling first batch is announced and kept out of
its ETA.
"""

import collections
from typing import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from reid_jax import progress as progress_lib
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
  (torchreid's flip test; off in HHL, docs/hhl.md §7); without, L2-normalised as is."""

  def apply(variables, images):
    features = descriptor(variables, images)
    if flip:
      features = features + descriptor(variables, images[:, :, ::-1, :])
    return heads.test_descriptor(features)

  return apply


normalised_descriptor = _flip_averaged  # the public name (reid_jax.export uses it)


_EXTRACTORS: collections.OrderedDict = collections.OrderedDict()  # (descriptor, flip, mesh) ->
_MAX_EXTRACTORS = 4  # (jitted function, batch shapes it has compiled for), least recent dropped


def _cached_extractor(descriptor: Descriptor, flip: bool, mesh):
  key = (descriptor, bool(flip), mesh)
  if key not in _EXTRACTORS:
    replicated = sharding_lib.replicated(mesh)
    jitted = xla_options.jit(_flip_averaged(descriptor, flip),
                             in_shardings=(replicated, sharding_lib.batch_sharding(mesh)),
                             out_shardings=replicated)
    _EXTRACTORS[key] = (jitted, set())
    while len(_EXTRACTORS) > _MAX_EXTRACTORS:
      _EXTRACTORS.popitem(last=False)
  _EXTRACTORS.move_to_end(key)
  return _EXTRACTORS[key]


def make_extractor(descriptor: Descriptor, flip: bool = False, mesh=None):
  """A jitted `(variables, images) -> L2-normalised [B, D]`, batch split over the data mesh
  (default: this process's devices; the same function for the same descriptor, flip and mesh)."""
  mesh = sharding_lib.local_mesh() if mesh is None else mesh
  return _cached_extractor(descriptor, flip, mesh)[0], mesh


def extract(descriptor: Descriptor, variables: Mapping, batches: Iterable[Mapping[str, np.ndarray]],
            flip: bool = False, mesh=None, *, total: int | None = None, desc: str = "extract",
            progress: bool = True) -> np.ndarray:
  """Descriptors of every unpadded image of `batches`, in order: float32 `[N, D]`, rows of unit norm.

  Args:
    descriptor: `(variables, images) -> [B, D]` before normalisation (e.g. `pool5_descriptor`).
    variables: the model's `{'params', 'batch_stats'}`.
    batches: dicts with `image` `[B, H, W, 3]` and optionally `mask` `[B]` (True = real image).
    flip: average with the horizontally flipped image before normalising.
    total: the number of images `batches` holds, for the bar's ETA (unknown: count and rate only).
    desc: the bar's label (e.g. "market query").
    progress: show the bar on stdout.
  """
  mesh = sharding_lib.local_mesh() if mesh is None else mesh
  extractor, compiled_shapes = _cached_extractor(descriptor, flip, mesh)
  variables = sharding_lib.replicate(dict(variables), mesh)
  sharding_lib_devices = mesh.shape[sharding_lib.DATA_AXIS]
  chunks = []
  with progress_lib.Bar(total, desc, unit="img", enabled=progress) as bar:
    for batch in batches:
      images = np.asarray(batch["image"], np.float32)
      mask = np.asarray(batch.get("mask", np.ones(len(images), bool)), bool)
      pad = -len(images) % sharding_lib_devices
      if pad:
        images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
      images = jax.device_put(images, sharding_lib.batch_sharding(mesh))
      count = int(mask.sum())
      if images.shape in compiled_shapes:
        out = extractor(variables, images)
      else:
        out = bar.compile_call(f"the feature extractor (batches of {images.shape[0]})",
                               extractor, variables, images, units=count)
        compiled_shapes.add(images.shape)
      out = np.asarray(jax.device_get(out))[:len(mask)]
      chunks.append(out[mask])
      bar.update(count)
  if not chunks:
    return np.zeros((0, 0), np.float32)
  return np.concatenate(chunks).astype(np.float32)


def jnp_l2_normalise(x):
  """Row-wise L2 normalisation with F.normalize's eps (for callers outside jit)."""
  return heads.test_descriptor(jnp.asarray(x))
