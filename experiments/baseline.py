r"""Direct-transfer baseline: train IDE on --src, evaluate on --tgt and --src (docs/hhl.md §9).

  python -m experiments.baseline --src=synth_duke --tgt=synth_market
  python -m experiments.baseline --src=duke --tgt=market \
      --config=reid_jax/configs/baseline.py:paper --config.model.pretrained=/path/resnet50.pth
  python -m experiments.baseline --src=synth_duke --tgt=synth_market --config.num_epochs=1
  python -m experiments.baseline --src=synth_duke --tgt=synth_market \
      --config=workdirs/baseline/synth_duke_to_synth_market_tiny/config.json

Default config: `baseline.py:paper` for real datasets, `baseline.py:tiny` when both are synthetic
(also when --config names the file without a variant). Rerunning the same command on the same
workdir resumes from its last checkpoint.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from absl import flags

from reid_jax import cli
from reid_jax import paths
from reid_jax.evaluation import tables
from reid_jax.training import baseline
from reid_jax.training import trainer
from reid_jax.training import preflight
from reid_jax.training import workdir as workdir_lib

CONFIGS = cli.ConfigFile("baseline", "reid_jax.configs.baseline")

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "source dataset (labelled, trained on); --help lists the names",
                    required=True)
flags.DEFINE_string("tgt", None, "target dataset (evaluated on)", required=True)
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_string("workdir", None, "default workdirs/baseline/<src>_to_<tgt>[_<variant>]")
cli.define_config_flag(CONFIGS, "variant paper for real datasets, tiny when both are synthetic")


def main(overrides):
  src, tgt = FLAGS.src, FLAGS.tgt
  preflight.dataset_names(src, tgt)
  config, config_name = cli.load_config(CONFIGS, FLAGS.config, cli.default_variant(src, tgt),
                                        overrides)
  config = cli.with_command_fields(config, src=src, tgt=tgt, config_name=config_name)
  variant = config.variant if config.variant != "paper" else None
  workdir = FLAGS.workdir or paths.default_workdir("baseline", src, tgt, variant)
  data_dir = FLAGS.data_dir or paths.default_data_dir()
  print(f"config {config_name}:\n{config}")
  cli.log_to(workdir)
  # Before any long work: the workdir's config, the pretrained file, every dataset it reads.
  preflight.training_run(workdir, config, data_dir, src, tgt)
  workdir_lib.prepare(workdir, config, ignore=("config_name",))
  print(f"workdir {workdir}")
  results = trainer.train_and_evaluate(baseline.METHOD, config, workdir, data_dir, src, tgt, config_name)
  print(f"\nbaseline {src} -> {tgt}, {results['steps']} steps "
        f"({results['train_seconds']:.0f} s training); ap={config.eval.ap}, "
        f"distance={config.eval.distance}")
  print(tables.format_table(results["eval"]))
  print(f"results: {workdir}/results.json")


if __name__ == "__main__":
  cli.run(main, CONFIGS)
