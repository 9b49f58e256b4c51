"""Input pipeline (docs/hhl.md §4, §5, §7; docs/design.md §4)."""

import io

import numpy as np
import pytest
from PIL import Image

from reid_jax.data import pipeline
from reid_jax.data import samplers
from reid_jax.data import transforms
from reid_jax.errors import ReidError


def _jpeg(seed, h=48, w=24):
  image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG")
  return buf.getvalue()


class MemorySource:
  """A split held in memory with the interface of `tfds_builders.ReidSource`."""

  def __init__(self, pids, camids, sizes=None):
    self.labels = {"pid": np.asarray(pids), "camid": np.asarray(camids),
                   "filename": np.array([f"img_{i:03d}.jpg" for i in range(len(pids))], object)}
    sizes = sizes or [(48, 24)] * len(pids)
    self._data = [_jpeg(i, *s) for i, s in enumerate(sizes)]

  def __len__(self):
    return len(self._data)

  def encoded_many(self, indices):
    return [self._data[int(i)] for i in indices]


@pytest.fixture(scope="module")
def source():
  pids = np.repeat([7, 3, 11, 40, 5], 4)  # 5 identities, non-contiguous, unsorted
  camids = np.tile([0, 1, 2, 3], 5)
  sizes = [(48 + 4 * (i % 3), 24 + 2 * (i % 2)) for i in range(len(pids))]
  return MemorySource(pids, camids, sizes)


def test_relabel_sorted_pid_order():
  labels, unique = pipeline.relabel([40, 7, 7, 3, 40])
  np.testing.assert_array_equal(unique, [3, 7, 40])
  np.testing.assert_array_equal(labels, [2, 1, 1, 0, 2])
  assert labels.dtype == np.int32


def _collect(it):
  return [{k: v.copy() for k, v in b.items()} for b in it]


def test_train_batches_contents(source):
  index_batches = samplers.pk_batches(source.labels["pid"], 8, 4, seed=0, epoch=0)
  batches = _collect(pipeline.train_batches(source, index_batches, seed=0, epoch=0, height=32,
                                            width=16, num_threads=2))
  assert len(batches) == len(index_batches)
  low, high = transforms.normalized_range()
  for step, (b, idx) in enumerate(zip(batches, index_batches)):
    assert b["image"].shape == (8, 32, 16, 3) and b["image"].dtype == np.float32
    assert (b["image"] >= low - 1e-5).all() and (b["image"] <= high + 1e-5).all()
    np.testing.assert_array_equal(b["index"], idx)
    sorted_pids = np.array([3, 5, 7, 11, 40])
    np.testing.assert_array_equal(sorted_pids[b["label"]], source.labels["pid"][idx])
    np.testing.assert_array_equal(b["camid"], source.labels["camid"][idx])
    assert b["label"].dtype == np.int32 and b["camid"].dtype == np.int32
    # Each image equals the train transform with its own generator.
    k = 5
    expected = transforms.train_transform(source.encoded_many([idx[k]])[0],
                                          pipeline.image_rng(0, 0, step, k), 32, 16)
    np.testing.assert_array_equal(b["image"][k], expected)


def test_train_batches_deterministic_across_threads(source):
  index_batches = samplers.shuffled_batches(len(source), 6, seed=1, epoch=2)
  runs = [_collect(pipeline.train_batches(source, index_batches, seed=1, epoch=2, height=32,
                                          width=16, num_threads=t, prefetch=p))
          for t, p in [(0, 0), (1, 1), (4, 3)]]
  for other in runs[1:]:
    for a, b in zip(runs[0], other):
      for key in a:
        np.testing.assert_array_equal(a[key], b[key])
  # Another epoch augments differently; resuming at a step gives the same remaining batches.
  other_epoch = _collect(pipeline.train_batches(source, index_batches, seed=1, epoch=3, height=32,
                                                width=16))
  assert not np.array_equal(runs[0][0]["image"], other_epoch[0]["image"])
  resumed = _collect(pipeline.train_batches(source, index_batches, seed=1, epoch=2, height=32,
                                            width=16, start_step=1))
  np.testing.assert_array_equal(resumed[0]["image"], runs[0][1]["image"])


