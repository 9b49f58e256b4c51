"""The camera-style set on disk: names, MANIFEST.json, completeness (docs/hhl.md §10.7, docs/design.md §4).

  <data_dir>/camstyle/<dataset>/<stem>_fake_<j>.jpg     j = 1..C, the image's own camera included
  <data_dir>/camstyle/<dataset>/MANIFEST.json           written last: its presence means complete

A set the user already has in the reference code's place,
`raw/<dataset>/bounding_box_train_camstyle_stargan4reid/`, is accepted after checking every file.
"""

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from reid_jax import atomic_io
from reid_jax import paths
from reid_jax.errors import ReidError

MANIFEST = "MANIFEST.json"
PARTIAL = ".PARTIAL.json"  # written before the first fake: which generator the folder is being filled by
_SHOWN_MISSING = 5


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


def write_manifest(folder, *, dataset: str, num_cameras: int, num_images: int,
                   checkpoint_step: int, config_sha256: str, **extra: Any) -> dict:
  """Writes MANIFEST.json (atomically; call it after the last fake) and returns its content."""
  manifest = {
      "dataset": dataset,
      "cameras": list(range(1, num_cameras + 1)),
      "num_cameras": int(num_cameras),
      "num_images": int(num_images),
      "num_files": int(num_images) * int(num_cameras),
      "checkpoint_step": int(checkpoint_step),
      "config_sha256": config_sha256,
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


def _how_to_create(data_dir, dataset: str) -> str:
  return (f"create it with `python -m experiments.stargan --dataset={dataset} --data_dir={data_dir}` "
          f"(writes {paths.camstyle_dir(data_dir, dataset)}), or put the reference code's set in "
          f"{paths.reference_camstyle_dir(data_dir, dataset)}")


def _missing_message(folder, missing: Sequence[str], total: int) -> str:
  shown = ", ".join(missing[:_SHOWN_MISSING])
  more = f" and {len(missing) - _SHOWN_MISSING} more" if len(missing) > _SHOWN_MISSING else ""
  return f"{folder} lacks {len(missing)} of {total} camera-style files ({shown}{more})"


def find_camstyle_set(data_dir, dataset: str, stems: Sequence[str], num_cameras: int) -> Path:
  """The folder holding `<stem>_fake_<j>.jpg` for every stem and j = 1..num_cameras.

  Looks in `camstyle/<dataset>/` (complete when MANIFEST.json is there; the files are checked too),
  then in the reference place `raw/<dataset>/bounding_box_train_camstyle_stargan4reid/` (every file
  checked).

  Raises:
    ReidError: neither holds a complete set; names the first missing files and how to create them.
  """
  stems = list(stems)
  total = len(stems) * num_cameras
  ours = paths.camstyle_dir(data_dir, dataset)
  manifest = read_manifest(ours)
  problems = []
  if manifest is not None:
    if manifest.get("num_cameras") != num_cameras:
      problems.append(f"{ours / MANIFEST} is for {manifest.get('num_cameras')} cameras, "
                      f"{dataset} has {num_cameras}")
    else:
      missing = missing_names(ours, stems, num_cameras)
      if not missing:
        return ours
      problems.append(_missing_message(ours, missing, total) + " although MANIFEST.json is present")
  elif ours.is_dir():
    problems.append(f"{ours} is incomplete (no {MANIFEST}: the writer was interrupted); rerun "
                    f"experiments.stargan --dataset={dataset} to finish it")
  reference = paths.reference_camstyle_dir(data_dir, dataset)
  if reference.is_dir():
    missing = missing_names(reference, stems, num_cameras)
    if not missing:
      return reference
    problems.append(_missing_message(reference, missing, total))
  if not problems:
    example = ", ".join(expected_names(stems[:1], min(num_cameras, 2)))
    problems.append(f"no camera-style set for {dataset} (expected files such as {example})")
  raise ReidError("; ".join(problems) + "; " + _how_to_create(data_dir, dataset))
