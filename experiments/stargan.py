r"""StarGAN camera-style transfer for HHL: train on --dataset's training cameras, write the fakes.

  python -m experiments.stargan --dataset=synth_market
  python -m experiments.stargan --dataset=market --config=reid_jax/configs/stargan.py:reference_code
  python -m experiments.stargan --dataset=market --generate_only      # write from the last checkpoint
  python -m experiments.stargan --dataset=market --generate_only --torch_generator=220000-G.ckpt
  python -m experiments.stargan --dataset=synth_market --quality_only  # judge the trained generator

Writes `<data_dir>/camstyle/<dataset>/<stem>_fake_<j>.jpg` for every training image and camera
j = 1..C (docs/hhl.md §10.7), then MANIFEST.json naming the world the fakes belong to; a synthetic
dataset's set is per world, `camstyle/<dataset>_<size>_seed0/`, the world being
`--config.data.synthetic_size` (the tiny config's default: medium, the tiny re-ID configs' world).
Default config: `stargan.py:reference_code` for real datasets, `stargan.py:tiny` for synthetic ones.
Rerunning resumes training from the last checkpoint and skips the fakes already written.
After training it prints and records (results.json `quality`) the generator's own figures on
--quality_images training images: cycle L1, D's camera accuracy on the fakes, and how often a fake
still retrieves its own real image (`reid_jax.training.stargan_quality`).
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from pathlib import Path

from absl import flags

from reid_jax import cli
from reid_jax import paths
from reid_jax.configs import stargan as stargan_config
from reid_jax.data import camstyle
from reid_jax.errors import ReidError
from reid_jax.errors import UsageError
from reid_jax.training import preflight
from reid_jax.training import stargan
from reid_jax.training import workdir as workdir_lib

CONFIGS = cli.ConfigFile("stargan", "reid_jax.configs.stargan")

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", None, "target dataset whose training images are translated; "
                    "--help lists the names", required=True)
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_string("workdir", None, "default workdirs/stargan/<dataset>[_<variant>]")
flags.DEFINE_bool("generate_only", False, "skip training; write the fakes from the last checkpoint")
flags.DEFINE_string("torch_generator", None,
                    "with --generate_only: a PyTorch StarGAN generator state dict (yunjey key naming, "
                    "e.g. the authors' 220000-G.ckpt) to use instead of the workdir's checkpoint")
flags.DEFINE_bool("quality_only", False, "only judge the workdir's last checkpoint (cycle L1, camera "
                  "accuracy, person kept) and record it in results.json; no training, no fakes")
flags.DEFINE_integer("quality_images", 500, "training images the generator is judged on (0: skip)")
cli.define_config_flag(CONFIGS, "variant reference_code for real datasets, tiny for synthetic")


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


def _final_step(config, workdir, dataset: str, data_dir) -> int:
  """The generator iteration whose fakes this run will write (its camera-style identity)."""
  if FLAGS.generate_only:
    return preflight.latest_checkpoint_step(workdir)
  from reid_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top
  labels = tfds_builders.split_labels(dataset, "train", data_dir,
                                      size=stargan.synthetic_size(config))
  count = len(labels["pid"])
  return stargan.make_schedule(config, count).num_iters


def _judge(config, workdir, dataset: str, data_dir, num_images: int) -> None:
  """Prints the generator's own figures and merges them into results.json (`quality`)."""
  from reid_jax.training import stargan_quality  # pylint: disable=g-import-not-at-top
  figures = stargan_quality.judge_and_record(config, workdir, dataset, data_dir,
                                             num_images=num_images)
  print(f"stargan {dataset} generator, iteration {figures['generator_iteration']}: "
        f"{stargan_quality.describe(figures)}")


def main(overrides):
  dataset = FLAGS.dataset
  preflight.dataset_names(dataset)
  if FLAGS.torch_generator and not FLAGS.generate_only:
    raise UsageError("--torch_generator replaces training: pass --generate_only with it")
  if FLAGS.quality_only and (FLAGS.generate_only or FLAGS.torch_generator):
    raise UsageError("--quality_only judges the workdir's checkpoint: pass it alone")
  if FLAGS.quality_images < 0:
    raise UsageError(f"--quality_images={FLAGS.quality_images}: pass 0 (skip) or more")
  config = stargan_config.command_config(dataset, FLAGS.config, overrides)
  config_name = config.config_name
  variant = config.variant if config.variant != "reference_code" else None
  workdir = FLAGS.workdir or paths.default_workdir("stargan", dataset, variant=variant)
  data_dir = FLAGS.data_dir or paths.default_data_dir()
  world = stargan.world(config, dataset)  # refuses an unknown data.synthetic_size at once
  print(f"config {config_name}:\n{config}")
  print(f"workdir {workdir}")
  cli.log_to(workdir)
  # Before any long work: the generator to use, the workdir's config, the data, the output set.
  if FLAGS.torch_generator:
    if not Path(FLAGS.torch_generator).is_file():
      raise ReidError(f"--torch_generator={FLAGS.torch_generator}: no such file")
  elif FLAGS.generate_only or FLAGS.quality_only:
    preflight.checkpoint_exists(workdir, "train first (run the command without --generate_only "
                                "or --quality_only)")
  workdir_lib.check(workdir, config)
  preflight.datasets(data_dir, (dataset,), size=stargan.synthetic_size(config))
  if FLAGS.quality_only:
    _judge(config, workdir, dataset, data_dir, max(FLAGS.quality_images, 1))
    return
  step = -1 if FLAGS.torch_generator else _final_step(config, workdir, dataset, data_dir)
  preflight.camstyle_destination(data_dir, dataset, {
      "checkpoint_step": step, "config_sha256": workdir_lib.config_sha256(config)}, world)
  g_params, step = None, None
  if FLAGS.torch_generator:
    g_params = _torch_generator(FLAGS.torch_generator, config)
  elif not FLAGS.generate_only:
    summary = stargan.train(config, workdir, dataset, data_dir)
    print(f"stargan {dataset}: {summary['steps']} iterations "
          f"({summary['train_seconds']:.0f} s training), samples in {workdir}/figures")
    if FLAGS.quality_images:
      _judge(config, workdir, dataset, data_dir, FLAGS.quality_images)
  manifest = stargan.write_camstyle_set(config, workdir, dataset, data_dir,
                                        g_params=g_params, checkpoint_step=step)
  camstyle_dir = camstyle.set_dir(data_dir, world)
  stargan.write_results(workdir, config, dataset, manifest=manifest, camstyle_dir=camstyle_dir,
                        generator=f"torch:{FLAGS.torch_generator}" if FLAGS.torch_generator
                        else None)
  print(f"camera-style set for {camstyle.describe_world(world)}: {camstyle_dir} "
        f"({manifest['num_images']} images x {manifest['num_cameras']} cameras = "
        f"{manifest['num_files']} files, generator iteration {manifest['checkpoint_step']})")
  print(f"results: {Path(workdir) / workdir_lib.RESULTS_FILE}")


if __name__ == "__main__":
  cli.run(main, CONFIGS)
