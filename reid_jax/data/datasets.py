"""The six dataset names and what is fixed about each (docs/arn_triplet_eval.md §4, docs/design.md §4, §6).

A `DatasetSpec` is plain data shared by the synthetic writer, the TFDS builders, the samplers and the
StarGAN trainer. The synthetic datasets share the layout, parse rules and camera count of their real
twin; only the real ones have fixed expected counts.
"""

import dataclasses

from reid_jax.errors import ReidError


@dataclasses.dataclass(frozen=True)
class SplitCounts:
  ids: int
  images: int


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  name: str
  layout: str  # 'market' | 'duke' | 'msmt': folder layout and file-name rule of the real dataset
  num_cameras: int
  synthetic: bool
  # Expected counts of the real dataset (docs/arn_triplet_eval.md §4.4); None for synthetic ones, whose
  # counts follow from the writer's --size.
  expected: dict[str, SplitCounts] | None = None
  # A user's dataset (`reid_jax.data.user_datasets`): its canonical `folder:<path>` / `list:<path>`
  # ('' for the six named ones); `name` is then `<basename>_<sha1[:12]>` and layout 'folder' | 'list'.
  source: str = ""


MARKET_COUNTS = {  # docs/arn_triplet_eval.md §4.4; gallery holds junk (-1) and distractors (0)
    "train": SplitCounts(ids=751, images=12936),
    "query": SplitCounts(ids=750, images=3368),
    "gallery": SplitCounts(ids=752, images=19732),
}
DUKE_COUNTS = {  # docs/arn_triplet_eval.md §4.4
    "train": SplitCounts(ids=702, images=16522),
    "query": SplitCounts(ids=702, images=2228),
    "gallery": SplitCounts(ids=1110, images=17661),
}
MSMT_COUNTS = {  # docs/arn_triplet_eval.md §4.4, train = list_train + list_val
    "train": SplitCounts(ids=1041, images=32621),
    "query": SplitCounts(ids=3060, images=11659),
    "gallery": SplitCounts(ids=3060, images=82161),
}

DATASETS = {
    "market": DatasetSpec("market", "market", 6, False, MARKET_COUNTS),
    "duke": DatasetSpec("duke", "duke", 8, False, DUKE_COUNTS),
    "msmt": DatasetSpec("msmt", "msmt", 15, False, MSMT_COUNTS),
    "synth_market": DatasetSpec("synth_market", "market", 6, True),
    "synth_duke": DatasetSpec("synth_duke", "duke", 8, True),
    "synth_msmt": DatasetSpec("synth_msmt", "msmt", 15, True),
}

SPLITS = ("train", "query", "gallery")


USER_FORMS = "folder:/path/to/market_like_folder or list:/path/to/list.csv (or .json)"


def get_spec(name: str) -> DatasetSpec:
  """The spec of a dataset name or of a user's `folder:...` / `list:...` dataset, or a ReidError
  listing the known names."""
  from reid_jax.data import user_datasets  # pylint: disable=g-import-not-at-top
  if user_datasets.is_user(name):
    return user_datasets.spec(name)
  try:
    return DATASETS[name]
  except KeyError:
    raise ReidError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or your own "
                    f"as {USER_FORMS}") from None


def file_name(name: str) -> str:
  """The dataset's name in file and folder names: the name itself, `<basename>_<sha1[:12]>` for a
  user's dataset (whose `folder:/...` form holds slashes)."""
  from reid_jax.data import user_datasets  # pylint: disable=g-import-not-at-top
  return user_datasets.spec(name).name if user_datasets.is_user(name) else name
