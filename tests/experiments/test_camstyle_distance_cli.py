"""`python -m experiments.camstyle_distance`: one line and exit 1 for an untrained workdir; the
table and camstyle_distance.json for a trained one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from reid_jax import paths
from reid_jax.data import camstyle
from reid_jax.data import tfds_builders
from reid_jax.models import heads
from reid_jax.training import checkpoint as checkpoint_lib

REPO = Path(__file__).resolve().parents[2]
MODEL = {"arch": "resnet_small", "num_features": 8, "triplet_features": 0, "dropout_rate": 0.5,
         "last_stride": 2, "dtype": "float32"}
CONFIG = {"experiment": "baseline", "variant": "tiny", "src": "synth_duke", "tgt": "synth_market",
          "model": MODEL, "data": {"height": 32, "width": 16, "eval_batch_size": 18,
                                   "num_workers": 2, "synthetic_size": "tiny"}}


# Mechanics runs (a few steps) compile with LLVM's optimisation off: compiling, not running, is
# their cost, and this about halves it. Runs whose figures are compared with measured ones keep
# XLA's default.
def _env(fast_compile: bool = True) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if fast_compile:
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
  return env


def _run(*args):
  env = dict(_env(), PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", "experiments.camstyle_distance", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def _one_line_failure(result, status):
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == status, result.stderr[-2000:]
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  return lines[0]


def test_workdir_without_checkpoint_is_one_line_exit_1(tmp_path):
  workdir = tmp_path / "wd"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(CONFIG))
  line = _one_line_failure(_run(f"--workdir={workdir}", f"--data_dir={tmp_path}"), 1)
  assert line.startswith("error: no checkpoint in") and str(workdir / "checkpoints") in line
  assert not (workdir / "camstyle_distance.json").exists()


def _random_variables(model):
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 16, 3)))
  rng = np.random.default_rng(1)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return rng.normal(0, np.prod(leaf.shape[:-1]) ** -0.5, leaf.shape).astype(np.float32)
    return np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, np.float32)

  return jax.tree_util.tree_map_with_path(fill, dict(shapes))


def test_trained_workdir_prints_the_table_and_writes_the_json(data_dir, tmp_path):
  target = tfds_builders.load_split("synth_market", "train", data_dir, size="tiny")
  private = tmp_path / "data"  # the session's raw and prepared data, a private camstyle/
  private.mkdir()
  (private / "raw").symlink_to(paths.raw_dir(data_dir, "synth_market").parent)
  paths.tfds_dir(private).symlink_to(paths.tfds_dir(data_dir))
  workdir = tmp_path / "wd"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(CONFIG))
  with checkpoint_lib.Checkpointer(workdir / "checkpoints") as ckpt:
    ckpt.save(3, _random_variables(heads.build_reid_net(MODEL, 4)))

  # (A missing camera-style set: tests/evaluation/test_camstyle_distance.py, in process.)
  world = camstyle.world_of("synth_market", "tiny")
  folder = camstyle.set_dir(private, world)
  folder.mkdir(parents=True)
  for i, name in enumerate(target.labels["filename"]):  # every fake is the real image itself
    for j in range(1, 7):
      (folder / camstyle.fake_name(camstyle.stem_of(str(name)), j)).write_bytes(target.encoded(i))
  camstyle.write_manifest(folder, dataset="synth_market", num_cameras=6, num_images=len(target),
                          checkpoint_step=0, config_sha256="test", world=world)
  done = _run(f"--workdir={workdir}", f"--data_dir={private}", "--max_images=4", "--seed=2")
  assert done.returncode == 0, done.stderr[-3000:]
  record = json.loads((workdir / "camstyle_distance.json").read_text())
  assert record["n_images"] == 4 and record["seed"] == 2 and record["checkpoint_step"] == 3
  assert record["distance"]["camstyle"] < 1e-5 < record["distance"]["flip"]
  rows = {line.split("  ")[0]: line.split() for line in done.stdout.splitlines()}
  crop = rows["random crop"]
  assert float(crop[2]) == round(record["distance"]["crop"], 4) and crop[-1] == "0.049"
  assert rows["camstyle, all cameras"][-1] == "0.485"
  assert "written to" in done.stdout
