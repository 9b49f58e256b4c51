"""experiments.report on fabricated demo workdirs: the table's numbers, the paper's beside ours,
links that resolve, the claims on hand-made cases, partial workdirs, the CLI's failure line."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from reid_jax import report
from reid_jax.training import metrics as metrics_lib

REPO = Path(__file__).resolve().parents[1]
METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP")
PAPER_BASELINE = {"source": "HHL Table 2 (docs/hhl.md §13)", "label": "Basel. (S)", "rank1": 44.6,
                  "rank5": 62.5, "rank10": 69.6, "rank20": 76.5, "mAP": 20.6}
TABLE1 = {"crop": 0.05, "flip": 0.03, "camstyle": 0.5, "camstyle_other": 0.52,
          "camstyle_own": 0.4}


def _scores(*values_per_seed):
  """One score dict per seed; a seed's value is either one number (all metrics) or five."""
  out = []
  for value in values_per_seed:
    five = value if isinstance(value, (tuple, list)) else (value,) * 5
    out.append(dict(zip(METRICS, five)))
  return out


def _row(key, group, runs, scores, paper=None, label=None):
  return {"key": key, "label": label or f"row {key}", "group": group, "runs": runs,
          "dataset": "synth_market", "scores": scores, "paper": paper}


def _png(path: Path, colour=(200, 10, 10)):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", (6, 4), colour).save(path)


def _tb(run: Path, tags=("train/loss", "train/cross_entropy", "train/accuracy", "lr/trunk",
                         "lr/classifier")):
  with metrics_lib.MetricWriter(run / "tb") as writer:
    for step in (1, 2, 3):
      writer.scalars(step, {tag: 1.0 / step for tag in tags})


def _results(run: Path, scores):
  run.mkdir(parents=True, exist_ok=True)
  entry = {**scores, "ap": "step", "distance": "euclidean", "rerank": False, "n_query": 5,
           "n_gallery": 20}
  (run / "results.json").write_text(json.dumps({"experiment": "x", "eval": {"synth_market": entry}}))


def _demo(root: Path, rows, *, seeds, ablations=False, stargan="runs/stargan_synth_market",
          table1=None):
  demo = {"src": "synth_duke", "tgt": "synth_market", "seeds": seeds, "ablations": ablations,
          "quick": False, "command": "python -m experiments.demo --seeds=2", "rows": rows,
          "stargan_workdir": stargan, "table1": table1 or {}}
  root.mkdir(parents=True, exist_ok=True)
  (root / "demo.json").write_text(json.dumps(demo))
  return demo


