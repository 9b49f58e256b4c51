r"""Which tiny StarGAN recipe keeps the person? Each recipe judged by StarGAN's own figures only.

  python -m benchmarks.stargan_recipe [--dataset=synth_market] [--recipes=short,tiny] [--data_dir=D]

Trains every recipe (`configs/stargan.py:tiny` plus the overrides in RECIPES) on the dataset's
training images of the tiny config's world, in `<root>/<dataset>/<recipe>` (a finished workdir is
reused), then prints per recipe its iterations, G updates, training seconds and
`training.stargan_quality` figures: cycle L1, change L1, D_cls accuracy on the fakes, and the share
of fakes whose nearest real image among their source camera's images (hand-crafted descriptor) is
their own source ("person kept"; chance 1 / images of that camera). No re-ID model is trained or consulted: a recipe is chosen by these figures, never by
what HHL scores with it (docs/testbed.md, "The tiny StarGAN recipe"). Writes no camera-style set.
Last lines: one JSON object per recipe.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import json
import time
from pathlib import Path

from absl import app, flags

from reid_jax import cli
from reid_jax import paths
from reid_jax.configs import stargan as stargan_config
from reid_jax.training import stargan
from reid_jax.training import stargan_quality

# Overrides of configs/stargan.py:tiny (dotted config paths). Every recipe but `tiny` names its
# length and loss in full, so that it stays the recipe docs/testbed.md measured whatever `tiny` is.
_SHORT = {"optim.num_iters": 1000, "optim.decay_start": 500, "loss.lambda_id": 0.0}
_LONG = {"optim.num_iters": 4000, "optim.decay_start": 2000, "loss.lambda_id": 0.0}
RECIPES = {
    "tiny": {},  # the configured recipe (since 2026-12-03 the same as long_identity)
    "short": _SHORT,  # the tiny recipe until 2026-12-03: StarGAN's loss, 1,000 iterations
    "long": _LONG,
    "long_wide": {**_LONG, "model.g_conv_dim": 32, "model.g_repeat_num": 3},
    "critic1": {**_SHORT, "optim.n_critic": 1},
    "long_critic1": {**_LONG, "optim.n_critic": 1},
    "identity": {**_SHORT, "loss.lambda_id": 5.0},
    "long_identity": {**_LONG, "loss.lambda_id": 5.0},
    "xlong_identity": {"optim.num_iters": 12000, "optim.decay_start": 6000,
                       "loss.lambda_id": 5.0},
}

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "synth_market", "synthetic target dataset")
flags.DEFINE_list("recipes", ["short", "tiny"], f"recipes to run, of: {', '.join(RECIPES)}")
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_string("root", "workdirs/stargan_recipe", "workdirs go to <root>/<dataset>/<recipe>")
flags.DEFINE_integer("quality_images", stargan_quality.DEFAULT_IMAGES, "images judged")


def recipe_config(name: str, dataset: str):
  """The tiny config with the recipe's overrides and the command's fields, as experiments.stargan
  would write it (so `experiments.stargan --workdir=<its workdir> --config=<its config.json>
  --generate_only` writes its camera-style set)."""
  config = stargan_config.get_config("tiny")
  for path, value in RECIPES[name].items():
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = value
  return cli.with_command_fields(config, dataset=dataset, config_name=f"stargan.py:tiny+{name}")


def main(argv):
  del argv
  unknown = [r for r in FLAGS.recipes if r not in RECIPES]
  if unknown:
    raise app.UsageError(f"--recipes: unknown {', '.join(unknown)}; choose of {', '.join(RECIPES)}")
  data_dir = FLAGS.data_dir or paths.default_data_dir()
  rows = []
  for name in FLAGS.recipes:
    config = recipe_config(name, FLAGS.dataset)
    workdir = Path(FLAGS.root) / FLAGS.dataset / name
    start = time.perf_counter()
    summary = stargan.train(config, workdir, FLAGS.dataset, data_dir)
    figures = stargan_quality.judge_and_record(config, workdir, FLAGS.dataset, data_dir,
                                               num_images=FLAGS.quality_images)
    rows.append({"recipe": name, "overrides": RECIPES[name], "iterations": summary["steps"],
                 "g_updates": summary["steps"] // config.optim.n_critic,
                 "train_seconds": round(summary["train_seconds"], 1),
                 "wall_seconds": round(time.perf_counter() - start, 1), **figures})
    print(f"{name}: {stargan_quality.describe(figures)}", flush=True)

  print(f"\n{FLAGS.dataset} ({stargan.synthetic_size(recipe_config('tiny', FLAGS.dataset))} world), "
        f"{rows[0]['num_images']} training images judged; person kept: chance "
        f"{100 * rows[0]['chance']:.1f} %, a copying generator 100 %")
  header = ("recipe", "iters", "G upd", "train s", "cycle L1", "change L1", "D_cls fakes %",
            "kept %", "kept own cam %")
  print(" | ".join(header))
  for r in rows:
    print(" | ".join([r["recipe"], str(r["iterations"]), str(r["g_updates"]),
                      f"{r['train_seconds']:.0f}", f"{r['cycle_l1']:.3f}", f"{r['change_l1']:.3f}",
                      f"{100 * r['camera_accuracy']:.1f}", f"{100 * r['person_kept_rank1']:.1f}",
                      f"{100 * r['own_camera_kept_rank1']:.1f}"]))
  for r in rows:
    print(json.dumps(r))


if __name__ == "__main__":
  app.run(main)
