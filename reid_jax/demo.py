"""The main job: every method of the project on the synthetic world, one table (issue "The main job").

  plan = demo.plan(demo.Options(src="synth_duke", tgt="synth_market", workdir=W, data_dir=D))
  demo.run(plan)            # each stage once; a rerun skips what is done
  print(demo.format_table(demo.collect(plan)))

A stage is one command a user could type (`python -m experiments.baseline ...`, printed before
it runs) or a short in-process step (preparing the worlds, the hand-crafted reference, the
report). Every stage knows when it is done (its results file exists), so a rerun of the demo
starts no finished stage again, and an interrupted stage resumes from its own checkpoint (the
training commands resume exactly). The stage counter's ETA is the measured seconds of the
remaining stages (`configs/demo.py:EXPECTED_SECONDS`), rescaled by how this machine ran the stages
done so far in this process.

Workdir layout (`W`, the contract `reid_jax.report` reads):
  W/demo.json                     the plan, the rows and their scores (written after every stage)
  W/handcrafted_<tgt>.json        the hand-crafted reference on the target
  W/runs/baseline_seed<k>/        experiments.baseline src -> tgt
  W/runs/supervised_seed<k>/      experiments.baseline tgt -> src (its score on tgt: the bound)
  W/runs/stargan_<tgt>/           experiments.stargan, when the target's set is not there yet
  W/runs/hhl_<variant>_seed<k>/   experiments.hhl --variant=<variant>
  W/runs/arn_<variant>_seed<k>/   experiments.arn --variant=<variant>
  W/report.md, W/report/          experiments.report
"""

import dataclasses
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from reid_jax import atomic_io
from reid_jax.configs import demo as demo_config
from reid_jax.errors import ReidError

DEMO_FILE = demo_config.DEMO_FILE
RUNS_DIR = "runs"
TWINS = {"synth_duke": "duke", "synth_market": "market", "synth_msmt": "msmt"}
METRICS = demo_config.METRICS


@dataclasses.dataclass(frozen=True)
class Options:
  src: str
  tgt: str
  workdir: Path
  data_dir: Path
  seeds: int = 1
  ablations: bool = False
  size: str | None = None  # the synthetic world; None: each config's own (medium for tiny)
  quick: bool = False
  command: str = ""  # what the user typed, for the report


@dataclasses.dataclass
class Stage:
  key: str  # the ETA's kind: a key of EXPECTED_SECONDS
  title: str
  done: Callable[[], bool]
  command: list[str] | None = None  # `python -m ...` (without the interpreter when printed)
  action: Callable[[], None] | None = None  # an in-process step instead of a command


@dataclasses.dataclass
class Row:
  key: str
  group: str  # main | hhl_ablation | arn_ablation
  runs: list[str]  # workdirs relative to W, one per seed
  score_file: str | None = None  # for the hand-crafted row: a JSON entry relative to W


@dataclasses.dataclass
class Plan:
  options: Options
  stages: list[Stage]
  rows: list[Row]
  stargan_workdir: str | None
  table1: dict[str, str]  # {row key: its seed-0 camstyle_distance.json, relative to W}


def _size_flags(options: Options, quick_flags) -> tuple[str, ...]:
  if options.quick:
    return tuple(quick_flags)
  return (f"--config.data.synthetic_size={options.size}",) if options.size else ()


def world_size(options: Options) -> str:
  """The synthetic world every stage trains and evaluates on."""
  if options.quick:
    return "tiny"
  if options.size:
    return options.size
  from reid_jax.configs import baseline as baseline_config  # pylint: disable=g-import-not-at-top
  return baseline_config.get_config("tiny").data.synthetic_size


def _results_exist(workdir: Path, name: str = "results.json") -> Callable[[], bool]:
  return lambda: (workdir / name).is_file()


def _python(module: str, *flags: str) -> list[str]:
  return [sys.executable, "-m", module, *flags]


def _camstyle_ready(options: Options) -> bool:
  """Whether the target's complete camera-style set of this world is already there (an
  unprepared target has none: it is not built here, the datasets stage does that)."""
  from reid_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top
  from reid_jax.training import preflight  # pylint: disable=g-import-not-at-top
  size = world_size(options)
  if not tfds_builders.builder(options.tgt, options.data_dir, size, prepare=False).is_prepared():
    return False
  try:
    preflight.camstyle_set(options.data_dir, options.tgt, size)
  except ReidError:
    return False
  return True


