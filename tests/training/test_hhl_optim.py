"""HHL's optimiser groups (docs/hhl.md §6) on a small ReIDNet: the lr every parameter gets at
epochs 0, 39, 40, 59 under each `embedding_layers`, and real HHL train steps that leave the frozen
heads bitwise unchanged while their BatchNorm running statistics move."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reid_jax.configs import hhl as hhl_config
from reid_jax.data.pipeline import TARGET_LABEL_OFFSET
from reid_jax.models import heads
from reid_jax.training import hhl as hhl_training
from reid_jax.training import optim
from reid_jax.training import state as state_lib
from reid_jax.training import steps

NUM_CLASSES, HEIGHT, WIDTH = 5, 32, 16
STEPS_PER_EPOCH = 129  # Duke -> Market (docs/hhl.md §5)
TRUNK = {0: 0.01, 39: 0.01, 40: 0.001, 59: 0.001}
CLASSIFIER = {0: 0.1, 39: 0.1, 40: 0.01, 59: 0.01}
HEAD_LR = {"reference_code": None, "paper": TRUNK, "baseline": CLASSIFIER}  # feat/feat_bn/triplet
# Test speed only: LLVM optimisation off halves the compile time of these few tiny steps (the
# numbers are the same up to float rounding order, which no assertion here depends on).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _model():
  return heads.ReIDNet(num_classes=NUM_CLASSES, arch="resnet_small", num_features=16,
                       triplet_features=8)


@pytest.fixture(scope="module")
def variables():
  """ReIDNet's variable tree with a hand-made He init (BN: scale 1, bias 0, mean 0, var 1); the
  shapes come from `eval_shape`, which saves compiling the model's initialisers."""
  shapes = jax.eval_shape(_model().init, jax.random.PRNGKey(0), jnp.zeros((1, HEIGHT, WIDTH, 3)))
  rng = np.random.default_rng(0)

  def init(path, leaf):
    name = optim.param_path(path)[-1]
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.normal(size=leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name in ("scale", "var"):
      return np.ones(leaf.shape, np.float32)
    assert name in ("bias", "mean"), path
    return np.zeros(leaf.shape, np.float32)

  return jax.tree_util.tree_map_with_path(init, shapes)


def _optim_config(embedding_layers):
  config = hhl_config.get_config("paper").optim
  config.embedding_layers = embedding_layers
  return config


def _expected_lr(module, embedding_layers, epoch):
  """docs/hhl.md §6's table: the lr of a top-level module at `epoch`, None when frozen."""
  if module == "backbone":
    return TRUNK[epoch]
  if module == "classifier":
    return CLASSIFIER[epoch]
  table = HEAD_LR[embedding_layers]
  return None if table is None else table[epoch]


@pytest.mark.parametrize("embedding_layers", sorted(HEAD_LR))
def test_group_learning_rates_at_epochs_0_39_40_59(variables, embedding_layers):
  """learning_rates and the lr each leaf's first update applies equal §6's table at each epoch."""
  params = variables["params"]
  assert set(params) == {"backbone", "feat", "feat_bn", "triplet", "classifier"}
  config = _optim_config(embedding_layers)
  opt = optim.build_optimiser(params, config, optim.reid_net_rules(config.embedding_layers),
                              STEPS_PER_EPOCH)
  groups = {"trunk": TRUNK, "classifier": CLASSIFIER}  # the heads join one of these or neither
  grads = jax.tree.map(jnp.ones_like, params)
  update = jax.jit(opt.tx.update, compiler_options=FAST_COMPILE)
  for epoch in TRUNK:
    for step in {epoch * STEPS_PER_EPOCH, (epoch + 1) * STEPS_PER_EPOCH - 1}:
      rates = opt.learning_rates(step)
      assert set(rates) == set(groups)
      for group, table in groups.items():
        np.testing.assert_allclose(rates[group], table[epoch], rtol=1e-6)
      # the applied update: fresh momentum, schedule count at `step`, gradient of ones
      # -> u = -lr x (1 + 0.9) x (1 + 5e-4 p) (Nesterov's first step, coupled weight decay)
      opt_state = optax.tree_utils.tree_set(opt.tx.init(params), count=jnp.asarray(step))
      updates, _ = update(grads, opt_state, params)

      def check(path, leaf_update, p):
        module = optim.param_path(path)[0]
        lr = _expected_lr(module, embedding_layers, epoch)
        leaf_update = np.asarray(leaf_update, np.float64)
        if lr is None:
          assert not leaf_update.any(), path  # frozen: no update, no weight decay
        else:
          applied = -leaf_update / (1.9 * (1.0 + 5e-4 * np.asarray(p, np.float64)))
          np.testing.assert_allclose(applied, lr, rtol=1e-5, err_msg=str(path))

      jax.tree_util.tree_map_with_path(check, updates, params)


def test_reid_net_rules_cover_the_three_modes():
  """reid_net_rules maps feat/feat_bn/triplet to frozen / trunk / classifier; others are refused."""
  for mode, group in (("reference_code", "frozen"), ("paper", "trunk"),
                      ("baseline", "classifier")):
    rules = optim.reid_net_rules(mode)
    assert rules == {"backbone": "trunk", "classifier": "classifier", "feat": group,
                     "feat_bn": group, "triplet": group}
  with pytest.raises(Exception, match="embedding_layers"):
    optim.reid_net_rules("trainable")


def _batch(rng, target_b=2, cameras=2):
  """A combined batch {'ce', 'triplet', 'target'} at tiny sizes (docs/hhl.md §5 layout)."""
  def images(n):
    return rng.normal(size=(n, HEIGHT, WIDTH, 3)).astype(np.float32)
  ce_labels = rng.integers(0, NUM_CLASSES, 8).astype(np.int32)
  triplet_labels = np.repeat(rng.permutation(NUM_CLASSES)[:4], 2).astype(np.int32)
  indices = rng.choice(100, target_b, replace=False)
  target_labels = np.tile(TARGET_LABEL_OFFSET + indices, cameras + 1).astype(np.int32)
  n_target = target_b * (cameras + 1)
  return {"ce": {"image": images(8), "label": ce_labels},
          "triplet": {"image": images(8), "label": triplet_labels},
          "target": {"image": images(n_target), "label": target_labels,
                     "is_fake": np.arange(n_target) >= target_b}}


def test_reference_code_train_steps_freeze_heads_but_move_their_bn_statistics(variables):
  """Three HHL steps: feat/feat_bn/triplet bitwise fixed; trunk, classifier, BN statistics move."""
  config = hhl_config.get_config("tiny")
  config.model.num_features, config.model.triplet_features = 16, 8
  assert config.optim.embedding_layers == "reference_code" and config.hhl.variant == "hhl"
  hhl_training.check_config(config)
  model = heads.build_reid_net(config.model, NUM_CLASSES)
  assert (model.arch, model.num_features, model.triplet_features) == ("resnet_small", 16, 8)
  opt = optim.build_optimiser(variables["params"], config.optim,
                              optim.reid_net_rules(config.optim.embedding_layers), 2)
  initial = jax.tree.map(np.asarray, variables)
  state = state_lib.create(variables["params"], variables["batch_stats"], opt.tx)
  train_step = jax.jit(steps.make_train_step(hhl_training.loss_fn(model, config), opt.tx),
                       compiler_options=FAST_COMPILE)
  rng = np.random.default_rng(0)
  for i in range(3):
    state, metrics = train_step(state, _batch(rng), jax.random.PRNGKey(i))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["triplet"]) > 0
    assert float(metrics["grad_norm"]) > 0
  params = jax.tree.map(np.asarray, state.params)
  for module in ("feat", "feat_bn", "triplet"):
    for a, b in zip(jax.tree.leaves(params[module]), jax.tree.leaves(initial["params"][module])):
      assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), module
  for module in ("backbone", "classifier"):
    moved = [not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(params[module]), jax.tree.leaves(initial["params"][module]))]
    assert all(moved), (module, moved)
  stats = jax.tree.map(np.asarray, state.batch_stats)
  assert not np.allclose(stats["feat_bn"]["mean"], initial["batch_stats"]["feat_bn"]["mean"])
  assert not np.allclose(stats["feat_bn"]["var"], initial["batch_stats"]["feat_bn"]["var"])
  backbone_stats = zip(jax.tree.leaves(stats["backbone"]),
                       jax.tree.leaves(initial["batch_stats"]["backbone"]))
  assert all(not np.array_equal(a, b) for a, b in backbone_stats)
  assert int(state.step) == 3
