"""Users' own datasets: `folder:<root>` and `list:<file.csv|file.json>` (docs/design.md §4).

Every command takes them wherever it takes a dataset name (`--src`, `--tgt`, `--dataset`):

  folder:/data/mine   a folder in Market-1501's layout: bounding_box_train/, query/,
                      bounding_box_test/ of `<pid>_c<cam>s<seq>_<frame>_<n>.jpg` (any number of
                      digits, any camera count; pid -1 (junk) and 0 (distractors) as in Market)
  list:/data/mine.csv a CSV (header `path,pid,camid,split`) or JSON list (`[{"path", "pid",
                      "camid", "split"}, ...]` or `[[path, pid, camid, split], ...]`); split one
                      of train, query, gallery; paths relative to the list file's folder or
                      absolute

Rules (checked before any long work, each failure one line naming the file and row): pid an
integer >= 0 (-1, junk, only in the gallery); camera ids 1-based integers (1..C as in Market's
`c1`, C = the largest one seen: the dataset's camera count); every listed file present, no path
twice in a split; every split non-empty; every query identity present in the gallery. The images
are decoded once when the TFDS splits are built (a corrupt one names its file and row); non-JPEG
images (PNG, ...) are stored re-encoded as JPEG.

The dataset's spec name (its TFDS config under `tfds/user/`, its camera-style and workdir folder
names) is `<basename>_<sha1[:12]>`: the hash of the resolved path and the list file's bytes (list
form) or the sorted (relative name, size) pairs of its image files (folder form), so that changed
data is prepared afresh and never mistaken for the old.
"""

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
from pathlib import Path

from reid_jax.data import parsing
from reid_jax.data.datasets import SPLITS, DatasetSpec
from reid_jax.errors import ReidError

PREFIXES = ("folder", "list")
FOLDER_NAME = re.compile(r"^(-1|\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.jpg$")
LIST_COLUMNS = ("path", "pid", "camid", "split")
JUNK_PID = -1


def is_user(name: str) -> bool:
  """`folder:...` or `list:...`."""
  kind, sep, _ = str(name).partition(":")
  return bool(sep) and kind in PREFIXES


@dataclasses.dataclass(frozen=True)
class Row:
  """One image of a user dataset and where it was given (for messages)."""
  record: parsing.Record
  split: str
  where: str  # 'list.csv row 7' or the file's path


def _split_name(name: str) -> tuple[str, Path]:
  kind, _, rest = str(name).partition(":")
  if not rest:
    raise ReidError(f"dataset {name!r}: give a path, as {kind}:/path/to/"
                    + ("market_like_folder" if kind == "folder" else "list.csv"))
  return kind, Path(os.path.expanduser(rest)).resolve()


def canonical(name: str) -> str:
  """`folder:<absolute path>` / `list:<absolute path>` (the form commands record)."""
  kind, path = _split_name(name)
  return f"{kind}:{path}"


def _slug(path: Path, digest: str) -> str:
  base = re.sub(r"[^a-z0-9]+", "_", path.stem.lower()).strip("_") or "data"
  return f"{base[:40]}_{digest[:12]}"


# --- the folder form ---------------------------------------------------------------------------------


def _folder_files(root: Path) -> dict[str, list[Path]]:
  if not root.is_dir():
    raise ReidError(f"dataset folder:{root}: no such folder; give a folder holding "
                    f"{parsing.required_layout('market')}")
  out = {}
  for split, sub in parsing.FOLDER_SPLITS.items():
    folder = root / sub
    if not folder.is_dir():
      raise ReidError(f"dataset folder:{root}: {sub}/ is missing; the folder must hold "
                      f"{parsing.required_layout('market')}, files named "
                      "<pid>_c<camera>s<seq>_<frame>_<n>.jpg")
    out[split] = sorted(p for p in folder.iterdir() if p.name.endswith(".jpg") and p.is_file())
  return out


def _folder_rows(root: Path, files: dict[str, list[Path]]) -> list[Row]:
  rows = []
  for split, paths in files.items():
    for path in paths:
      m = FOLDER_NAME.match(path.name)
      if m is None:
        raise ReidError(f"{path}: not a Market-style file name (<pid>_c<camera>s<seq>_<frame>_<n>"
                        ".jpg, e.g. 0002_c1s1_000451_03.jpg); rename or remove the file")
      pid, camera = int(m.group(1)), int(m.group(2))
      rel = f"{path.parent.name}/{path.name}"
      rows.append(_row(path, pid, camera, split, rel, str(path)))
  return rows


# --- the list form -----------------------------------------------------------------------------------


def _read_list(path: Path) -> list[tuple[str, list]]:
  """`[(where, [path, pid, camid, split]), ...]` of a CSV or JSON list."""
  if not path.is_file():
    raise ReidError(f"dataset list:{path}: no such file; give a CSV (path,pid,camid,split) or "
                    "JSON list")
  text = path.read_text(encoding="utf-8-sig")
  if path.suffix.lower() == ".json":
    try:
      data = json.loads(text)
    except json.JSONDecodeError as error:
      raise ReidError(f"{path}: not valid JSON ({error})") from None
    if isinstance(data, dict):
      data = data.get("images", data.get("rows"))
    if not isinstance(data, list):
      raise ReidError(f"{path}: expected a JSON list of {{\"path\", \"pid\", \"camid\", \"split\"}} "
                      "objects (or of [path, pid, camid, split] lists)")
    out = []
    for i, item in enumerate(data):
      where = f"{path.name} item {i}"
      if isinstance(item, dict):
        missing = [c for c in LIST_COLUMNS if c not in item]
        if missing:
          raise ReidError(f"{where}: missing {', '.join(missing)} (each item needs "
                          f"{', '.join(LIST_COLUMNS)})")
        out.append((where, [item[c] for c in LIST_COLUMNS]))
      elif isinstance(item, list) and len(item) == 4:
        out.append((where, list(item)))
      else:
        raise ReidError(f"{where}: expected an object with {', '.join(LIST_COLUMNS)} or a "
                        f"[path, pid, camid, split] list, got {json.dumps(item)[:80]}")
    return out
  lines = list(csv.reader(io.StringIO(text)))
  out = []
  start = 0
  if lines and [c.strip().lower() for c in lines[0]][:4] == list(LIST_COLUMNS):
    start = 1
  for number, cells in enumerate(lines[start:], start + 1):
    if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
      continue
    where = f"{path.name} row {number}"
    if len(cells) != 4:
      raise ReidError(f"{where}: expected 4 columns (path,pid,camid,split), got {len(cells)}: "
                      f"{','.join(cells)[:80]}")
    out.append((where, [c.strip() for c in cells]))
  return out