def _stale_camstyle(options: Options) -> str | None:
  """Why the target's (complete) camera-style set here is not the one the demo's StarGAN stage
  would write, or None: its MANIFEST's config hash must be that of the stage's config, so that a
  set made by an earlier recipe is never used silently."""
  from reid_jax import cli  # pylint: disable=g-import-not-at-top
  from reid_jax.configs import stargan as stargan_config  # pylint: disable=g-import-not-at-top
  from reid_jax.data import camstyle  # pylint: disable=g-import-not-at-top
  from reid_jax.training import preflight  # pylint: disable=g-import-not-at-top
  from reid_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  folder = preflight.camstyle_set(options.data_dir, options.tgt, world_size(options))
  _, overrides = cli.split_overrides(list(_size_flags(options, demo_config.QUICK_STARGAN)))
  wanted = workdir_lib.config_sha256(stargan_config.command_config(options.tgt, None, overrides))
  made = (camstyle.read_manifest(folder) or {}).get("config_sha256")
  if made == wanted:
    return None
  return (f"{folder} was written by another StarGAN config than the demo's (MANIFEST.json "
          f"config_sha256 {str(made)[:12]}, the demo's {wanted[:12]}: the recipe changed); "
          f"delete {folder} and rerun, and the demo writes its own")


def plan(options: Options) -> Plan:
  """The stages and rows `options` ask for (nothing is run or written)."""
  from reid_jax.training import pretrain  # pylint: disable=g-import-not-at-top
  w, runs = Path(options.workdir), Path(options.workdir) / RUNS_DIR
  src, tgt, data = options.src, options.tgt, f"--data_dir={options.data_dir}"
  train_flags = _size_flags(options, demo_config.QUICK_TRAIN)
  stages, rows = [], []

  if not options.quick:
    trunk = pretrain.trunk_path(pretrain.get_config("tiny"), options.data_dir)
    stages.append(Stage("pretrain", "the pretrained CPU trunk (once per data dir)",
                        trunk.is_file, command=_python("experiments.pretrain", data)))
  size = world_size(options)

  def worlds_prepared():
    from reid_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top
    return all(tfds_builders.builder(name, options.data_dir, size, prepare=False).is_prepared()
               for name in (src, tgt))

  def prepare_worlds():
    from reid_jax.training import preflight  # pylint: disable=g-import-not-at-top
    preflight.datasets(options.data_dir, (src, tgt), size=size)

  stages.append(Stage("datasets", f"the {size} worlds of {src} and {tgt}", worlds_prepared,
                      action=prepare_worlds))

  handcrafted = w / demo_config.handcrafted_file(tgt)

  def score_handcrafted():
    from reid_jax.configs import baseline as baseline_config  # pylint: disable=g-import-not-at-top
    from reid_jax.training import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
    config = baseline_config.get_config("tiny")
    config.data.synthetic_size = size
    atomic_io.write_json(handcrafted,
                         evaluate_lib.evaluate_handcrafted(tgt, options.data_dir, config))

  stages.append(Stage("handcrafted", f"the hand-crafted reference on {tgt}", handcrafted.is_file,
                      action=score_handcrafted))
  rows.append(Row("handcrafted", "main", [], score_file=handcrafted.name))

  seeds = range(options.seeds)

  def training_stage(key, experiment, run, title, *flags):
    workdir = runs / run
    stages.append(Stage(key, title, _results_exist(workdir), command=_python(
        f"experiments.{experiment}", *flags, data, f"--workdir={workdir}", *train_flags)))
    return f"{RUNS_DIR}/{run}"

  rows.append(Row("baseline", "main", [
      training_stage("baseline", "baseline", f"baseline_seed{k}", f"direct transfer, seed {k}",
                     f"--src={src}", f"--tgt={tgt}", f"--config.seed={k}") for k in seeds]))
  rows.append(Row("supervised", "main", [
      training_stage("supervised", "baseline", f"supervised_seed{k}",
                     f"supervised on {tgt} (trained {tgt} -> {src}), seed {k}",
                     f"--src={tgt}", f"--tgt={src}", f"--config.seed={k}") for k in seeds]))

  # StarGAN runs when the target's set of this world is missing (another demo or
  # experiments.stargan may have written it: then it is reused, and its samples are elsewhere).
  stargan_workdir = f"{RUNS_DIR}/stargan_{tgt}"
  camstyle_ready = _camstyle_ready(options)  # reads the split's metadata and lists the set
  if camstyle_ready and (stale := _stale_camstyle(options)):
    raise ReidError(stale)
  if not (w / stargan_workdir).is_dir() and camstyle_ready:
    stargan_workdir = None
  else:
    stages.append(Stage(
        "stargan", f"StarGAN of {tgt} and its camera-style set",
        lambda: _camstyle_ready(options),
        command=_python("experiments.stargan", f"--dataset={tgt}", data,
                        f"--workdir={w / stargan_workdir}",
                        *_size_flags(options, demo_config.QUICK_STARGAN))))

  hhl_variants = ("lt", "ld", "lc", "hhl") if options.ablations else ("hhl",)
  arn_variants = ("rec", "rec_private", "rec_sup", "arn") if options.ablations else ("arn",)
  arn_quick = demo_config.QUICK_ARN if options.quick else ()
  for variant in hhl_variants:
    rows.append(Row("hhl" if variant == "hhl" else f"hhl_{variant}",
                    "main" if variant == "hhl" else "hhl_ablation", [
                        training_stage("hhl", "hhl", f"hhl_{variant}_seed{k}",
                                       f"HHL --variant={variant}, seed {k}", f"--src={src}",
                                       f"--tgt={tgt}", f"--variant={variant}",
                                       f"--config.seed={k}") for k in seeds]))
  for variant in arn_variants:
    rows.append(Row("arn" if variant == "arn" else f"arn_{variant}",
                    "main" if variant == "arn" else "arn_ablation", [
                        training_stage("arn", "arn", f"arn_{variant}_seed{k}",
                                       f"ARN --variant={variant}, seed {k}", f"--src={src}",
                                       f"--tgt={tgt}", f"--variant={variant}",
                                       f"--config.seed={k}", *arn_quick) for k in seeds]))

  # Table 1 (docs/hhl.md §11.1) for the seed-0 baseline and HHL models.
  from reid_jax.evaluation import camstyle_distance  # pylint: disable=g-import-not-at-top
  max_images = (demo_config.QUICK_TABLE1_MAX_IMAGES if options.quick
                else demo_config.TABLE1_MAX_IMAGES)
  table1 = {}
  for name, run in (("baseline", "baseline_seed0"), ("hhl", "hhl_hhl_seed0")):
    table1[name] = f"{RUNS_DIR}/{run}/{camstyle_distance.OUTPUT_FILE}"
    stages.append(Stage("table1", f"Table 1 distances of the {name} model",
                        (w / table1[name]).is_file,
                        command=_python("experiments.camstyle_distance",
                                        f"--workdir={runs / run}", data,
                                        f"--max_images={max_images}")))
  ordered = [r for key in (demo_config.MAIN_ROWS + demo_config.HHL_ABLATION_ROWS
                           + demo_config.ARN_ABLATION_ROWS) for r in rows if r.key == key]
  return Plan(options, stages, ordered, stargan_workdir, table1)


