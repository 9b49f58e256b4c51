"""The report of a demo workdir (`python -m experiments.report`): `W/report.md` and its figures.

  path = report.write_report(workdir)      # W/report.md, PNGs under W/report/; returns the path
  for claim in report.claims(demo, workdir):   # demo = report.load_demo(workdir)
    print(claim["sentence"])                   # claim: {name, holds: True | False | None, sentence}

Everything comes from the workdir that `python -m experiments.demo` fills: its index `demo.json`
(rows, scores per seed, the paper's figures), the runs' `tb/` event files (training curves), their
`figures/` (rank lists, StarGAN sample grids), `camstyle_distance.json` (docs/hhl.md §11.1 Table 1)
and `handcrafted_<tgt>.json`. Means and sample standard deviations (ddof=1) are computed here from
the per-seed scores. A missing input skips its part with a sentence; report.md links only files
that exist, by paths relative to W. No jax is imported.
"""

import io
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from reid_jax import atomic_io
from reid_jax.configs import demo as demo_config
from reid_jax.errors import ReidError

DEMO_FILE = demo_config.DEMO_FILE
REPORT_FILE = "report.md"
FIGURES_DIR = "report"  # W/report/: the report's own PNGs (drawn curves, copied figures)

METRICS = demo_config.METRICS
METRIC_NAMES = {"rank1": "rank-1", "rank5": "rank-5", "rank10": "rank-10", "rank20": "rank-20",
                "mAP": "mAP"}
# The real datasets whose layout the synthetic ones copy (the paper's figures are on these).
REAL_NAMES = {"market": "Market-1501", "duke": "DukeMTMC-reID", "msmt": "MSMT17"}
MAIN_ROWS = demo_config.MAIN_ROWS
RANK_LIST_ROWS = ("baseline", "hhl", "arn")
# The loss terms the trainers log as `train/<term>` (reid_jax/training/loop.py; steps.py, hhl.py,
# arn.py name them); StarGAN logs `D/loss*` and `G/loss*`. Learning rates are `lr/<group>`.
TRAIN_LOSS_TERMS = ("loss", "cross_entropy", "triplet", "contrastive", "reconstruction",
                    "difference")
_GAN_LOSS = re.compile(r"^[DG]/loss")
CLAIM_NAMES = ("hhl_above_baseline", "lc_most_of_gain", "camstyle_far", "arn_above_rec",
               "above_handcrafted")


# ---------------------------------------------------------------------------------------------
# Reading the workdir.


