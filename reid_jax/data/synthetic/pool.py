"""The pretraining pool: the synthetic testbed's stand-in for ImageNet (docs/testbed.md).

Both papers start from an ImageNet trunk: generic visual features, learnt from category labels
that say nothing about which person is which or which camera took a picture. The pool plays that
part on the CPU:

- every image shows a *different* person (no identity is ever seen twice, so no image pair teaches
  "same person, other camera"), drawn in the domain `world.PRETRAIN` of its own (12 cameras,
  every colour, garment, skin and hair tone), never in synth_market, synth_duke or synth_msmt;
- its labels are pedestrian *attributes* in the manner of the Market-1501 / DukeMTMC attribute
  annotations: upper and lower clothing colour (11 basic colour terms), pattern, coat, shorts,
  short sleeves, hat, backpack, handbag, long hair, and the view (front / back / side).

`write_pool` renders it (a pure function of size and seed, like the re-ID trees) into one
`pool.npz` (JPEG bytes, offsets, attribute labels), written atomically; `load_pool` gives a
source for `pipeline.train_batches`.
"""

import concurrent.futures
import io
import multiprocessing
import zlib
from pathlib import Path

import numpy as np

from reid_jax import atomic_io
from reid_jax.data.synthetic import render
from reid_jax.data.synthetic import world
from reid_jax.errors import ReidError

POOL_VERSION = 1
POOL_FILE = "pool.npz"

# Basic colour terms (the Market-1501 attribute annotations use nine of them) of the world's
# named colours; a person's jittered RGB gets the term of its nearest named colour.
BASIC_COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple",
                 "pink", "brown")
_BASIC_OF = {
    "white": "white", "cream": "white", "light_grey": "grey", "grey": "grey",
    "dark_grey": "grey", "black": "black", "light_blue": "blue", "sky": "blue", "blue": "blue",
    "navy": "blue", "denim": "blue", "light_denim": "blue", "red": "red", "burgundy": "red",
    "pink": "pink", "orange": "orange", "yellow": "yellow", "light_green": "green",
    "green": "green", "olive": "green", "dark_green": "green", "khaki": "brown",
    "beige": "brown", "brown": "brown", "dark_brown": "brown", "purple": "purple",
    "camel": "brown",
}
# (name, number of classes), in the column order of the label matrix.
ATTRIBUTES = (("upper_colour", 11), ("lower_colour", 11), ("pattern", 3), ("coat", 2),
              ("shorts", 2), ("short_sleeves", 2), ("hat", 2), ("backpack", 2), ("handbag", 2),
              ("hair_long", 2), ("view", 3))
_CODE = zlib.crc32(world.PRETRAIN.name.encode())
_NAMES = tuple(world.COLOURS)
_RGB = np.array([world.COLOURS[n] for n in _NAMES])


def basic_colour(rgb) -> int:
  """Index in BASIC_COLOURS of the term of the named colour nearest to `rgb`."""
  nearest = _NAMES[int(np.argmin(((_RGB - np.asarray(rgb)) ** 2).sum(-1)))]
  return BASIC_COLOURS.index(_BASIC_OF[nearest])


def attribute_labels(person: world.Person, view: render.View) -> list[int]:
  """One image's labels, in ATTRIBUTES order."""
  return [basic_colour(person.upper), basic_colour(person.lower),
          world.PATTERNS.index(person.pattern), int(person.coat), int(person.shorts),
          int(person.short_sleeves), int(person.hat is not None), int(person.backpack is not None),
          int(person.handbag is not None), int(person.hair_long), world.VIEWS.index(view.view)]


def render_image(index: int, seed: int, cams=None) -> tuple[bytes, int, list[int]]:
  """(JPEG bytes, camera, labels) of pool image `index`: a pure function of (index, seed)."""
  domain = world.PRETRAIN
  cams = world.cameras(domain) if cams is None else cams
  rng = np.random.default_rng([seed, _CODE, index])
  camera = cams[int(rng.integers(domain.num_cameras))]
  person = world.person(domain, rng)
  track = render.sample_track(camera, rng)
  view = render.sample_view(camera, track, render.scene_light(domain, camera, None), rng)
  image = render.render(domain, camera, person, view, domain.crop, rng)
  return render.encode_jpeg(image, camera.jpeg_quality), camera.index, attribute_labels(person, view)


def _render_range(seed: int, start: int, stop: int):
  cams = world.cameras(world.PRETRAIN)
  return [render_image(i, seed, cams) for i in range(start, stop)]


def pool_dir(data_dir, size: int, seed: int) -> Path:
  """`<data_dir>/pretrain/synth_pretrain_<size>_seed<seed>_v<version>`."""
  return Path(data_dir) / "pretrain" / f"{world.PRETRAIN.name}_{size}_seed{seed}_v{POOL_VERSION}"


def write_pool(data_dir, size: int, seed: int = 0, workers: int = 2, progress: bool = True) -> Path:
  """Renders the pool if it is not there yet; returns its `pool.npz` path."""
  path = pool_dir(data_dir, size, seed) / POOL_FILE
  if path.is_file():
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  chunks = [(s, min(s + 500, size)) for s in range(0, size, 500)]
  results = {}
  bar = None
  if progress:
    from reid_jax import progress as progress_lib  # pylint: disable=g-import-not-at-top
    bar = progress_lib.Bar(size, f"{world.PRETRAIN.name} pool", unit="img")
  if workers > 1:
    context = multiprocessing.get_context("spawn")  # callers may hold threads (JAX, TFDS)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
      futures = {pool.submit(_render_range, seed, a, b): a for a, b in chunks}
      for future in concurrent.futures.as_completed(futures):
        results[futures[future]] = future.result()
        if bar is not None:
          bar.update(len(results[futures[future]]))
  else:
    for a, b in chunks:
      results[a] = _render_range(seed, a, b)
      if bar is not None:
        bar.update(b - a)
  if bar is not None:
    bar.close()
  items = [item for a, _ in chunks for item in results[a]]
  blobs = [np.frombuffer(jpeg, np.uint8) for jpeg, _, _ in items]
  offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
  buffer = io.BytesIO()
  np.savez(buffer, jpeg=np.concatenate(blobs), offsets=offsets,
           camid=np.array([c for _, c, _ in items], np.int32),
           attributes=np.array([a for _, _, a in items], np.int32),
           version=np.int32(POOL_VERSION), seed=np.int32(seed))
  atomic_io.write_bytes(path, buffer.getvalue())
  return path


class Pool:
  """A loaded pool as a pipeline source: `len`, `labels`, `encoded_many`, `attributes [N, A]`."""

  def __init__(self, path):
    self.path = Path(path)
    try:
      with np.load(self.path) as data:
        self._jpeg, self._offsets = data["jpeg"], data["offsets"]
        self.attributes = data["attributes"]
        camid = data["camid"]
    except (OSError, ValueError, KeyError) as error:
      raise ReidError(f"{self.path} is not a readable pretraining pool ({error}); delete it and "
                      f"rerun python -m experiments.pretrain to render it again") from None
    n = len(self.attributes)
    # 'pid' is the image index: every image is its own person (nothing to relabel).
    self.labels = {"pid": np.arange(n, dtype=np.int32), "camid": camid}

  def __len__(self):
    return len(self.attributes)

  def encoded_many(self, indices) -> list[bytes]:
    return [self._jpeg[self._offsets[i]:self._offsets[i + 1]].tobytes() for i in indices]


def load_pool(path) -> Pool:
  return Pool(path)
