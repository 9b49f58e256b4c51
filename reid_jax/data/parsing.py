"""File-name and folder-layout rules of Market-1501, DukeMTMC-reID and MSMT17 (docs/arn_triplet_eval.md §4).

`list_split(root, layout, split)` turns an extracted dataset folder (`raw/<dataset>`, design
docs/design.md §4) into a sorted list of `Record(path, pid, camid, filename)`:

- pid: the dataset's identity number (Market junk -1 and distractor 0 kept as they are, MSMT the
  list file's label); camid: 0-based camera index;
- filename: the path relative to `root`, '/'-separated (e.g.
  `bounding_box_train/0002_c1s1_000451_03.jpg`, `train/0000/0000_000_01_0303morning_0015_0.jpg`).

Names are matched on the basename, so folder names can never match; files not ending in `.jpg`
(Thumbs.db, readme.txt) are ignored; a `.jpg` whose name breaks the rule is a ReidError naming it.
"""

import dataclasses
import re
from pathlib import Path

from reid_jax.errors import ReidError

MARKET_NAME = re.compile(r"^(-1|\d{4})_c([1-6])s(\d+)_(\d{6})_(\d{2})\.jpg$")  # §4.1
DUKE_NAME = re.compile(r"^(\d{4})_c([1-8])_f(\d{7})\.jpg$")  # §4.2
MSMT_NAME = re.compile(r"^(\d{4})_(\d{3})_(\d{2})_.*\.jpg$")  # §4.3 relaxed rule
MSMT_NUM_CAMERAS = 15

# Market and Duke share the folder layout (docs/design.md §4).
FOLDER_SPLITS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
# MSMT17: split -> (image folder kind, list files); V1 `train/`, V2 `mask_train_v2/` (§4.3).
MSMT_FOLDERS = {"train": ("train", "mask_train_v2"), "test": ("test", "mask_test_v2")}
MSMT_TRAIN_LISTS = {  # docs/arn_triplet_eval.md §4.3: team default list_train + list_val
    "list_train+list_val": ("list_train.txt", "list_val.txt"),
    "list_train": ("list_train.txt",),
}
MSMT_LISTS = {"query": ("test", ("list_query.txt",)), "gallery": ("test", ("list_gallery.txt",))}


@dataclasses.dataclass(frozen=True)
class Record:
  path: Path  # absolute location of the JPEG
  pid: int
  camid: int  # 0-based
  filename: str  # relative to the dataset root, '/'-separated


def parse_market_name(name: str) -> tuple[int, int]:
  """`0002_c1s1_000451_03.jpg` -> (pid 2, camid 0); `-1_c3s1_...` -> pid -1 (junk)."""
  m = MARKET_NAME.match(name)
  if m is None:
    raise ReidError(f"{name}: not a Market-1501 file name (PPPP_cCsS_FFFFFF_BB.jpg, pid 4 digits "
                    "or -1, camera 1-6); remove the file or fix the name")
  return int(m.group(1)), int(m.group(2)) - 1


def parse_duke_name(name: str) -> tuple[int, int]:
  """`0005_c2_f0046985.jpg` -> (pid 5, camid 1)."""
  m = DUKE_NAME.match(name)
  if m is None:
    raise ReidError(f"{name}: not a DukeMTMC-reID file name (PPPP_cC_fFFFFFFF.jpg, camera 1-8); "
                    "remove the file or fix the name")
  return int(m.group(1)), int(m.group(2)) - 1


def parse_msmt_camid(name: str) -> int:
  """`0000_000_01_0303morning_0015_0.jpg` -> camid 0 (the pid comes from the list file)."""
  m = MSMT_NAME.match(name)
  camera = int(m.group(3)) if m else 0
  if m is None or not 1 <= camera <= MSMT_NUM_CAMERAS:
    raise ReidError(f"{name}: not an MSMT17 file name (PPPP_NNN_CC_..., camera 01-15); remove the "
                    "file or fix the name")
  return camera - 1


def _is_image(path: Path) -> bool:
  return path.is_file() and path.name.endswith(".jpg")


