"""One train-and-evaluate sequence for every method; a method is a small description (`Method`).

  results = train_and_evaluate(hhl.METHOD, config, workdir, data_dir, src="synth_duke",
                               tgt="synth_market", config_name="reid_jax/configs/hhl.py:tiny")

The sequence: load the source training split (checked against the batch size before any image
is decoded), build the model and its variables (pretrained trunk), the optax groups, the method's
loss and input streams, run `loop.run` (resume, checkpoints, NaN guard, progress, TensorBoard),
then evaluate on the target and the source (the method's test-time descriptor), write the target's
rank list and results.json. `method_of(config['experiment'])` finds the description again, so
`experiments.evaluate` rebuilds any method's model from a workdir's config.json.
"""

import dataclasses
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from reid_jax.data import pipeline
from reid_jax.data import streams as streams_lib
from reid_jax.errors import ReidError
from reid_jax.evaluation import features as features_lib
from reid_jax.models import torchvision_import
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import loop
from reid_jax.training import optim
from reid_jax.training import preflight
from reid_jax.training import pretrain
from reid_jax.training import sharding as sharding_lib
from reid_jax.training import state as state_lib
from reid_jax.training import steps as steps_lib
from reid_jax.training import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Inputs:
  """What a method's streams are built from: the source training split and the run's settings."""

  source: Any
  src: str
  tgt: str
  data_dir: Path
  config: Any
  steps_per_epoch: int
  share: tuple[int, int] = (0, 1)  # (process, processes): the rows of each batch it decodes


@dataclasses.dataclass(frozen=True)
class Streams:
  """`epoch_batches(epoch, start)` (loop.run's contract) and the images one step consumes.

  batch_sizes: `{what sets it: leading size}` of every image array a step reads besides the CE
    batch (`data.batch_size`), e.g. `{'data.target_batch_size x (1 + 6)': 28}`; each must split
    over the devices and into `model.bn_groups` (checked before the model is built).
  """

  epoch_batches: streams_lib.EpochBatches
  images_per_step: int
  summary: str = ""  # one line for the console: what each step reads
  batch_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Method:
  """A method, as the shared trainer needs it.

  Attributes:
    name: the experiment name (results.json `experiment`, workdirs/<name>/).
    build_model: `(model_config, num_classes) -> flax Module`.
    optimiser_rules: `config -> {top-level module: group}` (optim.build_optimiser).
    loss_fn: `(model, config) -> steps.LossFn`.
    streams: `Inputs -> Streams`.
    descriptor: `model -> (variables, images) -> [B, D]` at test time (L2-normalised by the
      extractor); the variables it uses are `eval_variables(trained variables, domain)`.
    results_fields: `config -> dict` added to results.json (the variant and every switch).
    init_model: `(model, rng, images) -> variables`: every parameter and BN statistic.
    arrange_variables: `(config, variables) -> variables` after the pretrained trunk is merged
      (e.g. ARN's per-domain BatchNorm statistics, docs/arn_triplet_eval.md §1.4 item 5).
    eval_variables: `(variables, domain) -> variables` for `descriptor` on the 'target' or the
      'source' dataset.
    num_classes: `params -> source classes` of a trained tree (to rebuild the model).
  """

  name: str
  build_model: Callable[[Any, int], Any]
  optimiser_rules: Callable[[Any], Mapping[str, str]]
  loss_fn: Callable[[Any, Any], steps_lib.LossFn]
  streams: Callable[[Inputs], Streams]
  descriptor: Callable[[Any], Callable] = features_lib.pool5_descriptor
  results_fields: Callable[[Any], dict] = lambda config: {}
  init_model: Callable[[Any, jax.Array, jax.Array], dict] = (
      lambda model, rng, images: model.init(rng, images))
  arrange_variables: Callable[[Any, dict], dict] = lambda config, variables: variables
  eval_variables: Callable[[dict, str], dict] = lambda variables, domain: variables
  num_classes: Callable[[Any], int] = evaluate_lib.num_classes_of


def method_of(experiment: str) -> Method:
  """The `METHOD` of `reid_jax.training.<experiment>` (baseline, hhl, ...)."""
  try:
    module = importlib.import_module(f"reid_jax.training.{experiment}")
  except ModuleNotFoundError:
    module = None
  if module is None or not isinstance(getattr(module, "METHOD", None), Method):
    raise ReidError(f"config field experiment={experiment!r} names no trained method "
                    "(baseline, hhl, arn)")
  return module.METHOD


def init_variables(model, config, rng, data_dir, method: Method | None = None) -> dict:
  """Initial `{'params', 'batch_stats'}` (`method.init_model`, default `model.init`), with the
  pretrained trunk of `model.pretrained` if given (ImageNet weights, or the synthetic testbed's
  trunk, built first if missing), then `method.arrange_variables`."""
  images = jnp.zeros((1, config.data.height, config.data.width, 3), jnp.float32)
  init_model = method.init_model if method is not None else Method.init_model
  variables = jax.jit(lambda key: init_model(model, key, images))(rng)
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
  return method.arrange_variables(config, variables) if method is not None else variables


