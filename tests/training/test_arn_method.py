"""ARN as a trainer method (docs/arn_triplet_eval.md §1.1, §1.4): each variant's modules and loss
terms, each optimiser group's step, the warm-up, and the per-domain BatchNorm statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reid_jax.configs import arn as arn_config
from reid_jax.errors import ReidError
from reid_jax.training import arn
from reid_jax.training import optim
from reid_jax.training import state as state_lib
from reid_jax.training import steps

NUM_CLASSES, P, K, TARGET = 4, 4, 2, 6
ALL_MODULES = {"backbone", "E_C", "E_S", "E_T", "D_C", "C_S"}


def _config(variant="arn", **arn_fields):
  config = arn_config.get_config("tiny")
  config = arn_config.apply_method_variant(config, variant)
  config.model.width = 16
  config.model.pretrained = ""
  config.data.batch_size, config.data.num_instances, config.data.target_batch_size = P * K, K, TARGET
  for key, value in arn_fields.items():
    config.arn[key] = value
  return config


def _setup(config, seed=0):
  model = arn.build_model(config.model, NUM_CLASSES)
  images = jnp.zeros((1, config.data.height, config.data.width, 3))
  variables = jax.jit(lambda key: arn.METHOD.init_model(model, key, images))(
      jax.random.PRNGKey(seed))
  variables = arn.METHOD.arrange_variables(config, {"params": variables["params"],
                                                    "batch_stats": variables["batch_stats"]})
  return model, variables


def _batch(config, seed=0, target_shift=0.0, target_scale=1.0):
  rng = np.random.default_rng(seed)
  h, w = config.data.height, config.data.width
  return {
      "source": {"image": rng.normal(size=(P * K, h, w, 3)).astype(np.float32),
                 "label": np.repeat(np.arange(P), K).astype(np.int32)},
      "target": {"image": (target_shift + target_scale * rng.normal(size=(TARGET, h, w, 3))
                           ).astype(np.float32),
                 "label": np.arange(TARGET).astype(np.int32),
                 "is_fake": np.zeros(TARGET, bool)},
  }


@pytest.mark.parametrize("variant", arn_config.METHOD_VARIANTS)
def test_each_variant_has_exactly_its_modules_and_loss_terms(variant):
  config = _config(variant)
  arn.check_config(config)
  model, variables = _setup(config)
  private, classifier = arn_config.VARIANT_MODULES[variant]
  expected = ALL_MODULES - ({"E_S", "E_T"} if not private else set()) - (
      {"C_S"} if not classifier else set())
  assert set(variables["params"]) == expected
  loss, (_, metrics) = jax.jit(arn.loss_fn(model, config))(
      variables["params"], variables["batch_stats"], _batch(config), jax.random.PRNGKey(1))
  terms = set(arn_config.VARIANT_TERMS[variant])
  assert set(metrics) - {"accuracy"} == terms
  a = config.arn
  weights = {"cross_entropy": 1.0, "contrastive": a.alpha, "reconstruction": a.beta,
             "difference": a.gamma}
  np.testing.assert_allclose(float(loss), sum(weights[t] * float(metrics[t]) for t in terms),
                             rtol=1e-5)
  assert all(float(metrics[t]) > 0 for t in terms)


def test_a_variant_with_modules_of_another_is_refused():
  config = _config("rec")
  config.arn.variant = "arn"  # as --config.arn.variant would, without the modules
  with pytest.raises(ReidError, match="use --variant"):
    arn.check_config(config)
  config = _config("arn")
  config.model.map_size = (4, 2)
  with pytest.raises(ReidError, match="model.map_size=\\(4, 2\\).*2x1"):
    arn.check_config(config)


def _optimiser(config, params, steps_per_epoch):
  return optim.build_optimiser(params, config.optim, arn.METHOD.optimiser_rules(config),
                               steps_per_epoch)


def test_each_group_moves_by_its_learning_rate_and_the_trunk_waits_for_its_warm_up():
  """§1.1 training details (E_I 1e-7, E_C/E_S/E_T/D_C 1e-3, C_S 2e-3), §1.4 item 4 (E_I frozen
  for the first epochs): with momentum 0.9 and coupled weight decay, a group's first active step
  is -lr (g + wd p); E_I's is zero, bitwise, during the warm-up."""
  config = _config("arn")
  config.optim.frozen_epochs = {"trunk": 1}
  model, variables = _setup(config)
  params, stats = variables["params"], variables["batch_stats"]
  opt = _optimiser(config, params, steps_per_epoch=1)
  lrs = {"backbone": 1e-7, "E_C": 1e-3, "E_S": 1e-3, "E_T": 1e-3, "D_C": 1e-3, "C_S": 2e-3}
  assert opt.learning_rates(0) == pytest.approx({"trunk": 0.0, "encoders": 1e-3,
                                                 "classifier": 2e-3})
  assert opt.learning_rates(1)["trunk"] == pytest.approx(1e-7)
  loss = arn.loss_fn(model, config)
  grad = jax.jit(jax.grad(lambda p, b, r: loss(p, stats, b, r)[0]))
  wd = config.optim.weight_decay
  opt_state = opt.tx.init(params)
  for step in range(2):
    batch, key = _batch(config, seed=step), jax.random.PRNGKey(10 + step)
    g = grad(params, batch, key)
    updates, opt_state = jax.jit(opt.tx.update)(g, opt_state, params)
    for module, lr in lrs.items():
      if module == "backbone" and step == 0:
        for u in jax.tree.leaves(updates[module]):
          np.testing.assert_array_equal(np.asarray(u), 0.0)
        continue
      if step == 1 and module != "backbone":
        continue  # momentum: only the first active step is -lr (g + wd p)
      expected = jax.tree.map(lambda gi, pi: -lr * (gi + wd * pi), g[module], params[module])
      for u, e in zip(jax.tree.leaves(updates[module]), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(e), rtol=1e-5, atol=1e-12)
      assert any(np.abs(np.asarray(u)).max() > 0 for u in jax.tree.leaves(updates[module]))
    params = jax.tree.map(lambda p, u: p + u, params, updates)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b)))


