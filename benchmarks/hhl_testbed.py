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
rows beside the paper's, and one JSON comparison a line (docs/design.md §8). Table 1 is skipped,
with a line saying why, for a target whose camera-style set is missing (it is made only when lc or
hhl runs). The grid, the tables and the ordering lines are `benchmarks/ablation.py`'s.

`--quick`: one seed of 2 epochs on the tiny world, for a smoke run (not the figures).
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import json
import sys

from absl import app, flags, logging

from benchmarks import ablation
from reid_jax.configs import hhl as hhl_config
from reid_jax.errors import ReidError
from reid_jax.evaluation import camstyle_distance
from reid_jax.training import preflight

FLAGS = ablation.define_flags(__name__, hhl_config.METHOD_VARIANTS, ("DM", "MD"),
                              "workdirs/hhl_testbed")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 500, "target images of the Table 1 diagnostic")

LABELS = {"baseline": "Basel.", "lt": "Basel.+L_T", "ld": "Basel.+L_D", "lc": "Basel.+L_C",
          "hhl": "HHL (Basel.+L_CD)"}


def _camstyle_size(quick):
  return "tiny" if quick else hhl_config.get_config("tiny").data.synthetic_size


def missing_camstyle(tgt, data_dir, quick):
  """Why the target's camera-style set of the runs' world is not there (None when it is)."""
  try:
    preflight.camstyle_set(data_dir, tgt, _camstyle_size(quick))
  except ReidError as e:
    return str(e)
  return None


def ensure_camstyle(tgt, data_dir, quick):
  if missing_camstyle(tgt, data_dir, quick):
    ablation.run([sys.executable, "-m", "experiments.stargan", f"--dataset={tgt}",
                  f"--data_dir={data_dir}",
                  *(("--config.data.synthetic_size=tiny",) if quick else ())])


def table1(workdir, data_dir) -> dict:
  path = workdir / camstyle_distance.OUTPUT_FILE
  if not path.exists():
    ablation.run([sys.executable, "-m", "experiments.camstyle_distance", f"--workdir={workdir}",
                  f"--data_dir={data_dir}", f"--max_images={_MAX_IMAGES.value}"])
  return json.loads(path.read_text())


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  grid = ablation.Grid.from_flags("hhl", FLAGS, hhl_config.METHOD_VARIANTS)
  for _, tgt in grid.pairs:
    if any(v in ("lc", "hhl") for v in grid.variants):
      ensure_camstyle(tgt, grid.data_dir, grid.quick)
  scores, seconds = grid.collect()
  # Table 1 needs the target's camera-style set; made above only when L_C or HHL ran.
  diagnostics, skipped = {}, {}
  for src, tgt in grid.pairs:
    for variant in ("baseline", "hhl"):
      if variant in grid.variants:
        why = missing_camstyle(tgt, grid.data_dir, grid.quick)
        if why:
          skipped[(src, tgt, variant)] = why
        else:
          diagnostics[(src, tgt, variant)] = table1(grid.workdir(src, tgt, variant, 0),
                                                    grid.data_dir)

  recipe = grid.recipe("reid_jax/configs/hhl.py:tiny")
  print(f"\nHHL ablation on the testbed, {recipe} (target rank-1 / mAP in %, mean ± std over "
        "seeds; paper: docs/hhl.md §13 Table 2 on the real twins)")
  summary = grid.print_table(scores, seconds, hhl_config.PAPER_TABLE2, LABELS)
  print("\nThe paper's ordering HHL > +L_C > +L_D > +L_T > baseline, step by step (means):")
  grid.print_ordering(summary, ("hhl", "lc", "ld", "lt", "baseline"), LABELS)
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
  for (src, tgt, variant), why in skipped.items():
    print(f"\nTable 1 skipped for {src[6]}->{tgt[6]} {variant}: {why}")
  grid.print_comparisons(summary, "hhl_testbed", "baseline", recipe)


if __name__ == "__main__":
  app.run(main)
