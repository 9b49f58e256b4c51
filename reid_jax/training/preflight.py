"""Checks every command runs before any long work (docs/design.md §3).

A command first makes sure that what it will read exists and is usable, so that a missing target
dataset, a corrupt image, a bad pretrained file, a camera-style folder of another generator or a
missing checkpoint is reported in seconds, not after training:

  preflight.datasets(data_dir, {"synth_duke": "train", "market": "test"}, size="tiny")
  preflight.pretrained(config.model, data_dir)

Cheap checks come first (every real dataset's folder), then the slower preparation (writing a
synthetic tree, building TFDS splits, which decodes every JPEG once and so finds corrupt ones).
"""

from pathlib import Path

from reid_jax.data import datasets as datasets_lib
from reid_jax.errors import ReidError
from reid_jax.errors import UsageError


def dataset_names(*names: str) -> None:
  """Each name is one of the six datasets or a user's `folder:<path>` / `list:<path>` (a usage error
  names the known ones; a user's dataset is read and checked here: a missing file, a bad row, an
  empty split or a query identity absent from the gallery is one line naming the file and row)."""
  from reid_jax.data import user_datasets  # pylint: disable=g-import-not-at-top
  for name in names:
    if user_datasets.is_user(name):
      user_datasets.check(name)
    elif name not in datasets_lib.DATASETS:
      raise UsageError(f"unknown dataset {name!r}; choose one of "
                       f"{', '.join(datasets_lib.DATASETS)}, or your own as "
                       f"{datasets_lib.USER_FORMS}")


def datasets(data_dir, names, size: str = "tiny") -> dict:
  """Prepares every dataset in `names` (their TFDS splits built; synthetic trees written first).

  Every real dataset's folder is checked before anything is prepared, so a missing one is the
  first thing said. Returns `{name: builder}`.
  """
  from reid_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top
  names = list(dict.fromkeys(names))
  missing = []
  for name in names:
    spec = datasets_lib.get_spec(name)
    if spec.synthetic:
      continue
    if spec.source:  # a user's dataset: every row checked (no image opened yet)
      from reid_jax.data import user_datasets  # pylint: disable=g-import-not-at-top
      user_datasets.check(name)
      continue
    probe = tfds_builders.builder(name, data_dir, size, prepare=False)
    if not probe.is_prepared():
      try:
        tfds_builders.raw_root(name, data_dir)
      except ReidError as error:  # the missing-dataset message; every missing one is said at once
        missing.append(str(error))
  if missing:
    raise ReidError("; ".join(missing))
  return {name: tfds_builders.builder(name, data_dir, size) for name in names}


def pretrained(model_config, data_dir) -> None:
  """`model.pretrained` names a readable file whose keys and shapes fit `model.arch` strictly.

  The synthetic testbed's trunk (`synth_pretrain:<variant>`) may be missing: it is built when the
  model is initialised, with a line saying so.
  """
  from reid_jax.training import pretrain  # pylint: disable=g-import-not-at-top
  value = model_config.pretrained
  if not value:
    return
  if pretrain.is_reference(value):
    variant = value[len(pretrain.PREFIX):]
    try:
      pretrain.get_config(variant)
    except ValueError as error:
      raise UsageError(f"config model.pretrained={value!r}: {error}") from None
    return
  path = Path(value)
  if not path.is_file():
    raise ReidError(f"config model.pretrained={value}: no such file; give the path of "
                    "torchvision's ImageNet ResNet-50 weights (.pth or .safetensors)")
  from reid_jax.models import torchvision_import  # pylint: disable=g-import-not-at-top
  torchvision_import.load_trunk(path, model_config.arch)  # names a missing key or shape


def checkpoint_exists(workdir, advice: str = "train first") -> None:
  """The workdir holds a config.json and a checkpoint (for evaluation or --generate_only);
  `advice` ends the message when the checkpoint is missing."""
  from reid_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir = Path(workdir)
  if not (workdir / workdir_lib.CONFIG_FILE).is_file():
    raise ReidError(f"{workdir / workdir_lib.CONFIG_FILE} not found: {workdir} is not a "
                    "training workdir (train first)")
  if not workdir_lib.has_checkpoint(workdir):
    raise ReidError(f"no checkpoint in {workdir / workdir_lib.CHECKPOINT_DIR}: {advice}")


def bn_groups(model_config) -> None:
  """`model.bn_groups` is a positive integer (its divisibility is checked with the streams)."""
  groups = model_config.get("bn_groups", 1)
  if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
    raise ReidError(f"config field model.bn_groups={groups!r}: choose a positive integer (1: "
                    "BatchNorm over the whole pass; 2: the reference's two-GPU DataParallel, "
                    "docs/hhl.md §14)")


def training_run(workdir, config, data_dir, src: str, tgt: str) -> None:
  """What a re-ID training command checks before any long work: the workdir's config (locked once
  a checkpoint exists), `model.bn_groups`, the pretrained file, then both datasets (prepared)."""
  from reid_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir_lib.check(workdir, config, ignore=("config_name",))
  bn_groups(config.model)
  pretrained(config.model, data_dir)
  datasets(data_dir, (src, tgt), size=config.data.synthetic_size)


def latest_checkpoint_step(workdir) -> int:
  from reid_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  directory = Path(workdir) / workdir_lib.CHECKPOINT_DIR
  return max(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def camstyle_destination(data_dir, dataset: str, identity: dict, world: dict) -> None:
  """The camera-style folder of `world` (`camstyle.world_of`) is empty, or being (or was) filled
  for that world by the same generator (`identity`: checkpoint step, config hash)."""
  import json  # pylint: disable=g-import-not-at-top
  from reid_jax.data import camstyle  # pylint: disable=g-import-not-at-top
  from reid_jax.training import stargan  # pylint: disable=g-import-not-at-top
  folder = camstyle.set_dir(data_dir, world)
  for name in (camstyle.MANIFEST, camstyle.PARTIAL):
    path = folder / name
    if path.is_file():
      try:
        saved = json.loads(path.read_text())
      except json.JSONDecodeError:
        raise ReidError(f"{path} is not valid JSON; delete {folder} to rewrite the set") from None
      stargan.check_same_generator(path, saved, identity, dataset, world)  # the writer's check
      return


def camstyle_set(data_dir, dataset: str, size: str) -> Path:
  """The complete camera-style set of `dataset`'s training images in the world of `size`, before any
  training (HHL reads it every step).

  Reads the train split's file names from the prepared dataset's metadata (building it first if
  needed: `tfds_builders.split_labels`, no image decoded), the camera count from
  `reid_jax.data.datasets`, and returns `camstyle.find_camstyle_set(..., world=world_of(dataset,
  size))`: a set of another world is refused naming both, a missing or incomplete one with a line
  ending in the `experiments.stargan` command that writes it.
  """
  from reid_jax.data import camstyle  # pylint: disable=g-import-not-at-top
  from reid_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top
  world = camstyle.world_of(dataset, size)
  labels = tfds_builders.split_labels(dataset, "train", data_dir, size=size)
  stems = [camstyle.stem_of(str(f)) for f in labels["filename"]]
  return camstyle.find_camstyle_set(data_dir, dataset, stems,
                                    datasets_lib.get_spec(dataset).num_cameras, world=world)