def load_demo(workdir) -> dict:
  """`W/demo.json` as a dict.

  Raises:
    ReidError: the file is missing (run `python -m experiments.demo` first) or not a JSON object.
  """
  path = Path(workdir) / DEMO_FILE
  if not path.is_file():
    raise ReidError(f"{path} not found: {workdir} is not a demo workdir; run "
                    f"python -m experiments.demo --workdir={workdir} first")
  try:
    demo = json.loads(path.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise ReidError(f"{path} is not valid JSON ({error}); rerun python -m experiments.demo "
                    f"--workdir={workdir}") from None
  if not isinstance(demo, dict):
    raise ReidError(f"{path} does not hold a demo index (a JSON object was expected); rerun "
                    f"python -m experiments.demo --workdir={workdir}")
  return demo


def _read_json(path: Path):
  """The JSON data of `path`, or None when it is missing or unreadable."""
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except (OSError, json.JSONDecodeError, UnicodeDecodeError):
    return None


def _scores_of(entry) -> dict | None:
  """The five scores (fractions) of a results.json eval entry, or None if one is missing."""
  if not isinstance(entry, Mapping):
    return None
  try:
    return {m: float(entry[m]) for m in METRICS}
  except (KeyError, TypeError, ValueError):
    return None


handcrafted_file = demo_config.handcrafted_file


def _row_dataset(row: Mapping, demo: Mapping) -> str | None:
  return row.get("dataset") or demo.get("tgt")


def row_scores(row: Mapping, demo: Mapping, workdir) -> list[dict]:
  """The per-seed scores of a demo row: its `scores`, else read from its runs' results.json
  (`eval[dataset]`), else (the hand-crafted row) from `handcrafted_<dataset>.json`."""
  scores = [s for s in map(_scores_of, row.get("scores") or ()) if s is not None]
  if scores:
    return scores
  workdir, dataset = Path(workdir), _row_dataset(row, demo)
  for run in row.get("runs") or ():
    results = _read_json(workdir / run / "results.json")
    entry = _scores_of((results or {}).get("eval", {}).get(dataset)) if isinstance(
        results, dict) else None
    if entry is not None:
      scores.append(entry)
  if not scores and row.get("key") == "handcrafted" and dataset:
    entry = _scores_of(_read_json(workdir / handcrafted_file(dataset)))
    if entry is not None:
      scores.append(entry)
  return scores


def mean_std(values) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
  values = [float(v) for v in values]
  mean = sum(values) / len(values)
  if len(values) < 2:
    return mean, 0.0
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def row_stats(row: Mapping, demo: Mapping, workdir) -> dict | None:
  """`{n, mean: {metric: %}, std: {metric: %}}` of a row (percentages), or None if unscored."""
  scores = row_scores(row, demo, workdir)
  if not scores:
    return None
  stats = {"n": len(scores), "mean": {}, "std": {}}
  for metric in METRICS:
    mean, std = mean_std([100.0 * s[metric] for s in scores])
    stats["mean"][metric], stats["std"][metric] = mean, std
  return stats


def _rows_by_key(demo: Mapping) -> dict[str, dict]:
  return {row["key"]: row for row in demo.get("rows") or () if isinstance(row, dict)
          and row.get("key")}


def _real_name(dataset: str | None) -> str:
  from reid_jax.data import datasets  # pylint: disable=g-import-not-at-top
  try:
    layout = datasets.get_spec(dataset).layout
  except ReidError:
    return str(dataset)
  return REAL_NAMES.get(layout, layout)


def _table1_listed(demo: Mapping) -> dict[str, str]:
  """demo.json's `table1`: {model: camstyle_distance.json relative to W}, empty entries dropped."""
  listed = demo.get("table1")
  return {k: v for k, v in listed.items() if v} if isinstance(listed, dict) else {}


def _table1_records(demo: Mapping, workdir) -> dict[str, tuple[str, dict]]:
  """{model: (path relative to W, camstyle_distance.json record)} of the readable Table 1 files."""
  records = {}
  for model, rel in _table1_listed(demo).items():
    if not isinstance(rel, str):
      continue
    record = _read_json(Path(workdir) / rel)
    if isinstance(record, dict) and isinstance(record.get("distance"), dict):
      records[model] = (rel, record)
  return records


# ---------------------------------------------------------------------------------------------
# Claims.


def _pct(value: float) -> str:
  return f"{value:.1f}"


def _claim(name: str, holds: bool | None, sentence: str) -> dict:
  return {"name": name, "holds": holds, "sentence": sentence}


def _verdict(holds: bool) -> str:
  return "holds" if holds else "does not hold"


def _missing(rows: Mapping[str, dict | None], keys) -> list[str]:
  return [k for k in keys if rows.get(k) is None]


def _why_missing(keys: list[str], demo: Mapping) -> str:
  present = _rows_by_key(demo)
  parts = []
  for key in keys:
    if key not in present:
      parts.append(f"demo.json has no {key} row")
    else:
      parts.append(f"the {key} row has no scores")
  return "; ".join(parts)


def claims(demo: Mapping, workdir) -> list[dict]:
  """The paper's claims judged on this workdir: `[{name, holds, sentence}]`, `holds` None where
  the rows it needs are missing (the sentence says why). All comparisons are on target mAP (%).

  - hhl_above_baseline: HHL's mAP above the baseline's by more than 2 x (std_hhl + std_baseline);
    needs two seeds or more.
  - lc_most_of_gain: within HHL's ablation, Basel.+L_C's gain over the baseline exceeds both
    Basel.+L_T's and Basel.+L_D's, and half of HHL's gain.
  - camstyle_far: Table 1's camera-style distance above 2 x max(crop, flip).
  - arn_above_rec: ARN's full row above its L_rec-only row.
  - above_handcrafted: every learned row above the hand-crafted reference.
  """
  rows = _rows_by_key(demo)
  stats = {key: row_stats(row, demo, workdir) for key, row in rows.items()}
  mAP = {key: s["mean"]["mAP"] for key, s in stats.items() if s is not None}
  ablations = bool(demo.get("ablations"))
  out = []

  # (a) HHL above the baseline by more than 2 std.
  name = CLAIM_NAMES[0]
  missing = _missing(stats, ("hhl", "baseline"))
  if missing:
    out.append(_claim(name, None, "HHL's target mAP above the baseline's by more than 2 std: "
                      f"cannot be judged ({_why_missing(missing, demo)})."))
  else:
    hhl, base = stats["hhl"], stats["baseline"]
    gap = mAP["hhl"] - mAP["baseline"]
    if min(hhl["n"], base["n"]) < 2:
      out.append(_claim(name, None, (
          f"HHL's target mAP is {_pct(mAP['hhl'])} % and the baseline's {_pct(mAP['baseline'])} %"
          f" ({gap:+.1f} points) from one seed: whether the gap exceeds 2 std cannot be judged; "
          "it needs --seeds>=2.")))
    else:
      spread = hhl["std"]["mAP"] + base["std"]["mAP"]
      holds = gap > 2.0 * spread
      out.append(_claim(name, holds, (
          f"HHL's target mAP ({_pct(mAP['hhl'])} ± {_pct(hhl['std']['mAP'])} %, {hhl['n']} seeds)"
          f" is {gap:+.1f} points from the baseline's ({_pct(mAP['baseline'])} ± "
          f"{_pct(base['std']['mAP'])} %), against 2 x the summed std = {2.0 * spread:.1f}: "
          f"the claim that HHL beats the baseline by more than 2 std {_verdict(holds)}.")))

  # (b) +L_C gives most of HHL's gain.
  name = CLAIM_NAMES[1]
  keys = ("baseline", "hhl_lt", "hhl_ld", "hhl_lc", "hhl")
  missing = _missing(stats, keys)
  if not ablations and missing:
    out.append(_claim(name, None, "Within HHL, +L_C gives most of the gain: cannot be judged "
                      "without HHL's ablation rows (run the demo with --ablations)."))
  elif missing:
    out.append(_claim(name, None, "Within HHL, +L_C gives most of the gain: cannot be judged ("
                      f"{_why_missing(missing, demo)})."))
  else:
    gain = {k: mAP[k] - mAP["baseline"] for k in keys[1:]}
    holds = (gain["hhl_lc"] > gain["hhl_lt"] and gain["hhl_lc"] > gain["hhl_ld"]
             and gain["hhl_lc"] > 0.5 * gain["hhl"])
    out.append(_claim(name, holds, (
        "Within HHL, +L_C gives most of the gain: the mAP gains over the baseline are "
        f"L_T {gain['hhl_lt']:+.1f}, L_D {gain['hhl_ld']:+.1f}, L_C {gain['hhl_lc']:+.1f} and "
        f"HHL {gain['hhl']:+.1f} points (half of HHL's: {0.5 * gain['hhl']:+.1f}); L_C's must be "
        f"the largest of the three and more than half of HHL's: {_verdict(holds)}.")))

  # (c) crop and flip far below camera style (Table 1).
  name = CLAIM_NAMES[2]
  records = _table1_records(demo, workdir)
  model = "baseline" if "baseline" in records else next(iter(records), None)
  distance = records[model][1]["distance"] if model else {}
  needed = [distance.get(k) for k in ("crop", "flip", "camstyle")]
  if model is None:
    out.append(_claim(name, None, "Crop and flip move a descriptor far less than camera style "
                      "(Table 1): cannot be judged (no readable camstyle_distance.json is listed "
                      "in demo.json's table1)."))
  elif any(not isinstance(v, (int, float)) for v in needed):
    out.append(_claim(name, None, "Crop and flip move a descriptor far less than camera style "
                      f"(Table 1): cannot be judged ({records[model][0]} lacks crop, flip or "
                      "camstyle)."))
  else:
    crop, flip, camstyle = (float(v) for v in needed)
    holds = camstyle > 2.0 * max(crop, flip)
    out.append(_claim(name, holds, (
        f"Crop ({crop:.4f}) and flip ({flip:.4f}) move the {model}'s target descriptors far less "
        f"than camera style ({camstyle:.4f}, against 2 x max(crop, flip) = "
        f"{2.0 * max(crop, flip):.4f}; Table 1): {_verdict(holds)}.")))

  # (d) ARN's full row above its L_rec-only row.
  name = CLAIM_NAMES[3]
  missing = _missing(stats, ("arn", "arn_rec"))
  if not ablations and missing:
    out.append(_claim(name, None, "ARN's full model above its L_rec-only row: cannot be judged "
                      "without ARN's ablation rows (run the demo with --ablations)."))
  elif missing:
    out.append(_claim(name, None, "ARN's full model above its L_rec-only row: cannot be judged ("
                      f"{_why_missing(missing, demo)})."))
  else:
    holds = mAP["arn"] > mAP["arn_rec"]
    out.append(_claim(name, holds, (
        f"ARN's full model reaches {_pct(mAP['arn'])} % target mAP against "
        f"{_pct(mAP['arn_rec'])} % for L_rec only ({mAP['arn'] - mAP['arn_rec']:+.1f} points): "
        f"the claim that the full model is above {_verdict(holds)}.")))

  # (e) every learned row above the hand-crafted reference.
  name = CLAIM_NAMES[4]
  learned = [k for k in rows if k != "handcrafted" and k in mAP]
  if "handcrafted" not in mAP:
    out.append(_claim(name, None, "Every learned method above the hand-crafted reference: "
                      f"cannot be judged ({_why_missing(['handcrafted'], demo)})."))
  elif not learned:
    out.append(_claim(name, None, "Every learned method above the hand-crafted reference: "
                      "cannot be judged (no learned row has scores)."))
  else:
    below = [k for k in learned if not mAP[k] > mAP["handcrafted"]]
    holds = not below
    lowest = min(learned, key=lambda k: mAP[k])
    detail = (f"the lowest, {lowest}, has {_pct(mAP[lowest])} %" if holds else
              "not above it: " + ", ".join(f"{k} {_pct(mAP[k])} %" for k in below))
    out.append(_claim(name, holds, (
        f"Every learned method ({len(learned)} rows) above the hand-crafted reference's "
        f"{_pct(mAP['handcrafted'])} % target mAP ({detail}): {_verdict(holds)}.")))
  return out


# ---------------------------------------------------------------------------------------------
# Figures: training curves drawn with PIL, copies of the runs' PNGs.


def _font(size: int):
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1: only the fixed bitmap font
    return ImageFont.load_default()


def curves_png(title: str, series: Mapping[str, list[tuple[int, float]]]) -> bytes:
  """A PNG with one panel per series (its own y range): `{tag: [(step, value)]}` over steps."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from PIL import ImageDraw  # pylint: disable=g-import-not-at-top
  width, panel, top, left, right = 640, 130, 26, 78, 12
  image = Image.new("RGB", (width, top + panel * len(series)), (255, 255, 255))
  draw = ImageDraw.Draw(image)
  small, big = _font(11), _font(14)
  draw.text((6, 5), title, fill=(0, 0, 0), font=big)
  for index, (tag, points) in enumerate(series.items()):
    y0 = top + index * panel
    x_lo, y_lo, x_hi, y_hi = left, y0 + 20, width - right, y0 + panel - 22
    draw.text((6, y0 + 3), tag, fill=(0, 0, 0), font=small)
    draw.rectangle((x_lo, y_lo, x_hi, y_hi), outline=(160, 160, 160))
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    low, high = min(values), max(values)
    span = (high - low) or (abs(high) or 1.0)
    first, last = steps[0], steps[-1]
    xy = [(x_lo + (x_hi - x_lo) * ((s - first) / (last - first) if last > first else 0.5),
           y_hi - (y_hi - y_lo) * ((v - low) / span if high > low else 0.5))
          for s, v in points]
    if len(xy) > 1:
      draw.line(xy, fill=(40, 80, 200), width=2)
    for x, y in (xy if len(xy) <= 40 else ()):
      draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(40, 80, 200))
    draw.text((6, y_lo - 2), f"{high:.4g}", fill=(0, 0, 0), font=small)
    draw.text((6, y_hi - 10), f"{low:.4g}", fill=(0, 0, 0), font=small)
    draw.text((x_lo, y_hi + 3), f"step {first}", fill=(0, 0, 0), font=small)
    label = f"step {last}"
    draw.text((x_hi - draw.textlength(label, font=small), y_hi + 3), label, fill=(0, 0, 0),
              font=small)
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def _is_loss(tag: str) -> bool:
  return tag in {f"train/{t}" for t in TRAIN_LOSS_TERMS} or bool(_GAN_LOSS.match(tag))


def training_series(logdir) -> tuple[dict, dict]:
  """`(losses, learning rates)`, each `{tag: [(step, value)]}` sorted by step, from the event
  files of `logdir` (finite values only; a resumed run's rewrite of a step wins)."""
  from reid_jax.training import metrics  # pylint: disable=g-import-not-at-top
  losses, rates = {}, {}
  for (step, tag), value in sorted(metrics.read_scalars(logdir).items()):
    if not math.isfinite(value):
      continue
    target = losses if _is_loss(tag) else rates if tag.startswith("lr/") else None
    if target is not None:
      target.setdefault(tag, []).append((int(step), float(value)))
  order = {f"train/{t}": i for i, t in enumerate(TRAIN_LOSS_TERMS)}
  losses = dict(sorted(losses.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
  return losses, dict(sorted(rates.items()))


def _copy(source: Path, destination: Path) -> None:
  atomic_io.write_bytes(destination, source.read_bytes())


def _latest_sample(figures: Path) -> Path | None:
  """The `stargan_samples_<iteration>.png` of the highest iteration in `figures`."""
  found = []
  for path in figures.glob("stargan_samples_*.png"):
    match = re.fullmatch(r"stargan_samples_(\d+)\.png", path.name)
    if match:
      found.append((int(match.group(1)), path))
  return max(found)[1] if found else None


# ---------------------------------------------------------------------------------------------
# report.md.


class _Page:
  """The lines of report.md; links are written only to files that exist under W."""

  def __init__(self, workdir: Path):
    self.workdir = workdir
    self.lines: list[str] = []

  def add(self, *lines: str) -> None:
    self.lines.extend(lines)

  def exists(self, rel: str) -> bool:
    return bool(rel) and (self.workdir / rel).exists()

  def link(self, rel: str, text: str | None = None) -> str:
    """`[text](rel)` when W/rel exists, else the plain text with "(missing)"."""
    text = text or rel
    return f"[{text}]({rel})" if self.exists(rel) else f"{text} (missing)"

  def image(self, rel: str, alt: str) -> None:
    if self.exists(rel):
      self.add(f"![{alt}]({rel})", "")

  def text(self) -> str:
    return "\n".join(self.lines).rstrip("\n") + "\n"


def _cell(text: str) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def _format(stats: Mapping | None, metric: str) -> str:
  if stats is None:
    return "-"
  mean = stats["mean"][metric]
  if stats["n"] < 2:
    return _pct(mean)
  return f"{_pct(mean)} ± {_pct(stats['std'][metric])}"


def _paper_cell(paper: Mapping | None, metric: str) -> str:
  value = (paper or {}).get(metric)
  return "-" if value is None else f"{float(value):.1f}"


def _results_table(page: _Page, keys, rows, stats, demo) -> None:
  names = [METRIC_NAMES[m] for m in METRICS]
  page.add("| row | seeds | " + " | ".join(names) + " | paper's row (real datasets) | "
           + " | ".join(f"paper {n}" for n in names) + " |",
           "|" + "---|" * (3 + 2 * len(METRICS)))
  for key in keys:
    row, row_stat = rows[key], stats.get(key)
    paper = row.get("paper") if isinstance(row.get("paper"), dict) else None
    paper_label = (f"{paper.get('label', '?')}, {paper.get('source', '?')}" if paper
                   else "not in the paper")
    cells = [_cell(row.get("label") or key), str(row_stat["n"]) if row_stat else "0"]
    cells += [_format(row_stat, m) for m in METRICS]
    cells += [_cell(paper_label)] + [_paper_cell(paper, m) for m in METRICS]
    page.add("| " + " | ".join(cells) + " |")
  page.add("")
  unscored = [k for k in keys if stats.get(k) is None]
  if unscored:
    page.add("Not scored (no scores in demo.json and no results.json entry for the target): "
             + ", ".join(unscored) + ".", "")


def _run_links(page: _Page, keys, rows) -> None:
  links = []
  for key in keys:
    for run in rows[key].get("runs") or ():
      rel = f"{run}/results.json"
      links.append(f"{key}: {page.link(rel, rel)}")
  if links:
    page.add("Runs: " + "; ".join(links) + ".", "")


def _table1(page: _Page, demo, workdir: Path) -> None:
  from reid_jax.evaluation import camstyle_distance  # pylint: disable=g-import-not-at-top
  page.add("### Table 1: how far crop, flip and camera style move a target descriptor", "")
  records = _table1_records(demo, workdir)
  listed = _table1_listed(demo)
  if not records:
    why = ("demo.json lists no camstyle_distance.json" if not listed else
           "the listed files are missing or unreadable: " + ", ".join(map(str, listed.values())))
    page.add(f"Table 1 was not measured here ({why}).", "")
    return
  paper = next((r.get("paper") for _, r in records.values() if isinstance(r.get("paper"), dict)),
               None)
  models = list(records)
  paper_title = (f"paper ({paper.get('pair', '?')}, {paper.get('model', '?')})" if paper
                 else "paper")
  page.add("| view | " + " | ".join(models) + f" | {_cell(paper_title)} |",
           "|" + "---|" * (2 + len(models)))
  for key in camstyle_distance.DIRECTIONS:
    cells = [camstyle_distance.LABELS[key]]
    for model in models:
      value = records[model][1]["distance"].get(key)
      cells.append("-" if value is None else f"{float(value):.4f}")
    theirs = (paper or {}).get(key)
    cells.append("-" if theirs is None else f"{float(theirs):.3f}")
    page.add("| " + " | ".join(cells) + " |")
  page.add("")
  notes = []
  for model, (rel, record) in records.items():
    notes.append(f"{model}: {page.link(rel, rel)}, checkpoint step "
                 f"{record.get('checkpoint_step', '?')}, {record.get('n_images', '?')} of "
                 f"{record.get('n_target_images', '?')} target training images")
  page.add("Mean Euclidean distances of L2-normalised pool5 descriptors (docs/hhl.md §11.1); "
           + "; ".join(notes) + ".")
  if paper is not None:
    page.add("The paper's column is its Table 1 on the real datasets"
             + (", which our synthetic ones stand in for" if paper.get("twins") else "") + ".")
  missing = [k for k in listed if k not in records]
  if missing:
    page.add("Not measured: " + ", ".join(f"{k} ({listed[k]} missing)" for k in missing) + ".")
  page.add("")


def _curves(page: _Page, keys, rows, workdir: Path, out: Path) -> None:
  page.add("## Training curves", "")
  page.add("Seed 0 of each trained row: the loss terms (`train/<term>`, window means as logged) "
           "and the learning rate of each parameter group (`lr/<group>`) over steps, read from "
           "the run's tb/.", "")
  skipped = []
  for key in keys:
    runs = rows[key].get("runs") or ()
    if not runs:
      continue
    logdir = workdir / runs[0] / "tb"
    if not logdir.is_dir() or not any(logdir.glob("events.out.tfevents.*")):
      skipped.append(f"{key} ({runs[0]}/tb has no event files)")
      continue
    losses, rates = training_series(logdir)
    if not losses and not rates:
      skipped.append(f"{key} ({runs[0]}/tb holds no loss or lr scalars)")
      continue
    page.add(f"### {_cell(rows[key].get('label') or key)} ({runs[0]})", "")
    for kind, series in (("loss", losses), ("lr", rates)):
      if not series:
        page.add(f"No {kind} scalars in {runs[0]}/tb.", "")
        continue
      name = f"{FIGURES_DIR}/curves_{key}_{kind}.png"
      title = f"{key} seed 0: {'loss terms' if kind == 'loss' else 'learning rate per group'}"
      atomic_io.write_bytes(out / Path(name).name, curves_png(title, series))
      page.image(name, title)
  if skipped:
    page.add("No curves for: " + "; ".join(skipped) + ".", "")


def stargan_quality_sentence(quality: dict) -> str:
  """The generator's own figures (results.json `quality`, `training.stargan_quality`) in words."""
  kept, chance = 100 * quality["person_kept_rank1"], 100 * quality["chance"]
  verdict = ("its fakes keep the person" if kept >= 50 else
             "its fakes lose the person (HHL's camera-style positives then carry little identity)"
             if kept < 5 * chance else "its fakes keep the person only partly")
  return (f"StarGAN's own figures on {quality['num_images']} target training images (generator "
          f"iteration {quality['generator_iteration']}): cycle L1 {quality['cycle_l1']:.3f}, "
          f"change L1 {quality['change_l1']:.3f}; its camera classifier puts "
          f"{100 * quality['camera_accuracy']:.1f} % of the fakes in their target camera "
          f"({100 * quality['real_camera_accuracy']:.1f} % of the reals in theirs); "
          f"{kept:.1f} % of the fakes retrieve their own real image first among their source "
          f"camera's images under the hand-crafted descriptor (chance {chance:.1f} %, a copy "
          f"100 %): {verdict}.")


def _stargan(page: _Page, demo, workdir: Path, out: Path) -> None:
  page.add("## StarGAN camera-style samples", "")
  rel = demo.get("stargan_workdir")
  if not rel:
    page.add("The demo reused an existing camera-style set, so no StarGAN was trained in this "
             "workdir (demo.json's stargan_workdir is null).", "")
    return
  quality = (_read_json(workdir / rel / "results.json") or {}).get("quality")
  if isinstance(quality, dict):
    page.add(stargan_quality_sentence(quality), "")
  sample = _latest_sample(workdir / rel / "figures")
  if sample is None:
    page.add(f"No figures/stargan_samples_*.png in {rel}: no sample grid to show.", "")
  else:
    name = f"{FIGURES_DIR}/{sample.name}"
    _copy(sample, out / sample.name)
    page.add(f"The latest sample grid of {rel} ({sample.name}): each row a real target image "
             "(first column) and its translation to every camera.", "")
    page.image(name, f"StarGAN samples {sample.stem}")
  logdir = workdir / rel / "tb"
  if logdir.is_dir() and any(logdir.glob("events.out.tfevents.*")):
    losses, rates = training_series(logdir)
    for kind, series in (("loss", losses), ("lr", rates)):
      if series:
        name = f"{FIGURES_DIR}/curves_stargan_{kind}.png"
        title = f"StarGAN: {'D and G losses' if kind == 'loss' else 'learning rates'}"
        atomic_io.write_bytes(out / Path(name).name, curves_png(title, series))
        page.image(name, title)
  else:
    page.add(f"{rel}/tb has no event files: no StarGAN curves.", "")


def _rank_lists(page: _Page, rows, demo, workdir: Path, out: Path) -> None:
  page.add("## Rank lists", "")
  missing = []
  for key in RANK_LIST_ROWS:
    row = rows.get(key)
    runs = (row or {}).get("runs") or ()
    dataset = _row_dataset(row or {}, demo)
    if not runs:
      missing.append(f"{key} (no run)")
      continue
    source = workdir / runs[0] / "figures" / f"rank_list_{dataset}.png"
    if not source.is_file():
      missing.append(f"{key} ({runs[0]}/figures/{source.name} missing)")
      continue
    name = f"{FIGURES_DIR}/rank_list_{key}.png"
    _copy(source, out / Path(name).name)
    page.add(f"### {_cell(row.get('label') or key)}: {dataset} query, seed 0", "")
    page.image(name, f"rank list of {key} on {dataset}")
  if missing:
    page.add("No rank list for: " + "; ".join(missing) + ".", "")


def _handcrafted(page: _Page, rows, stats, demo, workdir: Path) -> None:
  page.add("## The hand-crafted reference", "")
  row = rows.get("handcrafted")
  if row is None:
    page.add("demo.json has no handcrafted row.", "")
    return
  dataset = _row_dataset(row, demo)
  row_stat = stats.get("handcrafted")
  rel = handcrafted_file(dataset) if dataset else ""
  entry = _read_json(workdir / rel) if rel else None
  page.add(f"{_cell(row.get('label') or 'handcrafted')}, no training: "
           + ("; ".join(f"{METRIC_NAMES[m]} {_format(row_stat, m)} %" for m in METRICS)
              if row_stat else "not scored") + f" on {dataset}.")
  if isinstance(entry, dict):
    settings = ", ".join(f"{k} {entry[k]}" for k in ("ap", "distance", "rerank", "n_query",
                                                    "n_gallery") if k in entry)
    page.add(f"Its eval entry: {page.link(rel, rel)} ({settings}).")
  else:
    page.add(f"Its eval entry {rel or 'handcrafted_<tgt>.json'} is missing or unreadable.")
  paper = row.get("paper") if isinstance(row.get("paper"), dict) else None
  if paper:
    page.add(f"The paper's nearest hand-crafted row, on the real datasets: "
             f"{paper.get('label', '?')}, {paper.get('source', '?')}: " + "; ".join(
                 f"{METRIC_NAMES[m]} {_paper_cell(paper, m)}" for m in METRICS) + ".")
  page.add("")


def render(demo: Mapping, workdir) -> str:
  """The text of report.md; writes the figures it links under `W/report/`."""
  workdir = Path(workdir)
  out = workdir / FIGURES_DIR
  page = _Page(workdir)
  rows = _rows_by_key(demo)
  stats = {key: row_stats(row, demo, workdir) for key, row in rows.items()}
  src, tgt = demo.get("src"), demo.get("tgt")
  seeds = demo.get("seeds")

  # 1. Heading.
  page.add(f"# Demo report: {src} -> {tgt}", "")
  page.add(f"Seeds: {seeds}; ablations: {'yes' if demo.get('ablations') else 'no'}; quick: "
           f"{'yes' if demo.get('quick') else 'no'}. Index: {page.link(DEMO_FILE)}.", "")
  if demo.get("command"):
    page.add("Made by:", "", "```", str(demo["command"]), "```", "")
  page.add(f"Scores are on {tgt}'s query/gallery, in %: mean ± sample std over seeds (the mean "
           "alone for one seed). The paper's columns are the paper's own figures on the real "
           f"datasets ({_real_name(src)} -> {_real_name(tgt)}) that the synthetic ones stand in "
           "for: compare orderings and gaps, not values. A '-' is a figure not reported.", "")

  # 2. The results table.
  page.add("## Results", "")
  main = [k for k in MAIN_ROWS if k in rows] + [
      k for k, r in rows.items() if r.get("group") == "main" and k not in MAIN_ROWS]
  if main:
    _results_table(page, main, rows, stats, demo)
    _run_links(page, main, rows)
  else:
    page.add("demo.json lists no main rows.", "")

  # 3. HHL's ablation and Table 1.
  page.add("## HHL: ablation (Table 2) and the Table 1 diagnostic", "")
  hhl_ablation = [k for k, r in rows.items() if r.get("group") == "hhl_ablation"]
  if hhl_ablation:
    keys = [k for k in ("baseline",) if k in rows] + hhl_ablation + (
        ["hhl"] if "hhl" in rows else [])
    _results_table(page, keys, rows, stats, demo)
    _run_links(page, hhl_ablation, rows)
  else:
    page.add("No HHL ablation rows (run the demo with --ablations).", "")
  _table1(page, demo, workdir)

  # 4. ARN's ablation.
  page.add("## ARN: ablation", "")
  arn_ablation = [k for k, r in rows.items() if r.get("group") == "arn_ablation"]
  if arn_ablation:
    keys = arn_ablation + (["arn"] if "arn" in rows else [])
    _results_table(page, keys, rows, stats, demo)
    _run_links(page, arn_ablation, rows)
  else:
    page.add("No ARN ablation rows (run the demo with --ablations).", "")

  # 5-8. Figures and the hand-crafted row.
  trained = list(dict.fromkeys(main + hhl_ablation + arn_ablation))
  _curves(page, trained, rows, workdir, out)
  _stargan(page, demo, workdir, out)
  _rank_lists(page, rows, demo, workdir, out)
  _handcrafted(page, rows, stats, demo, workdir)

  # 9. Claims.
  page.add("## Paper claims on the synthetic world", "")
  page.add("Judged on target mAP from the numbers above.", "")
  for claim in claims(demo, workdir):
    page.add(f"- {claim['sentence']}")
  page.add("")
  return page.text()


def write_report(workdir) -> Path:
  """Writes `W/report.md` (and the PNGs it links under `W/report/`) atomically; returns its path.

  Raises:
    ReidError: `W/demo.json` is missing or unreadable.
  """
  workdir = Path(workdir)
  demo = load_demo(workdir)
  text = render(demo, workdir)
  path = workdir / REPORT_FILE
  atomic_io.write_bytes(path, text.encode("utf-8"))
  return path
