r"""Direct-transfer baseline: train IDE on --src, evaluate on --tgt and --src (hhl.md §9).

  python -m experiments.baseline --src=synth_duke --tgt=synth_market
  python -m experiments.baseline --src=duke --tgt=market \
      --config=reid_jax/configs/baseline.py:paper --config.model.pretrained=/path/resnet50.pth

Default config: `baseline.py:paper` for real datasets, `baseline.py:tiny` for synthetic ones.
Rerunning the same command on the same workdir resumes from its last checkpoint.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from absl import flags
from absl import logging
from ml_collections import config_flags

from reid_jax import cli
from reid_jax import paths
from reid_jax.data import datasets
from reid_jax.errors import ReidError
from reid_jax.training import baseline
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import workdir as workdir_lib

CONFIG_FILE = "reid_jax/configs/baseline.py"

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "source dataset (labelled, trained on)", required=True)
flags.DEFINE_string("tgt", None, "target dataset (evaluated on)", required=True)
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_string("workdir", None, "default workdirs/baseline/<src>_to_<tgt>[_<variant>]")
config_flags.DEFINE_config_file("config", None, "config file with a variant after a colon",
                                lock_config=True)


def resolve_config(src: str, tgt: str):
  """The --config, or the default variant: paper for real datasets, tiny for synthetic ones."""
  for name in (src, tgt):
    if name not in datasets.DATASETS:
      raise ReidError(f"unknown dataset {name!r}; choose one of {', '.join(datasets.DATASETS)}")
  if FLAGS.config is not None:
    spec = flags.FLAGS["config"].config_filename
    return FLAGS.config, spec
  from reid_jax.configs import baseline as baseline_config  # pylint: disable=g-import-not-at-top
  synthetic = datasets.get_spec(src).synthetic and datasets.get_spec(tgt).synthetic
  variant = "tiny" if synthetic else "paper"
  return baseline_config.get_config(variant), f"{CONFIG_FILE}:{variant}"


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax/TFDS INFO lines drown the progress bar
  config, config_name = resolve_config(FLAGS.src, FLAGS.tgt)
  config.unlock()
  config.src, config.tgt = FLAGS.src, FLAGS.tgt
  config.config_name = config_name
  config.lock()
  variant = config.variant if config.variant != "paper" else None
  workdir = FLAGS.workdir or paths.default_workdir("baseline", FLAGS.src, FLAGS.tgt, variant)
  data_dir = FLAGS.data_dir or paths.default_data_dir()
  print(f"config {config_name}:\n{config}")
  workdir_lib.prepare(workdir, config, ignore=("config_name",))
  print(f"workdir {workdir}")
  results = baseline.train_and_evaluate(config, workdir, data_dir, FLAGS.src, FLAGS.tgt,
                                        config_name)
  print(f"\nbaseline {FLAGS.src} -> {FLAGS.tgt}, {results['steps']} steps "
        f"({results['train_seconds']:.0f} s training); ap={config.eval.ap}, "
        f"distance={config.eval.distance}")
  print(evaluate_lib.format_table(results["eval"]))
  print(f"results: {workdir}/results.json")


if __name__ == "__main__":
  cli.run(main)
