"""Train steps: one jitted `train_step(state, batch, rng) -> (state, metrics)` per method.

A method supplies a loss function

  loss_fn(params, batch_stats, batch, rng) -> (loss, (new_batch_stats, metrics))

and `make_train_step` turns it into the step (gradient, optax update, BN statistics). The loss
function may call `forward` several times, threading `batch_stats` from one call into the next
(docs/hhl.md §14: HHL's three passes CE -> triplet -> target each normalise with their own batch and
update the running statistics in that order); `forward_rng` gives each call its own dropout key.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from reid_jax.training.state import TrainState

LossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, tuple[Any, dict]]]


def forward(model, params, batch_stats, images, rng, train: bool = True, **kwargs):
  """One train-mode `model.apply` on `[B, H, W, 3]` images; returns `(outputs, new_batch_stats)`.

  BatchNorm uses this call's batch statistics and updates the running averages (so calling it
  again with the returned `batch_stats` chains the updates); dropout uses `rng`. `kwargs` go to
  the model (e.g. ARN's `domain`).
  """
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  outputs, mutated = model.apply(variables, images, train=train, rngs={"dropout": rng},
                                 mutable=["batch_stats"], **kwargs)
  return outputs, mutated.get("batch_stats", batch_stats)


def forward_rng(rng: jax.Array, call_index: int) -> jax.Array:
  """The dropout key of the `call_index`-th forward pass of a step (docs/hhl.md §14: one per call)."""
  return jax.random.fold_in(rng, call_index)


def _concat_outputs(parts: list[dict]) -> dict:
  return {k: (None if parts[0][k] is None else jnp.concatenate([p[k] for p in parts]))
          for k in parts[0]}


def _split_outputs(outputs: dict, sizes: list[int]) -> list[dict]:
  bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
  return [{k: (None if v is None else v[bounds[i]:bounds[i + 1]]) for k, v in outputs.items()}
          for i in range(len(sizes))]


def grouped_forward(model, params, batch_stats, images, rng, groups: int = 1):
  """`forward` with BatchNorm statistics per group of `groups` contiguous slices of the batch,
  keeping only the first slice's running-statistics update: what `nn.DataParallel` on `groups`
  GPUs computes (docs/hhl.md §14, `bn_groups`). `groups=1` is `forward`."""
  if groups == 1:
    return forward(model, params, batch_stats, images, rng)
  n = images.shape[0]
  if n % groups:
    raise ValueError(f"a pass of {n} images does not split into {groups} BatchNorm groups")
  size = n // groups
  parts, kept = [], batch_stats
  for g in range(groups):
    outputs, updated = forward(model, params, batch_stats, images[g * size:(g + 1) * size],
                               forward_rng(rng, g))
    parts.append(outputs)
    if g == 0:
      kept = updated
  return _concat_outputs(parts), kept


def forward_passes(model, params, batch_stats, images: list, rng, bn_passes: str = "separate",
                   bn_groups: int = 1):
  """Train-mode outputs of several image batches and the updated `batch_stats` (docs/hhl.md §14).

  bn_passes: 'separate' (the reference): one call per batch in the given order (CE -> triplet ->
    target), each normalised with its own batch statistics, the running averages updated once per
    call in that order; 'joint': one call on the concatenated batches (one update).
  bn_groups: BatchNorm groups within each call (`grouped_forward`).

  Returns `(list of outputs, one per batch, batch_stats)`.
  """
  if bn_passes == "joint":
    outputs, batch_stats = grouped_forward(model, params, batch_stats,
                                           jnp.concatenate(images), forward_rng(rng, 0),
                                           bn_groups)
    return _split_outputs(outputs, [x.shape[0] for x in images]), batch_stats
  if bn_passes != "separate":
    raise ValueError(f"bn_passes must be 'separate' or 'joint', got {bn_passes!r}")
  results = []
  for index, batch in enumerate(images):
    outputs, batch_stats = grouped_forward(model, params, batch_stats, batch,
                                           forward_rng(rng, index), bn_groups)
    results.append(outputs)
  return results, batch_stats


def classification_metrics(logits, labels) -> dict:
  return {"accuracy": jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))}


def baseline_loss_fn(model, bn_groups: int = 1) -> LossFn:
  """IDE cross-entropy on the source batch `{'image': [B, H, W, 3], 'label': [B]}` (docs/hhl.md §9);
  `bn_groups` as `grouped_forward`."""
  from reid_jax.losses import classification

  def loss_fn(params, batch_stats, batch, rng):
    outputs, batch_stats = grouped_forward(model, params, batch_stats, batch["image"],
                                           forward_rng(rng, 0), bn_groups)
    loss = classification.cross_entropy(outputs["logits"], batch["label"])
    metrics = {"cross_entropy": loss, **classification_metrics(outputs["logits"], batch["label"])}
    return loss, (batch_stats, metrics)

  return loss_fn


def on_stream(name: str, loss_fn: LossFn) -> LossFn:
  """`loss_fn` applied to the `name` entry of a combined batch (`data.streams.combine`)."""

  def on_named_batch(params, batch_stats, batch, rng):
    return loss_fn(params, batch_stats, batch[name], rng)

  return on_named_batch


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation):
  """`train_step(state, batch, rng) -> (state, metrics)` (not yet jitted; see `loop.jit_step`).

  metrics always holds 'loss', 'grad_norm' (global L2 norm of the gradient) and 'param_norm' (of
  the updated parameters, which the loop's NaN/Inf guard checks before saving them) besides what
  `loss_fn` reports.
  """

  def train_step(state: TrainState, batch, rng):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (batch_stats, metrics)), grads = grad_fn(state.params, state.batch_stats, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads),
               "param_norm": optax.tree.norm(params)}
    return new_state, metrics

  return train_step
