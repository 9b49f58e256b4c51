r"""StarGAN camera-style transfer for HHL: train on --dataset's training cameras, write the fakes.

  python -m experiments.stargan --dataset=synth_market
  python -m experiments.stargan --dataset=market --config=reid_jax/configs/stargan.py:reference_code
  python -m experiments.stargan --dataset=market --generate_only      # write from the last checkpoint
  python -m experiments.stargan --dataset=market --generate_only --torch_generator=220000-G.ckpt

Writes `<data_dir>/camstyle/<dataset>/<stem>_fake_<j>.jpg` for every training image and camera
j = 1..C (hhl.md §10.7), then MANIFEST.json. Default config: `stargan.py:reference_code` for real
datasets, `stargan.py:tiny` for synthetic ones. Rerunning resumes training from the last checkpoint
and skips the fakes already written.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from pathlib import Path

from absl import flags
from absl import logging
from ml_collections import config_flags

from reid_jax import cli
from reid_jax import paths
from reid_jax.data import datasets
from reid_jax.errors import ReidError
from reid_jax.training import stargan
from reid_jax.training import workdir as workdir_lib

CONFIG_FILE = "reid_jax/configs/stargan.py"

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", None, "target dataset whose training images are translated",
                    required=True)
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_string("workdir", None, "default workdirs/stargan/<dataset>[_<variant>]")
flags.DEFINE_bool("generate_only", False, "skip training; write the fakes from the last checkpoint")
flags.DEFINE_string("torch_generator", None,
                    "with --generate_only: a PyTorch StarGAN generator state dict (yunjey key naming, "
                    "e.g. the authors' 220000-G.ckpt) to use instead of the workdir's checkpoint")
config_flags.DEFINE_config_file("config", None, "config file with a variant after a colon",
                                lock_config=True)


def resolve_config(dataset: str):
  """The --config, or the default variant: reference_code for real data, tiny for synthetic."""
  spec = datasets.get_spec(dataset)
  if FLAGS.config is not None:
    return FLAGS.config, flags.FLAGS["config"].config_filename
  from reid_jax.configs import stargan as stargan_config  # pylint: disable=g-import-not-at-top
  variant = "tiny" if spec.synthetic else "reference_code"
  return stargan_config.get_config(variant), f"{CONFIG_FILE}:{variant}"


def _torch_generator(path: str, config):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ReidError("--torch_generator needs PyTorch (pip install torch) to read the checkpoint") from None
  from reid_jax.models import stargan as stargan_models  # pylint: disable=g-import-not-at-top
  try:
    state_dict = torch.load(path, map_location="cpu")
  except (OSError, RuntimeError) as error:
    raise ReidError(f"cannot read --torch_generator={path}: {error}") from None
  return stargan_models.load_torch_generator(state_dict, config.model.g_repeat_num)["params"]


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax/TFDS INFO lines drown the progress bar
  config, config_name = resolve_config(FLAGS.dataset)
  config.unlock()
  config.dataset = FLAGS.dataset
  config.config_name = config_name
  config.lock()
  if FLAGS.torch_generator and not FLAGS.generate_only:
    raise ReidError("--torch_generator replaces training: pass --generate_only with it")
  variant = config.variant if config.variant != "reference_code" else None
  workdir = FLAGS.workdir or paths.default_workdir("stargan", FLAGS.dataset, variant=variant)
  data_dir = FLAGS.data_dir or paths.default_data_dir()
  print(f"config {config_name}:\n{config}")
  print(f"workdir {workdir}")
  g_params, step = None, None
  if FLAGS.torch_generator:
    g_params = _torch_generator(FLAGS.torch_generator, config)
  elif not FLAGS.generate_only:
    summary = stargan.train(config, workdir, FLAGS.dataset, data_dir)
    print(f"stargan {FLAGS.dataset}: {summary['steps']} iterations "
          f"({summary['train_seconds']:.0f} s training), samples in {workdir}/figures")
  elif (Path(workdir) / workdir_lib.CONFIG_FILE).exists():
    workdir_lib.prepare(workdir, config)  # refuses a workdir trained with another config
  manifest = stargan.write_camstyle_set(config, workdir, FLAGS.dataset, data_dir,
                                        g_params=g_params, checkpoint_step=step)
  print(f"camera-style set: {paths.camstyle_dir(data_dir, FLAGS.dataset)} "
        f"({manifest['num_images']} images x {manifest['num_cameras']} cameras = "
        f"{manifest['num_files']} files, generator iteration {manifest['checkpoint_step']})")


if __name__ == "__main__":
  cli.run(main)
