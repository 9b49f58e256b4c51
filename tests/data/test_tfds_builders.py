"""TFDS builders: round trip, count checks and failure paths (docs/design.md §4)."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from reid_jax import paths
from reid_jax.data import datasets
from reid_jax.data import parsing
from reid_jax.data import tfds_builders
from reid_jax.errors import ReidError


def _prepared_dirs(data_dir, name):
  """Everything under tfds/<name>/ that TFDS could take for a prepared variant or a leftover."""
  root = paths.tfds_dir(data_dir) / name
  return sorted(str(p.relative_to(root)) for p in root.glob("*/*")) if root.exists() else []


def _fake_real(data_dir, tmp_path, synth="synth_market", real="market"):
  """A 'real' dataset folder made by copying a synthetic tree (same layout and names)."""
  root = paths.raw_dir(tmp_path, real)
  shutil.copytree(paths.raw_dir(data_dir, synth), root)
  (root / tfds_builders.SYNTHETIC_MARKER).unlink()
  return root


def _patch_expected(monkeypatch, name, root, bump=None):
  """Sets the spec's expected counts to what `root` holds (optionally off by one in a split)."""
  spec = datasets.DATASETS[name]
  expected = {}
  for split in datasets.SPLITS:
    records = parsing.list_split(root, spec.layout, split)
    ids, images = len({r.pid for r in records}), len(records)
    if split == bump:
      images += 1
    expected[split] = datasets.SplitCounts(ids=ids, images=images)
  monkeypatch.setitem(datasets.DATASETS, name, dataclasses.replace(spec, expected=expected))
  return expected


