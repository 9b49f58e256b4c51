r"""HHL's ablation (docs/hhl.md §13 Table 2) and Table 1 diagnostic (§11.1) on the synthetic testbed.

  python -m benchmarks.hhl_testbed --seeds=3 [--variants=baseline,lt,ld,lc,hhl] [--pairs=DM,MD]

For every seed, direction and method variant it runs `experiments.hhl` (tiny recipe: the testbed's
pretrained trunk, the medium world) into `<root>/<src>_to_<tgt>_<variant>_seed<seed>`; a workdir
with results.json is reused. The target's camera-style set is made first when missing
(`experiments.stargan --dataset=<target>`, tiny config, the same world). Then, for seed 0's
baseline and hhl models, `experiments.camstyle_distance` (Table 1, `--max_images` of the target's
training images).

Printed: target rank-1 / mAP (mean ± std over seeds) per variant beside the paper's Table 2, the
paper's orderings (HHL > +L_C > +L_D > +L_T > baseline) as PASS/FAIL lines per metric, the Table 1
rows beside the paper's, and one JSON comparison a line (docs/design.md §8).

`--quick`: one seed of 2 epochs on the tiny world, for a smoke run (not the figures).
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from benchmarks import report
from reid_jax import paths
from reid_jax.configs import hhl as hhl_config
from reid_jax.errors import ReidError
from reid_jax.evaluation import camstyle_distance
from reid_jax.training import preflight
from reid_jax.training import workdir as workdir_lib

_SEEDS = flags.DEFINE_integer("seeds", 3, "seeds 0..N-1")
_VARIANTS = flags.DEFINE_list("variants", list(hhl_config.METHOD_VARIANTS), "method variants")
_PAIRS = flags.DEFINE_list("pairs", ["DM", "MD"], "directions: DM (synth_duke -> synth_market), MD")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or "
                                "~/reid_jax_data)")
_ROOT = flags.DEFINE_string("root", "workdirs/hhl_testbed", "where the runs' workdirs go")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 500, "target images of the Table 1 diagnostic")
_QUICK = flags.DEFINE_bool("quick", False, "one seed, 2 epochs on the tiny world (smoke run)")

NAMES = {"D": "synth_duke", "M": "synth_market"}
TWINS = {"synth_duke": "duke", "synth_market": "market"}
LABELS = {"baseline": "Basel.", "lt": "Basel.+L_T", "ld": "Basel.+L_D", "lc": "Basel.+L_C",
          "hhl": "HHL (Basel.+L_CD)"}
QUICK_FLAGS = ("--config.num_epochs=2", "--config.optim.milestones=(1,)",
               "--config.data.synthetic_size=tiny")
METRICS = ("rank1", "mAP")


def _run(command):
  print(f"\n$ {' '.join(command[1:])}", flush=True)
  subprocess.run(command, check=True, env=dict(os.environ))


def ensure_camstyle(tgt, data_dir, quick):
  size = "tiny" if quick else hhl_config.get_config("tiny").data.synthetic_size
  try:
    preflight.camstyle_set(data_dir, tgt, size)
  except ReidError:
    _run([sys.executable, "-m", "experiments.stargan", f"--dataset={tgt}",
          f"--data_dir={data_dir}", *((f"--config.data.synthetic_size={size}",) if quick else ())])


def run_hhl(src, tgt, variant, seed, workdir, data_dir, quick) -> dict:
  if not (workdir / "results.json").exists():
    _run([sys.executable, "-m", "experiments.hhl", f"--src={src}", f"--tgt={tgt}",
          f"--variant={variant}", f"--config.seed={seed}", f"--workdir={workdir}",
          f"--data_dir={data_dir}", *(QUICK_FLAGS if quick else ())])
  return workdir_lib.read_results(workdir)


def table1(workdir, data_dir) -> dict:
  path = workdir / camstyle_distance.OUTPUT_FILE
  if not path.exists():
    _run([sys.executable, "-m", "experiments.camstyle_distance", f"--workdir={workdir}",
          f"--data_dir={data_dir}", f"--max_images={_MAX_IMAGES.value}"])
  return json.loads(path.read_text())


def _stats(values):
  values = np.asarray(values, float)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  data_dir = Path(_DATA_DIR.value or paths.default_data_dir())
  seeds = 1 if _QUICK.value else _SEEDS.value
  root = Path(_ROOT.value) / ("quick" if _QUICK.value else "")
  pairs = [(NAMES[p[0]], NAMES[p[1]]) for p in _PAIRS.value]
  variants = [v for v in hhl_config.METHOD_VARIANTS if v in _VARIANTS.value]
  for _, tgt in pairs:
    if any(v in ("lc", "hhl") for v in variants):
      ensure_camstyle(tgt, data_dir, _QUICK.value)
  scores, seconds = {}, {}
  for seed in range(seeds):
    for src, tgt in pairs:
      for variant in variants:
        workdir = root / f"{src}_to_{tgt}_{variant}_seed{seed}"
        results = run_hhl(src, tgt, variant, seed, workdir, data_dir, _QUICK.value)
        scores.setdefault((src, tgt, variant), []).append(results["eval"][tgt])
        seconds.setdefault((src, tgt, variant), []).append(results["train_seconds"])
  diagnostics = {}
  for src, tgt in pairs:
    for variant in ("baseline", "hhl"):
      if variant in variants:
        diagnostics[(src, tgt, variant)] = table1(root / f"{src}_to_{tgt}_{variant}_seed0",
                                                  data_dir)

  recipe = f"reid_jax/configs/hhl.py:tiny seeds={seeds}" + (" quick" if _QUICK.value else "")
  print(f"\nHHL ablation on the testbed, {recipe} (target rank-1 / mAP in %, mean ± std over "
        "seeds; paper: docs/hhl.md §13 Table 2 on the real twins)")
  summary = {}
  for src, tgt in pairs:
    paper = hhl_config.PAPER_TABLE2[(TWINS[src], TWINS[tgt])]
    print(f"\n{src} -> {tgt}")
    print(f"  {'variant':20s}{'rank-1':>15s}{'mAP':>15s}{'train s':>9s}   paper rank-1 / mAP")
    for variant in variants:
      cells = []
      for metric in METRICS:
        mean, std = _stats([e[metric] for e in scores[(src, tgt, variant)]])
        summary[(src, tgt, variant, metric)] = (mean, std)
        cells.append(f"{100 * mean:6.1f} ± {100 * std:4.1f}")
      train = np.mean(seconds[(src, tgt, variant)])
      print(f"  {LABELS[variant]:20s}" + "".join(f"{c:>15s}" for c in cells)
            + f"{train:9.0f}   {paper[variant][0]:.1f} / {paper[variant][1]:.1f}")
  print("\nThe paper's ordering HHL > +L_C > +L_D > +L_T > baseline, step by step (means):")
  order = [v for v in ("hhl", "lc", "ld", "lt", "baseline") if v in variants]
  for src, tgt in pairs:
    for metric in METRICS:
      for better, worse in zip(order, order[1:]):
        a, a_std = summary[(src, tgt, better, metric)]
        b, b_std = summary[(src, tgt, worse, metric)]
        clear = a - b > 2 * (a_std + b_std) if seeds > 1 else None
        verdict = "PASS" if a > b else "FAIL"
        note = "" if clear is None else ("  (clear: gap > 2 x summed stds)" if clear else
                                         "  (within 2 x summed stds)")
        print(f"{verdict}  {src[6]}->{tgt[6]} {metric}: {LABELS[better]} {100 * a:.1f} > "
              f"{LABELS[worse]} {100 * b:.1f}{note}")
  if diagnostics:
    print("\nTable 1 (docs/hhl.md §11.1): mean Euclidean distance of L2-normalised pool5 between a "
          "target training image and its crop / flip / camera-style versions, seed-0 models")
    for (src, tgt, variant), record in diagnostics.items():
      d, paper = record["distance"], record.get("paper") or {}
      print(f"  {src[6]}->{tgt[6]} {variant:9s} crop {d['crop']:.3f}  flip {d['flip']:.3f}  "
            f"camstyle {d['camstyle']:.3f} (other cameras {d['camstyle_other']:.3f}, own "
            f"{d['camstyle_own']:.3f})   paper baseline: crop {paper.get('crop')}, flip "
            f"{paper.get('flip')}, camstyle {paper.get('camstyle')}")
      ok = d["camstyle"] > 2 * max(d["crop"], d["flip"])
      print(f"{'PASS' if ok else 'FAIL'}  {src[6]}->{tgt[6]} {variant}: crop, flip << camera "
            f"style (camstyle > 2 x max(crop, flip))")
  for src, tgt in pairs:
    if "baseline" in variants:
      for variant in variants:
        if variant != "baseline":
          for metric in METRICS:
            print(report.comparison(
                f"hhl_testbed_{src[6]}{tgt[6]}_{variant}_{metric}",
                summary[(src, tgt, variant, metric)][0], "baseline",
                summary[(src, tgt, "baseline", metric)][0], recipe))


if __name__ == "__main__":
  app.run(main)
