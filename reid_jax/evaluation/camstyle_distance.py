"""The Table 1 diagnostic of docs/hhl.md §11.1: how far crop, flip and camera style move a target
image's descriptor.

  summary = camstyle_distance.distance_summary(ref, crop, flip, fakes, camids)   # numpy only
  result = camstyle_distance.camstyle_distances(descriptor, variables, target_train, folder,
                                                num_cameras=6, height=256, width=128,
                                                batch_size=128, seed=0)
  record = camstyle_distance.workdir_distances(workdir, data_dir)   # experiments.camstyle_distance

Our reading of the paper (unconfirmed, docs/hhl.md §11.1): descriptors are L2-normalised pool5 in
eval mode; the reference is the real image under the test transform; its views are one random crop
(the train transform's RandomSizedRectCrop, without the flip, one seeded generator per image), the
mirror image of the test-transformed image, and each of the C fakes `<stem>_fake_<j>.jpg` under the
test transform. Distances are plain Euclidean (squared ones reported too), averaged over the target
training images; the fakes are averaged over all C cameras, over the C - 1 other cameras and for
the image's own camera (j = camid + 1) alone.
"""

import concurrent.futures
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from reid_jax import atomic_io
from reid_jax import progress as progress_lib
from reid_jax.data import camstyle
from reid_jax.data import transforms
from reid_jax.errors import ReidError

OUTPUT_FILE = "camstyle_distance.json"
READING = ("L2-normalised pool5 (eval mode); Euclidean distance from the test-transformed real "
           "image to its random crop, its mirror image and its camera-style versions "
           "(docs/hhl.md §11.1, our reading)")

# docs/hhl.md §11.1, paper Table 1 (source-only baseline), keyed by the (source, target) layouts;
# the synthetic datasets share their real twin's layout.
PAPER_TABLE1 = {
    ("duke", "market"): {"pair": "Duke -> Market-1501", "crop": 0.049, "flip": 0.034,
                         "camstyle": 0.485},
    ("market", "duke"): {"pair": "Market-1501 -> Duke", "crop": 0.059, "flip": 0.044,
                         "camstyle": 0.614},
}

DIRECTIONS = ("crop", "flip", "camstyle", "camstyle_other", "camstyle_own")
LABELS = {
    "crop": "random crop",
    "flip": "random flip",
    "camstyle": "camstyle, all cameras",
    "camstyle_other": "camstyle, other cameras",
    "camstyle_own": "camstyle, own camera",
}
_CROP_SALT = 0  # separates the per-image crop draws from the subset draw
_SUBSET_SALT = 1


# ---------------------------------------------------------------------------------------------
# Distances of descriptors (numpy only).


def image_distances(ref, crop, flip, fakes) -> dict[str, np.ndarray]:
  """Per-image Euclidean distances from `ref` `[N, D]` to `crop`, `flip` `[N, D]` (`[N]` each)
  and to each fake of `fakes` `[N, C, D]` (`camstyle`: `[N, C]`), in float64."""
  ref = np.asarray(ref, np.float64)
  crop, flip = np.asarray(crop, np.float64), np.asarray(flip, np.float64)
  fakes = np.asarray(fakes, np.float64)
  if ref.ndim != 2 or crop.shape != ref.shape or flip.shape != ref.shape:
    raise ValueError(f"ref, crop and flip must share one [N, D] shape, got {ref.shape}, "
                     f"{crop.shape}, {flip.shape}")
  if fakes.ndim != 3 or fakes.shape[0] != ref.shape[0] or fakes.shape[2] != ref.shape[1]:
    raise ValueError(f"fakes must be [N, C, D] = [{ref.shape[0]}, C, {ref.shape[1]}], "
                     f"got {fakes.shape}")
  return {"crop": np.linalg.norm(crop - ref, axis=-1),
          "flip": np.linalg.norm(flip - ref, axis=-1),
          "camstyle": np.linalg.norm(fakes - ref[:, None], axis=-1)}


