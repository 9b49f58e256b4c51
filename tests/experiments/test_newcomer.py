"""The command line as a newcomer meets it (issue 16): each case is run as a user would type it.

Items 1-6: overrides without --config, validation before any long work, nothing locked before
training, mixed real/synthetic pairs, one line instead of a traceback (also on Ctrl-C), --help.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reid_jax import paths
from reid_jax.data import camstyle

REPO = Path(__file__).resolve().parents[2]
VALIDATION_SECONDS = 30  # every validation failure must come before this much time has passed
# The resume/failure tests' shortened run (tests/experiments/test_baseline.py), long enough to
# be interrupted mid-training.
QUICK = ("--config.data.synthetic_size=tiny", "--config.model.pretrained=",
         "--config.optim.milestones=(1,)", "--config.checkpoint_every_steps=2",
         "--config.data.height=64", "--config.data.width=32")
STARGAN_MICRO = ("--config=reid_jax/configs/stargan.py:tiny", "--config.data.synthetic_size=tiny",
                 "--config.model.image_size=16",
                 "--config.model.g_conv_dim=4", "--config.model.g_repeat_num=1",
                 "--config.model.d_conv_dim=4", "--config.model.d_repeat_num=2",
                 "--config.batch_size=8", "--config.optim.num_iters=3",
                 "--config.optim.decay_start=1")


# Mechanics runs (a few steps) compile with LLVM's optimisation off: compiling, not running, is
# their cost, and this about halves it. Runs whose figures are compared with measured ones keep
# XLA's default.
def _env(fast_compile: bool = True) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if fast_compile:
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
  return env


def _run(module, *flags):
  env = _env()
  start = time.monotonic()
  result = subprocess.run([sys.executable, "-m", module, *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  result.seconds = time.monotonic() - start
  return result


def _fails_in_one_line(result, status=1):
  """The last stderr line is the message; no traceback; the exit status; returns the line."""
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == status, result.stderr[-2000:]
  assert len(lines) == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert result.seconds < VALIDATION_SECONDS, result.seconds
  return lines[0]


def _synth_data_dir(data_dir, tmp_path, *names):
  """A private data_dir whose raw/ links the session's tiny trees (nothing written there leaks)."""
  private = tmp_path / "data"
  for name in names:
    paths.raw_dir(private, name).parent.mkdir(parents=True, exist_ok=True)
    paths.raw_dir(private, name).symlink_to(paths.raw_dir(data_dir, name), target_is_directory=True)
  return private


# --- item 1: overrides without --config, a file without a variant ------------------------------

def test_overrides_without_config_apply_to_the_tiny_default(tmp_path):
  workdir = tmp_path / "w"
  result = _run("experiments.baseline", "--src=synth_duke", "--tgt=synth_market",
                f"--data_dir={tmp_path / 'data'}", f"--workdir={workdir}",
                "--config.num_epochs=1", "--config.model.pretrained=/no/such/resnet50.pth")
  line = _fails_in_one_line(result)  # stops at the pretrained file, before any data or training
  assert "model.pretrained=/no/such/resnet50.pth" in line
  assert "config reid_jax/configs/baseline.py:tiny" in result.stdout
  assert "num_epochs: 1" in result.stdout
  assert not (tmp_path / "data").exists()  # nothing generated: validation came first

  result = _run("experiments.baseline", "--src=synth_duke", "--tgt=synth_market",
                f"--data_dir={tmp_path / 'data'}", f"--workdir={workdir}",
                "--config=reid_jax/configs/baseline.py", "--config.num_epochs=1",
                "--config.model.pretrained=/no/such/resnet50.pth")
  _fails_in_one_line(result)
  assert "config reid_jax/configs/baseline.py:tiny" in result.stdout  # not the paper variant


# --- items 2 and 4: validation before training; mixed real/synthetic pairs ----------------------

@pytest.mark.parametrize("src, tgt", [("synth_duke", "market"), ("market", "synth_duke")])
def test_a_missing_real_dataset_of_a_mixed_pair_is_said_first(tmp_path, src, tgt):
  result = _run("experiments.baseline", f"--src={src}", f"--tgt={tgt}",
                f"--data_dir={tmp_path / 'data'}", f"--workdir={tmp_path / 'w'}")
  line = _fails_in_one_line(result)
  assert "dataset market not found" in line and "batch_size" not in line
  assert not paths.raw_dir(tmp_path / "data", "synth_duke").exists()  # nothing long ran first
  assert not (tmp_path / "w" / "checkpoints").exists()


def test_a_corrupt_target_image_is_found_before_training(data_dir, tmp_path):
  private = _synth_data_dir(data_dir, tmp_path, "synth_duke")
  target = paths.raw_dir(private, "synth_market")
  shutil.copytree(paths.raw_dir(data_dir, "synth_market"), target)
  victim = sorted((target / "query").glob("*.jpg"))[3]
  victim.write_bytes(victim.read_bytes()[:150])  # truncated, as by an interrupted copy
  workdir = tmp_path / "w"
  result = _run("experiments.baseline", "--src=synth_duke", "--tgt=synth_market",
                f"--data_dir={private}", f"--workdir={workdir}", *QUICK, "--config.num_epochs=1")
  line = _fails_in_one_line(result)
  assert "corrupt image" in line and victim.name in line and "data_prep.synthetic" in line
  assert not (workdir / "checkpoints").exists() and not (workdir / "config.json").exists()


