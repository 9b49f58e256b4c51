r"""ARN: shared and private encoders over a ResNet-50 trunk, a shared decoder and a source
classifier (docs/arn_triplet_eval.md §1). Train on --src (labelled) and --tgt's unlabelled
training images, evaluate on --tgt (E_C's code with the target's BatchNorm statistics) and --src.

  python -m experiments.arn --src=synth_market --tgt=synth_duke [--variant=rec_sup]
  python -m experiments.arn --src=market --tgt=duke --config.model.pretrained=/path/resnet50.pth

Default config: `arn.py:paper` for real datasets, `arn.py:tiny` when both are synthetic.
`--variant` picks the row of the ablation table (rec, rec_private, rec_sup, arn; §1.1). Before any
training it checks both datasets and the pretrained file. Rerunning the same command on the same
workdir resumes from its last checkpoint.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from absl import flags

from reid_jax import cli
from reid_jax import paths
from reid_jax.configs import arn as arn_config
from reid_jax.training import arn
from reid_jax.training import command
from reid_jax.training import preflight

CONFIGS = cli.ConfigFile("arn", "reid_jax.configs.arn")

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "source dataset (labelled); --help lists the names", required=True)
flags.DEFINE_string("tgt", None, "target dataset (its training images unlabelled)", required=True)
flags.DEFINE_enum("variant", "arn", arn_config.METHOD_VARIANTS,
                  "ablation row (docs/arn_triplet_eval.md §1.1): rec (L_rec only), rec_private "
                  "(+ private encoders, L_diff), rec_sup (+ L_class, L_ctrs), arn (all)")
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_string("workdir", None,
                    "default workdirs/arn/<src>_to_<tgt>[_<config variant>][_<variant>]")
cli.define_config_flag(CONFIGS, "variant paper for real datasets, tiny when both are synthetic")


def main(overrides):
  src, tgt = FLAGS.src, FLAGS.tgt
  preflight.dataset_names(src, tgt)
  config, config_name = cli.load_config(CONFIGS, FLAGS.config, cli.default_variant(src, tgt),
                                        overrides)
  # --variant wins; without it the config's own (e.g. a workdir's config.json) stands.
  variant = FLAGS.variant if FLAGS["variant"].present else config.arn.variant
  config = arn_config.apply_method_variant(config, variant)
  config = cli.with_command_fields(config, src=src, tgt=tgt, config_name=config_name)
  arn.check_config(config)
  suffix = "_".join(part for part in (config.variant if config.variant != "paper" else "",
                                      variant if variant != "arn" else "") if part)
  workdir = FLAGS.workdir or paths.default_workdir("arn", src, tgt, suffix or None)
  data_dir = FLAGS.data_dir or paths.default_data_dir()

  def check_source_pretraining():  # §1.4 item 4 (c): the workdir E_I starts from
    if config.model.init_from_workdir:
      preflight.checkpoint_exists(
          config.model.init_from_workdir,
          f"train it first: python -m experiments.baseline --src={src} --tgt={tgt} "
          f"--workdir={config.model.init_from_workdir}")

  command.train_and_report(arn.METHOD, config, config_name, src=src, tgt=tgt, workdir=workdir,
                           data_dir=data_dir, title=f"arn ({variant})",
                           heading=f"variant {variant}", before_training=check_source_pretraining)


if __name__ == "__main__":
  cli.run(main, CONFIGS)
