"""The train state: a plain pytree of arrays, passed explicitly through the jitted step (docs/style.md).

The model and the optax transformation are not part of it: they are static and closed over by the
step function, so the state checkpoints as arrays only.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
  """step: optimiser steps taken (int32 scalar); params / batch_stats: the Flax collections;
  opt_state: the optax state of `params`."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def create(params, batch_stats, tx: optax.GradientTransformation) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=batch_stats if batch_stats is not None else {},
                    opt_state=tx.init(params))


def to_tree(state: TrainState) -> dict:
  """Nested dicts of arrays (what the checkpoint stores): optax namedtuples become dicts."""
  return flax.serialization.to_state_dict(state)


def from_tree(template: TrainState, tree: dict) -> TrainState:
  """Inverse of `to_tree`, taking the structure (and optax state types) from `template`."""
  return flax.serialization.from_state_dict(template, tree)


def variables(state: TrainState) -> dict:
  """`{'params': ..., 'batch_stats': ...}` for `model.apply` in eval mode."""
  out = {"params": state.params}
  if state.batch_stats:
    out["batch_stats"] = state.batch_stats
  return out