def _find_child(root: Path, names: tuple[str, ...]) -> Path | None:
  """The child folder of `root` whose name equals one of `names`, case-insensitively."""
  wanted = {n.lower() for n in names}
  if not root.is_dir():
    return None
  for child in sorted(root.iterdir()):
    if child.is_dir() and child.name.lower() in wanted:
      return child
  return None


def required_layout(layout: str) -> str:
  """What an extracted dataset folder must hold, for messages."""
  if layout in ("market", "duke"):
    return ", ".join(f"{f}/" for f in FOLDER_SPLITS.values()) + " (flat folders of .jpg files)"
  return ("train/ and test/ (or mask_train_v2/ and mask_test_v2/) and list_train.txt, "
          "list_val.txt, list_query.txt, list_gallery.txt")


def _layout_error(root: Path, layout: str, missing: str) -> ReidError:
  found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir()) if root.is_dir() else []
  hint = ""
  nested = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
  if len(nested) == 1 and not _find_child(root, tuple(FOLDER_SPLITS.values()) + ("train",)):
    hint = (f"; the archive seems extracted one level deeper: move the contents of {nested[0]} "
            f"up into {root}")
  return ReidError(f"wrong layout in {root}: {missing} is missing; the folder must hold "
                   f"{required_layout(layout)}; found {found[:10]}{hint}")


def list_split(root, layout: str, split: str, msmt_train: str = "list_train+list_val") -> list[Record]:
  """The records of one split of an extracted dataset, sorted by filename.

  Args:
    root: the extracted dataset folder (`raw/<dataset>`).
    layout: 'market' | 'duke' | 'msmt'.
    split: 'train' | 'query' | 'gallery'.
    msmt_train: MSMT17 train lists, 'list_train+list_val' (default, 32 621 images) or 'list_train'
      (torchreid's default).

  Raises:
    ReidError: wrong layout (names the missing folder or list file) or unparsable file name.
  """
  root = Path(root)
  if split not in FOLDER_SPLITS:
    raise ValueError(f"unknown split {split!r}")
  if layout in ("market", "duke"):
    parse = parse_market_name if layout == "market" else parse_duke_name
    folder = root / FOLDER_SPLITS[split]
    if not folder.is_dir():
      raise _layout_error(root, layout, FOLDER_SPLITS[split] + "/")
    records = []
    for path in sorted(folder.iterdir()):
      if not _is_image(path):
        continue
      try:
        pid, camid = parse(path.name)
      except ReidError as e:
        raise ReidError(f"{path}: {e}") from None
      records.append(Record(path, pid, camid, f"{folder.name}/{path.name}"))
    return records
  if layout == "msmt":
    return _list_msmt(root, split, msmt_train)
  raise ValueError(f"unknown layout {layout!r}")


def _list_msmt(root: Path, split: str, msmt_train: str) -> list[Record]:
  if split == "train":
    if msmt_train not in MSMT_TRAIN_LISTS:
      raise ReidError(f"msmt_train={msmt_train!r}: choose one of {', '.join(MSMT_TRAIN_LISTS)}")
    kind, lists = "train", MSMT_TRAIN_LISTS[msmt_train]
  else:
    kind, lists = MSMT_LISTS[split]
  folder = _find_child(root, MSMT_FOLDERS[kind])
  if folder is None:
    raise _layout_error(root, "msmt", " or ".join(f"{n}/" for n in MSMT_FOLDERS[kind]))
  records = []
  for list_name in lists:
    list_path = root / list_name
    if not list_path.is_file():
      raise _layout_error(root, "msmt", list_name)
    for line_no, line in enumerate(list_path.read_text().splitlines(), 1):
      if not line.strip():
        continue
      parts = line.split()
      if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
        raise ReidError(f"{list_path}:{line_no}: expected '<relative path> <pid>', got {line!r}")
      rel, pid = parts[0], int(parts[1])
      path = folder / rel
      if not path.name.endswith(".jpg"):
        continue
      try:
        camid = parse_msmt_camid(path.name)
      except ReidError as e:
        raise ReidError(f"{path} (listed in {list_path.name}:{line_no}): {e}") from None
      records.append(Record(path, pid, camid, f"{folder.name}/{rel}"))
  records.sort(key=lambda r: r.filename)
  return records
