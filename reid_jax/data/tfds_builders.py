"""TFDS builders for the six dataset names and random-access readers (docs/design.md §4, §9).

One builder code path serves all six names: `market`, `duke`, `msmt` read the extracted archive
in `raw/<name>/` (the TFDS manual_dir; never downloaded); `synth_market`, `synth_duke`,
`synth_msmt` first write their raw tree with `reid_jax.data.synthetic.write_dataset` and then
build exactly like their real twin.

Prepared data: `<data_dir>/tfds/<name>/<config>/1.0.0/`, array_record files, splits `train`,
`query`, `gallery`, features `image` (the original JPEG bytes, decoded to uint8 `[H, W, 3]` at the
file's own size), `pid` (-1 junk, 0 distractor kept), `camid` (0-based), `filename` (relative to
the raw folder). Records are stored in sorted-filename order (shuffling disabled), and the labels
of every split are also kept in the dataset's metadata so that `split_labels` reads them without
touching the images.

Builder configs (the folder name under `tfds/<name>/`):
  real market / duke: `default`; real msmt: `list_train+list_val` (default) or `list_train`
  (docs/arn_triplet_eval.md §4.3).
  synthetic: `<size>_seed<seed>` (e.g. `tiny_seed0`, `small_seed0`), so sizes coexist.
  a user's `folder:<path>` / `list:<path>` (`reid_jax.data.user_datasets`): builder `user`,
  config `<basename>_<sha1[:12]>` (changes when the data does), `tfds/user/<config>/1.0.0/`.

Synthetic raw trees: `raw/<name>/` is used when its SYNTHETIC.json names the requested size,
seed (and the current generator version), and written there when the folder is absent. When it
holds anything else, the requested tree lives in its own folder `raw/<name>_<size>_seed<seed>/`
(written on first use), so a tree of another size is never silently reused and tiny / small
coexist. The writer renders into a temporary sibling folder and renames it when complete.

Failure handling: layout, file names and counts are checked before anything is written; every
JPEG is decoded once while writing. Any failure raises ReidError naming the file, split or count
and the fix: for real datasets the original archive, for synthetic ones the `data_prep.synthetic`
command that re-renders the damaged files of that tree (there is no archive).
TFDS writes into `tfds/<name>/<config>/incomplete.XXXXXX_1.0.0/` and renames it to `1.0.0/` only
on success, removing it on failure, so nothing half-built is ever taken as prepared (a killed
process can leave an `incomplete.*` folder, which TFDS never reads).

Console: TFDS's own output during a build ("Downloading and preparing dataset ...", although
nothing is downloaded, its per-split "Generating ..." and "Shuffling ...incomplete..." bars, the
"downloaded and prepared" line) is kept off the console; one progress bar of ours counts the images
stored.
"""

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from reid_jax import paths
from reid_jax.data import parsing
from reid_jax.data import transforms
from reid_jax.data.datasets import SPLITS, DatasetSpec, get_spec
from reid_jax.errors import ReidError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow_datasets as tfds  # noqa: E402
from tensorflow_datasets.core.utils import tqdm_utils as _tfds_tqdm  # noqa: E402

VERSION = "1.0.0"
SYNTHETIC_MARKER = "SYNTHETIC.json"  # written last by reid_jax.data.synthetic.write_dataset
_VERIFY_THREADS = 8

_ARCHIVES = {
    "market": "Market-1501-v15.09.15.zip (Market-1501)",
    "duke": "DukeMTMC-reID.zip",
    "msmt": "MSMT17_V1.tar.gz or MSMT17_V2 (MSMT17)",
}


@dataclasses.dataclass
class ReidBuilderConfig(tfds.core.BuilderConfig):
  """What selects one prepared variant of a dataset.

  Attributes:
    raw_root: the extracted raw folder the builder reads (not part of the identity of the data
      for real sets; for synthetic ones fixed by size and seed).
    size, seed: synthetic tree parameters (None / 0 for real datasets).
    msmt_train: MSMT17 training lists (docs/arn_triplet_eval.md §4.3).
  """
  raw_root: str = ""
  size: str | None = None
  seed: int = 0
  msmt_train: str = "list_train+list_val"
  user_source: str = ""  # a user's dataset: its canonical `folder:<path>` / `list:<path>`


