"""The direct-transfer baseline: IDE trained on the source only, evaluated on target and source
(docs/hhl.md §9).

  results = train_and_evaluate(config, workdir, data_dir, src="synth_duke", tgt="synth_market",
                               config_name="reid_jax/configs/baseline.py:tiny")
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from reid_jax.data import pipeline
from reid_jax.data import samplers
from reid_jax.errors import ReidError
from reid_jax.models import torchvision_import
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import loop
from reid_jax.training import optim
from reid_jax.training import pretrain
from reid_jax.training import sharding as sharding_lib
from reid_jax.training import state as state_lib
from reid_jax.training import steps
from reid_jax.training import workdir as workdir_lib

TRAIN_KEYS = ("image", "label")  # what the step needs from a pipeline batch


def init_variables(model, config, rng, data_dir) -> dict:
  """Initial `{'params', 'batch_stats'}`, with the pretrained trunk of `model.pretrained` if given
  (ImageNet weights, or the synthetic testbed's trunk, built first if missing)."""
  images = jnp.zeros((1, config.data.height, config.data.width, 3), jnp.float32)
  variables = jax.jit(lambda key: model.init(key, images))(rng)
  variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  if config.model.pretrained:
    path = pretrain.ensure_trunk(config.model.pretrained, data_dir)
    variables = torchvision_import.merge_backbone(
        variables, torchvision_import.load_trunk(path, config.model.arch))
    what = ("the synthetic attribute-pretrained trunk" if pretrain.is_reference(
        config.model.pretrained) else "ImageNet weights")
    print(f"trunk initialised from {what} {path}")
  else:
    print("WARNING: config model.pretrained is empty: the trunk starts FROM SCRATCH (random init), "
          "not from ImageNet weights as in the papers (docs/hhl.md §3). Set "
          "--config.model.pretrained=/path/to/resnet50.pth to use them.", file=sys.stdout)
  return variables


def source_epoch_batches(source, config, seed: int):
  """`(epoch, start) -> batches` of the source CE stream: uniform shuffle, drop_last (docs/hhl.md §5, §9)."""
  labels, _ = pipeline.relabel(source.labels["pid"])

  def epoch_batches(epoch, start):
    index_batches = samplers.shuffled_batches(len(source), config.data.batch_size, seed, epoch)
    for batch in pipeline.train_batches(
        source, index_batches, seed=seed, epoch=epoch, height=config.data.height,
        width=config.data.width, labels=labels, start_step=start,
        erasing_probability=config.data.erasing_probability,
        num_threads=config.data.num_workers):
      yield {k: batch[k] for k in TRAIN_KEYS}

  return epoch_batches


def train(config, workdir, data_dir, src: str):
  """Trains the IDE model on `src` with resume; returns `(model, variables, loop_result)`."""
  source = evaluate_lib.load_split(src, "train", data_dir, config)
  steps_per_epoch = len(source) // config.data.batch_size
  if steps_per_epoch == 0:  # before decoding anything
    raise ReidError(f"{src} train has {len(source)} images, fewer than config data.batch_size="
                    f"{config.data.batch_size}; lower --config.data.batch_size (or use a larger "
                    "synthetic size, config data.synthetic_size)")
  if config.data.get("cache_images", False):
    source = pipeline.InMemory(source, config.data.num_workers)
  num_classes = len(np.unique(source.labels["pid"]))
  mesh = sharding_lib.data_mesh()
  sharding_lib.check_batch_size(config.data.batch_size, mesh, "data.batch_size")
  model = evaluate_lib.build_reid_net(config.model, num_classes)
  variables = init_variables(model, config, jax.random.PRNGKey(config.seed), data_dir)
  optimiser = optim.build_optimiser(
      variables["params"], config.optim, optim.reid_net_rules(config.optim.embedding_layers),
      steps_per_epoch)
  state = state_lib.create(variables["params"], variables["batch_stats"], optimiser.tx)
  train_step = steps.make_train_step(steps.baseline_loss_fn(model), optimiser.tx)
  print(f"source {src}: {len(source)} images, {num_classes} identities, {steps_per_epoch} "
        f"steps/epoch x {config.num_epochs} epochs; devices {workdir_lib.device_names()}")
  result = loop.run(
      loop.LoopConfig(num_epochs=config.num_epochs, steps_per_epoch=steps_per_epoch,
                      seed=config.seed, images_per_step=config.data.batch_size,
                      checkpoint_every=config.checkpoint_every_steps,
                      log_every=config.log_every_steps, description=f"baseline {src}"),
      workdir=workdir, state=state, train_step=train_step,
      epoch_batches=source_epoch_batches(source, config, config.seed), mesh=mesh,
      learning_rates=optimiser.learning_rates)
  return model, state_lib.variables(jax.device_get(result.state)), result


def write_figures(workdir, dataset: str, extras, config) -> Path:
  """The rank-list figure of `dataset` (`evaluate.write_rank_list`: distinct query identities,
  title, legend, id and camera under each tile)."""
  return evaluate_lib.write_rank_list(workdir, dataset, extras, config)


def train_and_evaluate(config, workdir, data_dir, src: str, tgt: str, config_name: str) -> dict:
  """Trains on `src`, evaluates on `tgt` (then `src`), writes results.json and figures."""
  workdir = Path(workdir)
  model, variables, result = train(config, workdir, data_dir, src)
  evaluations = {}
  for dataset in dict.fromkeys((tgt, src)):
    entry, extras = evaluate_lib.evaluate_dataset(model, variables, dataset, data_dir, config)
    evaluations[dataset] = entry
    if dataset == tgt:
      write_figures(workdir, dataset, extras, config)
  return workdir_lib.write_results(
      workdir, experiment="baseline", variant=config.variant, src=src, tgt=tgt,
      config_name=config_name, config=config, epochs=result.epochs, steps=result.steps,
      train_seconds=result.train_seconds, eval=evaluations)