def full_workdir(root: Path, ablations=True):
  """Two seeds, every row, tb/ and figures for seed 0, a StarGAN workdir, Table 1."""
  rows = [_row("handcrafted", "main", [], _scores(0.02),
               paper={"source": "HHL Table 4 (docs/hhl.md §13)", "label": "LOMO", "rank1": 27.2,
                      "rank5": 41.6, "rank10": 49.1, "rank20": None, "mAP": 8.0})]
  values = {"baseline": (0.10, 0.14), "supervised": (0.60, 0.64), "hhl": (0.30, 0.32),
            "arn": (0.25, 0.27)}
  if ablations:
    values.update(hhl_lt=(0.12, 0.12), hhl_ld=(0.11, 0.13), hhl_lc=(0.26, 0.28),
                  arn_rec=(0.15, 0.17), arn_rec_private=(0.16, 0.16), arn_rec_sup=(0.2, 0.2))
  for key, (first, second) in values.items():
    group = ("hhl_ablation" if key.startswith("hhl_") else
             "arn_ablation" if key.startswith("arn_") else "main")
    runs = [f"runs/{key}_seed0", f"runs/{key}_seed1"]
    paper = PAPER_BASELINE if key == "baseline" else None
    # The baseline's seeds differ per metric, to check each column.
    scores = (_scores((0.10, 0.20, 0.30, 0.40, 0.05), (0.14, 0.22, 0.31, 0.40, 0.07))
              if key == "baseline" else _scores(first, second))
    rows.append(_row(key, group, runs, scores, paper=paper))
    for seed, run in enumerate(runs):
      _results(root / run, scores[seed])
    _tb(root / runs[0])
    _png(root / runs[0] / "figures" / "rank_list_synth_market.png")
  stargan = root / "runs" / "stargan_synth_market"
  _png(stargan / "figures" / "stargan_samples_0000009.png", (0, 0, 255))
  _png(stargan / "figures" / "stargan_samples_0000010.png", (0, 255, 0))
  _tb(stargan, tags=("D/loss", "G/loss", "lr/D", "lr/G"))
  table1 = {}
  for model in ("baseline", "hhl"):
    rel = f"runs/{model}_seed0/camstyle_distance.json"
    (root / rel).write_text(json.dumps({
        "distance": TABLE1, "checkpoint_step": 6, "n_images": 20, "n_target_images": 100,
        "paper": {"pair": "Duke -> Market-1501", "crop": 0.049, "flip": 0.034,
                  "camstyle": 0.485, "model": "source-only baseline", "twins": True}}))
    table1[model] = rel
  (root / "handcrafted_synth_market.json").write_text(json.dumps(
      {**_scores(0.02)[0], "ap": "step", "distance": "euclidean", "rerank": False,
       "n_query": 5, "n_gallery": 20}))
  return _demo(root, rows, seeds=2, ablations=ablations, table1=table1)


def _table_line(text: str, label: str) -> list[str]:
  """The cells of the first table line whose first cell is `label`."""
  for line in text.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("|") and cells[0] == label:
      return cells
  raise AssertionError(f"no table line for {label!r} in\n{text}")


def _links(text: str) -> list[str]:
  return (re.findall(r"\]\(([^)\s]+)\)", text)
          + re.findall(r"<img[^>]*src=[\"']?([^\"'\s>]+)", text))


def test_table_holds_mean_and_std_of_the_scores_beside_the_paper(tmp_path):
  full_workdir(tmp_path)
  path = report.write_report(tmp_path)
  assert path == tmp_path / "report.md"
  text = path.read_text()
  assert text.startswith("# Demo report: synth_duke -> synth_market")
  assert "python -m experiments.demo --seeds=2" in text
  cells = _table_line(text, "row baseline")
  # By hand: rank-1 (10, 14) -> 12.0 ± 2.83; rank-5 (20, 22) -> 21.0 ± 1.41;
  # rank-10 (30, 31) -> 30.5 ± 0.71; rank-20 (40, 40) -> 40.0 ± 0.0; mAP (5, 7) -> 6.0 ± 1.41.
  assert cells[1] == "2"
  assert cells[2:7] == ["12.0 ± 2.8", "21.0 ± 1.4", "30.5 ± 0.7", "40.0 ± 0.0", "6.0 ± 1.4"]
  assert cells[7] == "Basel. (S), HHL Table 2 (docs/hhl.md §13)"
  assert cells[8:13] == ["44.6", "62.5", "69.6", "76.5", "20.6"]
  assert "paper's row (real datasets)" in text
  assert "DukeMTMC-reID -> Market-1501" in text
  # The hand-crafted row: one score, no ±; the paper's missing rank-20 is a dash.
  cells = _table_line(text, "row handcrafted")
  assert cells[1:7] == ["1", "2.0", "2.0", "2.0", "2.0", "2.0"]
  assert cells[7:13] == ["LOMO, HHL Table 4 (docs/hhl.md §13)", "27.2", "41.6", "49.1", "-",
                         "8.0"]
  # HHL's ablation table and ARN's both hold their rows; Table 1 beside the paper's.
  assert _table_line(text, "row hhl_lc")[2:7] == ["27.0 ± 1.4"] * 5
  assert _table_line(text, "row arn_rec_sup")[2:7] == ["20.0 ± 0.0"] * 5
  assert _table_line(text, "camstyle, all cameras")[1:] == ["0.5000", "0.5000", "0.485"]
  assert _table_line(text, "camstyle, own camera")[1:] == ["0.4000", "0.4000", "-"]