def test_stargan_refuses_a_camstyle_folder_of_another_generator_before_training(
    data_dir, tmp_path):
  private = _synth_data_dir(data_dir, tmp_path, "synth_market")
  world = camstyle.world_of("synth_market", "tiny")
  folder = camstyle.set_dir(private, world)
  folder.mkdir(parents=True)
  (folder / "MANIFEST.json").write_text(json.dumps(
      {"checkpoint_step": 3, "config_sha256": "made-by-another-config", "world": world}))
  workdir = tmp_path / "wd"
  result = _run("experiments.stargan", "--dataset=synth_market", f"--data_dir={private}",
                f"--workdir={workdir}", *STARGAN_MICRO)
  line = _fails_in_one_line(result)
  assert "holds fakes of another generator" in line and str(folder) in line
  assert not (workdir / "checkpoints").exists()


def test_generate_only_on_an_empty_workdir_says_train_first_at_once(tmp_path):
  result = _run("experiments.stargan", "--dataset=synth_market", f"--data_dir={tmp_path / 'd'}",
                f"--workdir={tmp_path / 'none'}", "--generate_only", *STARGAN_MICRO)
  assert "train first" in _fails_in_one_line(result)
  assert not (tmp_path / "d").exists()  # no dataset was prepared before saying so


# --- item 3: nothing locked before training -----------------------------------------------------

def test_a_run_that_failed_before_training_does_not_lock_its_workdir(tmp_path):
  workdir = tmp_path / "w"
  common = ("experiments.baseline", "--src=synth_duke", "--tgt=synth_market",
            f"--data_dir={tmp_path / 'data'}", f"--workdir={workdir}")
  first = _run(*common, "--config.model.pretrained=/typo/resnet50.pth")
  assert "model.pretrained" in _fails_in_one_line(first)
  assert not (workdir / "config.json").exists()
  second = _run(*common, "--config.model.pretrained=/typo2/resnet50.pth", "--config.seed=3")
  line = _fails_in_one_line(second)
  assert "/typo2/" in line and "different config" not in line


# --- item 5: one line instead of a traceback ----------------------------------------------------

@pytest.mark.parametrize("module, flags, status, part", [
    ("experiments.baseline", ("--config.nonexistent=1",), 2, "nonexistent: unknown config field"),
    ("experiments.baseline", ("--config=no/such/config.py",), 1, "no/such/config.py not found"),
    ("experiments.baseline", ("--config=reid_jax/configs/baseline.py:bogus",), 2,
     "unknown baseline variant 'bogus'"),
    ("experiments.stargan", ("--config=reid_jax/configs/baseline.py:tiny",), 1,
     "is a baseline config; this command needs a stargan config"),
    ("experiments.evaluate", ("--config.seed=1",), 2, "this command takes no config"),
])
def test_config_mistakes_are_one_line(tmp_path, module, flags, status, part):
  datasets = (("--dataset=synth_market",) if module != "experiments.baseline" else
              ("--src=synth_duke", "--tgt=synth_market"))
  extra = (f"--workdir={tmp_path / 'w'}",) + datasets
  result = _run(module, f"--data_dir={tmp_path / 'data'}", *extra, *flags)
  line = _fails_in_one_line(result, status)
  assert part in line, line


@pytest.mark.slow
def test_ctrl_c_during_training_is_one_line_and_leaves_no_temporary_checkpoint(data_dir, tmp_path):
  workdir = tmp_path / "w"
  env = _env()
  process = subprocess.Popen(
      [sys.executable, "-m", "experiments.baseline", "--src=synth_duke", "--tgt=synth_market",
       f"--data_dir={data_dir}", f"--workdir={workdir}", *QUICK, "--config.num_epochs=1000"],
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  checkpoints = workdir / "checkpoints"
  deadline = time.monotonic() + 300
  while not (checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())):
    assert process.poll() is None, process.stderr.read()[-2000:]
    assert time.monotonic() < deadline, "no checkpoint appeared"
    time.sleep(0.2)
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=120)
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert process.returncode == 130, stderr[-2000:]
  assert lines == ["interrupted; rerun the same command to resume"], stderr[-2000:]
  assert not list(checkpoints.glob("*tmp*"))


# --- item 6: help -------------------------------------------------------------------------------

@pytest.mark.parametrize("module, fields", [
    ("experiments.baseline", ("data.batch_size", "variant tiny changes", "baseline.py:paper")),
    ("experiments.stargan", ("optim.num_iters", "stargan.py:reference_code")),
    ("experiments.pretrain", ("pool.size", "pretrain.py:tiny")),
    ("experiments.evaluate", ("--rerank",)),
    ("experiments.demo", ("--ablations", "--seeds", "--reverse", "--quick")),
])
def test_help_exits_0_and_lists_datasets_variants_and_fields(module, fields):
  result = _run(module, "--help")
  assert result.returncode == 0, result.stderr[-2000:]
  for part in ("synth_market", "market, duke, msmt", *fields):
    assert part in result.stdout, part
  if module not in ("experiments.evaluate", "experiments.demo"):
    assert "--config" in result.stdout


def test_helpfull_exits_0():
  result = _run("experiments.baseline", "--helpfull")
  assert result.returncode == 0 and "--src" in result.stdout and "absl" in result.stdout
