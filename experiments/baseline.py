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
from reid_jax.training import baseline
from reid_jax.training import command
from reid_jax.training import preflight

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
  command.train_and_report(baseline.METHOD, config, config_name, src=src, tgt=tgt,
                           workdir=workdir, data_dir=data_dir, title="baseline")


if __name__ == "__main__":
  cli.run(main, CONFIGS)