_MSMT_CONFIG = {"list_train+list_val": "list_train_val", "list_train": "list_train"}


def config_name(spec: DatasetSpec, size: str | None = None, seed: int = 0,
                msmt_train: str = "list_train+list_val") -> str:
  """The builder config name (folder under `tfds/<name>/`)."""
  if spec.layout == "msmt" and msmt_train not in _MSMT_CONFIG:
    raise ReidError(f"msmt_train={msmt_train!r}: choose one of {', '.join(_MSMT_CONFIG)}")
  if spec.source:
    return spec.name
  if spec.synthetic:
    name = f"{size}_seed{seed}"
    if spec.layout == "msmt" and msmt_train != "list_train+list_val":
      name += "_" + _MSMT_CONFIG[msmt_train]
    return name
  return _MSMT_CONFIG[msmt_train] if spec.layout == "msmt" else "default"


class _LocalDatasetInfo(tfds.core.DatasetInfo):
  """DatasetInfo that never looks for pre-computed info in the TFDS GCS bucket.

  TFDS 4.9.10 calls `initialize_from_bucket` for every builder whose data is not prepared yet; it
  leaks an empty `/tmp/tmp*tfds` folder per call even with GCS disabled, and these datasets are
  never there.
  """

  def initialize_from_bucket(self) -> None:
    pass


class _ReidBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared builder; subclasses fix `name` (one per dataset name)."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {str(VERSION): "Initial release."}

  @property
  def spec(self) -> DatasetSpec:
    source = getattr(self.builder_config, "user_source", "")
    return get_spec(source or self.name)

  def _info(self) -> tfds.core.DatasetInfo:
    return _LocalDatasetInfo(
        builder=self,
        description=f"{self.name} person re-identification crops (docs/design.md §4).",
        features=tfds.features.FeaturesDict({
            # docs/design.md §9: path / encoded bytes + encoding_format='jpeg' needs no TensorFlow.
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "pid": np.int64,
            "camid": np.int64,
            "filename": tfds.features.Text(),
        }),
        disable_shuffling=True,  # record i = i-th file in sorted order = split_labels row i
        metadata=tfds.core.MetadataDict(),
    )

  # TFDS prints these with termcolor (stdout) whatever the log level; nothing is downloaded here.
  def _log_download_bytes(self) -> None:
    logging.getLogger(__name__).debug("preparing %s (%s)", self.name, self.data_dir)

  def _log_download_done(self) -> None:
    logging.getLogger(__name__).debug("prepared %s (%s)", self.name, self.data_dir)

  def _split_generators(self, dl_manager):
    del dl_manager
    config = self.builder_config
    root = Path(config.raw_root)
    spec = self.spec
    self._where = {}
    if spec.source:
      from reid_jax.data import user_datasets  # pylint: disable=g-import-not-at-top
      records = user_datasets.check(spec.source)
      self._where = user_datasets.where_of(spec.source)
    else:
      records = {s: parsing.list_split(root, spec.layout, s, config.msmt_train) for s in SPLITS}
      check_counts(spec, records, root, config.msmt_train)
    self._fix = fix_advice(spec, root)
    self._bar = _progress(sum(len(rs) for rs in records.values()),
                          f"{self.name} {config.name}: storing images")
    self.info.metadata["labels"] = {
        s: {"pid": [r.pid for r in rs], "camid": [r.camid for r in rs],
            "filename": [r.filename for r in rs]} for s, rs in records.items()}
    self.info.metadata["raw_root"] = str(root)
    if spec.source:
      self.info.metadata["user_source"] = spec.source
    elif (root / SYNTHETIC_MARKER).is_file():
      self.info.metadata["synthetic"] = json.loads((root / SYNTHETIC_MARKER).read_text())
    return {s: self._generate_examples(rs) for s, rs in records.items()}

  def _generate_examples(self, records):
    if self._where:  # a user's dataset: name the list row, store non-JPEG images as JPEG
      def read(record):
        where = self._where.get(record.filename)
        fix = f"fix or replace the file, or remove {where}" if " row " in (where or "") or \
            " item " in (where or "") else self._fix
        return _read_verified(record, fix=fix, to_jpeg=True)
    else:
      read = functools.partial(_read_verified, fix=self._fix)
    with concurrent.futures.ThreadPoolExecutor(_VERIFY_THREADS) as pool:
      for record, data in zip(records, pool.map(read, records)):
        self._bar.update(1)
        yield record.filename, {"image": data, "pid": record.pid, "camid": record.camid,
                                "filename": record.filename}


