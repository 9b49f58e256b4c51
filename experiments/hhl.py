r"""HHL: IDE + a batch-hard triplet loss over source and target with camera-style positives
(docs/hhl.md §2-§7). Train on --src (labelled) and --tgt's unlabelled training images, evaluate on
--tgt and --src.

  python -m experiments.stargan --dataset=synth_market        # the target's camera-style set
  python -m experiments.hhl --src=synth_duke --tgt=synth_market [--variant=lc]
  python -m experiments.hhl --src=duke --tgt=market --config.model.pretrained=/path/resnet50.pth

Default config: `hhl.py:paper` for real datasets, `hhl.py:tiny` when both are synthetic.
`--variant` picks the row of the paper's Table 2 (baseline, lt, ld, lc, hhl; docs/hhl.md §4).
Before any training it checks both datasets, the pretrained file and the target's complete
camera-style set for this world (a missing one prints the `experiments.stargan` command).
Rerunning the same command on the same workdir resumes from its last checkpoint.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from absl import flags

from reid_jax import cli
from reid_jax import paths
from reid_jax.configs import hhl as hhl_config
from reid_jax.training import command
from reid_jax.training import hhl
from reid_jax.training import preflight

CONFIGS = cli.ConfigFile("hhl", "reid_jax.configs.hhl")

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "source dataset (labelled); --help lists the names", required=True)
flags.DEFINE_string("tgt", None, "target dataset (its training images unlabelled)", required=True)
flags.DEFINE_enum("variant", "hhl", hhl_config.METHOD_VARIANTS,
                  "paper Table 2 row (docs/hhl.md §4): baseline, lt (+L_T), ld (+L_D), "
                  "lc (+L_C), hhl (+L_CD)")
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_string("workdir", None,
                    "default workdirs/hhl/<src>_to_<tgt>[_<config variant>][_<variant>]")
cli.define_config_flag(CONFIGS, "variant paper for real datasets, tiny when both are synthetic")


def main(overrides):
  src, tgt = FLAGS.src, FLAGS.tgt
  preflight.dataset_names(src, tgt)
  config, config_name = cli.load_config(CONFIGS, FLAGS.config, cli.default_variant(src, tgt),
                                        overrides)
  # --variant wins; without it the config's own (e.g. a workdir's config.json) stands.
  variant = FLAGS.variant if FLAGS["variant"].present else config.hhl.variant
  config = hhl_config.apply_method_variant(config, variant)
  config = cli.with_command_fields(config, src=src, tgt=tgt, config_name=config_name)
  hhl.check_config(config)
  suffix = "_".join(part for part in (config.variant if config.variant != "paper" else "",
                                      variant if variant != "hhl" else "") if part)
  workdir = FLAGS.workdir or paths.default_workdir("hhl", src, tgt, suffix or None)
  data_dir = FLAGS.data_dir or paths.default_data_dir()

  def check_fakes():  # the target's complete camera-style set for this world
    folder = hhl.camstyle_folder(config, data_dir, tgt)
    if folder is not None:
      print(f"camera-style set of {tgt}: {folder}")

  command.train_and_report(hhl.METHOD, config, config_name, src=src, tgt=tgt, workdir=workdir,
                           data_dir=data_dir, title=f"hhl ({variant})",
                           heading=f"variant {variant}", before_training=check_fakes)


if __name__ == "__main__":
  cli.run(main, CONFIGS)
