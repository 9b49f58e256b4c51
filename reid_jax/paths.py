"""Where data, prepared datasets, camera-style sets and workdirs live (docs/design.md §3-§5)."""

import os
from pathlib import Path

DATA_DIR_ENV = "REID_JAX_DATA"


def default_data_dir() -> Path:
  """`$REID_JAX_DATA`, else `~/reid_jax_data`."""
  return Path(os.environ.get(DATA_DIR_ENV, Path.home() / "reid_jax_data"))


def raw_dir(data_dir, dataset: str) -> Path:
  """The extracted dataset, untouched (the TFDS manual_dir): `<data_dir>/raw/<dataset>` (a user's
  `folder:`/`list:` dataset: `<data_dir>/raw/<basename>_<sha1[:12]>`, never used to read it)."""
  from reid_jax.data import datasets  # pylint: disable=g-import-not-at-top
  dataset = datasets.file_name(dataset)
  return Path(data_dir) / "raw" / dataset


def tfds_dir(data_dir) -> Path:
  """The TFDS data_dir holding prepared array_record files."""
  return Path(data_dir) / "tfds"


def camstyle_dir(data_dir, dataset: str, size: str | None = None, seed: int = 0) -> Path:
  """The camera-style set written by experiments.stargan for one world: `<data_dir>/camstyle/<dataset>`
  for a real dataset (size None), `<data_dir>/camstyle/<dataset>_<size>_seed<seed>` for a synthetic
  one, so that the sets of two worlds of the same dataset never share a folder (their file names
  coincide). `reid_jax.data.camstyle.set_dir` picks the arguments from a world record."""
  from reid_jax.data import datasets  # pylint: disable=g-import-not-at-top
  dataset = datasets.file_name(dataset)
  name = dataset if size is None else f"{dataset}_{size}_seed{int(seed)}"
  return Path(data_dir) / "camstyle" / name


def reference_camstyle_dir(data_dir, dataset: str) -> Path:
  """Where the HHL reference code keeps its camera-style set (accepted as an alternative)."""
  return raw_dir(data_dir, dataset) / "bounding_box_train_camstyle_stargan4reid"


def default_workdir(experiment: str, src: str, tgt: str | None = None, variant: str | None = None) -> Path:
  """`workdirs/<experiment>/<src>_to_<tgt>[_<variant>]` (or `<dataset>[_<variant>]`); a user's
  dataset is named `<basename>_<sha1[:12]>` there (`datasets.file_name`)."""
  from reid_jax.data import datasets  # pylint: disable=g-import-not-at-top
  src = datasets.file_name(src)
  tgt = None if tgt is None else datasets.file_name(tgt)
  name = src if tgt is None else f"{src}_to_{tgt}"
  if variant:
    name = f"{name}_{variant}"
  return Path("workdirs") / experiment / name
