"""`python -m experiments.demo --quick` end to end (a subprocess, as a newcomer runs it): every
stage runs once, the table has the main rows with the paper's figures beside them, report.md
links only files that exist, and a rerun starts no stage again and prints the same table."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reid_jax import demo
from reid_jax import paths
from reid_jax.configs import demo as demo_config
from reid_jax.training import workdir as workdir_lib
from tests.experiments import test_hhl as hhl_tests


def _demo(data_dir, workdir, *extra):
  return subprocess.run(
      [sys.executable, "-m", "experiments.demo", "--quick", f"--data_dir={data_dir}",
       f"--workdir={workdir}", *extra], cwd=hhl_tests.REPO, env=hhl_tests._env(),
      capture_output=True, text=True, timeout=1800)


def _table(stdout: str) -> list[str]:
  lines = stdout.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("method"))
  return lines[start:start + 2 + len(demo_config.MAIN_ROWS)]


@pytest.fixture(scope="module")
def quick_demo(data_dir, tmp_path_factory):
  """A private data_dir on the session's tiny raw trees (the demo writes its StarGAN set there)."""
  root = tmp_path_factory.mktemp("demo_data")
  for name in ("synth_market", "synth_duke"):
    paths.raw_dir(root, name).parent.mkdir(parents=True, exist_ok=True)
    paths.raw_dir(root, name).symlink_to(paths.raw_dir(data_dir, name), target_is_directory=True)
  workdir = tmp_path_factory.mktemp("demo") / "quick"
  first = _demo(root, workdir)
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  return root, workdir, first


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_prints_the_main_rows(quick_demo):
  _, workdir, first = quick_demo
  record = json.loads((workdir / demo.DEMO_FILE).read_text())
  assert [row["key"] for row in record["rows"]] == list(demo_config.MAIN_ROWS)
  # Every command stage was printed and run; each learned row's score is its run's target entry.
  for module in ("baseline", "stargan", "hhl", "arn", "camstyle_distance"):
    assert f"$ python -m experiments.{module} " in first.stdout, module
  for row in record["rows"]:
    assert len(row["scores"]) == 1, row["key"]
    if row["key"] == "handcrafted":
      continue
    (run,) = row["runs"]
    results = workdir_lib.read_results(workdir / run)
    entry = results["eval"]["synth_market"]
    assert row["scores"][0] == {m: entry[m] for m in demo_config.METRICS}, row["key"]
  supervised = workdir_lib.read_results(workdir / "runs" / "supervised_seed0")
  assert (supervised["src"], supervised["tgt"]) == ("synth_market", "synth_duke")
  # The table: one line per main row, our rank-1 from demo.json, the paper's rank-1 / mAP beside it.
  table = _table(first.stdout)
  for line, row in zip(table[2:], record["rows"]):
    assert line.startswith(row["label"]), line
    assert line[52:60].strip() == f"{100 * row['mean']['rank1']:.1f}", line  # rank-1 column
    paper = demo_config.PAPER[("duke", "market")][row["key"]]
    assert f"{paper[0]}: {paper[2]['rank1']:.1f} / {paper[2]['mAP']:.1f}" in line, line
  # report.md links only files that exist.
  report = workdir / "report.md"
  links = re.findall(r"\]\(([^)]+)\)", report.read_text()) + re.findall(
      r"<img src=\"([^\"]+)\"", report.read_text())
  assert links, report.read_text()[:2000]
  for link in links:
    assert (report.parent / link).is_file(), link


@pytest.mark.slow
def test_a_rerun_starts_no_stage_and_prints_the_same_table(quick_demo):
  root, workdir, first = quick_demo
  began = time.monotonic()
  again = _demo(root, workdir)
  seconds = time.monotonic() - began
  assert again.returncode == 0, again.stderr[-3000:]
  assert "$ python -m" not in again.stdout  # no command started
  stages = [line for line in again.stdout.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
  assert stages and all(line.endswith(": done") for line in stages), stages
  assert _table(again.stdout) == _table(first.stdout)
  print(f"rerun: {seconds:.1f} s")


@pytest.mark.parametrize("flags, part", [(("--seeds=0",), "--seeds=0"),
                                         (("--quick", "--size=full"), "--quick")])
def test_a_bad_flag_is_one_usage_line_before_any_work(tmp_path, flags, part):
  result = subprocess.run(
      [sys.executable, "-m", "experiments.demo", f"--data_dir={tmp_path / 'data'}",
       f"--workdir={tmp_path / 'w'}", *flags], cwd=hhl_tests.REPO, env=hhl_tests._env(),
      capture_output=True, text=True, timeout=120)
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 2, result.stderr[-2000:]
  assert len(lines) == 1 and part in lines[0], lines
  assert not (tmp_path / "w").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("quick", [True, False])
def test_a_camstyle_set_of_another_stargan_recipe_is_refused_naming_the_folder(
    tmp_path, monkeypatch, quick):
  """The set's MANIFEST must carry the hash of the config the demo's StarGAN stage would train:
  the same hash passes, any other stops the plan with one line naming the folder to delete."""
  from reid_jax.configs import stargan as stargan_config
  from reid_jax.data import camstyle
  from reid_jax.errors import ReidError
  from reid_jax.training import preflight
  folder = tmp_path / "camstyle" / "synth_market_x"
  folder.mkdir(parents=True)
  monkeypatch.setattr(preflight, "camstyle_set", lambda *args: folder)
  monkeypatch.setattr(demo, "_camstyle_ready", lambda options: True)
  options = demo.Options(src="synth_duke", tgt="synth_market", workdir=tmp_path / "w",
                         data_dir=tmp_path, quick=quick)
  overrides = [tuple(flag[len("--config."):].split("=", 1))
               for flag in (demo_config.QUICK_STARGAN if quick else ())]
  wanted = workdir_lib.config_sha256(stargan_config.command_config("synth_market", None, overrides))
  (folder / camstyle.MANIFEST).write_text(json.dumps({"config_sha256": wanted}))
  assert demo._stale_camstyle(options) is None
  assert demo.plan(options).stargan_workdir is None  # reused: StarGAN is not trained again

  (folder / camstyle.MANIFEST).write_text(json.dumps({"config_sha256": "0" * 64}))
  with pytest.raises(ReidError) as error:
    demo.plan(options)
  message = str(error.value)
  assert "\n" not in message and f"delete {folder} " in message and wanted[:12] in message
