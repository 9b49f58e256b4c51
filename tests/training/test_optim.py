"""SGD groups and schedules against torch.optim.SGD; parameter-path partitioning (docs/hhl.md §6, §9)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from ml_collections import config_dict

from reid_jax.errors import ReidError
from reid_jax.models import heads
from reid_jax.training import optim


def _optim_config(lr_mult):
  return config_dict.ConfigDict({
      "base_lr": 0.1, "lr_mult": lr_mult, "momentum": 0.9, "nesterov": True,
      "weight_decay": 5e-4, "milestones": (2,), "gamma": 0.1})


def test_matches_torch_sgd_nesterov_two_groups_and_drop():
  rng = np.random.default_rng(0)
  shapes = {"backbone": {"w": (4, 3), "b": (3,)}, "classifier": {"w": (3, 2)},
            "feat": {"w": (2, 2)}}
  params = jax.tree.map(lambda s: rng.normal(size=s).astype(np.float64), shapes,
                        is_leaf=lambda s: isinstance(s, tuple))
  steps_per_epoch, num_steps = 2, 7  # epochs 0,1 at 0.1 x mult; from step 4 (epoch 2) x0.1
  grads = [jax.tree.map(lambda p: rng.normal(size=p.shape), params) for _ in range(num_steps)]
  rules = {"backbone": "trunk", "classifier": "classifier", "feat": "frozen"}
  opt = optim.build_optimiser(params, _optim_config({"trunk": 0.1, "classifier": 1.0}), rules,
                              steps_per_epoch)

  ours = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
  opt_state = opt.tx.init(ours)
  for g in grads:
    updates, opt_state = opt.tx.update(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g),
                                       opt_state, ours)
    ours = optax.apply_updates(ours, updates)

  # PyTorch: two groups, MultiStepLR-equivalent drop by setting the group lrs at the epoch boundary.
  t = {k: {n: torch.tensor(v, dtype=torch.float32, requires_grad=True) for n, v in d.items()}
       for k, d in params.items()}
  groups = [{"params": list(t["backbone"].values()), "lr": 0.01},
            {"params": list(t["classifier"].values()), "lr": 0.1}]
  sgd = torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
  for i, g in enumerate(grads):
    if i == 2 * steps_per_epoch:
      for group, lr in zip(sgd.param_groups, (0.001, 0.01)):
        group["lr"] = lr
    for k in ("backbone", "classifier"):
      for n, p in t[k].items():
        p.grad = torch.tensor(g[k][n], dtype=torch.float32)
    sgd.step()
  for k in ("backbone", "classifier"):
    for n in t[k]:
      np.testing.assert_allclose(np.asarray(ours[k][n]), t[k][n].detach().numpy(), atol=1e-6)
      assert not np.allclose(np.asarray(ours[k][n]), params[k][n], atol=1e-3)  # it did move
  # frozen: not moved at all (no update, no weight decay)
  np.testing.assert_array_equal(np.asarray(ours["feat"]["w"]), params["feat"]["w"].astype(np.float32))
  assert opt.learning_rates(3) == pytest.approx({"trunk": 0.01, "classifier": 0.1})
  assert opt.learning_rates(4) == pytest.approx({"trunk": 0.001, "classifier": 0.01})


def _reid_params(triplet_features=8):
  model = heads.ReIDNet(num_classes=5, arch="resnet_small", num_features=16,
                        triplet_features=triplet_features)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 32, 3))))
  return variables["params"]


@pytest.mark.parametrize("embedding_layers,expected_embedding_group", [
    ("reference_code", "frozen"), ("paper", "trunk"), ("baseline", "classifier")])
def test_every_reid_net_path_gets_its_group(embedding_layers, expected_embedding_group):
  params = _reid_params()
  labels = optim.label_params(params, optim.reid_net_rules(embedding_layers))
  flat = {optim.param_path(p): g for p, g in jax.tree_util.tree_leaves_with_path(labels)}
  expected = {"backbone": "trunk", "classifier": "classifier", "feat": expected_embedding_group,
              "feat_bn": expected_embedding_group, "triplet": expected_embedding_group}
  assert {path[0] for path in flat} == set(expected)
  for path, group in flat.items():
    assert group == expected[path[0]], path
  assert ("feat_bn", "scale") in flat and ("backbone", "conv1", "kernel") in flat


def test_frozen_reid_heads_do_not_move_and_trunk_does():
  params = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), _reid_params())
  opt = optim.build_optimiser(params, _optim_config({"trunk": 0.1, "classifier": 1.0}),
                              optim.reid_net_rules("reference_code"), steps_per_epoch=10)
  grads = jax.tree.map(jnp.ones_like, params)
  state = opt.tx.init(params)
  updated = params
  for _ in range(3):
    updates, state = opt.tx.update(grads, state, updated)
    updated = optax.apply_updates(updated, updates)
  for name in ("feat", "feat_bn", "triplet"):
    for a, b in zip(jax.tree.leaves(updated[name]), jax.tree.leaves(params[name])):
      np.testing.assert_array_equal(a, b)
  for name in ("backbone", "classifier"):
    assert all(not np.allclose(a, b) for a, b in
               zip(jax.tree.leaves(updated[name]), jax.tree.leaves(params[name])))


def test_unknown_module_and_missing_multiplier_are_named():
  with pytest.raises(ReidError, match="decoder"):
    optim.label_params({"decoder": {"w": jnp.zeros(2)}}, {"backbone": "trunk"})
  with pytest.raises(ReidError, match="optim.lr_mult.*classifier"):
    optim.build_optimiser({"classifier": {"w": jnp.zeros(2)}}, _optim_config({"trunk": 0.1}),
                          {"classifier": "classifier"}, 1)
  with pytest.raises(ReidError, match="embedding_layers"):
    optim.reid_net_rules("trunk_only")


def test_warm_up_holds_a_group_still_then_trains_it_like_a_fresh_torch_parameter():
  # docs/arn_triplet_eval.md §1.4 item 4 (b): E_I frozen for the first epochs, then trained. In
  # PyTorch that is `requires_grad=False` until the epoch, then SGD on a fresh momentum buffer;
  # the schedule's milestones still count from step 0.
  rng = np.random.default_rng(1)
  params = {"backbone": {"w": rng.normal(size=(3, 2)).astype(np.float32)},
            "classifier": {"w": rng.normal(size=(2, 2)).astype(np.float32)}}
  config = _optim_config({"trunk": 0.1, "classifier": 1.0})
  config.frozen_epochs = {"trunk": 1}
  steps_per_epoch, num_steps = 2, 6  # trunk still at steps 0-1; lr x0.1 from step 4 (epoch 2)
  opt = optim.build_optimiser(params, config, {"backbone": "trunk", "classifier": "classifier"},
                              steps_per_epoch)
  grads = [jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params)
           for _ in range(num_steps)]
  ours, state, trajectory = jax.tree.map(jnp.asarray, params), opt.tx.init(params), []
  for g in grads:
    updates, state = opt.tx.update(g, state, ours)
    ours = optax.apply_updates(ours, updates)
    trajectory.append(np.asarray(ours["backbone"]["w"]))
  # Bitwise still during the warm-up, moving afterwards.
  for still in trajectory[:steps_per_epoch]:
    np.testing.assert_array_equal(still, params["backbone"]["w"])
  assert not np.allclose(trajectory[steps_per_epoch], params["backbone"]["w"])

  w = torch.tensor(params["backbone"]["w"], requires_grad=True)
  sgd = torch.optim.SGD([w], lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
  for i, g in enumerate(grads[steps_per_epoch:], start=steps_per_epoch):
    if i == 2 * steps_per_epoch:
      sgd.param_groups[0]["lr"] = 0.001
    w.grad = torch.tensor(g["backbone"]["w"])
    sgd.step()
  np.testing.assert_allclose(np.asarray(ours["backbone"]["w"]), w.detach().numpy(), atol=1e-6)
  assert [opt.learning_rates(s)["trunk"] for s in (0, 1, 2, 4)] == pytest.approx(
      [0.0, 0.0, 0.01, 0.001])
  assert opt.learning_rates(0)["classifier"] == pytest.approx(0.1)


def test_warm_up_of_an_unknown_group_is_refused_by_name():
  config = _optim_config({"trunk": 0.1, "classifier": 1.0})
  config.frozen_epochs = {"encoders": 5}
  with pytest.raises(ReidError, match="optim.frozen_epochs.*encoders"):
    optim.build_optimiser({"backbone": {"w": jnp.zeros(2)}}, config, {"backbone": "trunk"}, 2)
