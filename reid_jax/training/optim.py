"""SGD with per-group learning rates, chosen by parameter path (docs/hhl.md §6, §9).

Every parameter leaf gets a group name from its path: the top-level module name (`backbone`,
`feat`, `feat_bn`, `triplet`, `classifier` for `ReIDNet`) is looked up in a rules mapping. The
config then maps each group name to a learning-rate multiplier, or to `"frozen"`:

  trunk       lr_base(e) x lr_mult['trunk']        (docs/hhl.md §6: 0.1 x 0.1 = 0.01)
  classifier  lr_base(e) x lr_mult['classifier']   (docs/hhl.md §6: 0.1 x 1.0 = 0.1)
  frozen      `optax.set_to_zero()`: never moves, no weight decay (docs/hhl.md §6, reference code)

Each non-frozen group is PyTorch's `SGD(momentum=0.9, nesterov=True, weight_decay=5e-4)`:
(coupled weight decay: g + wd * p) -> (Nesterov trace, decay 0.9) -> (x -lr(step)). PyTorch
multiplies by the lr after the momentum buffer, so scaling after the trace reproduces its lr drops
exactly (docs/hhl.md §6 optax mapping).

The schedule is piecewise constant in epochs: lr_base(e) = base_lr x gamma^(number of milestones
<= e) (docs/hhl.md §6: 0.1, x0.1 at epoch 40 of 60).

A group may also be held still for its first epochs (`optim.frozen_epochs = {group: N}`, ARN's
warm-up, docs/arn_triplet_eval.md §1.4 item 4): for N epochs it gets no update and no weight decay
and its momentum buffer stays empty, as a PyTorch parameter with `requires_grad=False` would; then
it trains under the shared schedule, so milestones keep counting from step 0.
"""

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from reid_jax.errors import ReidError

FROZEN = "frozen"

# docs/hhl.md §6: `embedding_layers` names where FC-1024 `feat`, BN-1024 `feat_bn` and FC-128 `triplet`
# go: frozen at init (HHL.py), trunk lr 0.01 (the paper's wording), classifier lr 0.1 (baseline.py).
EMBEDDING_LAYERS = {"reference_code": FROZEN, "paper": "trunk", "baseline": "classifier"}
EMBEDDING_MODULES = ("feat", "feat_bn", "triplet")


def reid_net_rules(embedding_layers: str) -> dict[str, str]:
  """Top-level module name -> group for `ReIDNet` under an `embedding_layers` choice (docs/hhl.md §6)."""
  if embedding_layers not in EMBEDDING_LAYERS:
    raise ReidError(f"config field embedding_layers={embedding_layers!r} is not one of "
                    f"{sorted(EMBEDDING_LAYERS)} (docs/hhl.md §6)")
  rules = {"backbone": "trunk", "classifier": "classifier"}
  rules.update({name: EMBEDDING_LAYERS[embedding_layers] for name in EMBEDDING_MODULES})
  return rules


def _key_name(entry) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(entry, attribute):
      return str(getattr(entry, attribute))
  return str(entry)


def param_path(path) -> tuple[str, ...]:
  """A `jax.tree_util` key path as a tuple of names, e.g. ('backbone', 'conv1', 'kernel')."""
  return tuple(_key_name(entry) for entry in path)


def label_params(params, rules: Mapping[str, str]):
  """A pytree like `params` whose leaves are group names, from each leaf's top-level module name.

  Raises:
    ReidError: a top-level module is not covered by `rules` (so no parameter silently lands in a
      wrong group).
  """

  def label(path, _):
    names = param_path(path)
    if names[0] not in rules:
      raise ReidError(f"parameter {'/'.join(names)} has no optimiser group: top-level module "
                      f"{names[0]!r} is not in the rules {sorted(rules)}")
    return rules[names[0]]

  return jax.tree_util.tree_map_with_path(label, params)


def epoch_schedule(base_lr: float, milestones: Sequence[int], gamma: float,
                   steps_per_epoch: int) -> optax.Schedule:
  """lr_base(step) = base_lr x gamma^(#milestones <= step // steps_per_epoch) (docs/hhl.md §6)."""
  boundaries = {int(m) * int(steps_per_epoch): float(gamma) for m in milestones}
  return optax.piecewise_constant_schedule(float(base_lr), boundaries)