def _write_fakes(folder, source, num_cameras):
  folder.mkdir(exist_ok=True)
  for i, name in enumerate(source.labels["filename"]):
    stem = name[:-4]
    for j in range(1, num_cameras + 1):
      # Fake j of image i is a flat colour encoding (i, j), so the batch order can be read back.
      Image.fromarray(np.full((64, 32, 3), (10 * j, 5 * i, 200), np.uint8)).save(
          folder / f"{stem}_fake_{j}.jpg", quality=100)


def test_target_batches_order_and_labels(source, tmp_path):
  C = 3
  _write_fakes(tmp_path / "camstyle", source, C)
  tbs = samplers.target_batches(source.labels["filename"], 4, seed=0, epoch=0,
                                camstyle_folder=tmp_path / "camstyle", num_cameras=C)
  out = _collect(pipeline.target_batches(source, tbs, seed=0, epoch=0, height=32, width=16))
  assert len(out) == len(tbs)
  mean, std = transforms.IMAGENET_MEAN, transforms.IMAGENET_STD
  for b, tb in zip(out, tbs):
    B = 4
    assert b["image"].shape == (B * (C + 1), 32, 16, 3)
    np.testing.assert_array_equal(b["index"], np.tile(tb.indices, C + 1))
    np.testing.assert_array_equal(b["label"], np.tile(pipeline.TARGET_LABEL_OFFSET + tb.indices,
                                                      C + 1))
    np.testing.assert_array_equal(b["is_fake"], np.arange(B * (C + 1)) >= B)
    np.testing.assert_array_equal(b["camid"][:B], source.labels["camid"][tb.indices])
    np.testing.assert_array_equal(b["camid"][B:], np.repeat(np.arange(C), B))
    # Fakes are in [cam 1 | cam 2 | cam 3] blocks, sample order inside each block.
    rgb = (b["image"][B:].mean((1, 2)) * std + mean) * 255
    np.testing.assert_allclose(rgb[:, 0], np.repeat(10 * np.arange(1, C + 1), B), atol=3)
    np.testing.assert_allclose(rgb[:, 1], np.tile(5 * tb.indices, C), atol=3)


def test_target_code_random_labels(source, tmp_path):
  C = 2
  _write_fakes(tmp_path / "cs", source, C)
  tbs = samplers.target_batches(source.labels["filename"], 5, seed=0, epoch=0,
                                camstyle_folder=tmp_path / "cs", num_cameras=C)
  out = _collect(pipeline.target_batches(source, tbs, seed=0, epoch=0, height=32, width=16,
                                         label_mode="code_random", num_threads=0))
  labels = np.concatenate([b["label"].reshape(C + 1, -1) for b in out], axis=1)
  assert (labels == labels[0]).all()  # shared by the real image and its fakes
  assert labels.min() >= 1000 and labels.max() <= 10999
  again = _collect(pipeline.target_batches(source, tbs, seed=0, epoch=0, height=32, width=16,
                                           label_mode="code_random", num_threads=3))
  np.testing.assert_array_equal(out[0]["label"], again[0]["label"])
  np.testing.assert_array_equal(out[0]["image"], again[0]["image"])


def test_target_missing_fake_is_an_error(source, tmp_path):
  tbs = samplers.target_batches(source.labels["filename"], 4, seed=0, epoch=0,
                                camstyle_folder=tmp_path / "empty", num_cameras=2)
  with pytest.raises(ReidError, match="_fake_1.jpg is missing"):
    next(pipeline.target_batches(source, tbs, seed=0, epoch=0, height=32, width=16))