_ARCHIVE_FIX = "restore it from the original archive and rerun"


def fix_advice(spec: DatasetSpec, root: Path) -> str:
  """How to repair a damaged file of the raw tree `root`, for messages.

  Real datasets: the original archive. Synthetic ones have none: the `data_prep.synthetic`
  command that re-renders the tree's missing or corrupt files (same bytes), with the size and
  seed its SYNTHETIC.json names.
  """
  if spec.source:
    return "fix or replace the file, or remove it"
  if not spec.synthetic:
    return _ARCHIVE_FIX
  try:
    info = json.loads((Path(root) / SYNTHETIC_MARKER).read_text())
    size, seed = info["size"], int(info["seed"])
  except (OSError, ValueError, KeyError, TypeError):
    return f"{spec.name} is generated, not extracted: delete {root} and rerun to regenerate it"
  return (f"{spec.name} is generated, not extracted: run `python -m data_prep.synthetic "
          f"--dataset={spec.name} --size={size} --seed={seed} --out_dir={root}` to re-render the "
          "missing or corrupt files, then rerun")


def _read_verified(record: parsing.Record, fix: str = _ARCHIVE_FIX, to_jpeg: bool = False) -> bytes:
  """The file's bytes after checking that they decode fully as an RGB-convertible image.

  to_jpeg: another format (PNG, BMP, ...) is re-encoded as a JPEG (quality 95) instead of refused.
  """
  try:
    data = record.path.read_bytes()
  except FileNotFoundError:
    raise ReidError(f"{record.path}: listed but missing; {fix}") from None
  try:
    with Image.open(record.path) as img:
      img.load()  # full decode: truncated files fail here, not at training time
      if img.format != "JPEG":
        if not to_jpeg:
          raise ValueError(f"{img.format} data in a .jpg file")
        import io  # pylint: disable=g-import-not-at-top
        out = io.BytesIO()
        img.convert("RGB").save(out, format="JPEG", quality=95)
        return out.getvalue()
  except Exception as e:  # PIL raises several unrelated types
    message = " ".join(str(e).split())  # one line
    raise ReidError(f"corrupt image {record.path}: {message}; {fix}") from None
  return data


def _progress(total: int, desc: str):
  """Our one bar for a build (TFDS's own are off, see `_quiet_tfds`), on stdout like every bar."""
  from reid_jax import progress  # pylint: disable=g-import-not-at-top
  return progress.Bar(total, desc, unit="img")


@contextlib.contextmanager
def _quiet_tfds():
  """TFDS's progress bars off for the duration of a build (restored after, also on failure)."""
  active = _tfds_tqdm._active  # pylint: disable=protected-access
  _tfds_tqdm.display_progress_bar(False)
  try:
    yield
  finally:
    _tfds_tqdm.display_progress_bar(active)


def _counts(records: list[parsing.Record]) -> tuple[int, int]:
  return len({r.pid for r in records}), len(records)


def check_counts(spec: DatasetSpec, records: dict, root: Path,
                 msmt_train: str = "list_train+list_val") -> None:
  """Real datasets: ids and images per split equal docs/arn_triplet_eval.md §4.4 (`spec.expected`).

  Synthetic ones: equal the counts their SYNTHETIC.json reports, when it reports any.
  """
  if spec.expected is not None:
    expected = {s: (c.ids, c.images) for s, c in spec.expected.items()}
    source = "docs/arn_triplet_eval.md §4.4"
  else:
    expected = _synthetic_expected(root, msmt_train)
    source = f"{root / SYNTHETIC_MARKER}"
  fix = ("the extracted archive is incomplete or modified: extract it again" if not spec.synthetic
         else f"the tree is incomplete or modified; {fix_advice(spec, root)}")
  for split, rs in records.items():
    if split not in expected:
      continue
    ids, images = _counts(rs)
    want_ids, want_images = expected[split]
    if images != want_images or (want_ids is not None and ids != want_ids):
      raise ReidError(
          f"{spec.name} {split}: found {images} images of {ids} ids in {root}, expected "
          f"{want_images} images of {want_ids} ids ({source}); " + fix)


