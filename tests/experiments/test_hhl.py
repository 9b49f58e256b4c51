"""`python -m experiments.hhl` end to end, as a user runs it (subprocesses): a tiny run records its
switches and scalars, SIGKILL then rerun ends identical, and missing inputs are one line."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from reid_jax import paths
from reid_jax.configs import demo as demo_config
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import metrics as metrics_lib

REPO = Path(__file__).resolve().parents[2]
# A StarGAN trained for 3 iterations on the tiny world: its fakes are poor, but they are a complete
# camera-style set of that world, which is what the HHL trainer reads.
STARGAN_MICRO = ("--config=reid_jax/configs/stargan.py:tiny", *demo_config.QUICK_STARGAN)
# 2 epochs of 3 CE steps on the tiny world, no pretrained trunk (these tests are about mechanics).
QUICK = ("--config.data.synthetic_size=tiny", "--config.num_epochs=2",
         "--config.model.pretrained=", "--config.optim.milestones=(1,)",
         "--config.checkpoint_every_steps=2")


def _command(module, *flags):
  return [sys.executable, "-m", module, *flags]


# Mechanics runs (a few steps) compile with LLVM's optimisation off: compiling, not running, is
# their cost, and this about halves it. Runs whose figures are compared with measured ones keep
# XLA's default.
def _env(fast_compile: bool = True) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if fast_compile:
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
  return env


def _run(module, *flags, timeout=900):
  env = _env()
  return subprocess.run(_command(module, *flags), cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _one_error_line(result):
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 1, result.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
  return lines[0]


@pytest.fixture(scope="module")
def hhl_data_dir(data_dir, tmp_path_factory):
  """A private data_dir on the session's tiny raw trees, with synth_market's camera-style set."""
  root = tmp_path_factory.mktemp("hhl_data")
  for name in ("synth_market", "synth_duke"):
    paths.raw_dir(root, name).parent.mkdir(parents=True, exist_ok=True)
    paths.raw_dir(root, name).symlink_to(paths.raw_dir(data_dir, name), target_is_directory=True)
  made = _run("experiments.stargan", "--dataset=synth_market", f"--data_dir={root}",
              f"--workdir={root / 'stargan'}", *STARGAN_MICRO)
  assert made.returncode == 0, made.stderr[-3000:]
  return root


def _hhl(data_dir, workdir, *extra, src="synth_duke", tgt="synth_market"):
  return _run("experiments.hhl", f"--src={src}", f"--tgt={tgt}", f"--data_dir={data_dir}",
              f"--workdir={workdir}", *QUICK, *extra)


@pytest.fixture(scope="module")
def whole_run(hhl_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("hhl_runs") / "whole"
  result = _hhl(hhl_data_dir, workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


@pytest.mark.slow
def test_tiny_run_records_the_variant_switches_and_every_loss_term(whole_run):
  workdir, result = whole_run
  results = json.loads((workdir / "results.json").read_text())
  assert results["experiment"] == "hhl" and results["variant"] == "tiny"
  assert results["hhl"]["variant"] == "hhl" and results["hhl"]["beta"] == 0.5
  assert results["hhl"]["bn_passes"] == "separate" and results["hhl"]["target_labels"] == "unique"
  assert results["embedding_layers"] == "reference_code"
  assert results["steps"] == 6 and set(results["eval"]) == {"synth_market", "synth_duke"}
  # Tiny world: 16 source ids x 4 / 16 = 4 triplet batches, 16 x 20 / 4 target ones: the triplet
  # stream runs out first and both restart every 4 steps (docs/hhl.md §5).
  assert "target 4 x (1 + 6 camera styles)" in result.stdout
  assert "restart every 4 steps" in result.stdout
  scalars = metrics_lib.read_scalars(workdir / "tb")
  tags = {tag for _, tag in scalars}
  for name in ("train/cross_entropy", "train/triplet", "train/triplet_prec", "train/loss",
               "lr/trunk", "lr/classifier"):
    assert name in tags, sorted(tags)
  # The total is L_cross + 0.5 L_CD at every logged step.
  logged = sorted(step for step, tag in scalars if tag == "train/loss")
  assert logged
  for step in logged:
    assert scalars[step, "train/loss"] == pytest.approx(
        scalars[step, "train/cross_entropy"] + 0.5 * scalars[step, "train/triplet"], rel=1e-5)
  assert (workdir / "figures" / "rank_list_synth_market.png").stat().st_size > 0


def _wait_for_checkpoint(process, directory: Path, timeout=600):
  start = time.time()
  while time.time() - start < timeout:
    if directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir()):
      return
    if process.poll() is not None:
      raise AssertionError(f"run ended before a checkpoint: {process.stderr.read()[-2000:]}")
    time.sleep(0.2)
  raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_same_results(hhl_data_dir, whole_run, tmp_path):
  whole, _ = whole_run
  cut = tmp_path / "cut"
  env = _env()
  process = subprocess.Popen(
      _command("experiments.hhl", "--src=synth_duke", "--tgt=synth_market",
               f"--data_dir={hhl_data_dir}", f"--workdir={cut}", *QUICK),
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  _wait_for_checkpoint(process, cut / "checkpoints")
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (cut / "results.json").exists()
  resumed = _hhl(hhl_data_dir, cut)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resuming from the checkpoint of step" in resumed.stdout
  a = json.loads((whole / "results.json").read_text())
  b = json.loads((cut / "results.json").read_text())
  assert a["eval"] == b["eval"] and a["steps"] == b["steps"] and a["hhl"] == b["hhl"]
  assert a["config_sha256"] == b["config_sha256"]
  (va, sa), (vb, sb) = evaluate_lib.restore_variables(whole), evaluate_lib.restore_variables(cut)
  assert sa == sb
  for x, y in zip(jax.tree.leaves(va), jax.tree.leaves(vb)):
    np.testing.assert_array_equal(x, y)


def test_without_data_one_line_says_where_both_archives_go(tmp_path):
  start = time.time()
  result = _run("experiments.hhl", "--src=duke", "--tgt=market", f"--data_dir={tmp_path}",
                f"--workdir={tmp_path / 'wd'}")
  line = _one_error_line(result)
  assert time.time() - start < 30
  for name, archive in (("duke", "DukeMTMC-reID.zip"), ("market", "Market-1501")):
    assert archive in line and str(paths.raw_dir(tmp_path, name)) in line, line
  assert not (tmp_path / "wd" / "checkpoints").exists()


@pytest.mark.slow
def test_missing_camstyle_set_prints_the_stargan_command(hhl_data_dir, tmp_path):
  result = _hhl(hhl_data_dir, tmp_path / "wd", src="synth_market", tgt="synth_duke")
  line = _one_error_line(result)
  assert "python -m experiments.stargan --dataset=synth_duke" in line, line
  assert not (tmp_path / "wd" / "checkpoints").exists()


@pytest.mark.parametrize("flag, field", [
    ("--config.hhl.bn_passes=both", "hhl.bn_passes"),
    ("--config.hhl.target_labels=random", "hhl.target_labels"),
    ("--config.model.bn_groups=0", "model.bn_groups"),
])
def test_a_bad_switch_is_one_line_naming_the_field(flag, field, tmp_path):
  result = _run("experiments.hhl", "--src=synth_duke", "--tgt=synth_market",
                f"--data_dir={tmp_path}", f"--workdir={tmp_path / 'wd'}", flag)
  assert field in _one_error_line(result)
  assert not (tmp_path / "wd").exists() or not (tmp_path / "wd" / "config.json").exists()
