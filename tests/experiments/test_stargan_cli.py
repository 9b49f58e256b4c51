"""`python -m experiments.stargan`: trains, writes the camera-style set, resumes, fails cleanly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reid_jax import paths
from reid_jax.data import camstyle

REPO = Path(__file__).resolve().parents[2]
MICRO = ["--config=reid_jax/configs/stargan.py:tiny", "--config.data.synthetic_size=tiny",
         "--config.model.image_size=16",
         "--config.model.g_conv_dim=4", "--config.model.g_repeat_num=1",
         "--config.model.d_conv_dim=4", "--config.model.d_repeat_num=2",
         "--config.model.conv_impl=xla", "--config.batch_size=8", "--config.optim.num_iters=3",
         "--config.optim.decay_start=1", "--config.sample_every=3", "--config.checkpoint_every=3"]


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
  return subprocess.run([sys.executable, "-m", "experiments.stargan", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_trains_writes_and_skips_on_rerun(data_dir, tmp_path):
  # A private data_dir sharing the session's raw tree: the camera-style set written here must not
  # appear in the session data_dir that other tests read.
  shared_raw = paths.raw_dir(data_dir, "synth_market")
  data_dir = tmp_path / "data"
  paths.raw_dir(data_dir, "synth_market").parent.mkdir(parents=True)
  paths.raw_dir(data_dir, "synth_market").symlink_to(shared_raw, target_is_directory=True)
  workdir = tmp_path / "wd"
  args = ["--dataset=synth_market", f"--data_dir={data_dir}", f"--workdir={workdir}", *MICRO]
  done = _run(*args)
  assert done.returncode == 0, done.stderr[-3000:]
  world = camstyle.world_of("synth_market", "tiny")  # the world MICRO asks for
  out = paths.camstyle_dir(data_dir, "synth_market", "tiny", 0)
  manifest = json.loads((out / camstyle.MANIFEST).read_text())
  assert manifest["world"] == world and list((data_dir / "camstyle").iterdir()) == [out]
  names = sorted(p.name for p in out.glob("*.jpg"))
  assert len(names) == manifest["num_files"] == manifest["num_images"] * 6
  assert names[0].endswith("_fake_1.jpg") and manifest["checkpoint_step"] == 3
  assert (workdir / "config.json").exists() and list((workdir / "figures").glob("*.png"))
  stems = sorted({n.rsplit("_fake_", 1)[0] for n in names})
  assert camstyle.find_camstyle_set(data_dir, "synth_market", stems, 6, world=world) == out
  results = json.loads((workdir / "results.json").read_text())
  assert results["camstyle"]["dir"] == str(out) and results["camstyle"]["world"] == world
  # The generator's own figures, judged after training on every image of this small world.
  assert results["quality"]["num_images"] == manifest["num_images"]
  assert results["quality"]["generator_iteration"] == 3 and "person kept" in done.stdout

  mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
  again = _run(*args, "--generate_only")
  assert again.returncode == 0, again.stderr[-3000:]
  assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes  # nothing rewritten

  changed = _run(*args, "--config.optim.g_lr=0.5")
  assert changed.returncode == 1
  assert "optim.g_lr" in changed.stderr and "Traceback" not in changed.stderr


def test_cli_missing_real_dataset_is_one_line_exit_1(tmp_path):
  done = _run("--dataset=market", f"--data_dir={tmp_path}", f"--workdir={tmp_path / 'wd'}", *MICRO)
  assert done.returncode == 1
  assert "Traceback" not in done.stderr and "market" in done.stderr.splitlines()[-1]


def test_cli_generate_only_without_checkpoint_says_train_first(data_dir, tmp_path):
  done = _run("--dataset=synth_market", f"--data_dir={data_dir}", f"--workdir={tmp_path / 'none'}",
              "--generate_only", *MICRO)
  assert done.returncode == 1 and "train first" in done.stderr