def _eta(plan_: Plan, index: int, measured: dict) -> float:
  """Seconds left for stages index.. (not done), the prior rescaled by this run's pace."""
  prior = demo_config.EXPECTED_SECONDS
  spent, expected = sum(measured.values()), sum(prior[plan_.stages[i].key] for i in measured)
  # Shrunk towards 1 by a 10-minute prior: one quick stage must not rescale the whole forecast.
  pace = (spent + 600.0) / (expected + 600.0)
  left = sum(prior[s.key] for s in plan_.stages[index:] if not s.done())
  return pace * left


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 60}:{seconds % 60:02d}"


def run(plan_: Plan, out=None) -> dict:
  """Runs every stage that is not done, in order; returns `{stage index: seconds}` of those run.

  A failing command stops the demo with one line naming it (its own error is printed above).
  """
  out = out or sys.stdout
  measured = {}
  total = len(plan_.stages)
  start = time.monotonic()
  for index, stage in enumerate(plan_.stages):
    label = f"[{index + 1}/{total}] {stage.title}"
    if stage.done():
      print(f"{label}: done", file=out, flush=True)
      continue
    print(f"\n{label} (demo {_clock(time.monotonic() - start)} so far, about "
          f"{_clock(_eta(plan_, index, measured))} left)", file=out, flush=True)
    began = time.monotonic()
    if stage.command is not None:
      print("$ " + shlex.join(["python", *stage.command[1:]]), file=out, flush=True)
      result = subprocess.run(stage.command, env=dict(os.environ), check=False)
      if result.returncode != 0:
        raise ReidError(f"demo stage {index + 1}/{total} ({stage.title}) failed: "
                        f"{shlex.join(['python', *stage.command[1:]])} exited "
                        f"{result.returncode}; fix what it says above and rerun the demo "
                        "(finished stages are kept)")
    else:
      stage.action()
    measured[index] = time.monotonic() - began
    write_demo_json(plan_)
  return measured