def _synthetic_expected(root: Path, msmt_train: str) -> dict:
  """{split: (ids or None, images)} from SYNTHETIC.json's 'counts'."""
  marker = root / SYNTHETIC_MARKER
  if not marker.is_file():
    return {}
  counts = json.loads(marker.read_text()).get("counts") or {}
  if msmt_train == "list_train" and "list_train" in counts:
    counts = {**counts, "train": counts["list_train"]}
  out = {}
  for split in SPLITS:
    c = counts.get(split)
    if isinstance(c, int):
      out[split] = (None, c)
    elif isinstance(c, dict) and "images" in c:
      out[split] = (c.get("ids"), c["images"])
  return out


class _QuietTfdsNotices(logging.Filter):
  """Drops TFDS's INFO chatter and the warnings every custom-config builder triggers."""

  _NOISE = ("Using custom data configuration", "has no dataset_info.json")

  def filter(self, record: logging.LogRecord) -> bool:
    if "tensorflow_datasets" in record.pathname and record.levelno < logging.WARNING:
      return False
    message = record.getMessage()
    return not any(n in message for n in self._NOISE)


logging.getLogger("absl").addFilter(_QuietTfdsNotices())

_BUILDERS = {
    name: type(f"Reid_{name}", (_ReidBuilder,), {"name": name}, skip_registration=True)
    for name in ("market", "duke", "msmt", "synth_market", "synth_duke", "synth_msmt", "user")
}


# ---------------------------------------------------------------------------------------------
# Raw folders.


def missing_dataset_message(spec: DatasetSpec, root: Path) -> str:
  return (f"dataset {spec.name} not found: extract {_ARCHIVES[spec.name]} so that {root} holds "
          f"{parsing.required_layout(spec.layout)} (the project never downloads real datasets)")


def synthetic_raw_root(dataset: str, data_dir, size: str = "tiny", seed: int = 0,
                       create: bool = True) -> Path:
  """The raw folder of the synthetic tree (size, seed), written there first when `create`.

  `raw/<dataset>` when it holds that tree or does not exist; otherwise (it holds another size,
  seed or generator version) `raw/<dataset>_<size>_seed<seed>`.
  """
  from reid_jax.data import synthetic  # engineer A's writer (numpy + PIL only)

  primary = paths.raw_dir(data_dir, dataset)
  if synthetic.is_complete(primary, dataset, size, seed):
    return primary
  root = primary if not primary.exists() else primary.with_name(f"{dataset}_{size}_seed{seed}")
  if create:
    # Atomic (temporary sibling + rename); a no-op for a complete tree; refuses a foreign folder.
    # Same bytes with any number of worker processes; rendering is the slow part (Duke medium:
    # about 70 images/s on one core).
    # verify=False: the build decodes every image anyway, and a damaged one is reported with the
    # command that repairs it (`fix_advice`).
    synthetic.write_dataset(dataset, root, size=size, seed=seed, progress=True,
                            workers=min(4, os.cpu_count() or 1), verify=False)
  return root


def raw_root(dataset: str, data_dir, size: str = "tiny", seed: int = 0) -> Path:
  """The extracted folder a dataset is built from (synthetic: written on first use)."""
  spec = get_spec(dataset)
  if spec.source:  # a user's dataset: its folder, or the list file's folder
    from reid_jax.data import user_datasets  # pylint: disable=g-import-not-at-top
    return user_datasets.resolve(dataset).root
  if spec.synthetic:
    return synthetic_raw_root(dataset, data_dir, size, seed)
  root = paths.raw_dir(data_dir, dataset)
  if not root.is_dir() or not any(root.iterdir()):
    raise ReidError(missing_dataset_message(spec, root))
  return root


# ---------------------------------------------------------------------------------------------
# Public readers.