def zero_until(num_steps: int) -> optax.GradientTransformation:
  """Zero updates for the first `num_steps` calls, identity afterwards."""

  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    del params
    active = state.count >= num_steps
    updates = jax.tree.map(lambda u: jnp.where(active, u, jnp.zeros_like(u)), updates)
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init, update)


def sgd_group(schedule: optax.Schedule, lr_mult: float, momentum: float, nesterov: bool,
              weight_decay: float, frozen_steps: int = 0) -> optax.GradientTransformation:
  """`torch.optim.SGD(lr=schedule x lr_mult, momentum, nesterov, weight_decay)` for one group,
  held still (no update, no decay, empty momentum) for its first `frozen_steps` steps."""
  parts = [optax.add_decayed_weights(weight_decay)]  # coupled L2: before the momentum (docs/hhl.md §6)
  if frozen_steps > 0:
    parts.append(zero_until(frozen_steps))  # before the trace, so that it stays empty
  return optax.chain(
      *parts,
      optax.trace(decay=momentum, nesterov=nesterov),
      optax.scale_by_schedule(lambda count: -schedule(count) * lr_mult),
  )


class Optimiser:
  """The optax transformation plus what the loop logs (lr per group).

  Attributes:
    tx: `optax.multi_transform` over the groups.
    labels: the group-name pytree for the params it was built for.
    schedule: lr_base(step).
    lr_mult: group -> multiplier (frozen groups omitted).
    frozen_steps: group -> steps it is held still at the start (warm-up; absent: none).
  """

  def __init__(self, tx, labels, schedule, lr_mult, frozen_steps=None):
    self.tx = tx
    self.labels = labels
    self.schedule = schedule
    self.lr_mult = dict(lr_mult)
    self.frozen_steps = dict(frozen_steps or {})

  def learning_rates(self, step: int) -> dict[str, float]:
    """{group: lr applied at `step`} for every non-frozen group present in the params (0 while a
    group's warm-up holds it still)."""
    base = float(self.schedule(step))
    return {group: (0.0 if step < self.frozen_steps.get(group, 0) else base * mult)
            for group, mult in sorted(self.lr_mult.items())}


def build_optimiser(params, optim_config, rules: Mapping[str, str],
                    steps_per_epoch: int) -> Optimiser:
  """SGD per group from an `optim` config block.

  Args:
    params: the parameter pytree (only its structure and paths are used).
    optim_config: fields `base_lr`, `lr_mult` (group -> float or "frozen"), `momentum`,
      `nesterov`, `weight_decay`, `milestones` (epochs), `gamma`.
    rules: top-level module name -> group name (e.g. `reid_net_rules(...)`).
    steps_per_epoch: optimiser steps per epoch (the schedule is in epochs).
  """
  labels = label_params(params, rules)
  groups = set(jax.tree.leaves(labels))
  lr_mult_config = dict(optim_config.lr_mult)
  schedule = epoch_schedule(optim_config.base_lr, optim_config.milestones, optim_config.gamma,
                            steps_per_epoch)
  frozen_epochs = dict(optim_config.get("frozen_epochs", None) or {})
  unknown = sorted(set(frozen_epochs) - groups)
  if unknown:
    raise ReidError(f"config field optim.frozen_epochs names {unknown}, not parameter groups of "
                    f"this model ({sorted(groups)})")
  frozen_steps = {group: int(epochs) * int(steps_per_epoch)
                  for group, epochs in frozen_epochs.items() if int(epochs) > 0}
  transforms, lr_mult = {}, {}
  for group in sorted(groups):
    mult = FROZEN if group == FROZEN else lr_mult_config.get(group)
    if mult is None:
      raise ReidError(f"config field optim.lr_mult has no entry for parameter group {group!r} "
                      f"(has {sorted(lr_mult_config)})")
    if mult == FROZEN:
      transforms[group] = optax.set_to_zero()
    else:
      lr_mult[group] = float(mult)
      transforms[group] = sgd_group(schedule, float(mult), optim_config.momentum,
                                    optim_config.nesterov, optim_config.weight_decay,
                                    frozen_steps.get(group, 0))
  tx = optax.multi_transform(transforms, labels)
  return Optimiser(tx, labels, schedule, lr_mult,
                   {g: n for g, n in frozen_steps.items() if g in lr_mult})


def learning_rate_fn(optimiser: Optimiser) -> Callable[[int], dict[str, float]]:
  return optimiser.learning_rates