def test_eval_batches_padding_and_order(source):
  n = len(source)
  batches = _collect(pipeline.eval_batches(source, 8, 32, 16, num_threads=2))
  assert len(batches) == -(-n // 8)
  for b in batches:
    assert b["image"].shape == (8, 32, 16, 3) and b["image"].dtype == np.float32
  last = batches[-1]
  valid = n - 8 * (len(batches) - 1)
  np.testing.assert_array_equal(last["mask"], np.arange(8) < valid)
  assert (last["image"][valid:] == 0).all() and (last["index"][valid:] == -1).all()
  index = np.concatenate([b["index"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(index, np.arange(n))
  pids = np.concatenate([b["pid"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(pids, source.labels["pid"])
  k = 11
  np.testing.assert_array_equal(batches[1]["image"][k - 8],
                                transforms.test_transform(source.encoded_many([k])[0], 32, 16))


def test_batches_from_a_prepared_split(data_dir):
  from reid_jax.data import tfds_builders

  source = tfds_builders.load_split("synth_duke", "train", data_dir)
  index_batches = samplers.pk_batches(source.labels["pid"], 8, 4, seed=0, epoch=0)[:2]
  a = _collect(pipeline.train_batches(source, index_batches, seed=0, epoch=0, height=64, width=32,
                                      num_threads=0))
  b = _collect(pipeline.train_batches(source, index_batches, seed=0, epoch=0, height=64, width=32,
                                      num_threads=3))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  # Each image comes from the record the index names (varied Duke crop sizes, decoded from TFDS).
  k, idx = 3, index_batches[1][3]
  expected = transforms.train_transform(source[idx]["image"], pipeline.image_rng(0, 0, 1, k), 64, 32)
  np.testing.assert_array_equal(a[1]["image"][k], expected)
  labels, unique = pipeline.relabel(source.labels["pid"])
  np.testing.assert_array_equal(unique[a[1]["label"]], source.labels["pid"][index_batches[1]])


def test_in_memory_source_gives_identical_batches(data_dir):
  from reid_jax.data import tfds_builders
  split = tfds_builders.load_split("synth_market", "train", data_dir, size="tiny")
  cached = pipeline.InMemory(split, num_threads=2)
  assert len(cached) == len(split) and cached.labels is split.labels
  index_batches = samplers.shuffled_batches(len(split), 8, 3, 1)[:3]
  for a, b in zip(pipeline.train_batches(split, index_batches, seed=3, epoch=1, height=32,
                                         width=16),
                  pipeline.train_batches(cached, index_batches, seed=3, epoch=1, height=32,
                                         width=16)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def _stack(shares):
  return {k: np.concatenate([s[k] for s in shares]) for k in shares[0]}


@pytest.mark.parametrize("processes", [2, 4])
def test_process_shares_of_train_batches_are_the_rows_of_the_whole(source, processes):
  """A multi-process run: process i decodes rows [i B / P, (i + 1) B / P) only, each image drawn
  exactly as in the whole batch, so the shares stacked are the one-process batch."""
  index_batches = samplers.pk_batches(source.labels["pid"], 8, 4, seed=0, epoch=0)
  whole = _collect(pipeline.train_batches(source, index_batches, seed=0, epoch=0, height=32,
                                          width=16, erasing_probability=0.5))
  shares = [_collect(pipeline.train_batches(source, index_batches, seed=0, epoch=0, height=32,
                                            width=16, erasing_probability=0.5,
                                            share=(i, processes)))
            for i in range(processes)]
  for step, batch in enumerate(whole):
    assert all(len(s[step]["image"]) == 8 // processes for s in shares)
    stacked = _stack([s[step] for s in shares])
    for key in batch:
      np.testing.assert_array_equal(stacked[key], batch[key])


def test_process_shares_of_target_batches_are_the_rows_of_the_whole(source, tmp_path):
  """Target batches `[reals | fakes ...]`: a share may hold reals and fakes; same rows, same draws."""
  folder = tmp_path / "camstyle"
  _write_fakes(folder, source, 2)
  tbs = samplers.target_batches(source.labels["filename"], 4, seed=0, epoch=0,
                                camstyle_folder=folder, num_cameras=2)
  whole = _collect(pipeline.target_batches(source, tbs, seed=0, epoch=0, height=32, width=16))
  shares = [_collect(pipeline.target_batches(source, tbs, seed=0, epoch=0, height=32, width=16,
                                             share=(i, 3)))
            for i in range(3)]  # 12 rows: 4 each, the first share all reals, the second mixed
  for step, batch in enumerate(whole):
    stacked = _stack([s[step] for s in shares])
    for key in batch:
      np.testing.assert_array_equal(stacked[key], batch[key])


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
  with pytest.raises(ReidError, match="does not split over 3 processes"):
    pipeline.share_rows(8, (0, 3))
