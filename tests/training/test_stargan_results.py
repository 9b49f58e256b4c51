"""StarGAN's results.json and its labelled, readable sample grids (issue 16 item 8)."""

import json

import numpy as np
from PIL import Image

from reid_jax.configs import stargan as stargan_config
from reid_jax.training import metrics as metrics_lib
from reid_jax.training import stargan
from reid_jax.training import workdir as workdir_lib


def _config():
  config = stargan_config.get_config("tiny")
  config.unlock()
  config.dataset = "synth_market"
  config.config_name = "reid_jax/configs/stargan.py:tiny"
  return config


def _log_losses(workdir, iterations=30):
  writer = metrics_lib.MetricWriter(workdir / "tb")
  for it in range(1, iterations + 1):
    scalars = {"D/loss": float(it), "lr/D": 1e-4}
    if it % 2 == 0:
      scalars["G/loss"] = 100.0 + it
    writer.scalars(it, scalars)
  writer.close()


MANIFEST = {"num_files": 720, "num_images": 120, "num_cameras": 6, "checkpoint_step": 30}


def test_results_json_has_the_run_and_the_set(tmp_path):
  _log_losses(tmp_path)
  summary = {"steps": 30, "num_iters": 30, "train_seconds": 12.5, "num_images": 120,
             "num_cameras": 6, "resumed_from": None}
  stargan.write_results(tmp_path, _config(), "synth_market", summary=summary)
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["experiment"] == "stargan" and results["variant"] == "tiny"
  assert results["dataset"] == "synth_market"
  assert results["config_sha256"] == workdir_lib.config_sha256(_config())
  assert (results["iterations"], results["train_seconds"]) == (30, 12.5)
  assert set(results["losses"]) == {"D/loss", "G/loss"}  # lr/* left out
  d = results["losses"]["D/loss"]
  assert (d["final"], d["final_iteration"], d["last_n"]) == (30.0, 30, stargan.LOSS_WINDOW)
  assert d["mean_last"] == np.mean(np.arange(21, 31))
  g = results["losses"]["G/loss"]
  assert g["final"] == 130.0 and g["mean_last"] == np.mean(100 + np.arange(12, 31, 2))
  assert "camstyle" not in results

  # The set is written afterwards (or with --generate_only): only that part changes.
  stargan.write_results(tmp_path, _config(), "synth_market", manifest=MANIFEST,
                        camstyle_dir=tmp_path / "camstyle")
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["losses"]["D/loss"]["final"] == 30.0 and results["iterations"] == 30
  assert results["camstyle"] == {
      "dir": str(tmp_path / "camstyle"), "num_files": 720, "num_images": 120, "num_cameras": 6,
      "generator_iteration": 30, "generator": "workdir checkpoint"}
  newer = dict(MANIFEST, checkpoint_step=-1)
  stargan.write_results(tmp_path, _config(), "synth_market", manifest=newer,
                        camstyle_dir=tmp_path / "camstyle", generator="torch:220000-G.ckpt")
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["camstyle"]["generator"] == "torch:220000-G.ckpt"
  assert results["losses"]["G/loss"]["final"] == 130.0
  assert not [p for p in tmp_path.iterdir() if p.name not in ("results.json", "tb")]


def test_train_writes_results_json(tmp_path, monkeypatch):
  """`train` merges its summary and the logged losses into results.json (the training itself is
  covered by test_stargan_trainer; here it is replaced by its summary)."""
  _log_losses(tmp_path, iterations=4)
  summary = {"steps": 4, "num_iters": 4, "train_seconds": 1.0, "num_images": 120,
             "num_cameras": 6, "resumed_from": None}
  monkeypatch.setattr(stargan, "_train", lambda *a, **k: dict(summary))
  returned = stargan.train(_config(), tmp_path, "synth_market", tmp_path, show_progress=False)
  assert returned["losses"]["D/loss"]["last_n"] == 4
  results = workdir_lib.read_results(tmp_path)
  assert results["iterations"] == 4 and results["losses"] == returned["losses"]


def test_loss_summary_without_tensorboard_files(tmp_path):
  assert stargan.loss_summary(tmp_path) == {}


def test_labelled_sample_grid_is_large_and_named():
  rows, h, w, cameras = 3, 32, 16, 6
  real = np.full((rows, h, w, 3), 0.9, np.float32)  # bright tiles: dark pixels are text
  fakes = np.stack([np.full((rows, h, w, 3), 0.8, np.float32) for _ in range(cameras)])
  plain = stargan.sample_grid(real, fakes)
  grid = stargan.labelled_sample_grid(real, fakes, np.array([0, 1, 2]))
  scale = stargan.sample_scale(h)
  assert scale * h >= 128 and scale == 4
  assert grid.shape[0] > plain.shape[0] * 3 and grid.shape[1] > plain.shape[1] * 3
  dark = (grid < 100).all(axis=-1)
  top = grid.shape[0] - (rows * (h * scale + 2) - 2)
  left = grid.shape[1] - ((cameras + 1) * (w * scale + 2) - 2)
  assert top > 10 and left > 10
  # One column name above each column ("real", "to c1", ...), one row name beside each row.
  step_w, step_h = w * scale + 2, h * scale + 2
  for c in range(cameras + 1):
    assert dark[:top, left + c * step_w:left + c * step_w + w * scale].sum() > 15, c
  for r in range(rows):
    assert dark[top + r * step_h:top + r * step_h + h * scale, :left].sum() > 15, r
  assert not dark[top:, left:].any()  # the tiles carry no text
  # Nearest upscaling: each source pixel becomes a scale x scale block of the same value.
  assert (grid[top:top + h * scale, left:left + w * scale] == stargan.to_uint8(0.9, "round")).all()
  # Different cameras give different row names.
  other = stargan.labelled_sample_grid(real, fakes, np.array([3, 4, 5]))
  assert other.shape == grid.shape and not np.array_equal(other[:, :left], grid[:, :left])


def test_labelled_sample_grid_keeps_large_tiles():
  real = np.zeros((2, 128, 64, 3), np.float32)
  grid = stargan.labelled_sample_grid(real, np.stack([real] * 3), np.array([0, 1]))
  assert stargan.sample_scale(128) == 1 and grid.shape[0] < 2 * 130 + 40
  Image.fromarray(grid)  # a valid RGB image
