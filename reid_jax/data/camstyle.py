"""The camera-style set on disk: names, MANIFEST.json, its world, completeness (docs/hhl.md §10.7,
docs/design.md §4).

  <data_dir>/camstyle/<dataset>/                        a real dataset's set
  <data_dir>/camstyle/<dataset>_<size>_seed<seed>/      a synthetic world's set
      <stem>_fake_<j>.jpg     j = 1..C, the image's own camera included
      MANIFEST.json           written last: its presence means complete; its `world` says for which
                              training images the fakes were made

A set belongs to one world: the tiny and medium synthetic worlds share file names
(`0001_c1s1_000001_00.jpg` exists in both, showing other people), so a set is keyed by dataset,
world size, seed and synthetic generator version (`world_of`), in its folder name and in its
MANIFEST, and a reader refuses a set made for another world (`find_camstyle_set`).

A set the user already has in the reference code's place,
`raw/<dataset>/bounding_box_train_camstyle_stargan4reid/`, is accepted for a real dataset after
checking every file (it has no MANIFEST; a real dataset has one world).
"""

import json
import os
import shlex
from pathlib import Path
from typing import Any, Iterable, Sequence

from reid_jax import atomic_io
from reid_jax import paths
from reid_jax.data import datasets
from reid_jax.errors import ReidError

MANIFEST = "MANIFEST.json"
PARTIAL = ".PARTIAL.json"  # written before the first fake: which generator the folder is being filled by
REAL = "real"
SYNTHETIC = "synthetic"
# Every trainer reads the seed-0 synthetic worlds (tfds_builders.load_split's default; no config
# selects another seed), so the seed is recorded but not a parameter of `world_of`.
WORLD_SEED = 0
_SHOWN_MISSING = 5


# --- worlds ------------------------------------------------------------------------------------------


def world_of(dataset: str, size: str | None) -> dict:
  """The world record of `dataset`'s training images: what a camera-style set is made for.

  Real datasets: `{"dataset": "market", "kind": "real"}` (`size` is ignored). Synthetic ones:
  `{"dataset", "kind": "synthetic", "size", "seed", "generator_version"}`, the generator version
  being the synthetic writer's (`reid_jax.data.synthetic.writer.GENERATOR_VERSION`), so a set made
  before the world's images changed is not taken for one of today's world.

  Raises:
    ReidError: `size` is not a synthetic world size (for a synthetic dataset).
  """
  spec = datasets.get_spec(dataset)
  if spec.source:  # a user's dataset: its canonical form, and its data's hash (`spec.name`)
    return {"dataset": spec.source, "kind": REAL, "data": spec.name}
  if not spec.synthetic:
    return {"dataset": dataset, "kind": REAL}
  from reid_jax.data.synthetic import writer  # pylint: disable=g-import-not-at-top
  if size not in writer.SIZES:
    raise ReidError(f"config data.synthetic_size={size!r}: choose one of {', '.join(writer.SIZES)}")
  return {"dataset": dataset, "kind": SYNTHETIC, "size": size, "seed": WORLD_SEED,
          "generator_version": writer.GENERATOR_VERSION}


def describe_world(world: dict | None) -> str:
  """`synth_market medium seed 0 (synthetic generator v1)`, `market (real)`, for messages."""
  if world is None:
    return "an unrecorded world (the set predates world records)"
  if world.get("kind") == REAL:
    return f"{world.get('dataset')} (real)"
  return (f"{world.get('dataset')} {world.get('size')} seed {world.get('seed')} "
          f"(synthetic generator v{world.get('generator_version')})")


def set_dir(data_dir, world: dict) -> Path:
  """The folder of `world`'s set: `camstyle/<dataset>` (real), `camstyle/<dataset>_<size>_seed<seed>`
  (synthetic)."""
  if world["kind"] == REAL:
    return paths.camstyle_dir(data_dir, world["dataset"])
  return paths.camstyle_dir(data_dir, world["dataset"], world["size"], world["seed"])


