"""File-name and layout rules (docs/arn_triplet_eval.md §4)."""

import pytest

from reid_jax.data import parsing
from reid_jax.errors import ReidError


@pytest.mark.parametrize("name,expected", [
    ("0002_c1s1_000451_03.jpg", (2, 0)),
    ("1501_c6s4_001902_01.jpg", (1501, 5)),
    ("-1_c3s2_000101_02.jpg", (-1, 2)),  # junk
    ("0000_c2s1_000176_05.jpg", (0, 1)),  # distractor
    ("0010_c1s12_000451_03.jpg", (10, 0)),  # multi-digit sequence
])
def test_market_valid(name, expected):
  assert parsing.parse_market_name(name) == expected


@pytest.mark.parametrize("name", [
    "0002_c7s1_000451_03.jpg",  # camera 7 does not exist in Market
    "0002_c0s1_000451_03.jpg",
    "002_c1s1_000451_03.jpg",  # 3-digit pid
    "-2_c1s1_000451_03.jpg",
    "0002_c1s1_00451_03.jpg",  # 5-digit frame
    "0002_c1s1_000451_03.jpg.jpg",
    "x0002_c1s1_000451_03.jpg",
    "0002_c1_f0046985.jpg",  # a Duke name
])
def test_market_unparsable(name):
  with pytest.raises(ReidError, match=name.replace(".", r"\.")):
    parsing.parse_market_name(name)


@pytest.mark.parametrize("name,expected", [
    ("0005_c2_f0046985.jpg", (5, 1)),
    ("7140_c8_f0000001.jpg", (7140, 7)),
    ("0001_c1_f0000000.jpg", (1, 0)),
])
def test_duke_valid(name, expected):
  assert parsing.parse_duke_name(name) == expected


@pytest.mark.parametrize("name", ["0005_c9_f0046985.jpg", "0005_c2_f046985.jpg",
                                  "-1_c2_f0046985.jpg", "0002_c1s1_000451_03.jpg"])
def test_duke_unparsable(name):
  with pytest.raises(ReidError, match=name.replace(".", r"\.")):
    parsing.parse_duke_name(name)


@pytest.mark.parametrize("name,camid", [
    ("0000_000_01_0303morning_0015_0.jpg", 0),
    ("1040_017_15_0113afternoon_1234_1_ex.jpg", 14),
    ("0003_002_09_0302noon_0001_0.jpg", 8),
])
def test_msmt_camid(name, camid):
  assert parsing.parse_msmt_camid(name) == camid


@pytest.mark.parametrize("name", ["0000_000_16_0303morning_0015_0.jpg",
                                  "0000_000_00_0303morning_0015_0.jpg", "0000_00_01_x.jpg"])
def test_msmt_unparsable(name):
  with pytest.raises(ReidError, match=name.replace(".", r"\.")):
    parsing.parse_msmt_camid(name)


def _touch(path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"")


def test_market_folder_listing(tmp_path):
  for name in ["0002_c1s1_000451_03.jpg", "0002_c2s1_000452_01.jpg", "0007_c6s1_000001_00.jpg",
               "Thumbs.db", "0007_c6s1_000001_00.png", "notes.txt"]:
    _touch(tmp_path / "bounding_box_train" / name)
  (tmp_path / "bounding_box_train" / "sub.jpg").mkdir()  # a folder, even if named .jpg
  for name in ["-1_c1s1_000001_00.jpg", "0000_c1s1_000002_00.jpg", "0003_c2s1_000003_00.jpg"]:
    _touch(tmp_path / "bounding_box_test" / name)
  _touch(tmp_path / "query" / "0003_c1s1_000004_00.jpg")
  train = parsing.list_split(tmp_path, "market", "train")
  assert [(r.pid, r.camid, r.filename) for r in train] == [
      (2, 0, "bounding_box_train/0002_c1s1_000451_03.jpg"),
      (2, 1, "bounding_box_train/0002_c2s1_000452_01.jpg"),
      (7, 5, "bounding_box_train/0007_c6s1_000001_00.jpg")]
  assert train[0].path == tmp_path / "bounding_box_train" / "0002_c1s1_000451_03.jpg"
  gallery = parsing.list_split(tmp_path, "market", "gallery")
  assert [r.pid for r in gallery] == [-1, 0, 3]  # junk and distractor kept
  assert [r.pid for r in parsing.list_split(tmp_path, "market", "query")] == [3]


