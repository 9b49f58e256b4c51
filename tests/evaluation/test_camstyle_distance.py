"""The Table 1 diagnostic (docs/hhl.md §11.1): hand-worked means, the crop is the train
transform's, and a tiny random model measured through the whole path against brute force."""

import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from reid_jax import paths
from reid_jax.data import camstyle
from reid_jax.data import tfds_builders
from reid_jax.data import transforms
from reid_jax.errors import ReidError
from reid_jax.evaluation import camstyle_distance as cd
from reid_jax.evaluation import features
from reid_jax.models import heads
from reid_jax.training import checkpoint as checkpoint_lib

H, W = 32, 16
C = 6  # synth_market's cameras
MODEL = {"arch": "resnet_small", "num_features": 8, "triplet_features": 0, "dropout_rate": 0.5,
         "last_stride": 2, "dtype": "float32"}


def _at(distance: float, axis: int, d: int = 4) -> np.ndarray:
  """A unit vector at Euclidean `distance` from e_0, rotated towards e_axis."""
  theta = 2 * np.arcsin(distance / 2)
  v = np.zeros(d)
  v[0], v[axis] = np.cos(theta), np.sin(theta)
  return v


def test_summary_of_hand_built_unit_vectors():
  # Image 0 (camid 0) and image 1 (camid 2), 3 cameras; every view at a chosen distance from e_0.
  fake_d = [[0.0, 0.6, 0.9], [0.4, 0.8, 0.3]]
  ref = np.stack([_at(0, 1), _at(0, 1)])
  crop = np.stack([_at(0.1, 1), _at(0.3, 2)])
  flip = np.stack([_at(0.2, 3), _at(0.2, 1)])
  fakes = np.array([[_at(d, 1 + j) for j, d in enumerate(row)] for row in fake_d])
  s = cd.distance_summary(ref, crop, flip, fakes, camids=[0, 2])
  assert s["n_images"] == 2 and s["num_cameras"] == 3
  want = {"crop": 0.2, "flip": 0.2, "camstyle": 3.0 / 6, "camstyle_other": 2.7 / 4,
          "camstyle_own": (0.0 + 0.3) / 2}
  want_sq = {"crop": (0.01 + 0.09) / 2, "flip": 0.04, "camstyle": 2.06 / 6,
             "camstyle_other": (0.36 + 0.81 + 0.16 + 0.64) / 4, "camstyle_own": 0.09 / 2}
  for key in cd.DIRECTIONS:
    assert s["distance"][key] == pytest.approx(want[key], abs=1e-12), key
    assert s["squared_distance"][key] == pytest.approx(want_sq[key], abs=1e-12), key
  np.testing.assert_allclose(s["camstyle_by_camera"], [0.2, 0.7, 0.6], atol=1e-12)


def test_summary_single_camera_has_no_other_cameras_and_rejects_foreign_camids():
  ref = np.eye(2)[:1]
  s = cd.distance_summary(ref, ref, ref, np.eye(2)[None, 1:], camids=[0])
  assert s["distance"]["camstyle_own"] == pytest.approx(np.sqrt(2))
  assert s["distance"]["camstyle_other"] is None
  with pytest.raises(ReidError, match="camid 3"):
    cd.distance_summary(ref, ref, ref, np.eye(2)[None, 1:], camids=[3])


def test_crop_view_is_the_train_transforms_crop_without_its_flip():
  image = np.random.default_rng(0).integers(0, 256, (128, 64, 3), dtype=np.uint8)
  flipped = 0
  for index in range(12):
    crop = cd.crop_view(image, cd.crop_rng(5, index), H, W)
    train = transforms.train_transform(image, cd.crop_rng(5, index), H, W)
    if np.array_equal(train, crop[:, ::-1]) and not np.array_equal(train, crop):
      flipped += 1
    else:
      np.testing.assert_array_equal(train, crop)
    assert not np.allclose(crop, transforms.test_transform(image, H, W), atol=0.05)
  assert 0 < flipped < 12  # both outcomes of the flip draw were met
  assert not np.array_equal(cd.crop_view(image, cd.crop_rng(5, 0), H, W),
                            cd.crop_view(image, cd.crop_rng(5, 1), H, W))


