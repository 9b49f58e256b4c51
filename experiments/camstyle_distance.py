r"""The Table 1 diagnostic (docs/hhl.md §11.1): how far crop, flip and camera style move a target
image's descriptor, for the model of a trained workdir (baseline or HHL).

  python -m experiments.camstyle_distance \
      --workdir=workdirs/baseline/synth_duke_to_synth_market_tiny [--max_images=500] [--seed=0]

Restores the workdir's latest checkpoint, measures the mean Euclidean distance between each target
training image's L2-normalised pool5 and that of its random crop, its mirror image and each of its
camera-style versions (all cameras, other cameras, own camera), prints them beside the paper's
Table 1 and writes them to `<workdir>/camstyle_distance.json`. Needs the target's camera-style set
(`python -m experiments.stargan --dataset=<tgt>`).
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from pathlib import Path

from absl import flags

from reid_jax import cli
from reid_jax import paths
from reid_jax.evaluation import camstyle_distance
from reid_jax.training import preflight

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "a training workdir (holds config.json and checkpoints/)",
                    required=True)
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_integer("max_images", 0, "measure a seeded random subset of this many target "
                     "training images (0: all)", lower_bound=0)
flags.DEFINE_integer("seed", 0, "seed of the random crops and of the subset")


def main(overrides):
  del overrides  # this command takes no config
  workdir = Path(FLAGS.workdir)
  # Before any long work: a trained workdir, then (in workdir_distances) the target's split and
  # its camera-style set.
  config = camstyle_distance.check_workdir(workdir)
  cli.log_to(workdir)
  data_dir = FLAGS.data_dir or paths.default_data_dir()
  preflight.datasets(data_dir, (config["tgt"],),
                     size=config.get("data", {}).get("synthetic_size", "tiny"))
  record = camstyle_distance.workdir_distances(workdir, data_dir, max_images=FLAGS.max_images,
                                               seed=FLAGS.seed)
  print(camstyle_distance.summary_line(record))
  print(camstyle_distance.format_table(record))
  print(f"written to {workdir / camstyle_distance.OUTPUT_FILE}")


if __name__ == "__main__":
  cli.run(main)