def test_unparsable_jpg_in_folder_names_the_file(tmp_path):
  _touch(tmp_path / "bounding_box_train" / "0002_c1s1_000451_03.jpg")
  _touch(tmp_path / "bounding_box_train" / "0002_c1s1_000451_03 (copy).jpg")
  with pytest.raises(ReidError, match=r"0002_c1s1_000451_03 \(copy\)\.jpg"):
    parsing.list_split(tmp_path, "market", "train")


def test_directory_name_cannot_match(tmp_path):
  # A file inside a folder whose name looks like a pid must still be judged by its basename.
  _touch(tmp_path / "bounding_box_train" / "0002_c1_f0000001.jpg")
  assert parsing.list_split(tmp_path, "duke", "train")[0].pid == 2
  with pytest.raises(ReidError, match="0002_c1_f0000001.jpg"):
    parsing.list_split(tmp_path, "market", "train")


def test_wrong_layout_names_missing_folder(tmp_path):
  _touch(tmp_path / "Market-1501-v15.09.15" / "bounding_box_train" / "0002_c1s1_000451_03.jpg")
  with pytest.raises(ReidError, match="bounding_box_train/ is missing.*one level deeper"):
    parsing.list_split(tmp_path, "market", "train")


def _msmt_tree(root, train="train", test="test"):
  lines = {
      "list_train.txt": (train, ["0000/0000_000_01_0303morning_0015_0.jpg 0",
                                 "0001/0001_000_15_0303noon_0001_0.jpg 1"]),
      "list_val.txt": (train, ["0000/0000_001_02_0303morning_0016_0.jpg 0"]),
      "list_query.txt": (test, ["0000/0000_000_03_0113morning_0001_0.jpg 0"]),
      "list_gallery.txt": (test, ["0000/0000_001_04_0113morning_0002_0.jpg 0",
                                  "0001/0001_000_05_0113noon_0003_0.jpg 1"]),
  }
  for list_name, (folder, entries) in lines.items():
    for entry in entries:
      _touch(root / folder / entry.split()[0])
    (root / list_name).write_text("\n".join(entries) + "\n")


@pytest.mark.parametrize("train,test", [("train", "test"), ("mask_train_v2", "mask_test_v2"),
                                        ("MASK_TRAIN_V2", "Mask_Test_V2")])
def test_msmt_lists_and_folders(tmp_path, train, test):
  _msmt_tree(tmp_path, train, test)
  records = parsing.list_split(tmp_path, "msmt", "train")
  assert [(r.pid, r.camid) for r in records] == [(0, 0), (0, 1), (1, 14)]  # list_train + list_val
  assert records[0].filename == f"{train}/0000/0000_000_01_0303morning_0015_0.jpg"
  assert records[0].path.is_file()
  only_train = parsing.list_split(tmp_path, "msmt", "train", msmt_train="list_train")
  assert [(r.pid, r.camid) for r in only_train] == [(0, 0), (1, 14)]
  assert [(r.pid, r.camid) for r in parsing.list_split(tmp_path, "msmt", "query")] == [(0, 2)]
  assert [(r.pid, r.camid) for r in parsing.list_split(tmp_path, "msmt", "gallery")] == [
      (0, 3), (1, 4)]


def test_msmt_missing_list_and_bad_line(tmp_path):
  _msmt_tree(tmp_path)
  (tmp_path / "list_val.txt").unlink()
  with pytest.raises(ReidError, match="list_val.txt is missing"):
    parsing.list_split(tmp_path, "msmt", "train")
  (tmp_path / "list_query.txt").write_text("0000/0000_000_03_0113morning_0001_0.jpg\n")
  with pytest.raises(ReidError, match=r"list_query.txt:1"):
    parsing.list_split(tmp_path, "msmt", "query")
  with pytest.raises(ReidError, match="train/ or mask_train_v2/ is missing"):
    parsing.list_split(tmp_path / "nothing", "msmt", "train")