def _score(workdir: Path, row: Row, run: str, tgt: str) -> dict | None:
  from reid_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  results = workdir_lib.read_results(workdir / run)
  if results is None or tgt not in results.get("eval", {}):
    return None
  return {m: results["eval"][tgt][m] for m in METRICS}


def collect(plan_: Plan) -> list[dict]:
  """The rows as demo.json holds them: scores per seed (fractions), mean, std (ddof 1), paper."""
  import json  # pylint: disable=g-import-not-at-top
  from reid_jax import report  # pylint: disable=g-import-not-at-top
  options, w = plan_.options, Path(plan_.options.workdir)
  paper = demo_config.PAPER.get((TWINS.get(options.src), TWINS.get(options.tgt)), {})
  records = []
  for row in plan_.rows:
    if row.score_file is not None:
      path = w / row.score_file
      scores = [{m: json.loads(path.read_text())[m] for m in METRICS}] if path.is_file() else []
    else:
      scores = [s for s in (_score(w, row, run, options.tgt) for run in row.runs) if s]
    spread = {m: report.mean_std([s[m] for s in scores]) for m in METRICS} if scores else None
    mean = {m: spread[m][0] for m in METRICS} if scores else None
    std = {m: spread[m][1] for m in METRICS} if scores else None
    figure = paper.get(row.key)
    records.append({
        "key": row.key, "label": demo_config.LABELS[row.key], "group": row.group,
        "runs": row.runs, "dataset": options.tgt, "scores": scores, "mean": mean, "std": std,
        "paper": None if figure is None else {"label": figure[0], "source": figure[1],
                                              **figure[2]}})
  return records


def demo_record(plan_: Plan) -> dict:
  options = plan_.options
  return {"src": options.src, "tgt": options.tgt, "seeds": options.seeds,
          "ablations": options.ablations, "quick": options.quick, "size": world_size(options),
          "command": options.command, "stargan_workdir": plan_.stargan_workdir,
          "table1": plan_.table1, "rows": collect(plan_)}


def write_demo_json(plan_: Plan) -> dict:
  record = demo_record(plan_)
  atomic_io.write_json(Path(plan_.options.workdir) / DEMO_FILE, record)
  return record


def format_table(rows: list[dict], seeds: int) -> str:
  """One line per row: ours (rank-1/5/10/20, mAP in %; mean ± std with several seeds) and the
  paper's rank-1 / mAP for the same row on the real twins, labelled as the paper's."""
  width = 15 if seeds > 1 else 8
  header = (f"{'method':<52}" + "".join(f"{h:>{width}}" for h in
                                        ("rank-1", "rank-5", "rank-10", "rank-20", "mAP"))
            + "   paper (real data): rank-1 / mAP")
  lines = [header, "-" * len(header)]
  for row in rows:
    if row["mean"] is None:
      cells = "".join(f"{'-':>{width}}" for _ in METRICS)
    elif seeds > 1:
      cells = "".join(f"{100 * row['mean'][m]:>8.1f} ± {100 * row['std'][m]:4.1f}"
                      for m in METRICS)
    else:
      cells = "".join(f"{100 * row['mean'][m]:>{width}.1f}" for m in METRICS)
    paper = row["paper"]
    paper_cell = ("" if paper is None else
                  f"   {paper['label']}: {_pct(paper['rank1'])} / {_pct(paper['mAP'])}")
    lines.append(f"{row['label']:<52}{cells}{paper_cell}")
  return "\n".join(lines)


def _pct(value) -> str:
  return "-" if value is None else f"{value:.1f}"


def write_report(workdir) -> Path:
  """`W/report.md` (reid_jax.report, what `experiments.report --workdir=W` writes)."""
  from reid_jax import report  # pylint: disable=g-import-not-at-top
  return report.write_report(workdir)


def claims(record: dict, workdir) -> list[str]:
  """One sentence per paper claim: whether it holds on this workdir's figures, and why."""
  from reid_jax import report  # pylint: disable=g-import-not-at-top
  return [claim["sentence"] for claim in report.claims(record, workdir)]