def test_one_seed_shows_the_mean_alone(tmp_path):
  _results(tmp_path / "runs/baseline_seed0", _scores(0.1234)[0])
  _demo(tmp_path, [_row("baseline", "main", ["runs/baseline_seed0"], _scores(0.1234))], seeds=1)
  text = report.write_report(tmp_path).read_text()
  assert _table_line(text, "row baseline")[1:7] == ["1", "12.3", "12.3", "12.3", "12.3", "12.3"]


def test_every_link_points_to_an_existing_file_and_figures_are_copied(tmp_path):
  full_workdir(tmp_path)
  text = report.write_report(tmp_path).read_text()
  links = _links(text)
  assert links
  for link in links:
    assert not Path(link).is_absolute() and (tmp_path / link).exists(), link
  for name in ("curves_baseline_loss.png", "curves_hhl_lr.png", "curves_arn_rec_loss.png",
               "curves_stargan_loss.png", "rank_list_baseline.png", "rank_list_hhl.png",
               "rank_list_arn.png", "stargan_samples_0000010.png"):
    assert f"report/{name}" in links, name
  # The latest sample grid is the one copied (green), not iteration 9's (blue).
  assert Image.open(tmp_path / "report" / "stargan_samples_0000010.png").getpixel((0, 0)) == (
      0, 255, 0)
  assert "report/stargan_samples_0000009.png" not in links


def test_training_series_split_losses_and_learning_rates(tmp_path):
  _tb(tmp_path)
  losses, rates = report.training_series(tmp_path / "tb")
  assert list(losses) == ["train/loss", "train/cross_entropy"]  # train/accuracy is no loss
  assert losses["train/loss"] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
  assert sorted(rates) == ["lr/classifier", "lr/trunk"]
  png = report.curves_png("t", losses)
  two_panels = Image.open(io.BytesIO(png)).size[1]
  one_panel = Image.open(io.BytesIO(
      report.curves_png("t", {"train/loss": losses["train/loss"]}))).size[1]
  assert two_panels > one_panel


def _claims_of(tmp_path, values, *, ablations=False, table1=None):
  """Claims of a demo whose rows hold `values`: {key: [mAP per seed]} (every metric the same)."""
  rows = [_row(key, "main", [], _scores(*per_seed)) for key, per_seed in values.items()]
  demo = _demo(tmp_path, rows, seeds=2, ablations=ablations, table1=table1)
  return {c["name"]: c for c in report.claims(demo, tmp_path)}


def test_claim_hhl_above_baseline_by_two_std(tmp_path):
  # gap 31.0 - 20.5 = 10.5 > 2 x (1.41 + 0.71) = 4.24.
  claim = _claims_of(tmp_path, {"hhl": [0.30, 0.32], "baseline": [0.20, 0.21]})[
      "hhl_above_baseline"]
  assert claim["holds"] is True and "holds" in claim["sentence"]
  assert "10.5" in claim["sentence"] and "4.2" in claim["sentence"]
  # gap 24.0 - 20.5 = 3.5 < 2 x (2.83 + 0.71) = 7.07.
  claim = _claims_of(tmp_path, {"hhl": [0.22, 0.26], "baseline": [0.20, 0.21]})[
      "hhl_above_baseline"]
  assert claim["holds"] is False and "does not hold" in claim["sentence"]
  # One seed: not judged.
  claim = _claims_of(tmp_path, {"hhl": [0.50], "baseline": [0.20]})["hhl_above_baseline"]
  assert claim["holds"] is None and "--seeds>=2" in claim["sentence"]
  claim = _claims_of(tmp_path, {"baseline": [0.20, 0.3]})["hhl_above_baseline"]
  assert claim["holds"] is None and "no hhl row" in claim["sentence"]


