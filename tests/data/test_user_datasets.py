"""Users' own datasets, `folder:<root>` and `list:<file>` (reid_jax.data.user_datasets)."""

import json

import numpy as np
import pytest
from PIL import Image

from reid_jax import paths
from reid_jax.data import datasets
from reid_jax.data import tfds_builders
from reid_jax.data import user_datasets
from reid_jax.errors import ReidError
from reid_jax.training import preflight

# (pid, camera 1-based, split): 2 train ids, 2 test ids, a junk and a distractor in the gallery.
ROWS = [(10, 1, "train"), (10, 2, "train"), (11, 1, "train"), (11, 7, "train"),
        (20, 1, "query"), (21, 2, "query"),
        (20, 2, "gallery"), (21, 1, "gallery"), (21, 3, "gallery"), (-1, 1, "gallery"),
        (0, 2, "gallery")]
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def _image(path, seed, fmt="JPEG"):
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 255, (16, 8, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(path, format=fmt)


def _folder(root):
  for i, (pid, cam, split) in enumerate(ROWS):
    _image(root / FOLDERS[split] / f"{pid:05d}_c{cam}s1_{i:03d}_1.jpg" if pid >= 0 else
           root / FOLDERS[split] / f"-1_c{cam}s1_{i:03d}_1.jpg", i)
  (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"x")  # not a .jpg: ignored
  return f"folder:{root}"


def _csv(tmp_path, rows=None, header=True, name="mine.csv"):
  lines = ["path,pid,camid,split"] if header else []
  for i, (pid, cam, split) in enumerate(ROWS if rows is None else rows):
    rel = f"images/{i}.png" if i == 0 else f"images/{i}.jpg"
    if not (tmp_path / rel).exists():
      _image(tmp_path / rel, i, "PNG" if rel.endswith(".png") else "JPEG")
    lines.append(f"{rel},{pid},{cam},{split}")
  path = tmp_path / name
  path.write_text("\n".join(lines) + "\n")
  return path


def test_folder_form_parses_and_builds(tmp_path):
  name = _folder(tmp_path / "my_market")
  spec = datasets.get_spec(name)
  assert spec.layout == "folder" and spec.num_cameras == 7 and not spec.synthetic
  assert spec.name.startswith("my_market_") and len(spec.name) == len("my_market_") + 12
  preflight.dataset_names(name)
  data_dir = tmp_path / "data"
  counts = {"train": 4, "query": 2, "gallery": 5}
  for split, n in counts.items():
    labels = tfds_builders.split_labels(name, split, data_dir)
    assert len(labels["pid"]) == n
    source = tfds_builders.load_split(name, split, data_dir)
    assert len(source) == n and source[0]["image"].shape == (16, 8, 3)
  gallery = tfds_builders.split_labels(name, "gallery", data_dir)
  assert sorted(gallery["pid"]) == [-1, 0, 20, 21, 21]
  train = tfds_builders.split_labels(name, "train", data_dir)
  assert sorted(train["camid"]) == [0, 0, 1, 6]  # 0-based
  assert (paths.tfds_dir(data_dir) / "user" / spec.name / tfds_builders.VERSION).is_dir()
  assert paths.default_workdir("baseline", name, "market").name == f"{spec.name}_to_market"


def test_list_form_parses_builds_and_converts_png(tmp_path):
  path = _csv(tmp_path)
  name = f"list:{path}"
  spec = datasets.get_spec(name)
  assert spec.layout == "list" and spec.num_cameras == 7 and spec.name.startswith("mine_")
  data_dir = tmp_path / "data"
  train = tfds_builders.load_split(name, "train", data_dir)
  assert train.labels["filename"][0] == "images/0.png"
  assert train.encoded(0)[:2] == b"\xff\xd8"  # the PNG is stored as a JPEG
  assert list(train.labels["pid"]) == [10, 10, 11, 11]
  # The same list as JSON (objects) names the same records.
  items = [{"path": f"images/{i}.{'png' if i == 0 else 'jpg'}", "pid": p, "camid": c, "split": s}
           for i, (p, c, s) in enumerate(ROWS)]
  (tmp_path / "mine.json").write_text(json.dumps(items))
  records = user_datasets.check(f"list:{tmp_path / 'mine.json'}")
  assert [r.pid for r in records["query"]] == [20, 21]
  # Changed data: another config name, prepared afresh.
  rows = ROWS + [(12, 1, "train")]
  _csv(tmp_path, rows)
  spec2 = datasets.get_spec(name)
  assert spec2.name != spec.name
  assert len(tfds_builders.split_labels(name, "train", data_dir)["pid"]) == 5


def _error(name):
  with pytest.raises(ReidError) as info:
    preflight.dataset_names(name)
  message = str(info.value)
  assert "\n" not in message
  return message


@pytest.mark.parametrize("row, expected", [
    ("images/1.jpg,10,1,validation", ["row 13", "unknown split 'validation'"]),
    ("images/1.jpg,ten,1,train", ["row 13", "pid 'ten' is not an integer"]),
    ("images/1.jpg,10,1.5,train", ["row 13", "camid '1.5' is not an integer"]),
    ("images/1.jpg,10,0,train", ["row 13", "camera id 0 out of range"]),
    ("images/1.jpg,-1,1,train", ["row 13", "pid -1 not allowed in train"]),
    ("images/nowhere.jpg,10,1,train", ["row 13", "nowhere.jpg not found"]),
    ("images/1.jpg,10,1", ["row 13", "expected 4 columns"]),
    ("images/1.jpg,10,1,train", ["row 13", "listed twice in train", "row 3"]),
    ("images/1.jpg,99,1,query", ["row 13", "query identity 99 is absent from the gallery"]),
])
def test_bad_list_is_one_line_naming_row_and_problem(tmp_path, row, expected):
  path = _csv(tmp_path)
  path.write_text(path.read_text() + row + "\n")
  message = _error(f"list:{path}")
  assert message.startswith("mine.csv ") or "mine.csv" in message
  for part in expected:
    assert part in message, message


def test_empty_split_missing_list_and_folder(tmp_path):
  path = _csv(tmp_path, [r for r in ROWS if r[2] != "query"])
  assert "query split has no images" in _error(f"list:{path}")
  assert "no such file" in _error(f"list:{tmp_path / 'absent.csv'}")
  assert "no such folder" in _error(f"folder:{tmp_path / 'absent'}")
  root = tmp_path / "half"
  (root / "bounding_box_train").mkdir(parents=True)
  assert "query/ is missing" in _error(f"folder:{root}")
  with pytest.raises(ReidError, match="list:/path/to/list.csv"):
    preflight.dataset_names("my_data")


def test_bad_folder_names(tmp_path):
  root = tmp_path / "m"
  name = _folder(root)
  _image(root / "query" / "person7.jpg", 0)
  assert "person7.jpg: not a Market-style file name" in _error(name)
  (root / "query" / "person7.jpg").unlink()
  _image(root / "query" / "0007_c0s1_000001_01.jpg", 0)
  message = _error(name)
  assert "0007_c0s1_000001_01.jpg" in message and "camera id 0 out of range" in message


def test_corrupt_image_names_the_row(tmp_path):
  path = _csv(tmp_path)
  (tmp_path / "images" / "5.jpg").write_bytes(b"\xff\xd8 not really")
  name = f"list:{path}"
  preflight.dataset_names(name)  # labels and files fine; the build decodes every image
  with pytest.raises(ReidError) as info:
    tfds_builders.builder(name, tmp_path / "data")
  message = str(info.value)
  assert "5.jpg" in message and "mine.csv row 7" in message and "\n" not in message
