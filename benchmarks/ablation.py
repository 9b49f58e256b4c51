"""What the method ablations on the synthetic testbed share (benchmarks/hhl_testbed.py,
benchmarks/arn_testbed.py): the flags, one `experiments.<method>` run per seed x direction x
variant into `<root>/<src>_to_<tgt>_<variant>_seed<seed>` (a workdir with results.json is reused),
the target scores' mean ± std per variant beside the paper's, the paper's ordering as PASS/FAIL
lines, and one JSON comparison a line (docs/design.md §8).

`--quick`: one seed of 2 epochs on the tiny world (QUICK_FLAGS), under `<root>/quick`.
"""

import dataclasses
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
from absl import flags

from benchmarks import report
from reid_jax import paths
from reid_jax.training import workdir as workdir_lib

NAMES = {"D": "synth_duke", "M": "synth_market"}
TWINS = {"synth_duke": "duke", "synth_market": "market"}
QUICK_FLAGS = ("--config.num_epochs=2", "--config.optim.milestones=(1,)",
               "--config.data.synthetic_size=tiny")
METRICS = ("rank1", "mAP")


def define_flags(module_name: str, variants, pairs, root: str):
  """The flags every ablation script takes, listed under `module_name` (the script's `__name__`,
  so that `--help` shows them); returns them as attributes of a namespace."""
  if module_name == "__main__":  # absl names the main module by its path
    module_name = sys.argv[0]
  pair_help = ", ".join(f"{p} ({NAMES[p[0]]} -> {NAMES[p[1]]})" for p in pairs)
  return types.SimpleNamespace(
      seeds=flags.DEFINE_integer("seeds", 3, "seeds 0..N-1", module_name=module_name),
      variants=flags.DEFINE_list("variants", list(variants), "method variants",
                                 module_name=module_name),
      pairs=flags.DEFINE_list("pairs", list(pairs), f"directions: {pair_help}",
                              module_name=module_name),
      data_dir=flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or "
                                   "~/reid_jax_data)", module_name=module_name),
      root=flags.DEFINE_string("root", root, "where the runs' workdirs go",
                               module_name=module_name),
      quick=flags.DEFINE_bool("quick", False, "one seed, 2 epochs on the tiny world (smoke run)",
                              module_name=module_name))


def run(command):
  """Runs `python -m ...` (the command without the interpreter is printed first)."""
  print(f"\n$ {' '.join(command[1:])}", flush=True)
  subprocess.run(command, check=True, env=dict(os.environ))


def stats(values):
  """(mean, sample std) of `values`; the std is 0 for a single value."""
  values = np.asarray(values, float)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