def summarize(distances: Mapping[str, np.ndarray], camids) -> dict:
  """Means over the images of `image_distances`' output, plain and squared.

  `camids` `[N]` are 0-based, so fake j (1-based) is the own camera's when j == camid + 1.
  Returns `{n_images, num_cameras, distance: {crop, flip, camstyle, camstyle_other,
  camstyle_own}, squared_distance: {same}, camstyle_by_camera: [C] mean distance to fake j}`;
  `camstyle_other` is None with a single camera.
  """
  fake = np.asarray(distances["camstyle"], np.float64)
  n, c = fake.shape
  if n == 0:
    raise ValueError("no images to average over")
  camids = np.asarray(camids, np.int64).reshape(-1)
  if len(camids) != n:
    raise ValueError(f"{len(camids)} camids for {n} images")
  bad = camids[(camids < 0) | (camids >= c)]
  if len(bad):
    raise ReidError(f"camid {int(bad[0])} (0-based) outside 0..{c - 1}: the camera-style set has "
                    f"{c} cameras per image; give the dataset's camera count")
  own = np.arange(c)[None, :] == camids[:, None]
  per_view = {
      "crop": np.asarray(distances["crop"], np.float64),
      "flip": np.asarray(distances["flip"], np.float64),
      "camstyle": fake.reshape(-1),
      "camstyle_other": fake[~own],
      "camstyle_own": fake[own],
  }

  def mean(values):
    return float(values.mean()) if values.size else None

  return {
      "n_images": int(n),
      "num_cameras": int(c),
      "distance": {k: mean(v) for k, v in per_view.items()},
      "squared_distance": {k: mean(v ** 2) for k, v in per_view.items()},
      "camstyle_by_camera": [float(x) for x in fake.mean(axis=0)],
  }


def distance_summary(ref, crop, flip, fakes, camids) -> dict:
  """`summarize(image_distances(ref, crop, flip, fakes), camids)`: descriptors are compared as
  given (the extractor already L2-normalises them)."""
  return summarize(image_distances(ref, crop, flip, fakes), camids)


# ---------------------------------------------------------------------------------------------
# Views of a target image.


def crop_rng(seed: int, index: int) -> np.random.Generator:
  """The crop generator of image `index` of the split (independent of batching and subset)."""
  return np.random.default_rng(np.random.SeedSequence([int(seed), _CROP_SALT, int(index)]))


def crop_view(image: np.ndarray, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """The train transform's crop alone (docs/hhl.md §7 steps 2, 4): RandomSizedRectCrop, bilinear,
  ImageNet normalisation; the same draws and pixels as `transforms.train_transform` before its
  flip draw."""
  return transforms.normalize(transforms.random_sized_rect_crop(image, rng, height, width))


def select_images(n: int, max_images: int | None, seed: int) -> np.ndarray:
  """Indices of the images to measure: all, or a seeded random subset of `max_images` in split
  order (the split is sorted by identity, so its first rows would be few people)."""
  if not max_images or max_images >= n:
    return np.arange(n)
  if max_images < 0:
    raise ReidError(f"max_images={max_images}: give a positive count, or 0 for all images")
  rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SUBSET_SALT]))
  return np.sort(rng.choice(n, size=int(max_images), replace=False))


def _read_fake(path: Path) -> np.ndarray:
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise ReidError(f"camera-style image {path} is missing: the set is incomplete; rerun "
                    "experiments.stargan --generate_only for the target dataset") from None
  try:
    return transforms.decode(data, str(path))
  except ReidError as error:
    raise ReidError(f"camera-style image {path} is not a decodable image ({error}); delete "
                    f"{path.parent} and regenerate it with experiments.stargan --generate_only"
                    ) from None


# ---------------------------------------------------------------------------------------------
# The measurement.