def load_source(config, data_dir, src: str):
  """The source training split and its CE steps per epoch, refused before decoding anything when
  it holds fewer images than one batch."""
  source = streams_lib.load_split(src, "train", data_dir, config)
  steps_per_epoch = len(source) // config.data.batch_size
  if steps_per_epoch == 0:
    raise ReidError(f"{src} train has {len(source)} images, fewer than config data.batch_size="
                    f"{config.data.batch_size}; lower --config.data.batch_size (or use a larger "
                    "synthetic size, config data.synthetic_size)")
  if config.data.get("cache_images", False):
    source = pipeline.InMemory(source, config.data.num_workers)
  return source, steps_per_epoch


def check_pass_sizes(config, streams: Streams, mesh) -> None:
  """Every array a step reads splits evenly over the mesh's devices and into `model.bn_groups`
  BatchNorm groups; else ReidError naming the config field."""
  preflight.bn_groups(config.model)
  groups = config.model.get("bn_groups", 1)
  sizes = {"data.batch_size": config.data.batch_size, **streams.batch_sizes}
  for field, size in sizes.items():
    sharding_lib.check_batch_size(size, mesh, field)
    if size % groups:
      raise ReidError(f"config field {field}={size} does not split into model.bn_groups={groups} "
                      f"BatchNorm groups; choose sizes divisible by {groups} or another bn_groups")


def train(method: Method, config, workdir, data_dir, src: str, tgt: str):
  """Trains `method` on `src` (and `tgt`'s unlabelled images if it reads them) with resume;
  returns `(model, variables, loop_result)`."""
  source, steps_per_epoch = load_source(config, data_dir, src)
  num_classes = len(np.unique(source.labels["pid"]))
  mesh = sharding_lib.data_mesh()
  inputs = Inputs(source=source, src=src, tgt=tgt, data_dir=Path(data_dir), config=config,
                  steps_per_epoch=steps_per_epoch, share=sharding_lib.process_share())
  streams = method.streams(inputs)
  check_pass_sizes(config, streams, mesh)
  model = method.build_model(config.model, num_classes)
  variables = init_variables(model, config, jax.random.PRNGKey(config.seed), data_dir, method)
  optimiser = optim.build_optimiser(variables["params"], config.optim,
                                    method.optimiser_rules(config), steps_per_epoch)
  state = state_lib.create(variables["params"], variables["batch_stats"], optimiser.tx)
  train_step = steps_lib.make_train_step(method.loss_fn(model, config), optimiser.tx)
  print(f"source {src}: {len(source)} images, {num_classes} identities, {steps_per_epoch} "
        f"steps/epoch x {config.num_epochs} epochs; devices {workdir_lib.device_names()}")
  if streams.summary:
    print(streams.summary)
  result = loop.run(
      loop.LoopConfig(num_epochs=config.num_epochs, steps_per_epoch=steps_per_epoch,
                      seed=config.seed, images_per_step=streams.images_per_step,
                      checkpoint_every=config.checkpoint_every_steps,
                      log_every=config.log_every_steps, description=f"{method.name} {src}"),
      workdir=workdir, state=state, train_step=train_step,
      epoch_batches=streams.epoch_batches, mesh=mesh,
      learning_rates=optimiser.learning_rates)
  return model, state_lib.variables(jax.device_get(result.state)), result


def train_and_evaluate(method: Method, config, workdir, data_dir, src: str, tgt: str,
                       config_name: str) -> dict:
  """Trains, evaluates on `tgt` (then `src`), writes results.json and the target's rank list.
  With several processes, the main one evaluates on its own devices and writes; the others wait
  for it and return None."""
  workdir = Path(workdir)
  model, variables, result = train(method, config, workdir, data_dir, src, tgt)
  if not sharding_lib.is_main_process():
    sharding_lib.sync("evaluated")
    return None
  evaluations = {}
  for dataset in dict.fromkeys((tgt, src)):
    domain = "target" if dataset == tgt else "source"
    entry, extras = evaluate_lib.evaluate_dataset(model, method.eval_variables(variables, domain),
                                                  dataset, data_dir, config,
                                                  descriptor=method.descriptor(model))
    evaluations[dataset] = entry
    if dataset == tgt:
      evaluate_lib.write_rank_list(workdir, dataset, extras, config)
  results = workdir_lib.write_results(
      workdir, experiment=method.name, variant=config.variant, src=src, tgt=tgt,
      config_name=config_name, config=config, epochs=result.epochs, steps=result.steps,
      train_seconds=result.train_seconds, eval=evaluations, **method.results_fields(config))
  sharding_lib.sync("evaluated")
  return results