def test_select_images():
  np.testing.assert_array_equal(cd.select_images(7, None, 0), np.arange(7))
  np.testing.assert_array_equal(cd.select_images(7, 0, 0), np.arange(7))
  np.testing.assert_array_equal(cd.select_images(7, 9, 0), np.arange(7))
  a = cd.select_images(100, 10, 0)
  assert len(np.unique(a)) == 10 and np.all(np.diff(a) > 0) and a.max() < 100
  np.testing.assert_array_equal(a, cd.select_images(100, 10, 0))
  assert not np.array_equal(a, cd.select_images(100, 10, 1))


def test_paper_figures_follow_the_layouts():
  assert cd.paper_figures("duke", "market")["camstyle"] == 0.485
  twin = cd.paper_figures("synth_market", "synth_duke")
  assert twin["crop"] == 0.059 and twin["twins"]
  assert cd.paper_figures("msmt", "market") is None and cd.paper_figures(None, "market") is None


# ---------------------------------------------------------------------------------------------
# A tiny random model on synth_market's training split.


@pytest.fixture(scope="module")
def target(data_dir):
  return tfds_builders.load_split("synth_market", "train", data_dir, size="tiny")


@pytest.fixture(scope="module")
def model_and_variables():
  """A random ReIDNet: kernels N(0, 1 / fan_in), BN at identity (eager `init` takes ~30 s here)."""
  model = heads.build_reid_net(MODEL, 4)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, H, W, 3)))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(0, fan_in ** -0.5, leaf.shape).astype(np.float32)
    return np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, np.float32)

  return model, jax.tree_util.tree_map_with_path(fill, dict(shapes))


def _write_fakes(folder, target, own_mirrored: bool = True):
  """Fake j of each image: a copy of the real file, the own camera's the mirror image (PNG bytes
  under the .jpg name, lossless, so its test transform is exactly the flipped one)."""
  folder.mkdir(parents=True, exist_ok=True)
  for i, name in enumerate(target.labels["filename"]):
    data = target.encoded(i)
    stem = camstyle.stem_of(str(name))
    own = int(target.labels["camid"][i]) + 1
    for j in range(1, C + 1):
      out = data
      if own_mirrored and j == own:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(transforms.decode(data)[:, ::-1])).save(buffer, "PNG")
        out = buffer.getvalue()
      (folder / camstyle.fake_name(stem, j)).write_bytes(out)


def _brute_force(model, variables, target, folder, indices, seed):
  """`distance_summary` of descriptors computed here, all views in one batch of another layout."""
  views = []
  for i in indices:
    real = transforms.decode(target.encoded(int(i)))
    test = transforms.test_transform(real, H, W)
    stem = camstyle.stem_of(str(target.labels["filename"][int(i)]))
    views += [test, cd.crop_view(real, cd.crop_rng(seed, int(i)), H, W), test[:, ::-1]]
    views += [transforms.test_transform(folder / camstyle.fake_name(stem, j), H, W)
              for j in range(1, C + 1)]
  apply = jax.jit(lambda x: model.apply(variables, x, train=False)["pool5"])
  pool5 = np.asarray(apply(np.stack(views)), np.float64).reshape(len(indices), C + 3, -1)
  unit = pool5 / np.linalg.norm(pool5, axis=-1, keepdims=True)
  return cd.distance_summary(unit[:, 0], unit[:, 1], unit[:, 2], unit[:, 3:],
                             np.asarray(target.labels["camid"])[indices])