@dataclasses.dataclass
class Grid:
  """The runs of one ablation: `experiments.<experiment>` for each seed, (src, tgt) and variant."""
  experiment: str
  seeds: int
  pairs: list
  variants: list
  root: Path
  data_dir: Path
  quick: bool

  @classmethod
  def from_flags(cls, experiment: str, flag_values, all_variants):
    """The grid the flags of `define_flags` ask for; variants in `all_variants`' order."""
    quick = flag_values.quick.value
    return cls(experiment=experiment, seeds=1 if quick else flag_values.seeds.value,
               pairs=[(NAMES[p[0]], NAMES[p[1]]) for p in flag_values.pairs.value],
               variants=[v for v in all_variants if v in flag_values.variants.value],
               root=Path(flag_values.root.value) / ("quick" if quick else ""),
               data_dir=Path(flag_values.data_dir.value or paths.default_data_dir()),
               quick=quick)

  def workdir(self, src, tgt, variant, seed) -> Path:
    return self.root / f"{src}_to_{tgt}_{variant}_seed{seed}"

  def recipe(self, config: str) -> str:
    return f"{config} seeds={self.seeds}" + (" quick" if self.quick else "")

  def train(self, src, tgt, variant, seed) -> dict:
    """One run's results.json, training it first unless its workdir already has one."""
    workdir = self.workdir(src, tgt, variant, seed)
    if not (workdir / "results.json").exists():
      run([sys.executable, "-m", f"experiments.{self.experiment}", f"--src={src}", f"--tgt={tgt}",
           f"--variant={variant}", f"--config.seed={seed}", f"--workdir={workdir}",
           f"--data_dir={self.data_dir}", *(QUICK_FLAGS if self.quick else ())])
    return workdir_lib.read_results(workdir)

  def collect(self):
    """Trains (or reuses) every run, seed by seed; returns `({(src, tgt, variant): [the target's
    eval entry per seed]}, {(src, tgt, variant): [train seconds per seed]})`."""
    scores, seconds = {}, {}
    for seed in range(self.seeds):
      for src, tgt in self.pairs:
        for variant in self.variants:
          results = self.train(src, tgt, variant, seed)
          scores.setdefault((src, tgt, variant), []).append(results["eval"][tgt])
          seconds.setdefault((src, tgt, variant), []).append(results["train_seconds"])
    return scores, seconds

  def print_table(self, scores, seconds, paper, labels) -> dict:
    """Per direction, a row per variant: target rank-1 and mAP (mean ± std in %), mean train
    seconds and `paper[(twin src, twin tgt)][variant]`; returns `{(src, tgt, variant, metric):
    (mean, std)}`."""
    summary = {}
    for src, tgt in self.pairs:
      rows = paper[(TWINS[src], TWINS[tgt])]
      print(f"\n{src} -> {tgt}")
      print(f"  {'variant':20s}{'rank-1':>15s}{'mAP':>15s}{'train s':>9s}   paper rank-1 / mAP")
      for variant in self.variants:
        cells = []
        for metric in METRICS:
          mean, std = stats([e[metric] for e in scores[(src, tgt, variant)]])
          summary[(src, tgt, variant, metric)] = (mean, std)
          cells.append(f"{100 * mean:6.1f} ± {100 * std:4.1f}")
        train = np.mean(seconds[(src, tgt, variant)])
        print(f"  {labels[variant]:20s}" + "".join(f"{c:>15s}" for c in cells)
              + f"{train:9.0f}   {rows[variant][0]:.1f} / {rows[variant][1]:.1f}")
    return summary

  def print_ordering(self, summary, order, labels):
    """PASS/FAIL per direction, metric and consecutive pair of `order` (best first, the variants
    not run skipped): is the better one's mean above the worse one's; with several seeds, whether
    the gap is clear (> 2 x the summed stds)."""
    order = [v for v in order if v in self.variants]
    for src, tgt in self.pairs:
      for metric in METRICS:
        for better, worse in zip(order, order[1:]):
          a, a_std = summary[(src, tgt, better, metric)]
          b, b_std = summary[(src, tgt, worse, metric)]
          clear = a - b > 2 * (a_std + b_std) if self.seeds > 1 else None
          verdict = "PASS" if a > b else "FAIL"
          note = "" if clear is None else ("  (clear: gap > 2 x summed stds)" if clear else
                                           "  (within 2 x summed stds)")
          print(f"{verdict}  {src[6]}->{tgt[6]} {metric}: {labels[better]} {100 * a:.1f} > "
                f"{labels[worse]} {100 * b:.1f}{note}")

  def print_comparisons(self, summary, prefix, reference, recipe):
    """One JSON line per direction, variant other than `reference` and metric: its target mean
    against `reference`'s (`<prefix>_<s><t>_<variant>_<metric>`)."""
    for src, tgt in self.pairs:
      if reference not in self.variants:
        continue
      for variant in self.variants:
        if variant != reference:
          for metric in METRICS:
            print(report.comparison(
                f"{prefix}_{src[6]}{tgt[6]}_{variant}_{metric}",
                summary[(src, tgt, variant, metric)][0], reference,
                summary[(src, tgt, reference, metric)][0], recipe))