@pytest.mark.parametrize("shared", [False, True])
def test_domains_keep_their_own_bn_statistics_and_evaluation_uses_the_targets(shared):
  """§1.4 item 5: source and target through separate passes; E_C and D_C keep per-domain running
  averages (`shared_bn_stats` one set); E_I's are frozen; the descriptor uses the target's."""
  config = _config("arn", shared_bn_stats=shared)
  model, variables = _setup(config)
  opt = _optimiser(config, variables["params"], steps_per_epoch=10)
  state = state_lib.create(variables["params"], variables["batch_stats"], opt.tx)
  step = jax.jit(steps.make_train_step(arn.loss_fn(model, config), opt.tx))
  state, _ = step(state, _batch(config, target_shift=3.0, target_scale=2.0), jax.random.PRNGKey(0))
  before, after = variables["batch_stats"], state.batch_stats
  for domain in arn.DOMAINS:
    assert _equal(after[domain]["backbone"], before[domain]["backbone"])  # E_I frozen
    for module in ("E_C", "D_C"):
      assert not _equal(after[domain][module], before[domain][module])
  if shared:
    assert _equal(after["source"], after["target"])
  else:
    for module in ("E_C", "D_C"):
      assert not _equal(after["source"][module], after["target"][module])
    # each private encoder saw only its own domain
    assert not _equal(after["source"]["E_S"], before["source"]["E_S"])
    assert _equal(after["source"]["E_T"], before["source"]["E_T"])
    assert not _equal(after["target"]["E_T"], before["target"]["E_T"])
    assert _equal(after["target"]["E_S"], before["target"]["E_S"])
  trained = state_lib.variables(jax.device_get(state))
  images = _batch(config, seed=5)["target"]["image"]
  descriptor = arn.METHOD.descriptor(model)
  ours = descriptor(arn.METHOD.eval_variables(trained, "target"), images)
  with_target = model.apply({"params": trained["params"],
                             "batch_stats": trained["batch_stats"]["target"]}, images,
                            method="shared_code")
  np.testing.assert_array_equal(np.asarray(ours), np.asarray(with_target))
  with_source = descriptor(arn.METHOD.eval_variables(trained, "source"), images)
  assert np.array_equal(np.asarray(with_source), np.asarray(ours)) == shared


def test_source_pretraining_starts_e_i_from_a_baseline_workdirs_trunk(tmp_path):
  """§1.4 item 4 (c): `model.init_from_workdir` copies a baseline checkpoint's trunk (params and
  BN statistics) into E_I, for both domains; the other modules keep their initialisation."""
  from reid_jax.training import checkpoint as checkpoint_lib
  config = _config("arn")
  _, initial = _setup(config)
  rng = np.random.default_rng(3)
  trunk = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32),
                       {"params": initial["params"]["backbone"],
                        "batch_stats": initial["batch_stats"]["source"]["backbone"]})
  workdir = tmp_path / "baseline"
  with checkpoint_lib.Checkpointer(workdir / "checkpoints") as ckpt:
    ckpt.save(7, {"params": {"backbone": trunk["params"], "classifier": {"kernel": np.zeros(2)}},
                  "batch_stats": {"backbone": trunk["batch_stats"]}})
  config.model.init_from_workdir = str(workdir)
  arranged = arn.METHOD.arrange_variables(config, {
      "params": initial["params"], "batch_stats": initial["batch_stats"]["source"]})
  assert _equal(arranged["params"]["backbone"], trunk["params"])
  for domain in arn.DOMAINS:
    assert _equal(arranged["batch_stats"][domain]["backbone"], trunk["batch_stats"])
  assert _equal(arranged["params"]["E_C"], initial["params"]["E_C"])
  ckpt_dir = tmp_path / "arn_like" / "checkpoints"
  with checkpoint_lib.Checkpointer(ckpt_dir) as ckpt:
    ckpt.save(1, {"params": {"E_C": {"w": np.zeros(2)}}, "batch_stats": {"E_C": {"m": np.zeros(2)}}})
  config.model.init_from_workdir = str(tmp_path / "arn_like")
  with pytest.raises(ReidError, match="holds no trunk"):
    arn.METHOD.arrange_variables(config, {"params": initial["params"],
                                          "batch_stats": initial["batch_stats"]["source"]})