def recorded_world(record: dict, dataset: str) -> dict | None:
  """The world a MANIFEST / .PARTIAL record names; None when it names none and the dataset is
  synthetic. A real dataset's record without one (written before world records) is of its only
  world."""
  if "world" in record:
    return record["world"]
  name = record.get("dataset", dataset)
  if name in datasets.DATASETS and not datasets.get_spec(name).synthetic:
    return world_of(name, None)
  return None


def other_world(folder, record: dict, dataset: str, world: dict) -> str | None:
  """None when `record` (a MANIFEST / .PARTIAL of `folder`) is of `world`, else a message naming
  both worlds."""
  made_for = recorded_world(record, dataset)
  if made_for == world:
    return None
  return f"{folder} holds fakes made for {describe_world(made_for)}, not for {describe_world(world)}"


def stargan_command(data_dir, dataset: str, size: str | None) -> str:
  """The exact command that writes the set of `world_of(dataset, size)` under `data_dir`:
  `python -m experiments.stargan --dataset=D --data_dir=DIR`, plus
  `--config.data.synthetic_size=S` when S is not the default config's size (for synthetic data)."""
  from reid_jax.configs import stargan as stargan_config  # pylint: disable=g-import-not-at-top
  flags = [f"--dataset={dataset}", f"--data_dir={data_dir}"]
  if datasets.get_spec(dataset).synthetic:
    default = stargan_config.get_config(stargan_config.default_variant(dataset)).data.synthetic_size
    if size != default:
      flags.append(f"--config.data.synthetic_size={size}")
  return " ".join(["python -m experiments.stargan", *map(shlex.quote, flags)])


# --- file names --------------------------------------------------------------------------------------


def stem_of(filename: str) -> str:
  """`bounding_box_train/0002_c1s1_000451_03.jpg` -> `0002_c1s1_000451_03`."""
  return Path(filename).stem


def fake_name(stem: str, camera_1based: int) -> str:
  """`<stem>_fake_<j>.jpg`, j the 1-based camera number (`c<j>` in the file names), docs/hhl.md §10.7."""
  if camera_1based < 1:
    raise ValueError(f"camera numbers are 1-based, got {camera_1based}")
  return f"{stem}_fake_{camera_1based}.jpg"


def expected_names(stems: Iterable[str], num_cameras: int) -> list[str]:
  """Every fake's file name, image by image, cameras 1..C."""
  return [fake_name(stem, j) for stem in stems for j in range(1, num_cameras + 1)]


def missing_names(folder, stems: Iterable[str], num_cameras: int) -> list[str]:
  """The expected fakes absent from `folder`, in `expected_names` order (one directory listing)."""
  folder = Path(folder)
  present = set(os.listdir(folder)) if folder.is_dir() else set()
  return [name for name in expected_names(stems, num_cameras) if name not in present]


# --- MANIFEST.json -----------------------------------------------------------------------------------


def write_manifest(folder, *, dataset: str, num_cameras: int, num_images: int,
                   checkpoint_step: int, config_sha256: str, world: dict | None = None,
                   **extra: Any) -> dict:
  """Writes MANIFEST.json (atomically; call it after the last fake) and returns its content.

  `world` (`world_of`) is recorded under "world"; a real dataset's manifest may leave it out.
  """
  manifest = {
      "dataset": dataset,
      "cameras": list(range(1, num_cameras + 1)),
      "num_cameras": int(num_cameras),
      "num_images": int(num_images),
      "num_files": int(num_images) * int(num_cameras),
      "checkpoint_step": int(checkpoint_step),
      "config_sha256": config_sha256,
      **({} if world is None else {"world": dict(world)}),
      **extra,
  }
  atomic_io.write_json(Path(folder) / MANIFEST, manifest)
  return manifest


def read_manifest(folder) -> dict | None:
  """MANIFEST.json of `folder`, or None when the set is absent or incomplete."""
  path = Path(folder) / MANIFEST
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as error:
    raise ReidError(f"{path} is not valid JSON ({error}); delete it and rerun experiments.stargan "
                    "to finish the set") from None


# --- finding a set ----------------------------------------------------------------------------------