def camstyle_distances(descriptor_fn: Callable, variables: Mapping, target_source, camstyle_folder,
                       num_cameras: int, height: int, width: int, batch_size: int, seed: int,
                       max_images: int | None = None, *, num_threads: int = 4,
                       progress: bool = True) -> dict:
  """Table 1's mean distances over the target training images (`summarize`'s dict, plus
  `indices`: the measured rows of the split).

  Args:
    descriptor_fn: `(variables, images) -> pool5 [B, D]` (`features.pool5_descriptor(model)`);
      descriptors are L2-normalised by `features.extract`.
    variables: the model's `{'params', 'batch_stats'}`.
    target_source: the target training split (`labels` with `filename` and 0-based `camid`,
      `encoded_many`).
    camstyle_folder: the folder of `<stem>_fake_<j>.jpg`, j = 1..num_cameras.
    height, width: the model's input size (the config's `data.height`, `data.width`).
    batch_size: rows per extractor call (fixed: one compilation); each holds the C + 3 views of
      batch_size // (C + 3) images.
    seed: the crops' and the subset's randomness.
    max_images: measure a seeded random subset of this many images (None or 0: all).
    num_threads: threads decoding and transforming images.
    progress: show a bar counting target images.
  """
  from reid_jax.evaluation import features  # pylint: disable=g-import-not-at-top
  from reid_jax.training import sharding  # pylint: disable=g-import-not-at-top
  folder = Path(camstyle_folder)
  labels = target_source.labels
  filenames, camids = labels["filename"], np.asarray(labels["camid"], np.int64)
  indices = select_images(len(target_source), max_images, seed)
  views = num_cameras + 3  # ref, crop, flip, fakes 1..C
  # One extractor batch holds every view of `per_batch` images (row v * per_batch + k: view v of
  # image k), so host memory stays one batch and the batch shape, hence the compilation, is fixed.
  rows = max(int(batch_size), views)
  per_batch = rows // views
  mesh = sharding.data_mesh()
  variables = sharding.replicate(dict(variables), mesh)  # once, not per extractor call
  chunks: list[dict[str, np.ndarray]] = []

  def submit(chunk: np.ndarray, pool):
    """`([rows, H, W, 3] being filled, futures)`: the chunk's views, decoded in `pool`."""
    encoded = target_source.encoded_many(chunk)
    images = np.zeros((rows, height, width, 3), np.float32)
    n = len(chunk)

    def one(k: int) -> None:
      index = int(chunk[k])
      real = transforms.decode(encoded[k], str(filenames[index]))
      images[k] = transforms.test_transform(real, height, width)
      images[n + k] = crop_view(real, crop_rng(seed, index), height, width)
      images[2 * n + k] = images[k, :, ::-1]
      stem = camstyle.stem_of(str(filenames[index]))
      for j in range(1, num_cameras + 1):
        fake = _read_fake(folder / camstyle.fake_name(stem, j))
        images[(2 + j) * n + k] = transforms.test_transform(fake, height, width)

    return images, [pool.submit(one, k) for k in range(n)]

  def describe(images: np.ndarray, n: int) -> np.ndarray:
    batch = {"image": images, "mask": np.arange(rows) < views * n}
    out = features.extract(descriptor_fn, variables, [batch], mesh=mesh, progress=False)
    return out.reshape(views, n, -1)

  chunk_list = [indices[s:s + per_batch] for s in range(0, len(indices), per_batch)]
  what = f"the feature extractor (batches of {rows})"
  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool, \
      progress_lib.Bar(len(indices), "camstyle distance", unit="img", enabled=progress) as bar:
    pending = submit(chunk_list[0], pool) if chunk_list else None
    for i, chunk in enumerate(chunk_list):
      images, futures = pending
      for future in futures:
        future.result()  # re-raises a worker's error (a missing or corrupt fake) here
      # The next chunk is decoded while the model runs on this one.
      pending = submit(chunk_list[i + 1], pool) if i + 1 < len(chunk_list) else None
      desc = bar.first_call(what, describe, images, len(chunk), units=len(chunk))
      if not np.isfinite(desc).all():
        raise ReidError("descriptors contain NaN or inf: the model diverged or the checkpoint "
                        "is corrupt; measure a finite checkpoint")
      chunks.append(image_distances(desc[0], desc[1], desc[2], desc[3:].transpose(1, 0, 2)))
      bar.update(len(chunk))
  if not chunks:
    raise ReidError("the target training split is empty: nothing to measure")
  distances = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  result = summarize(distances, camids[indices])
  result["indices"] = indices
  return result


# ---------------------------------------------------------------------------------------------
# A workdir's model (what experiments.camstyle_distance runs).


def paper_figures(src: str | None, tgt: str) -> dict | None:
  """Table 1's row for the pair (the real twins' row for synthetic datasets), or None."""
  from reid_jax.data import datasets  # pylint: disable=g-import-not-at-top
  if src is None:
    return None
  src_spec, tgt_spec = datasets.get_spec(src), datasets.get_spec(tgt)
  row = PAPER_TABLE1.get((src_spec.layout, tgt_spec.layout))
  if row is None:
    return None
  return {**row, "model": "source-only baseline",
          "twins": bool(src_spec.synthetic or tgt_spec.synthetic)}