def test_claim_lc_gives_most_of_hhls_gain(tmp_path):
  base = {"baseline": [0.20], "hhl_lt": [0.22], "hhl_ld": [0.21], "hhl": [0.30]}
  # Gains 2, 1, 7 and 10: L_C's is the largest and above half of HHL's.
  claim = _claims_of(tmp_path, {**base, "hhl_lc": [0.27]}, ablations=True)["lc_most_of_gain"]
  assert claim["holds"] is True
  # L_C +4 is the largest of the three but not above half of HHL's +10.
  claim = _claims_of(tmp_path, {**base, "hhl_lc": [0.24]}, ablations=True)["lc_most_of_gain"]
  assert claim["holds"] is False and "does not hold" in claim["sentence"]
  # L_T's gain above L_C's.
  claim = _claims_of(tmp_path, {**base, "hhl_lt": [0.29], "hhl_lc": [0.27]},
                     ablations=True)["lc_most_of_gain"]
  assert claim["holds"] is False
  claim = _claims_of(tmp_path, {"baseline": [0.2], "hhl": [0.3]})["lc_most_of_gain"]
  assert claim["holds"] is None and "--ablations" in claim["sentence"]
  claim = _claims_of(tmp_path, {**base}, ablations=True)["lc_most_of_gain"]
  assert claim["holds"] is None and "hhl_lc" in claim["sentence"]


def test_claim_camstyle_far_from_crop_and_flip(tmp_path):
  def judged(distance):
    (tmp_path / "t1.json").write_text(json.dumps({"distance": distance}))
    return _claims_of(tmp_path, {"baseline": [0.2]}, table1={"baseline": "t1.json"})[
        "camstyle_far"]

  assert judged(TABLE1)["holds"] is True  # 0.5 > 2 x 0.05
  claim = judged({**TABLE1, "camstyle": 0.09})  # 0.09 < 0.10
  assert claim["holds"] is False and "does not hold" in claim["sentence"]
  assert _claims_of(tmp_path, {"baseline": [0.2]})["camstyle_far"]["holds"] is None
  assert _claims_of(tmp_path, {"baseline": [0.2]}, table1={"baseline": "absent.json"})[
      "camstyle_far"]["holds"] is None


def test_claim_arn_above_rec_and_learned_above_handcrafted(tmp_path):
  claims = _claims_of(tmp_path, {"handcrafted": [0.05], "baseline": [0.1, 0.1], "arn": [0.3],
                                 "arn_rec": [0.2]}, ablations=True)
  assert claims["arn_above_rec"]["holds"] is True
  assert claims["above_handcrafted"]["holds"] is True
  claims = _claims_of(tmp_path, {"handcrafted": [0.15], "baseline": [0.1, 0.1], "arn": [0.2],
                                 "arn_rec": [0.25]}, ablations=True)
  assert claims["arn_above_rec"]["holds"] is False
  assert claims["above_handcrafted"]["holds"] is False
  assert "baseline 10.0 %" in claims["above_handcrafted"]["sentence"]
  claims = _claims_of(tmp_path, {"baseline": [0.1], "arn": [0.2]})
  assert claims["arn_above_rec"]["holds"] is None
  assert claims["above_handcrafted"]["holds"] is None
  assert "no handcrafted row" in claims["above_handcrafted"]["sentence"]


def test_the_report_lists_the_claims(tmp_path):
  demo = full_workdir(tmp_path)
  text = report.write_report(tmp_path).read_text()
  section = text.split("## Paper claims on the synthetic world")[1]
  found = report.claims(demo, tmp_path)
  assert [c["name"] for c in found] == list(report.CLAIM_NAMES)
  # HHL 31.0 ± 1.4 against the baseline's 6.0 ± 1.4; gains L_T 6.0, L_D 6.0, L_C 21.0, HHL 25.0.
  assert all(c["holds"] is True for c in found), [c["sentence"] for c in found]
  for claim in found:
    assert f"- {claim['sentence']}" in section