def _missing_message(folder, missing: Sequence[str], total: int) -> str:
  shown = ", ".join(missing[:_SHOWN_MISSING])
  more = f" and {len(missing) - _SHOWN_MISSING} more" if len(missing) > _SHOWN_MISSING else ""
  return f"{folder} lacks {len(missing)} of {total} camera-style files ({shown}{more})"


def _sets_of_other_worlds(data_dir, dataset: str, world: dict) -> list[str]:
  """'<folder> holds one for <world>' for each complete set of `dataset` made for another world."""
  root = Path(data_dir) / "camstyle"
  found = []
  if root.is_dir():
    for folder in sorted(root.iterdir()):
      if folder.name != dataset and not folder.name.startswith(dataset + "_"):
        continue
      try:
        manifest = read_manifest(folder)
      except ReidError:
        continue
      if manifest is not None and manifest.get("dataset", dataset) == dataset:
        made_for = recorded_world(manifest, dataset)
        if made_for != world:
          found.append(f"{folder} holds one for {describe_world(made_for)}")
  return found


def find_camstyle_set(data_dir, dataset: str, stems: Sequence[str], num_cameras: int,
                      world: dict | None = None) -> Path:
  """The folder holding `<stem>_fake_<j>.jpg` for every stem and j = 1..num_cameras, made for `world`.

  Looks in `set_dir(data_dir, world)` (complete when MANIFEST.json is there; its world must be
  `world`, and the files are checked too), then, for a real dataset, in the reference place
  `raw/<dataset>/bounding_box_train_camstyle_stargan4reid/` (every file checked).

  Args:
    data_dir: the data root.
    dataset: the target dataset.
    stems: the training images' file stems (`stem_of`) of that world.
    num_cameras: the dataset's camera count.
    world: `world_of(dataset, size)`; may be None for a real dataset (its only world), must be
      given for a synthetic one (ValueError otherwise: a programming error).

  Raises:
    ReidError: no complete set of that world; one line naming the first missing files, or both
      worlds when the set there (or another of the dataset's) was made for another, and ending
      with the exact command that writes the right set (`stargan_command`).
  """
  synthetic = datasets.get_spec(dataset).synthetic
  if world is None:
    if synthetic:
      raise ValueError(f"find_camstyle_set({dataset!r}): a synthetic dataset needs its world "
                       "(camstyle.world_of(dataset, size))")
    world = world_of(dataset, None)
  stems = list(stems)
  total = len(stems) * num_cameras
  ours = set_dir(data_dir, world)
  manifest = read_manifest(ours)
  problems = []
  if manifest is not None:
    mismatch = other_world(ours, manifest, dataset, world)
    if mismatch is not None:
      problems.append(f"{mismatch} ({ours / MANIFEST}): delete {ours}")
    elif manifest.get("num_cameras") != num_cameras:
      problems.append(f"{ours / MANIFEST} is for {manifest.get('num_cameras')} cameras, "
                      f"{dataset} has {num_cameras}")
    else:
      missing = missing_names(ours, stems, num_cameras)
      if not missing:
        return ours
      problems.append(_missing_message(ours, missing, total) + " although MANIFEST.json is present")
  elif ours.is_dir():
    problems.append(f"{ours} is incomplete (no {MANIFEST}: the writer was interrupted); rerun "
                    "the command below to finish it")
  reference = paths.reference_camstyle_dir(data_dir, dataset)
  if not synthetic and reference.is_dir():
    missing = missing_names(reference, stems, num_cameras)
    if not missing:
      return reference
    problems.append(_missing_message(reference, missing, total))
  if not problems:
    example = ", ".join(expected_names(stems[:1], min(num_cameras, 2)))
    others = _sets_of_other_worlds(data_dir, dataset, world)
    problems.append(f"no camera-style set for {describe_world(world)} in {ours} (expected files "
                    f"such as {example})" + (f"; {', '.join(others)}, another world" if others else ""))
  how = f"create it with: {stargan_command(data_dir, dataset, world.get('size'))}"
  if not synthetic:
    how = f"put the reference code's set in {reference} or {how}"
  raise ReidError("; ".join(problems) + "; " + how)
