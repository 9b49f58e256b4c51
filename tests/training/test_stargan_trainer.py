"""StarGAN trainer and camera-style writer (docs/hhl.md §10.4-10.7, docs/design.md §4-§5)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from reid_jax import paths
from reid_jax.configs import stargan as stargan_config
from reid_jax.data import camstyle
from reid_jax.errors import ReidError
from reid_jax.training import metrics as metrics_lib
from reid_jax.training import stargan

DATASET = "synth_market"
NUM_CAMERAS = 6


def micro_config(**optim):
  """The tiny variant shrunk to seconds: 16x8 images, widths 4, 4 iterations."""
  config = stargan_config.get_config("tiny")
  config.data.synthetic_size = "tiny"  # the session data_dir's world
  config.model.image_size = 16
  config.model.g_conv_dim = 4
  config.model.g_repeat_num = 1
  config.model.d_conv_dim = 4
  config.model.d_repeat_num = 2  # 16x8 -> 4x2
  config.model.conv_impl = "xla"  # compiles twice as fast as the CPU matmul path at these sizes
  config.batch_size = 4
  config.optim.n_critic = 2
  config.optim.num_iters = 4
  config.optim.decay_start = 2
  config.log_every = 1
  config.sample_every = 2
  config.checkpoint_every = 2
  config.num_sample_images = 3
  config.generate.batch_size = 32
  config.optim.update(optim)
  return config


# --- schedule ----------------------------------------------------------------------------------------


def test_code_effective_decay_ends_at_0_999_of_base():
  """docs/hhl.md §10.5: 110 subtractions of 1e-4 / 110,000 after iteration 110k: 9.99e-5 at the end."""
  s = stargan.Schedule(220_000, 110_000, 808, "code_effective", 1000)
  lr = lambda i: 1e-4 * float(s.lr_factor(i))
  assert lr(0) == lr(110_000) == 1e-4
  assert lr(110_999) == 1e-4  # the first update follows iteration index 110,999 (the 111,000th)
  np.testing.assert_allclose(lr(111_000), 1e-4 * (1 - 1 / 110_000), rtol=1e-6)
  np.testing.assert_allclose(lr(219_999), 1e-4 * (1 - 109 / 110_000), rtol=1e-6)
  np.testing.assert_allclose(lr(220_000), 9.99e-5, rtol=1e-6)


def test_linear_to_zero_and_epoch_lengths_of_the_paper_variant():
  config = stargan_config.get_config("paper")
  s = stargan.make_schedule(config, 12_936)  # Market: 808 iterations per epoch (docs/hhl.md §10.5)
  assert (s.iters_per_epoch, s.num_iters, s.decay_start) == (808, 161_600, 80_800)
  assert float(s.lr_factor(80_800)) == 1.0
  np.testing.assert_allclose(float(s.lr_factor(121_200)), 0.5)
  assert float(s.lr_factor(161_600)) == 0.0
  reference = stargan.make_schedule(stargan_config.get_config("reference_code"), 12_936)
  assert (reference.num_iters, reference.decay_start) == (220_000, 110_000)


def test_unknown_lr_decay_is_refused():
  config = micro_config(lr_decay="cosine")
  with pytest.raises(ReidError, match="lr_decay"):
    stargan.make_schedule(config, 100)


def test_target_cameras_permute_the_batch_labels():
  cameras = jnp.array([0, 0, 1, 3, 5, 5, 5, 2])
  for seed in range(5):
    target = np.asarray(stargan.target_cameras(jax.random.PRNGKey(seed), cameras))
    assert sorted(target) == sorted(np.asarray(cameras))
  assert any(not np.array_equal(stargan.target_cameras(jax.random.PRNGKey(s), cameras), cameras)
             for s in range(5))


# --- the step ----------------------------------------------------------------------------------------


def test_d_every_iteration_g_only_when_asked():
  config = micro_config()
  schedule = stargan.make_schedule(config, 16)
  step = stargan.make_train_step(config, NUM_CAMERAS, schedule)
  state = stargan.init_state(config, NUM_CAMERAS)
  images = np.random.default_rng(0).uniform(-1, 1, (4, 16, 8, 3)).astype(np.float32)
  cameras = np.array([0, 1, 2, 3], np.int32)
  key = jax.random.PRNGKey(0)
  copy = lambda tree: jax.tree.map(np.array, tree)
  g0, d0 = copy(state.g_params), copy(state.d_params)
  state, metrics = step(state, images, cameras, key, update_g=False)
  assert "G/loss" not in metrics and int(state.step) == 1
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(state.g_params)))
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(d0), jax.tree.leaves(state.d_params)))
  g1 = copy(state.g_params)
  state, metrics = step(state, images, cameras, key, update_g=True)
  assert "G/loss_rec" in metrics
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(state.g_params)))
  # D loss terms add up as docs/hhl.md §10.4 writes them.
  total = (metrics["D/loss_real"] + metrics["D/loss_fake"] + config.loss.lambda_cls * metrics["D/loss_cls"]
           + config.loss.lambda_gp * metrics["D/loss_gp"])
  np.testing.assert_allclose(float(metrics["D/loss"]), float(total), rtol=1e-5)


# --- loop: resume, TensorBoard, sample grid ---------------------------------------------------------


def _params(workdir):
  g, _ = stargan.load_generator(micro_config(), workdir, NUM_CAMERAS)
  state, _ = stargan.restore_state(workdir, micro_config(), NUM_CAMERAS)
  return jax.tree.leaves(jax.device_get((state.g_params, state.d_params, state.g_opt_state,
                                         state.d_opt_state)))


def test_resume_is_exact_and_outputs_are_written(data_dir, tmp_path, capsys):
  config = micro_config()
  straight = tmp_path / "straight"
  capsys.readouterr()
  summary = stargan.train(config, straight, DATASET, data_dir)
  assert summary["steps"] == 4 and summary["resumed_from"] is None
  # The bar: each step program's compilation announced once, the bar complete.
  out = capsys.readouterr().out
  for what in ("the D step", "the D+G step", "the sample translator"):
    assert out.count(f"compiling {what} ...") == 1, out
    assert f"compiled {what} in " in out
  assert f"stargan {DATASET}: 100%" in out and "4/4" in out and "img/s=" in out
  resumed = tmp_path / "resumed"
  stargan.train(config, resumed, DATASET, data_dir, stop_at=3, show_progress=False)
  assert stargan.load_generator(config, resumed, NUM_CAMERAS)[1] == 3
  summary = stargan.train(config, resumed, DATASET, data_dir, show_progress=False)
  assert summary["resumed_from"] == 3 and summary["steps"] == 4
  for a, b in zip(_params(straight), _params(resumed)):
    np.testing.assert_array_equal(a, b)

  # TensorBoard: D losses every iteration, G losses only on iterations (i + 1) % n_critic == 0.
  scalars = metrics_lib.read_scalars(straight / "tb")
  d_steps = sorted(step for step, tag in scalars if tag == "D/loss_gp")
  g_steps = sorted(step for step, tag in scalars if tag == "G/loss_rec")
  assert d_steps == [1, 2, 3, 4] and g_steps == [2, 4]
  # Sample grids: rows = sample images, columns = real + one per camera.
  grid = np.asarray(Image.open(straight / "figures" / "stargan_samples_0000004.png"))
  scale = stargan.sample_scale(16)  # tiles enlarged to be readable, with labels around them
  assert grid.shape[0] > 3 * 16 * scale and grid.shape[1] > (NUM_CAMERAS + 1) * 8 * scale
  # A different config on the same workdir is refused, naming the field.
  with pytest.raises(ReidError, match="optim.g_lr"):
    stargan.train(micro_config(g_lr=1e-3), straight, DATASET, data_dir, show_progress=False)


def test_nan_guard_names_the_iteration_and_keeps_the_last_good_checkpoint(data_dir, tmp_path,
                                                                          monkeypatch):
  config = micro_config()  # logs every iteration, checkpoints every 2
  real_step = stargan.make_train_step

  def poisoned(*args):
    step = real_step(*args)

    def train_step(state, *rest, **kwargs):
      state, metrics = step(state, *rest, **kwargs)
      if int(state.step) == 3:
        metrics = {**metrics, "D/loss": jnp.float32(jnp.nan)}
      return state, metrics
    return train_step

  monkeypatch.setattr(stargan, "make_train_step", poisoned)
  workdir = tmp_path / "wd"
  with pytest.raises(ReidError) as error:
    stargan.train(config, workdir, DATASET, data_dir, show_progress=False)
  line = str(error.value)
  assert "D/loss nan" in line and "at iteration 3;" in line and "\n" not in line
  assert "Last good checkpoint: step 2 in" in line and "optim.g_lr" in line
  assert stargan.load_generator(config, workdir, NUM_CAMERAS)[1] == 2  # nothing saved after it
  assert not (workdir / "results.json").exists()


def test_sample_grid_layout():
  real = np.full((2, 4, 2, 3), -1.0, np.float32)
  fakes = np.stack([np.full((2, 4, 2, 3), c / 2.0, np.float32) for c in range(3)])
  grid = stargan.sample_grid(real, fakes, gap=1)
  assert grid.shape == (2 * 5 - 1, 4 * 3 - 1, 3)
  assert grid[0, 0, 0] == 0 and grid[0, 3, 0] == 128 and grid[5, 6, 0] == 191 and grid[5, 9, 0] == 255
  assert grid[4, 0, 0] == 255  # gap row


def test_to_uint8_truncates_like_torchvision_0_2():
  y = np.array([-1.5, -1.0, 0.0, 0.999, 1.2], np.float32)
  np.testing.assert_array_equal(stargan.to_uint8(y, "truncate"), [0, 0, 127, 254, 255])
  np.testing.assert_array_equal(stargan.to_uint8(y, "round"), [0, 0, 128, 255, 255])


# --- writer -----------------------------------------------------------------------------------------


def _stems(data_dir):
  from reid_jax.data import tfds_builders
  labels = tfds_builders.split_labels(DATASET, "train", data_dir)
  return sorted(camstyle.stem_of(f) for f in labels["filename"])


def test_writer_file_set_is_complete_resumable_and_atomic(data_dir, tmp_path, monkeypatch):
  config = micro_config()
  workdir = tmp_path / "wd"
  stargan.train(config, workdir, DATASET, data_dir, show_progress=False)
  out = tmp_path / "camstyle"
  stems = _stems(data_dir)

  # Interrupt the writer after 50 files: nothing under a final name is partial, no MANIFEST.
  real_save = stargan._save_jpeg_atomic
  calls = {"n": 0}

  def failing_save(path, image, quality):
    calls["n"] += 1
    if calls["n"] > 50:
      raise KeyboardInterrupt
    real_save(path, image, quality)

  monkeypatch.setattr(stargan, "_save_jpeg_atomic", failing_save)
  with pytest.raises(KeyboardInterrupt):
    stargan.write_camstyle_set(config, workdir, DATASET, data_dir, out_dir=out, show_progress=False)
  assert not (out / camstyle.MANIFEST).exists()
  written = {p.name for p in out.glob("*.jpg")}
  assert 0 < len(written) <= 50
  (out / ".x_fake_1.jpg.123.tmp").write_bytes(b"\xff\xd8")  # a crashed writer's temp file

  calls["n"] = -10**9
  manifest = stargan.write_camstyle_set(config, workdir, DATASET, data_dir, out_dir=out,
                                        show_progress=False)
  expected = set(camstyle.expected_names(stems, NUM_CAMERAS))
  assert {p.name for p in out.iterdir() if p.name != camstyle.MANIFEST} == expected
  assert calls["n"] == -10**9 + len(expected) - len(written)  # the second run skipped done files
  assert manifest == json.loads((out / camstyle.MANIFEST).read_text())
  assert manifest["num_files"] == len(stems) * NUM_CAMERAS and manifest["checkpoint_step"] == 4
  assert manifest["cameras"] == [1, 2, 3, 4, 5, 6]
  assert manifest["world"] == camstyle.world_of(DATASET, "tiny")  # the world of the images read
  with Image.open(out / camstyle.fake_name(stems[0], 6)) as image:
    assert image.format == "JPEG" and image.size == (8, 16)  # width x height
    image.load()  # fully decodable

  # A complete set is left alone; one made by another generator is refused.
  before = os.stat(out / camstyle.fake_name(stems[0], 1)).st_mtime_ns
  stargan.write_camstyle_set(config, workdir, DATASET, data_dir, out_dir=out, show_progress=False)
  assert os.stat(out / camstyle.fake_name(stems[0], 1)).st_mtime_ns == before
  g_params, _ = stargan.load_generator(config, workdir, NUM_CAMERAS)
  with pytest.raises(ReidError, match="another generator"):
    stargan.write_camstyle_set(config, workdir, DATASET, data_dir, out_dir=out, g_params=g_params,
                               checkpoint_step=7, show_progress=False)


def test_writer_output_is_the_generator_applied_per_camera(data_dir, tmp_path):
  """The file for camera j holds G(x, onehot(j - 1)) of the resized image (up to JPEG loss)."""
  config = micro_config()
  config.generate.jpeg_quality = 100
  workdir = tmp_path / "wd"
  stargan.train(config, workdir, DATASET, data_dir, show_progress=False)
  out = tmp_path / "camstyle"
  stargan.write_camstyle_set(config, workdir, DATASET, data_dir, out_dir=out, show_progress=False)
  data = stargan.TrainingImages(DATASET, data_dir, config)
  g_params, _ = stargan.load_generator(config, workdir, NUM_CAMERAS)
  generator, _ = stargan.build_models(config, NUM_CAMERAS)
  index = int(np.argsort(np.asarray(data.filenames, dtype=object))[5])
  x = data.test_images([index])
  stem = camstyle.stem_of(data.filenames[index])
  expected = {j: stargan.to_uint8(generator.apply({"params": g_params}, x,
                                                 jax.nn.one_hot(jnp.array([j - 1]), 6)))[0]
              for j in (1, 4)}
  luma = lambda a: np.asarray(Image.fromarray(a).convert("L"), int)  # JPEG keeps luma, subsamples chroma
  for j, other in ((1, 4), (4, 1)):
    with Image.open(out / camstyle.fake_name(stem, j)) as image:
      saved = luma(np.asarray(image.convert("RGB")))
    error = np.abs(saved - luma(expected[j])).mean()
    assert error < 3 and error < np.abs(saved - luma(expected[other])).mean()
  data.close()


# --- camstyle set lookup -----------------------------------------------------------------------------


def test_find_camstyle_set_names_missing_files_and_accepts_the_reference_place(tmp_path):
  stems = ["0002_c1s1_000451_03", "0007_c2s3_070952_01"]
  with pytest.raises(ReidError, match=r"0002_c1s1_000451_03_fake_1\.jpg.*experiments.stargan --dataset=market"):
    camstyle.find_camstyle_set(tmp_path, "market", stems, 6)
  reference = paths.reference_camstyle_dir(tmp_path, "market")
  reference.mkdir(parents=True)
  for name in camstyle.expected_names(stems, 6)[:-1]:
    (reference / name).write_bytes(b"")
  with pytest.raises(ReidError, match=r"lacks 1 of 12 .*0007_c2s3_070952_01_fake_6\.jpg"):
    camstyle.find_camstyle_set(tmp_path, "market", stems, 6)
  (reference / camstyle.fake_name(stems[1], 6)).write_bytes(b"")
  assert camstyle.find_camstyle_set(tmp_path, "market", stems, 6) == reference
  # Ours wins once complete; without its MANIFEST it is reported as interrupted.
  ours = paths.camstyle_dir(tmp_path, "market")
  ours.mkdir(parents=True)
  for name in camstyle.expected_names(stems, 6):
    (ours / name).write_bytes(b"")
  assert camstyle.find_camstyle_set(tmp_path, "market", stems, 6) == reference
  camstyle.write_manifest(ours, dataset="market", num_cameras=6, num_images=2, checkpoint_step=1,
                          config_sha256="x")
  assert camstyle.find_camstyle_set(tmp_path, "market", stems, 6) == ours
  with pytest.raises(ReidError, match="MANIFEST.json is for 6 cameras, market has 8"):
    camstyle.find_camstyle_set(tmp_path, "market", stems, 8)


def test_fake_name_contract():
  assert camstyle.fake_name("0002_c1s1_000451_03", 6) == "0002_c1s1_000451_03_fake_6.jpg"
  assert camstyle.stem_of("bounding_box_train/0002_c1s1_000451_03.jpg") == "0002_c1s1_000451_03"
  assert camstyle.expected_names(["a"], 2) == ["a_fake_1.jpg", "a_fake_2.jpg"]
  with pytest.raises(ValueError):
    camstyle.fake_name("a", 0)


# --- end to end on synth_market ----------------------------------------------------------------------


def _body_colours(images):
  """A fixed embedding: mean colours of 8 horizontal bands of the crop's central half, where the
  person stands (head, torso, legs). `[..., H, W, 3]` -> `[..., 24]`."""
  h, w = images.shape[-3:-1]
  centre = images[..., w // 4:w - w // 4, :]
  bands = centre.reshape(images.shape[:-3] + (8, h // 8, -1, 3)).mean(axis=(-3, -2))
  return bands.reshape(images.shape[:-3] + (-1,))


@pytest.mark.slow
def test_tiny_training_moves_camera_colours_and_keeps_identity(data_dir, tmp_path):
  """The tiny config's networks and loss (identity term included) on the tiny synth_market world,
  1,000 iterations (about two minutes on 2 cores; the config's 4,000 are sized for the medium world).

  Camera style: a fake's mean colour lies much nearer the target camera's real images than the
  source camera's. Identity: under a fixed embedding, fakes of one person in one camera style are
  nearer each other than fakes of different people in that style.
  """
  config = stargan_config.get_config("tiny")
  config.data.synthetic_size = "tiny"  # the session data_dir's world (the thresholds' calibration)
  config.optim.num_iters, config.optim.decay_start = 1000, 500
  workdir = tmp_path / "wd"
  stargan.train(config, workdir, DATASET, data_dir, show_progress=False)
  data = stargan.TrainingImages(DATASET, data_dir, config)
  g_params, _ = stargan.load_generator(config, workdir, NUM_CAMERAS)
  real = data.test_images(np.arange(len(data)))
  fakes = np.asarray(stargan.make_translate(config, NUM_CAMERAS)(g_params, real))  # [C, N, H, W, 3]
  cameras, pids = data.cameras, np.asarray(data.source.labels["pid"])
  data.close()

  camera_mean = np.stack([real[cameras == c].mean(axis=(0, 1, 2)) for c in range(NUM_CAMERAS)])
  fake_mean = fakes.mean(axis=(2, 3))  # [C, N, 3]
  to_target, to_source = [], []
  for n, source in enumerate(cameras):
    for target in range(NUM_CAMERAS):
      if target != source:
        to_target.append(np.linalg.norm(fake_mean[target, n] - camera_mean[target]))
        to_source.append(np.linalg.norm(fake_mean[target, n] - camera_mean[source]))
  colour_ratio = np.mean(to_target) / np.mean(to_source)

  embedding = _body_colours(fakes)  # [C, N, 24]
  same_person = pids[:, None] == pids[None]
  off_diagonal = ~np.eye(len(pids), dtype=bool)
  same, different = [], []
  for target in range(NUM_CAMERAS):
    distances = np.linalg.norm(embedding[target][:, None] - embedding[target][None], axis=-1)
    same.append(distances[same_person & off_diagonal].mean())
    different.append(distances[~same_person].mean())
  identity_ratio = np.mean(same) / np.mean(different)
  print(f"colour distance to target / source camera {colour_ratio:.3f}; "
        f"same / different person {identity_ratio:.3f}")
  assert colour_ratio < 0.5
  assert identity_ratio < 0.8