def check_workdir(workdir) -> dict:
  """The workdir's config.json (with a `tgt`) and a checkpoint exist; returns the config."""
  from reid_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from reid_jax.training import preflight  # pylint: disable=g-import-not-at-top
  workdir = Path(workdir)
  preflight.checkpoint_exists(workdir, "train the workdir first (e.g. python -m "
                                       "experiments.baseline with this --workdir)")
  config = workdir_lib.load_config(workdir)
  if not config.get("tgt"):
    raise ReidError(f"{workdir / workdir_lib.CONFIG_FILE} has no tgt field: give the workdir of "
                    "a cross-domain run (experiments.baseline or HHL)")
  return config


def workdir_distances(workdir, data_dir, *, max_images: int | None = None, seed: int = 0,
                      progress: bool = True, write: bool = True) -> dict:
  """Table 1 for the model of `workdir` on its target's training images; the record is written
  atomically to `<workdir>/camstyle_distance.json` (with `write`) and returned.

  Checks come first, so that a workdir without a checkpoint or a target without its camera-style
  set fails in seconds.
  """
  from reid_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from reid_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top
  from reid_jax.evaluation import features  # pylint: disable=g-import-not-at-top
  from reid_jax.models import heads  # pylint: disable=g-import-not-at-top
  from reid_jax.training import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from reid_jax.training import preflight  # pylint: disable=g-import-not-at-top
  workdir = Path(workdir)
  config = check_workdir(workdir)
  src, tgt = config.get("src"), config["tgt"]
  data = config["data"]
  size = data.get("synthetic_size", "tiny")
  folder = preflight.camstyle_set(data_dir, tgt, size)  # the set of the world the model saw
  target = tfds_builders.load_split(tgt, "train", data_dir, size=size)
  variables, step = evaluate_lib.restore_variables(workdir)
  model = heads.build_reid_net(config["model"], evaluate_lib.num_classes_of(variables["params"]))
  num_cameras = datasets.get_spec(tgt).num_cameras
  result = camstyle_distances(
      features.pool5_descriptor(model), variables, target, folder, num_cameras,
      int(data["height"]), int(data["width"]), int(data.get("eval_batch_size", 128)), seed,
      max_images, num_threads=int(data.get("num_workers", 4)), progress=progress)
  result.pop("indices")
  record = {
      "workdir": str(workdir), "experiment": config.get("experiment"),
      "variant": config.get("variant"), "src": src, "tgt": tgt, "checkpoint_step": step,
      "camstyle_folder": str(folder), "height": int(data["height"]),
      "width": int(data["width"]), "seed": int(seed), "max_images": int(max_images or 0),
      "n_target_images": len(target), "reading": READING, **result,
      "paper": paper_figures(src, tgt),
  }
  if write:
    atomic_io.write_json(workdir / OUTPUT_FILE, record)
  return record


def format_table(record: Mapping) -> str:
  """Ours (plain and squared) beside the paper's Table 1 row, one line per direction."""
  paper = record.get("paper")
  paper_title = "paper" if paper is None else f"paper {paper['pair']}"
  header = f"{'view':<26}{'distance':>10}{'squared':>10}   {paper_title}"
  lines = [header, "-" * len(header)]
  for key in DIRECTIONS:
    ours, squared = record["distance"][key], record["squared_distance"][key]
    theirs = None if paper is None else paper.get(key)
    cells = [f"{v:>10.4f}" if v is not None else f"{'-':>10}" for v in (ours, squared)]
    lines.append(f"{LABELS[key]:<26}{cells[0]}{cells[1]}   "
                 + (f"{theirs:.3f}" if theirs is not None else "-"))
  if paper is not None:
    notes = [f"the paper's figures are for its {paper['model']}"]
    if paper.get("twins"):
      notes.append("measured on the real datasets our synthetic ones stand in for")
    lines.append("(" + "; ".join(notes) + ")")
  return "\n".join(lines)


def summary_line(record: Mapping) -> str:
  """Which model, which images (first line), what was measured (second)."""
  return (f"{record.get('experiment')} {record.get('src')} -> {record['tgt']}, checkpoint step "
          f"{record['checkpoint_step']}: {record['n_images']} of {record['n_target_images']} "
          f"target training images, {record['num_cameras']} camera styles\n{record['reading']}")

