r"""The synthetic testbed's shape (docs/testbed.md): does the tiny baseline look like the papers'?

  python -m benchmarks.testbed --seeds=3 [--data_dir=DIR] [--root=workdirs/testbed]

For each seed it runs `experiments.baseline` (tiny recipe, pretrained trunk) synth_duke ->
synth_market and synth_market -> synth_duke; each run gives direct transfer on its target and the
supervised figure on its own source domain (a model trained and tested on that domain). Beside
them: the hand-crafted reference (`evaluation.handcrafted`, no learning, no seed) and the
camera-gap ratio under the direct-transfer model's pool5 on the target (`evaluation.diagnostics`).
Finished workdirs are reused, so a rerun only evaluates.

Also the pretrained trunk's pool5 alone on each target (no re-ID training: what fine-tuning adds).

Printed: mean and std over seeds of every figure, then the four conditions of the testbed as
PASS/FAIL lines, then one JSON comparison a line (docs/design.md §8):

1. supervised rank-1 >= 50 % on synth_market and on synth_duke;
2. direct transfer clearly between: above the hand-crafted reference and below supervised on the
   same target, in rank-1 and mAP, each gap positive and larger than twice the summed seed stds
   (the hand-crafted reference has no seed);
3. spread: the std of direct-transfer target mAP is at most a quarter of (supervised - direct);
4. camera gap: the cross/same-camera distance ratio on the target stays at least 1.2.

`--quick` runs one seed of a 2-epoch recipe on the tiny world: a smoke run, not the figures.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from benchmarks import report
from reid_jax import paths
from reid_jax.configs import baseline as baseline_config
from reid_jax.evaluation import diagnostics
from reid_jax.models import heads
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import workdir as workdir_lib

_SEEDS = flags.DEFINE_integer("seeds", 3, "seeds 0..N-1 of the baseline runs")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or "
                                "~/reid_jax_data)")
_ROOT = flags.DEFINE_string("root", "workdirs/testbed", "where the runs' workdirs go")
_QUICK = flags.DEFINE_bool("quick", False, "one seed, 2 epochs on the tiny world (smoke run)")

PAIRS = (("synth_duke", "synth_market"), ("synth_market", "synth_duke"))
SHORT = {"synth_market": "M", "synth_duke": "D"}
CONFIG = "reid_jax/configs/baseline.py:tiny"
QUICK_FLAGS = ("--config.num_epochs=2", "--config.optim.milestones=(1,)",
               "--config.data.synthetic_size=tiny")
METRICS = ("rank1", "mAP")


def run_baseline(src, tgt, seed, workdir, data_dir, quick) -> dict:
  command = [sys.executable, "-m", "experiments.baseline", f"--src={src}", f"--tgt={tgt}",
             f"--config={CONFIG}", f"--config.seed={seed}", f"--workdir={workdir}",
             f"--data_dir={data_dir}", *(QUICK_FLAGS if quick else ())]
  print(f"\n$ {' '.join(command[1:])}", flush=True)
  subprocess.run(command, check=True, env=dict(os.environ))
  return workdir_lib.read_results(workdir)


def _gap_of(extras) -> float:
  q, g = extras["query"].labels, extras["gallery"].labels
  return diagnostics.camera_gap_ratio(np.concatenate([extras["qf"], extras["gf"]]),
                                      np.concatenate([q["pid"], g["pid"]]),
                                      np.concatenate([q["camid"], g["camid"]]))


def camera_gap(workdir, dataset, data_dir) -> float:
  """The cross/same-camera distance ratio of `dataset`'s test images under the workdir's pool5."""
  config = workdir_lib.load_config(workdir)
  variables, _ = evaluate_lib.restore_variables(workdir)
  model = heads.build_reid_net(config["model"], evaluate_lib.num_classes_of(
      variables["params"]))
  _, extras = evaluate_lib.evaluate_dataset(model, variables, dataset, data_dir, config)
  return _gap_of(extras)


def trunk_alone(dataset, data_dir, config) -> tuple[dict, float]:
  """(results.json entry, camera-gap ratio) of `dataset` under the pretrained trunk's pool5 alone,
  before any re-ID training: what fine-tuning on a source adds or loses."""
  from reid_jax.models import torchvision_import  # pylint: disable=g-import-not-at-top
  from reid_jax.training import pretrain  # pylint: disable=g-import-not-at-top
  trunk = torchvision_import.load_trunk(
      pretrain.ensure_trunk(config.model.pretrained, data_dir, build=False), config.model.arch)
  model_config = dict(config.model.to_dict(), num_features=0, triplet_features=0)
  model = heads.build_reid_net(model_config, 0)
  variables = {c: {"backbone": trunk[c]} for c in ("params", "batch_stats")}
  entry, extras = evaluate_lib.evaluate_dataset(model, variables, dataset, data_dir, config)
  return entry, _gap_of(extras)


def _stats(values):
  values = np.asarray(values, float)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax's INFO lines would drown the table
  data_dir = _DATA_DIR.value or paths.default_data_dir()
  seeds = 1 if _QUICK.value else _SEEDS.value
  root = Path(_ROOT.value) / ("quick" if _QUICK.value else "")
  direct = {tgt: [] for _, tgt in PAIRS}
  supervised = {src: [] for src, _ in PAIRS}
  gap = {tgt: [] for _, tgt in PAIRS}
  config = baseline_config.get_config("tiny")
  if _QUICK.value:
    config.data.synthetic_size = "tiny"
  for seed in range(seeds):
    for src, tgt in PAIRS:
      workdir = root / f"{src}_to_{tgt}_seed{seed}"
      results = run_baseline(src, tgt, seed, workdir, data_dir, _QUICK.value)
      direct[tgt].append(results["eval"][tgt])
      supervised[src].append(results["eval"][src])
      gap[tgt].append(camera_gap(workdir, tgt, data_dir))
  handcrafted = {name: evaluate_lib.evaluate_handcrafted(name, data_dir, config)
                 for name in supervised}
  trunk = {name: trunk_alone(name, data_dir, config) for name in supervised}

  rows = []
  for name in supervised:
    rows.append((f"hand-crafted on {SHORT[name]}", [handcrafted[name]]))
  for name in supervised:
    rows.append((f"pretrained trunk alone on {SHORT[name]}", [trunk[name][0]]))
  for src, tgt in PAIRS:
    rows.append((f"direct transfer {SHORT[src]}->{SHORT[tgt]}", direct[tgt]))
  for name in supervised:
    rows.append((f"supervised on {SHORT[name]}", supervised[name]))
  print(f"\ntestbed, tiny recipe, {seeds} seed(s) (mean ± std over seeds, %):")
  print(f"  {'row':28s}{'rank-1':>16s}{'mAP':>16s}")
  summary = {}
  for label, entries in rows:
    cells = []
    for metric in METRICS:
      mean, std = _stats([e[metric] for e in entries])
      summary[(label, metric)] = (mean, std)
      cells.append(f"{100 * mean:7.1f} ± {100 * std:4.1f}")
    print(f"  {label:28s}" + "".join(f"{c:>16s}" for c in cells))
  for src, tgt in PAIRS:
    mean, std = _stats(gap[tgt])
    summary[("gap", tgt)] = (mean, std)
    print(f"  camera-gap ratio on {SHORT[tgt]} under the {SHORT[src]}->{SHORT[tgt]} pool5: "
          f"{mean:.2f} ± {std:.2f}; under the pretrained trunk alone: {trunk[tgt][1]:.2f}")

  checks = []
  for name in supervised:
    mean, _ = summary[(f"supervised on {SHORT[name]}", "rank1")]
    checks.append((f"1. supervised on {SHORT[name]}: rank-1 {100 * mean:.1f} >= 50", mean >= 0.5))
  for src, tgt in PAIRS:
    dt_label = f"direct transfer {SHORT[src]}->{SHORT[tgt]}"
    for metric in METRICS:
      dt, dt_std = summary[(dt_label, metric)]
      hc, _ = summary[(f"hand-crafted on {SHORT[tgt]}", metric)]
      sup, sup_std = summary[(f"supervised on {SHORT[tgt]}", metric)]
      low, high = dt - hc, sup - dt
      ok = low > 2 * dt_std and low > 0 and high > 2 * (dt_std + sup_std) and high > 0
      checks.append((f"2. {dt_label} {metric}: hand-crafted {100 * hc:.1f} < {100 * dt:.1f} < "
                     f"supervised {100 * sup:.1f} (gaps {100 * low:.1f}, {100 * high:.1f})", ok))
    dt, dt_std = summary[(dt_label, "mAP")]
    sup, _ = summary[(f"supervised on {SHORT[tgt]}", "mAP")]
    checks.append((f"3. {dt_label}: mAP std {100 * dt_std:.2f} <= (supervised - direct) / 4 = "
                   f"{100 * (sup - dt) / 4:.2f}", seeds > 1 and dt_std <= (sup - dt) / 4))
    mean, _ = summary[("gap", tgt)]
    checks.append((f"4. camera gap on {SHORT[tgt]}: ratio {mean:.2f} >= 1.2", mean >= 1.2))
  print()
  for text, ok in checks:
    print(f"{'PASS' if ok else 'FAIL'}  {text}")
  recipe = f"{CONFIG} seeds={seeds}" + (" quick" if _QUICK.value else "")
  for src, tgt in PAIRS:
    dt_label = f"direct transfer {SHORT[src]}->{SHORT[tgt]}"
    for reference in (f"hand-crafted on {SHORT[tgt]}", f"supervised on {SHORT[tgt]}"):
      for metric in METRICS:
        print(report.comparison(f"testbed_{SHORT[src]}{SHORT[tgt]}_{metric}",
                                summary[(dt_label, metric)][0], reference,
                                summary[(reference, metric)][0], recipe))


if __name__ == "__main__":
  app.run(main)
