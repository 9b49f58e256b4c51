"""A user's own datasets through the commands: `--src=list:...`, `--tgt=folder:...`, then
`experiments.evaluate --dataset=folder:...` (subprocesses, as a user runs them)."""

import csv
import json
import math
import shutil

import pytest

from reid_jax import paths
from reid_jax.data import datasets
from reid_jax.data import parsing
from tests.experiments.test_baseline import QUICK, _one_error_line, _run


def _user_data(data_dir, tmp_path):
  """The tiny synth_market tree copied as a plain Market-like folder, and a CSV of synth_duke."""
  folder = tmp_path / "my_market"
  shutil.copytree(paths.raw_dir(data_dir, "synth_market"), folder,
                  ignore=shutil.ignore_patterns("SYNTHETIC.json"))
  duke = paths.raw_dir(data_dir, "synth_duke")
  listed = tmp_path / "my_duke.csv"
  with listed.open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "pid", "camid", "split"])
    for split in datasets.SPLITS:
      for r in parsing.list_split(duke, "duke", split):
        writer.writerow([str(r.path), r.pid, r.camid + 1, split])
  return f"folder:{folder}", f"list:{listed}"


@pytest.mark.slow
def test_user_datasets_train_and_evaluate(data_dir, tmp_path):
  folder, listed = _user_data(data_dir, tmp_path)
  user_data_dir = tmp_path / "data"
  workdir = tmp_path / "wd"
  result = _run("experiments.baseline", f"--src={listed}", f"--tgt={folder}",
                f"--data_dir={user_data_dir}", f"--workdir={workdir}", *QUICK, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  for name in (folder, listed):
    entry = results["eval"][name]
    assert math.isfinite(entry["rank1"]) and math.isfinite(entry["mAP"]), entry
  assert (paths.tfds_dir(user_data_dir) / "user").is_dir()
  result = _run("experiments.evaluate", f"--workdir={workdir}", f"--dataset={folder}",
                f"--data_dir={user_data_dir}", timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "rank list" in result.stdout
  assert list((workdir / "figures").glob(f"rank_list_{datasets.get_spec(folder).name}.png"))


def test_bad_user_list_is_one_line_before_training(data_dir, tmp_path):
  folder, listed = _user_data(data_dir, tmp_path)
  path = tmp_path / "my_duke.csv"
  lines = path.read_text().splitlines()
  lines[3] = lines[3].rsplit(",", 1)[0] + ",validation"
  path.write_text("\n".join(lines) + "\n")
  result = _run("experiments.baseline", f"--src={listed}", f"--tgt={folder}",
                f"--data_dir={tmp_path / 'data'}", f"--workdir={tmp_path / 'wd'}", *QUICK,
                timeout=120)
  line = _one_error_line(result)
  assert "my_duke.csv row 4" in line and "unknown split 'validation'" in line
  assert not (tmp_path / "wd").exists()
