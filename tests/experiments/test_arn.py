"""`python -m experiments.arn` end to end, as a user runs it (subprocesses): a tiny run records its
switches and every loss term, `experiments.evaluate` reproduces its target figures with the
target's BatchNorm statistics, SIGKILL then rerun ends identical, and bad input is one line."""

import json
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from reid_jax import paths
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import metrics as metrics_lib
from tests.experiments import test_hhl as hhl_tests

# 2 epochs on the tiny world, no pretrained trunk, narrow encoders (these tests are about
# mechanics); the tiny config's 1-epoch warm-up of E_I stays.
QUICK = ("--config.data.synthetic_size=tiny", "--config.num_epochs=2",
         "--config.model.pretrained=", "--config.model.width=32", "--config.optim.milestones=(1,)",
         "--config.checkpoint_every_steps=2", "--config.log_every_steps=1")
_run, _one_error_line = hhl_tests._run, hhl_tests._one_error_line


def _arn(data_dir, workdir, *extra, src="synth_market", tgt="synth_duke"):
  return _run("experiments.arn", f"--src={src}", f"--tgt={tgt}", f"--data_dir={data_dir}",
              f"--workdir={workdir}", *QUICK, *extra)


@pytest.fixture(scope="module")
def whole_run(data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("arn_runs") / "whole"
  result = _arn(data_dir, workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


@pytest.mark.slow
def test_tiny_run_records_the_switches_and_every_loss_term(whole_run, data_dir):
  workdir, result = whole_run
  results = json.loads((workdir / "results.json").read_text())
  assert results["experiment"] == "arn" and results["variant"] == "tiny"
  assert results["arn"]["variant"] == "arn" and results["arn"]["gamma"] == 1500.0
  assert results["arn"]["difference"] == "dsn" and results["frozen_epochs"] == {"trunk": 1}
  assert set(results["eval"]) == {"synth_market", "synth_duke"}
  assert "source 32 (8 ids x 4) and target 32" in result.stdout
  scalars = metrics_lib.read_scalars(workdir / "tb")
  tags = {tag for _, tag in scalars}
  for name in ("train/cross_entropy", "train/contrastive", "train/reconstruction",
               "train/difference", "train/loss", "lr/trunk", "lr/encoders", "lr/classifier"):
    assert name in tags, sorted(tags)
  logged = sorted(step for step, tag in scalars if tag == "train/loss")
  assert len(logged) == results["steps"]
  for step in logged:  # L_total = L_class + 0.01 L_ctrs + 2 L_rec + 1500 L_diff (§1.1 (5))
    assert scalars[step, "train/loss"] == pytest.approx(
        scalars[step, "train/cross_entropy"] + 0.01 * scalars[step, "train/contrastive"]
        + 2.0 * scalars[step, "train/reconstruction"]
        + 1500.0 * scalars[step, "train/difference"], rel=1e-5)
  # E_I waits out its warm-up epoch, then trains at 1e-7 (x0.1 from epoch 1 here).
  per_epoch = results["steps"] // 2
  lrs = [scalars[step, "lr/trunk"] for step in logged]
  assert lrs[:per_epoch] == [0.0] * per_epoch
  assert lrs[per_epoch:] == pytest.approx([1e-8] * per_epoch)
  assert scalars[logged[0], "lr/encoders"] == pytest.approx(1e-3)
  assert (workdir / "figures" / "rank_list_synth_duke.png").stat().st_size > 0

  # experiments.evaluate rebuilds ARN from config.json and uses the target's statistics.
  evaluated = _run("experiments.evaluate", f"--workdir={workdir}", "--dataset=synth_duke",
                   f"--data_dir={data_dir}")
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  again = json.loads((workdir / "results.json").read_text())["eval"]["synth_duke"]
  for key in ("rank1", "rank5", "mAP"):
    assert again[key] == pytest.approx(results["eval"]["synth_duke"][key], abs=1e-6)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_same_results(data_dir, whole_run, tmp_path):
  whole, _ = whole_run
  cut = tmp_path / "cut"
  process = subprocess.Popen(
      hhl_tests._command("experiments.arn", "--src=synth_market", "--tgt=synth_duke",
                         f"--data_dir={data_dir}", f"--workdir={cut}", *QUICK),
      cwd=hhl_tests.REPO, env=hhl_tests._env(), stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True)
  hhl_tests._wait_for_checkpoint(process, cut / "checkpoints")
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (cut / "results.json").exists()
  resumed = _arn(data_dir, cut)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resuming from the checkpoint of step" in resumed.stdout
  a = json.loads((whole / "results.json").read_text())
  b = json.loads((cut / "results.json").read_text())
  assert a["eval"] == b["eval"] and a["steps"] == b["steps"] and a["arn"] == b["arn"]
  (va, sa), (vb, sb) = evaluate_lib.restore_variables(whole), evaluate_lib.restore_variables(cut)
  assert sa == sb
  for x, y in zip(jax.tree.leaves(va), jax.tree.leaves(vb)):
    np.testing.assert_array_equal(x, y)


def test_without_data_one_line_says_where_both_archives_go(tmp_path):
  start = time.time()
  result = _run("experiments.arn", "--src=market", "--tgt=duke", f"--data_dir={tmp_path}",
                f"--workdir={tmp_path / 'wd'}")
  line = _one_error_line(result)
  assert time.time() - start < 30
  for name, archive in (("duke", "DukeMTMC-reID.zip"), ("market", "Market-1501")):
    assert archive in line and str(paths.raw_dir(tmp_path, name)) in line, line
  assert not (tmp_path / "wd" / "checkpoints").exists()


@pytest.mark.parametrize("flag, field", [
    ("--config.arn.difference=frobenius", "arn.difference"),
    ("--config.model.map_size=(7, 7)", "model.map_size"),
])
def test_a_bad_switch_is_one_line_naming_the_field(flag, field, tmp_path):
  result = _run("experiments.arn", "--src=synth_market", "--tgt=synth_duke",
                f"--data_dir={tmp_path}", f"--workdir={tmp_path / 'wd'}", flag)
  assert field in _one_error_line(result)
  assert not (tmp_path / "wd" / "config.json").exists()
