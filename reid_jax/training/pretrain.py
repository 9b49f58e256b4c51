"""Pretraining the CPU trunk on the synthetic attribute pool (docs/testbed.md), and finding it.

  path = ensure_trunk("synth_pretrain:tiny", data_dir)   # builds it once if missing

A config's `model.pretrained` is either a file (torchvision's ImageNet ResNet-50) or a reference
`synth_pretrain:<variant>` to the trunk that `configs/pretrain.py:<variant>` trains. The trunk is
cached as `<data_dir>/pretrained/synth_pretrain_<variant>_<hash>.safetensors` in torchvision's key
layout, keyed by the hash of its config, and imported through the same strict path as ImageNet
weights (`torchvision_import.load_trunk`). The run's checkpoints live in the `.run` folder beside
it (the shared loop: exact resume after a kill).
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from reid_jax import atomic_io
from reid_jax import progress as progress_lib
from reid_jax import xla_options
from reid_jax.data import pipeline
from reid_jax.data import samplers
from reid_jax.data.synthetic import pool as pool_lib
from reid_jax.errors import ReidError
from reid_jax.losses import classification
from reid_jax.models import attribute_net
from reid_jax.models import torchvision_import
from reid_jax.training import loop
from reid_jax.training import optim
from reid_jax.training import sharding as sharding_lib
from reid_jax.training import state as state_lib
from reid_jax.training import steps
from reid_jax.training import workdir as workdir_lib

PREFIX = "synth_pretrain:"


def is_reference(value: str) -> bool:
  return str(value).startswith(PREFIX)


def get_config(variant: str):
  from reid_jax.configs import pretrain as pretrain_config  # pylint: disable=g-import-not-at-top
  try:
    return pretrain_config.get_config(variant)
  except ValueError as error:
    raise ReidError(f"model.pretrained={PREFIX}{variant}: {error}") from None


def trunk_path(config, data_dir) -> Path:
  """Where the trunk of this pretraining config is cached (keyed by the config's hash)."""
  key = workdir_lib.config_sha256(workdir_lib.config_to_dict(config))[:12]
  return Path(data_dir) / "pretrained" / f"synth_pretrain_{config.variant}_{key}.safetensors"


def run_dir(config, data_dir) -> Path:
  path = trunk_path(config, data_dir)
  return path.with_name(path.stem + ".run")


def _model(config):
  return attribute_net.AttributeNet(num_classes=tuple(k for _, k in pool_lib.ATTRIBUTES),
                                    arch=config.model.arch,
                                    dropout_rate=config.model.dropout_rate)


def loss_fn(model):
  """Mean over attributes of the cross-entropy of each attribute head."""

  def fn(params, batch_stats, batch, rng):
    outputs, batch_stats = steps.forward(model, params, batch_stats, batch["image"],
                                         steps.forward_rng(rng, 0))
    labels = batch["attributes"]
    losses = [classification.cross_entropy(logits, labels[:, i])
              for i, logits in enumerate(outputs["logits"])]
    accuracy = jnp.mean(jnp.stack([jnp.mean(jnp.argmax(logits, -1) == labels[:, i])
                                   for i, logits in enumerate(outputs["logits"])]))
    loss = jnp.mean(jnp.stack(losses))
    return loss, (batch_stats, {"cross_entropy": loss, "accuracy": accuracy})

  return fn


def _epoch_batches(pool, train_size: int, config):
  labels = np.arange(len(pool), dtype=np.int32)
  images = pipeline.InMemory(pool, config.data.num_workers)  # decoded once: 0.6 GB for 24,000

  def epoch_batches(epoch, start):
    index_batches = samplers.shuffled_batches(train_size, config.data.batch_size, config.seed,
                                              epoch)
    for batch in pipeline.train_batches(
        images, index_batches, seed=config.seed, epoch=epoch, height=config.data.height,
        width=config.data.width, labels=labels, start_step=start,
        erasing_probability=config.data.erasing_probability,
        num_threads=config.data.num_workers):
      yield {"image": batch["image"], "attributes": pool.attributes[batch["index"]]}

  return epoch_batches


class _Subset:
  """The held-out tail of the pool as an evaluation source."""

  def __init__(self, pool, start: int):
    self._pool, self._start = pool, start
    self.labels = {k: v[start:] for k, v in pool.labels.items()}

  def __len__(self):
    return len(self._pool) - self._start

  def encoded_many(self, indices):
    return self._pool.encoded_many([self._start + int(i) for i in indices])


def held_out_accuracy(model, variables, pool, start: int, config) -> dict[str, float]:
  """Per-attribute accuracy of the trained heads on pool images `start:` (never trained on)."""
  subset = _Subset(pool, start)

  def predict_fn(variables, images):
    return [jnp.argmax(l, -1) for l in model.apply(variables, images, train=False)["logits"]]

  predict = xla_options.jit(predict_fn)

  predictions = []
  with progress_lib.Bar(len(subset), "held-out accuracy", unit="img") as bar:
    for batch in pipeline.eval_batches(subset, 200, config.data.height, config.data.width,
                                       num_threads=config.data.num_workers):
      keep = batch["mask"]
      count = int(keep.sum())
      predicted = bar.first_call("the attribute predictor", predict, variables, batch["image"],
                                 units=count)
      predictions.append(np.stack([np.asarray(p)[keep] for p in predicted], 1))
      bar.update(count)
  predictions = np.concatenate(predictions)
  truth = pool.attributes[start:]
  return {name: float(np.mean(predictions[:, i] == truth[:, i]))
          for i, (name, _) in enumerate(pool_lib.ATTRIBUTES)}


def train_trunk(config, data_dir) -> Path:
  """Renders the pool, trains the attribute network (resuming), writes the trunk; returns its path."""
  path = trunk_path(config, data_dir)
  workdir = run_dir(config, data_dir)
  workdir_lib.prepare(workdir, config)
  pool = pool_lib.load_pool(pool_lib.write_pool(data_dir, config.pool.size, config.pool.seed,
                                                workers=config.data.num_workers))
  train_size = len(pool) - config.pool.val_size
  steps_per_epoch = train_size // config.data.batch_size
  if steps_per_epoch <= 0:
    raise ReidError(f"config pool.size={config.pool.size} leaves no training batch of "
                    f"data.batch_size={config.data.batch_size}")
  model = _model(config)
  images = jnp.zeros((1, config.data.height, config.data.width, 3), jnp.float32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(config.seed), images)
  rules = {name: "heads" for name in variables["params"]}
  rules["backbone"] = "trunk"
  optimiser = optim.build_optimiser(variables["params"], config.optim, rules, steps_per_epoch)
  state = state_lib.create(variables["params"], variables["batch_stats"], optimiser.tx)
  print(f"pretraining {config.model.arch} on {train_size} synthetic attribute images "
        f"({len(pool_lib.ATTRIBUTES)} attributes), {steps_per_epoch} steps/epoch x "
        f"{config.num_epochs} epochs; run folder {workdir}")
  result = loop.run(
      loop.LoopConfig(num_epochs=config.num_epochs, steps_per_epoch=steps_per_epoch,
                      seed=config.seed, images_per_step=config.data.batch_size,
                      checkpoint_every=config.checkpoint_every_steps,
                      log_every=config.log_every_steps, description="pretrain trunk"),
      workdir=workdir, state=state,
      train_step=steps.make_train_step(loss_fn(model), optimiser.tx),
      epoch_batches=_epoch_batches(pool, train_size, config),
      mesh=sharding_lib.data_mesh(), learning_rates=optimiser.learning_rates)
  variables = state_lib.variables(jax.device_get(result.state))
  accuracy = held_out_accuracy(model, variables, pool, train_size, config)
  print("held-out attribute accuracy: " + ", ".join(f"{k} {100 * v:.1f}"
                                                    for k, v in accuracy.items()))
  trunk = {c: variables[c]["backbone"] for c in ("params", "batch_stats")}
  from safetensors.numpy import save  # pylint: disable=g-import-not-at-top
  metadata = {"config_sha256": workdir_lib.config_sha256(workdir_lib.config_to_dict(config)),
              "arch": config.model.arch, "steps": str(result.steps),
              "held_out_accuracy": atomic_io.json_text(accuracy)}
  atomic_io.write_bytes(path, save(torchvision_import.export_torchvision_resnet(trunk),
                                   metadata=metadata))
  atomic_io.write_json(workdir / "results.json", {
      "experiment": "pretrain", "variant": config.variant, "trunk": str(path),
      "steps": result.steps, "train_seconds": result.train_seconds,
      "held_out_accuracy": accuracy})
  print(f"pretrained trunk: {path} ({result.train_seconds:.0f} s of training)")
  return path


def ensure_trunk(value: str, data_dir, build: bool = True) -> Path:
  """The file a `model.pretrained` value names; a missing synthetic trunk is built when `build`."""
  if not is_reference(value):
    return Path(value)
  variant = value[len(PREFIX):]
  config = get_config(variant)
  path = trunk_path(config, data_dir)
  if path.is_file():
    return path
  command = f"python -m experiments.pretrain --data_dir={data_dir}"
  if not build:
    raise ReidError(f"the pretrained trunk {path} ({value}) is missing; build it with {command}")
  print(f"the pretrained trunk {value} is not in {path.parent} yet: building it now, once "
        f"(what `{command}` does; about 7 minutes on 2 cores)", file=sys.stdout)
  return train_trunk(config, data_dir)