def test_a_partial_workdir_gets_sentences_instead_of_a_crash(tmp_path):
  # Baseline without scores in demo.json (read from its results.json), no tb/, no figures; HHL's
  # run has nothing at all; no StarGAN trained; Table 1 listed but absent.
  _results(tmp_path / "runs/baseline_seed0", _scores(0.25)[0])
  rows = [_row("baseline", "main", ["runs/baseline_seed0"], []),
          _row("hhl", "main", ["runs/hhl_hhl_seed0"], [])]
  _demo(tmp_path, rows, seeds=1, stargan=None,
        table1={"baseline": "runs/baseline_seed0/camstyle_distance.json"})
  text = report.write_report(tmp_path).read_text()
  assert _table_line(text, "row baseline")[2:7] == ["25.0"] * 5
  assert _table_line(text, "row hhl")[2:7] == ["-"] * 5
  assert "Not scored" in text and "hhl" in text
  assert "runs/baseline_seed0/tb has no event files" in text
  assert "reused an existing camera-style set" in text
  assert "Table 1 was not measured" in text
  assert "rank_list_synth_market.png missing" in text
  assert "demo.json has no handcrafted row" in text
  for link in _links(text):
    assert (tmp_path / link).exists(), link
  # A StarGAN workdir named but empty.
  _demo(tmp_path, rows, seeds=1, stargan="runs/stargan_synth_market")
  text = report.write_report(tmp_path).read_text()
  assert "No figures/stargan_samples_*.png in runs/stargan_synth_market" in text


def _run_cli(*args):
  return subprocess.run([sys.executable, "-m", "experiments.report", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120)


def test_cli_without_demo_json_is_one_error_line(tmp_path):
  result = _run_cli(f"--workdir={tmp_path}")
  assert result.returncode == 1, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
  assert str(tmp_path / "demo.json") in lines[0] and "python -m experiments.demo" in lines[0]


def test_cli_writes_the_report_and_prints_its_path(tmp_path):
  full_workdir(tmp_path, ablations=False)
  result = _run_cli(f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "report.md")
  assert "--ablations" in result.stdout
  assert (tmp_path / "report.md").is_file()


def test_the_report_imports_no_jax(tmp_path):
  full_workdir(tmp_path)
  code = ("import sys; from reid_jax import report; import experiments.report; "
          f"report.write_report({str(tmp_path)!r}); print('jax' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split() == ["False"]


@pytest.mark.parametrize("kept, verdict", [(0.9, "its fakes keep the person."),
                                           (0.004, "its fakes lose the person"),
                                           (0.2, "its fakes keep the person only partly.")])
def test_stargan_section_states_the_generators_own_figures(tmp_path, kept, verdict):
  full_workdir(tmp_path)
  quality = {"num_images": 200, "generator_iteration": 1000, "cycle_l1": 0.2912,
             "change_l1": 0.4, "camera_accuracy": 0.97, "real_camera_accuracy": 0.99,
             "person_kept_rank1": kept, "own_camera_kept_rank1": 1.0, "chance": 1 / 200}
  (tmp_path / "runs" / "stargan_synth_market" / "results.json").write_text(
      json.dumps({"experiment": "stargan", "quality": quality}))
  text = report.write_report(tmp_path).read_text()
  section = text.split("## StarGAN camera-style samples", 1)[1].split("\n## ", 1)[0]
  assert "cycle L1 0.291" in section and "97.0 % of the fakes" in section
  assert f"{100 * kept:.1f} % of the fakes retrieve their own real image" in section
  assert "(chance 0.5 %, a copy 100 %)" in section and verdict in section
