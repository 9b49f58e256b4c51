r"""Pretrain the CPU trunk on the synthetic attribute pool: the testbed's ImageNet (docs/testbed.md).

  python -m experiments.pretrain [--data_dir=DIR] [--config=reid_jax/configs/pretrain.py:tiny]

Writes `<data_dir>/pretrained/synth_pretrain_tiny_<hash>.safetensors`, which every tiny config
imports (`model.pretrained = "synth_pretrain:tiny"`). Rerunning resumes an interrupted run and is
a no-op once the trunk exists. It reads no image of synth_market, synth_duke or synth_msmt.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from absl import flags

from reid_jax import cli
from reid_jax import paths
from reid_jax.training import pretrain

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
CONFIGS = cli.ConfigFile("pretrain", "reid_jax.configs.pretrain")
cli.define_config_flag(CONFIGS, "its only variant, tiny")


def main(overrides):
  data_dir = FLAGS.data_dir or paths.default_data_dir()
  config, _ = cli.load_config(CONFIGS, FLAGS.config, "tiny", overrides)
  path = pretrain.trunk_path(config, data_dir)
  if path.is_file():
    print(f"pretrained trunk already built: {path}")
    return
  print(f"config:\n{config}")
  cli.log_to(pretrain.run_dir(config, data_dir))
  pretrain.train_trunk(config, data_dir)


if __name__ == "__main__":
  cli.run(main, CONFIGS)
