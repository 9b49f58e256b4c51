r"""ARN's ablation (docs/arn_triplet_eval.md §1.1, the ablation table) on the synthetic testbed.

  python -m benchmarks.arn_testbed --seeds=3 [--variants=rec,rec_private,rec_sup,arn] \
      [--pairs=MD,DM] [--quick]

For every seed, direction and method variant it runs `experiments.arn` (tiny recipe, the default
for synthetic datasets: the testbed's pretrained trunk, the medium world) into
`<root>/<src>_to_<tgt>_<variant>_seed<seed>`; a workdir with results.json is reused.

Printed: target rank-1 / mAP (mean ± std over seeds) and train seconds per variant beside the
paper's ablation rows, the paper's ordering (ARN > rec_sup > rec_private > rec) as PASS/FAIL lines
per metric, and one JSON comparison a line against rec (docs/design.md §8). The grid, the tables
and the ordering lines are `benchmarks/ablation.py`'s.

`--quick`: one seed of 2 epochs on the tiny world, for a smoke run (not the figures).
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from absl import app, logging

from benchmarks import ablation
from reid_jax.configs import arn as arn_config

FLAGS = ablation.define_flags(__name__, arn_config.METHOD_VARIANTS, ("MD", "DM"),
                              "workdirs/arn_testbed")

LABELS = {"rec": "L_rec only", "rec_private": "L_rec+private", "rec_sup": "L_rec+L_cls+L_ctrs",
          "arn": "ARN (all)"}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  grid = ablation.Grid.from_flags("arn", FLAGS, arn_config.METHOD_VARIANTS)
  scores, seconds = grid.collect()
  recipe = grid.recipe("reid_jax/configs/arn.py:tiny")
  print(f"\nARN ablation on the testbed, {recipe} (target rank-1 / mAP in %, mean ± std over "
        "seeds; paper: docs/arn_triplet_eval.md §1.1 ablation table on the real twins)")
  summary = grid.print_table(scores, seconds, arn_config.PAPER_ABLATIONS, LABELS)
  print("\nThe paper's ordering ARN > rec_sup > rec_private > rec, step by step (means):")
  grid.print_ordering(summary, ("arn", "rec_sup", "rec_private", "rec"), LABELS)
  grid.print_comparisons(summary, "arn_testbed", "rec", recipe)


if __name__ == "__main__":
  app.run(main)
