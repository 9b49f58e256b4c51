"""notebooks/*.ipynb: every Colab notebook runs top to bottom in quick mode on the tiny synthetic
world (nbclient, kernel python3, REID_JAX_NOTEBOOK_QUICK=1), and its install cell pins the jax of
requirements.txt.

One private data dir is shared by the module (its datasets are prepared once), the HHL notebook
reads the camera-style set the StarGAN notebook wrote, and the evaluate notebook restores the
baseline notebook's workdir.
"""

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from reid_jax import paths
from reid_jax.configs import demo as demo_config

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NAMES = ("baseline", "stargan", "hhl", "arn", "evaluate")
SRC, TGT = "synth_duke", "synth_market"  # the notebooks' defaults


def _read(name: str):
  return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _tagged(nb, tag: str):
  (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
  return cell


def _requirements_pin(package: str) -> str:
  for line in (REPO / "requirements.txt").read_text().splitlines():
    match = re.match(rf"{re.escape(package)}==(\S+)", line.strip())
    if match:
      return match.group(1)
  raise AssertionError(f"{package} is not pinned in requirements.txt")


def _code(source: str) -> str:
  """The source without comments (what the cell does, not what it says)."""
  return "\n".join(line.split("#", 1)[0] for line in source.splitlines())


@pytest.mark.parametrize("name", NAMES)
def test_install_cell_pins_requirements_jax_for_tpu_and_is_committed_clean(name):
  nb = _read(name)
  nbformat.validate(nb)
  install = _code(_tagged(nb, "install").source)
  assert re.findall(r"jax\[tpu\]==([\w.]+)", install) == [_requirements_pin("jax")], install
  assert "requirements.txt" in install and "git" in install and "clone" in install
  assert 'find_spec("reid_jax") is None' in install  # harmless where reid_jax is importable
  assert "tensorflow" not in install.lower()  # TensorFlow is not assumed
  parameters = _tagged(nb, "parameters").source
  assert "REID_JAX_NOTEBOOK_QUICK" in parameters and "demo_config.QUICK_" in parameters
  for cell in nb.cells:  # committed with outputs cleared
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, (name, cell.source[:80])
  assert nb.metadata.get("accelerator") == "TPU"


def _execute(name: str, tmp: Path, **env) -> dict:
  """Runs notebooks/<name>.ipynb in quick mode; raises nbclient's CellExecutionError (the cell
  and its traceback) on any cell error. Returns the executed notebook (also saved under tmp) and
  the text of all its outputs."""
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top
  nb = _read(name)
  client = NotebookClient(nb, kernel_name="python3", timeout=900,
                          resources={"metadata": {"path": str(REPO)}})
  try:
    client.execute(env=dict(os.environ, JAX_PLATFORMS="cpu", REID_JAX_NOTEBOOK_QUICK="1",
                            **{k: str(v) for k, v in env.items()}))
  finally:
    nbformat.write(nb, tmp / f"{name}.executed.ipynb")
  text, images = [], 0
  for cell in nb.cells:
    for output in cell.get("outputs", []):
      text.append(output.get("text", ""))
      data = output.get("data", {})
      text.append(data.get("text/plain", "") + data.get("text/markdown", ""))
      images += "image/png" in data
  return {"nb": nb, "text": "\n".join(text), "images": images}


@pytest.fixture(scope="module")
def data_root(data_dir, tmp_path_factory):
  """A private data dir on the session's tiny raw trees: the notebooks prepare their datasets
  and write the StarGAN's camera-style set here."""
  root = tmp_path_factory.mktemp("notebook_data")
  for name in (SRC, TGT):
    paths.raw_dir(root, name).parent.mkdir(parents=True, exist_ok=True)
    paths.raw_dir(root, name).symlink_to(paths.raw_dir(data_dir, name), target_is_directory=True)
  return root


@pytest.fixture(scope="module")
def baseline_run(data_root, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("notebook_baseline")
  run = _execute("baseline", tmp, REID_JAX_DATA_DIR=data_root, REID_JAX_WORKDIR=tmp / "workdir")
  # Read now: the evaluate notebook adds entries to this workdir's results.json.
  run["results"] = json.loads((tmp / "workdir" / "results.json").read_text())
  run["workdir"] = tmp / "workdir"
  return run


@pytest.fixture(scope="module")
def stargan_run(data_root, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("notebook_stargan")
  run = _execute("stargan", tmp, REID_JAX_DATA_DIR=data_root, REID_JAX_WORKDIR=tmp / "workdir")
  run["workdir"] = tmp / "workdir"
  return run


def _check_scores(results: dict, run: dict, row: str):
  """The target's entry has rank-1 and mAP in [0, 1], and the notebook's table shows them in %
  beside the paper's row."""
  entry = results["eval"][TGT]
  for metric in ("rank1", "mAP"):
    assert 0.0 <= entry[metric] <= 1.0, entry
  line = f"| {TGT} | " + " | ".join(f"{100 * entry[m]:.1f}" for m in demo_config.METRICS) + " |"
  assert line in run["text"], run["text"][-3000:]
  paper_label = demo_config.PAPER[("duke", "market")][row][0]
  assert f"| paper: {paper_label} on real duke → market" in run["text"]
  assert "CpuDevice" in run["text"]  # jax.devices() was printed
  assert run["images"] >= 1  # the rank list was displayed


@pytest.mark.slow
def test_baseline_notebook_trains_and_shows_scores_and_rank_list(baseline_run):
  results = baseline_run["results"]
  assert (results["experiment"], results["src"], results["tgt"]) == ("baseline", SRC, TGT)
  assert results["epochs"] == 2 and results["config"] == "reid_jax/configs/baseline.py:tiny"
  _check_scores(results, baseline_run, "baseline")
  assert (baseline_run["workdir"] / "figures" / f"rank_list_{TGT}.png").stat().st_size > 0


@pytest.mark.slow
def test_stargan_notebook_writes_the_set_and_shows_the_sample_grid(stargan_run, data_root):
  results = json.loads((stargan_run["workdir"] / "results.json").read_text())
  camstyle = results["camstyle"]
  assert results["iterations"] == 3 and camstyle["world"]["size"] == "tiny"
  assert Path(camstyle["dir"]).parent == data_root / "camstyle"
  assert (Path(camstyle["dir"]) / "MANIFEST.json").is_file()
  assert camstyle["num_files"] == camstyle["num_images"] * camstyle["num_cameras"] > 0
  grids = sorted((stargan_run["workdir"] / "figures").glob("stargan_samples_*.png"))
  assert grids and grids[-1].stat().st_size > 0
  assert stargan_run["images"] >= 2  # the grid and one image's fakes
  assert "CpuDevice" in stargan_run["text"]


@pytest.mark.slow
def test_hhl_notebook_reuses_the_camstyle_set_and_trains(data_root, stargan_run, tmp_path):
  run = _execute("hhl", tmp_path, REID_JAX_DATA_DIR=data_root,
                 REID_JAX_WORKDIR=tmp_path / "workdir",
                 REID_JAX_STARGAN_WORKDIR=tmp_path / "stargan")
  # The StarGAN notebook's set was found: no StarGAN ran here.
  assert f"camera-style set of {TGT}: {data_root / 'camstyle'}" in run["text"]
  assert "experiments.stargan" not in run["text"] and not (tmp_path / "stargan").exists()
  results = json.loads((tmp_path / "workdir" / "results.json").read_text())
  assert results["experiment"] == "hhl" and results["hhl"]["variant"] == "hhl"
  _check_scores(results, run, "hhl")


@pytest.mark.slow
def test_arn_notebook_trains_and_shows_scores(data_root, tmp_path):
  run = _execute("arn", tmp_path, REID_JAX_DATA_DIR=data_root,
                 REID_JAX_WORKDIR=tmp_path / "workdir")
  results = json.loads((tmp_path / "workdir" / "results.json").read_text())
  assert results["experiment"] == "arn" and results["variant"] == "tiny"
  _check_scores(results, run, "arn")


@pytest.mark.slow
def test_evaluate_notebook_restores_the_baseline_checkpoint(data_root, baseline_run, tmp_path):
  workdir = baseline_run["workdir"]
  run = _execute("evaluate", tmp_path, REID_JAX_DATA_DIR=data_root, REID_JAX_WORKDIR=workdir)
  assert "experiments.baseline" not in run["text"]  # restored, not retrained
  steps = baseline_run["results"]["steps"]
  assert f"checkpoint step {steps}" in run["text"], run["text"][-3000:]
  results = json.loads((workdir / "results.json").read_text())
  # The restored checkpoint scores what training recorded; the re-ranked entry is added.
  trained, again = baseline_run["results"]["eval"][TGT], results["eval"][TGT]
  for metric in demo_config.METRICS:
    assert again[metric] == pytest.approx(trained[metric], abs=1e-6), metric
  reranked = results["eval"][f"{TGT}+rerank"]
  assert reranked["rerank"] is True and 0.0 <= reranked["mAP"] <= 1.0
  for name in (f"rank_list_{TGT}.png", f"rank_list_{TGT}+rerank.png"):
    assert (workdir / "figures" / name).stat().st_size > 0
  assert run["images"] == 2 and "CpuDevice" in run["text"]