@pytest.mark.parametrize("dataset", ["synth_market", "synth_duke"])
def test_synthetic_roundtrip(data_dir, dataset):
  spec = datasets.get_spec(dataset)
  root = paths.raw_dir(data_dir, dataset)
  for split in datasets.SPLITS:
    source = tfds_builders.load_split(dataset, split, data_dir)
    records = parsing.list_split(root, spec.layout, split)
    labels = tfds_builders.split_labels(dataset, split, data_dir)
    assert len(source) == len(records) == len(labels["pid"]) > 0
    np.testing.assert_array_equal(labels["pid"], [r.pid for r in records])
    np.testing.assert_array_equal(labels["camid"], [r.camid for r in records])
    assert list(labels["filename"]) == [r.filename for r in records]
    assert labels["camid"].min() >= 0 and labels["camid"].max() < spec.num_cameras
    for i in (0, len(source) // 2, len(source) - 1):
      item = source[i]
      assert item["filename"] == records[i].filename
      assert (item["pid"], item["camid"]) == (records[i].pid, records[i].camid)
      # The stored image is the file itself, decoded at its own size.
      expected = np.asarray(Image.open(records[i].path).convert("RGB"))
      assert item["image"].dtype == np.uint8
      np.testing.assert_array_equal(item["image"], expected)
  assert _prepared_dirs(data_dir, dataset) == ["tiny_seed0/1.0.0"]
  gallery = tfds_builders.split_labels(dataset, "gallery", data_dir)
  if spec.layout == "market":
    assert (gallery["pid"] == -1).any() and (gallery["pid"] == 0).any()  # junk, distractors kept


def test_synthetic_other_size_goes_to_its_own_folder(data_dir):
  root = tfds_builders.synthetic_raw_root("synth_market", data_dir, "tiny", 0)
  assert root == paths.raw_dir(data_dir, "synth_market")
  other = tfds_builders.synthetic_raw_root("synth_market", data_dir, "small", 3, create=False)
  assert other == paths.raw_dir(data_dir, "synth_market_small_seed3") and not other.exists()
  spec = datasets.get_spec("synth_market")
  assert tfds_builders.config_name(spec, "small", 3) == "small_seed3"
  assert tfds_builders.config_name(spec, "tiny", 0) == "tiny_seed0"


def test_real_market_builds_with_expected_counts(data_dir, tmp_path, monkeypatch):
  root = _fake_real(data_dir, tmp_path)
  _patch_expected(monkeypatch, "market", root)
  source = tfds_builders.load_split("market", "gallery", tmp_path)
  assert len(source) == len(parsing.list_split(root, "market", "gallery"))
  assert _prepared_dirs(tmp_path, "market") == ["default/1.0.0"]


@pytest.mark.parametrize("split", ["train", "gallery"])
def test_count_mismatch_names_split_and_both_counts(data_dir, tmp_path, monkeypatch, split):
  root = _fake_real(data_dir, tmp_path)
  expected = _patch_expected(monkeypatch, "market", root, bump=split)
  found = expected[split].images - 1
  with pytest.raises(ReidError, match=rf"market {split}: found {found} images of "
                     rf"{expected[split].ids} ids .* expected {found + 1} images"):
    tfds_builders.load_split("market", "query", tmp_path)
  assert _prepared_dirs(tmp_path, "market") == []
  assert not tfds_builders.builder("market", tmp_path, prepare=False).is_prepared()


def test_corrupt_jpeg_names_file_and_leaves_nothing(data_dir, tmp_path, monkeypatch):
  root = _fake_real(data_dir, tmp_path)
  _patch_expected(monkeypatch, "market", root)
  victim = sorted((root / "bounding_box_test").glob("*.jpg"))[5]
  original = victim.read_bytes()
  victim.write_bytes(original[: len(original) // 2])
  with pytest.raises(ReidError, match=f"corrupt image .*{victim.name}"):
    tfds_builders.load_split("market", "train", tmp_path)
  assert _prepared_dirs(tmp_path, "market") == []
  # Once the file is restored, the next call builds from scratch.
  victim.write_bytes(original)
  assert len(tfds_builders.load_split("market", "train", tmp_path)) > 0
  assert _prepared_dirs(tmp_path, "market") == ["default/1.0.0"]


def test_non_jpeg_data_in_jpg_file_is_corrupt(data_dir, tmp_path, monkeypatch):
  root = _fake_real(data_dir, tmp_path)
  _patch_expected(monkeypatch, "market", root)
  victim = sorted((root / "query").glob("*.jpg"))[0]
  Image.open(victim).save(victim, format="PNG")
  with pytest.raises(ReidError, match=victim.name):
    tfds_builders.load_split("market", "train", tmp_path)
  assert _prepared_dirs(tmp_path, "market") == []


def test_unparsable_name_and_wrong_layout(data_dir, tmp_path, monkeypatch):
  root = _fake_real(data_dir, tmp_path)
  _patch_expected(monkeypatch, "market", root)
  shutil.copy(next((root / "query").glob("*.jpg")), root / "query" / "0001_c9s1_000001_00.jpg")
  with pytest.raises(ReidError, match="0001_c9s1_000001_00.jpg"):
    tfds_builders.load_split("market", "train", tmp_path)
  assert _prepared_dirs(tmp_path, "market") == []
  shutil.rmtree(root / "query")
  with pytest.raises(ReidError, match=r"wrong layout .* query/ is missing"):
    tfds_builders.load_split("market", "train", tmp_path)
  assert _prepared_dirs(tmp_path, "market") == []


def test_missing_dataset_says_where_to_put_it(tmp_path):
  with pytest.raises(ReidError) as info:
    tfds_builders.load_split("duke", "train", tmp_path)
  message = str(info.value)
  assert str(paths.raw_dir(tmp_path, "duke")) in message
  assert "bounding_box_train/" in message and "DukeMTMC-reID" in message
  assert _prepared_dirs(tmp_path, "duke") == []


def test_interrupted_build_leftover_is_not_taken_as_prepared(data_dir, tmp_path, monkeypatch):
  # What a killed process leaves: TFDS's incomplete.* folder with partial files.
  root = _fake_real(data_dir, tmp_path)
  _patch_expected(monkeypatch, "market", root)
  leftover = paths.tfds_dir(tmp_path) / "market" / "default" / "incomplete.ABC123_1.0.0"
  leftover.mkdir(parents=True)
  (leftover / "market-train.array_record-00000-of-00001").write_bytes(b"partial")
  assert not tfds_builders.builder("market", tmp_path, prepare=False).is_prepared()
  source = tfds_builders.load_split("market", "train", tmp_path)
  assert len(source) == len(parsing.list_split(root, "market", "train"))


def test_real_duke_and_split_labels_match_records(data_dir, tmp_path, monkeypatch):
  root = _fake_real(data_dir, tmp_path, "synth_duke", "duke")
  _patch_expected(monkeypatch, "duke", root)
  source = tfds_builders.load_split("duke", "query", tmp_path)
  labels = tfds_builders.split_labels("duke", "query", tmp_path)
  for i in range(len(source)):
    assert source[i]["filename"] == labels["filename"][i]
    assert source[i]["pid"] == labels["pid"][i] and source[i]["camid"] == labels["camid"][i]


def test_msmt_train_lists_are_separate_variants(tmp_path):
  full = tfds_builders.split_labels("synth_msmt", "train", tmp_path)
  only = tfds_builders.split_labels("synth_msmt", "train", tmp_path, msmt_train="list_train")
  manifest = json.loads((paths.raw_dir(tmp_path, "synth_msmt") / "SYNTHETIC.json").read_text())
  assert len(full["pid"]) == manifest["counts"]["train"]["images"]
  assert len(only["pid"]) == manifest["counts"]["list_train"]["images"] < len(full["pid"])
  assert set(only["filename"]) < set(full["filename"])
  assert _prepared_dirs(tmp_path, "synth_msmt") == ["tiny_seed0/1.0.0",
                                                    "tiny_seed0_list_train/1.0.0"]