def _integer(value, where: str, column: str) -> int:
  if isinstance(value, bool):
    value = None
  elif isinstance(value, int):
    return value
  elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
    return int(value)
  raise ReidError(f"{where}: {column} {value!r} is not an integer")


def _list_rows(list_path: Path, entries) -> list[Row]:
  rows = []
  for where, (rel, pid, camid, split) in entries:
    if not isinstance(rel, str) or not rel.strip():
      raise ReidError(f"{where}: empty path")
    split = str(split).strip().lower()
    if split not in SPLITS:
      raise ReidError(f"{where}: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    pid = _integer(pid, where, "pid")
    camera = _integer(camid, where, "camid")
    rel = rel.strip().replace("\\", "/")
    path = Path(rel) if Path(rel).is_absolute() else list_path.parent / rel
    rows.append(_row(path, pid, camera, split, rel, where))
  return rows


def _row(path: Path, pid: int, camera: int, split: str, filename: str, where: str) -> Row:
  if camera < 1:
    raise ReidError(f"{where}: camera id {camera} out of range: camera ids are 1-based (1..C, as "
                    "Market's c1); add 1 to every camera id if yours start at 0")
  if pid < JUNK_PID or (pid == JUNK_PID and split != "gallery"):
    raise ReidError(f"{where}: pid {pid} not allowed in {split}: pids are integers >= 0, -1 "
                    "(junk) only in the gallery")
  return Row(parsing.Record(path, pid, camera - 1, filename), split, where)


# --- resolution --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UserDataset:
  spec: DatasetSpec
  source: str  # canonical `folder:<path>` / `list:<path>`
  root: Path  # the folder (folder form) or the list file's folder
  rows: tuple[Row, ...]


_CACHE: dict = {}


def _stamp(kind: str, path: Path):
  """Cheap change detector for the cache: mtimes of what is listed or hashed."""
  try:
    if kind == "list":
      st = path.stat()
      return (st.st_mtime_ns, st.st_size)
    return tuple((path / sub).stat().st_mtime_ns for sub in parsing.FOLDER_SPLITS.values())
  except OSError:
    return None


def resolve(name: str) -> UserDataset:
  """The spec and rows of a `folder:` / `list:` dataset (labels parsed, files not yet opened).

  Raises:
    ReidError: one line naming the file (and row) and the problem.
  """
  kind, path = _split_name(name)
  key = (kind, path, _stamp(kind, path))
  if key in _CACHE:
    return _CACHE[key]
  digest = hashlib.sha1(f"{kind}:{path}\n".encode())
  if kind == "folder":
    files = _folder_files(path)
    for split in SPLITS:
      for p in files[split]:
        digest.update(f"{p.parent.name}/{p.name}\t{p.stat().st_size}\n".encode())
    rows = _folder_rows(path, files)
    root = path
  else:
    digest.update(path.read_bytes() if path.is_file() else b"")
    rows = _list_rows(path, _read_list(path))
    root = path.parent
  cameras = max((r.record.camid + 1 for r in rows), default=1)
  spec = DatasetSpec(_slug(path, digest.hexdigest()), kind, cameras, False, None, f"{kind}:{path}")
  out = UserDataset(spec, f"{kind}:{path}", root, tuple(rows))
  _CACHE[key] = out
  return out


def spec(name: str) -> DatasetSpec:
  return resolve(name).spec


def check(name: str) -> dict[str, list[parsing.Record]]:
  """`{split: [Record]}` after every check that needs no decoding (see the module docstring).

  Records keep the list's order in each split; filenames are unique per split.
  """
  data = resolve(name)
  by_split = {s: [] for s in SPLITS}
  seen = {s: {} for s in SPLITS}
  for row in data.rows:
    r = row.record
    if not r.path.is_file():
      raise ReidError(f"{row.where}: image file {r.path} not found")
    first = seen[row.split].get(r.filename)
    if first is not None:
      raise ReidError(f"{row.where}: {r.filename} is listed twice in {row.split} (also {first})")
    seen[row.split][r.filename] = row.where
    by_split[row.split].append(r)
  where = data.source
  for split in SPLITS:
    if not by_split[split]:
      raise ReidError(f"dataset {where}: the {split} split has no images"
                      + (f" ({parsing.FOLDER_SPLITS[split]}/ is empty)" if data.spec.layout == "folder"
                         else f"; give rows with split {split}"))
  gallery = {r.pid for r in by_split["gallery"]}
  for row in data.rows:
    if row.split == "query" and row.record.pid not in gallery:
      raise ReidError(f"{row.where}: query identity {row.record.pid} is absent from the gallery "
                      "(every query identity needs gallery images)")
  return by_split


def where_of(name: str) -> dict[str, str]:
  """`{filename: 'list.csv row 7'}` of every row (for messages about one image)."""
  return {r.record.filename: r.where for r in resolve(name).rows}