def builder(dataset: str, data_dir=None, size: str = "tiny", seed: int = 0,
            msmt_train: str = "list_train+list_val", prepare: bool = True):
  """The TFDS builder of a dataset variant, prepared first unless `prepare=False`."""
  spec = get_spec(dataset)
  data_dir = paths.default_data_dir() if data_dir is None else Path(data_dir)
  name = config_name(spec, size, seed, msmt_train)
  cls = _BUILDERS["user" if spec.source else dataset]
  probe = cls(
      data_dir=os.fspath(paths.tfds_dir(data_dir)),
      config=ReidBuilderConfig(name=name, size=size if spec.synthetic else None,
                               seed=seed if spec.synthetic else 0, msmt_train=msmt_train,
                               user_source=spec.source))
  if probe.is_prepared() or not prepare:
    return probe
  # Locate (or write) the raw tree only when a build is needed.
  root = raw_root(dataset, data_dir, size, seed)
  b = cls(
      data_dir=os.fspath(paths.tfds_dir(data_dir)),
      config=ReidBuilderConfig(name=name, raw_root=str(root), size=probe.builder_config.size,
                               seed=probe.builder_config.seed, msmt_train=msmt_train,
                               user_source=spec.source))
  with _quiet_tfds():
    try:
      b.download_and_prepare(
          file_format="array_record",
          download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(root)))
    finally:
      bar = getattr(b, "_bar", None)
      if bar is not None:
        bar.close()
  return cls(data_dir=os.fspath(paths.tfds_dir(data_dir)), config=probe.builder_config)


class ReidSource(Sequence):
  """Random-access records of one split: `{'image': uint8 [H, W, 3], 'pid', 'camid', 'filename'}`.

  `encoded(i)` gives the JPEG bytes instead of the decoded image (for decoding in worker
  threads); `labels` holds the split's numpy `pid`, `camid`, `filename` arrays.
  """

  def __init__(self, data_source, labels: dict, dataset: str, split: str):
    self._source = data_source
    self.labels = labels
    self.dataset = dataset
    self.split = split
    if len(data_source) != len(labels["pid"]):
      raise ReidError(f"{dataset} {split}: {len(data_source)} records but {len(labels['pid'])} "
                      "labels in the prepared dataset; delete its folder under tfds/ and rerun")

  def __len__(self) -> int:
    return len(self._source)

  def encoded(self, index: int) -> bytes:
    return self._source[int(index)]["image"]

  def encoded_many(self, indices) -> list[bytes]:
    return [r["image"] for r in self._source.__getitems__([int(i) for i in indices])]

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    index = int(index)
    if index < 0:
      index += len(self)
    record = self._source[index]
    return {"image": transforms.decode(record["image"], self.labels["filename"][index]),
            "pid": int(record["pid"]), "camid": int(record["camid"]),
            "filename": record["filename"].decode() if isinstance(record["filename"], bytes)
            else str(record["filename"])}


def _labels_from_builder(b, split: str) -> dict:
  labels = b.info.metadata["labels"][split]
  return {"pid": np.asarray(labels["pid"], np.int64),
          "camid": np.asarray(labels["camid"], np.int64),
          "filename": np.asarray(labels["filename"], dtype=object)}


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ReidError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def load_split(dataset: str, split: str, data_dir=None, size: str = "tiny", seed: int = 0,
               msmt_train: str = "list_train+list_val") -> ReidSource:
  """Random-access source of one split (prepared on first use; synthetic trees written first).

  Args:
    dataset: one of the six names (`reid_jax.data.datasets.DATASETS`).
    split: 'train' | 'query' | 'gallery'.
    data_dir: the data root (default `$REID_JAX_DATA` or `~/reid_jax_data`).
    size, seed: synthetic tree parameters (ignored for real datasets).
    msmt_train: MSMT17 training lists, 'list_train+list_val' (default) or 'list_train'.
  """
  _check_split(split)
  b = builder(dataset, data_dir, size, seed, msmt_train)
  source = b.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})
  return ReidSource(source, _labels_from_builder(b, split), dataset, split)


def split_labels(dataset: str, split: str, data_dir=None, size: str = "tiny", seed: int = 0,
                 msmt_train: str = "list_train+list_val") -> dict:
  """`{'pid': int64 [N], 'camid': int64 [N], 'filename': object [N]}` without reading images.

  Row i describes record i of `load_split(...)`.
  """
  _check_split(split)
  return _labels_from_builder(builder(dataset, data_dir, size, seed, msmt_train), split)