def test_tiny_model_matches_brute_force_and_the_fakes_invariants(target, model_and_variables,
                                                                 tmp_path):
  model, variables = model_and_variables
  folder = tmp_path / "camstyle"
  _write_fakes(folder, target)
  descriptor = features.pool5_descriptor(model)
  run = lambda batch_size: cd.camstyle_distances(  # noqa: E731
      descriptor, variables, target, folder, C, H, W, batch_size, seed=3, max_images=5,
      num_threads=2, progress=False)
  result = run(18)  # 2 images (9 views each) per batch, 3 batches, the last one padded
  np.testing.assert_array_equal(result["indices"], cd.select_images(len(target), 5, 3))
  assert result["n_images"] == 5 and result["num_cameras"] == C
  d = result["distance"]
  # Copies of the real image sit on it; the own camera's fake is the mirror image.
  assert d["camstyle_other"] < 1e-5
  assert d["camstyle_own"] == pytest.approx(d["flip"], rel=1e-4)
  assert d["camstyle"] == pytest.approx(d["flip"] / C, rel=1e-4)
  assert d["crop"] > 1e-3 and d["flip"] > 1e-3
  assert np.mean(result["camstyle_by_camera"]) == pytest.approx(d["camstyle"], rel=1e-9)

  expected = _brute_force(model, variables, target, folder, result["indices"], seed=3)
  for key in ("distance", "squared_distance"):
    for view in cd.DIRECTIONS:
      assert result[key][view] == pytest.approx(expected[key][view], rel=2e-3, abs=1e-5), view
  np.testing.assert_allclose(result["camstyle_by_camera"], expected["camstyle_by_camera"],
                             rtol=2e-3, atol=1e-5)

  victim = camstyle.stem_of(str(target.labels["filename"][int(result["indices"][0])]))
  (folder / camstyle.fake_name(victim, 2)).unlink()
  with pytest.raises(ReidError, match=f"{victim}_fake_2.jpg is missing"):
    run(18)


def test_workdir_distances_writes_the_record(data_dir, target, model_and_variables, tmp_path):
  model, variables = model_and_variables
  # A private data_dir sharing the session's raw and prepared data: the camera-style set written
  # here must not appear in the session data_dir other tests read.
  private = tmp_path / "data"
  private.mkdir()
  (private / "raw").symlink_to(paths.raw_dir(data_dir, "synth_market").parent)
  paths.tfds_dir(private).symlink_to(paths.tfds_dir(data_dir))
  workdir = tmp_path / "wd"
  config = {"experiment": "baseline", "variant": "tiny", "src": "synth_duke",
            "tgt": "synth_market", "model": MODEL,
            "data": {"height": H, "width": W, "eval_batch_size": 18, "num_workers": 2,
                     "synthetic_size": "tiny"}}
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(config))
  with pytest.raises(ReidError, match="no checkpoint in"):
    cd.check_workdir(workdir)
  with checkpoint_lib.Checkpointer(workdir / "checkpoints") as ckpt:
    ckpt.save(7, variables)

  with pytest.raises(ReidError, match="experiments.stargan --dataset=synth_market"):
    cd.workdir_distances(workdir, private, max_images=5, seed=3, progress=False)
  assert not (workdir / cd.OUTPUT_FILE).exists()

  world = camstyle.world_of("synth_market", "tiny")
  folder = camstyle.set_dir(private, world)
  _write_fakes(folder, target, own_mirrored=False)
  camstyle.write_manifest(folder, dataset="synth_market", num_cameras=C, num_images=len(target),
                          checkpoint_step=0, config_sha256="test", world=world)
  record = cd.workdir_distances(workdir, private, max_images=5, seed=3, progress=False)
  assert json.loads((workdir / cd.OUTPUT_FILE).read_text()) == json.loads(json.dumps(record))
  assert record["checkpoint_step"] == 7 and record["tgt"] == "synth_market"
  assert record["n_images"] == 5 and record["n_target_images"] == len(target)
  assert record["camstyle_folder"] == str(folder)
  assert record["paper"]["camstyle"] == 0.485 and record["paper"]["twins"]
  assert record["distance"]["camstyle"] < 1e-5 < record["distance"]["crop"]
  table = cd.format_table(record)
  assert "random crop" in table and "0.049" in table and "0.485" in table
