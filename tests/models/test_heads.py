"""IDE heads (docs/hhl.md §3, §3.1, §9): parameter counts, initialisations, dropout, BN-1024 statistics,
the eval forward against a torch head, the test descriptor."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from reid_jax.models import heads

NUM_CLASSES = 1024  # = num_features, so an identity classifier exposes the dropout mask


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def _abstract_params(net):
  return jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, 256, 128, 3))))["params"]


@pytest.mark.parametrize("num_classes, classifier, total", [(702, 719_550, 26_459_006),
                                                            (751, 769_775, 26_509_231)])
def test_parameter_counts_match_hhl(num_classes, classifier, total):
  params = _abstract_params(heads.ReIDNet(num_classes=num_classes))  # docs/hhl.md §3
  counts = {name: _count(tree) for name, tree in params.items()}
  assert counts == {"backbone": 23_508_032, "feat": 2_098_176, "feat_bn": 2_048, "triplet": 131_200,
                    "classifier": classifier}
  assert _count(params) == total


def test_baseline_has_no_triplet_layer():
  params = _abstract_params(heads.ReIDNet(num_classes=702, triplet_features=0))  # docs/hhl.md §9
  assert set(params) == {"backbone", "feat", "feat_bn", "classifier"}
  assert _count(params) == 26_459_006 - 131_200


@pytest.fixture(scope="module")
def small_net():
  net = heads.ReIDNet(num_classes=NUM_CLASSES, arch="resnet_small")
  x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 64, 32, 3)), jnp.float32)
  variables = jax.jit(net.init)(jax.random.key(0), x)
  return net, variables, x


def test_initialisations(small_net):
  _, variables, _ = small_net
  params, stats = variables["params"], variables["batch_stats"]
  feat = np.asarray(params["feat"]["kernel"])  # [512, 1024]: fan_out 1024, fan_in 512
  np.testing.assert_allclose(feat.std(), np.sqrt(2.0 / 1024), rtol=0.01)  # docs/hhl.md §3.1
  assert np.abs(feat).max() > 4 * feat.std()  # untruncated (he_normal would cut at 2 std)
  for name in ("triplet", "classifier"):
    kernel = np.asarray(params[name]["kernel"])
    np.testing.assert_allclose(kernel.std(), 1e-3, rtol=0.01)
    assert abs(kernel.mean()) < 1e-5
  for name in ("feat", "feat_bn", "triplet", "classifier"):
    np.testing.assert_array_equal(params[name]["bias"], 0.0)
  np.testing.assert_array_equal(params["feat_bn"]["scale"], 1.0)
  np.testing.assert_array_equal(stats["feat_bn"]["mean"], 0.0)
  np.testing.assert_array_equal(stats["feat_bn"]["var"], 1.0)


def test_eval_forward_matches_torch_head(small_net):
  net, variables, x = small_net
  params = variables["params"]
  rng = np.random.default_rng(1)
  # Non-trivial BN-1024 state so a mix-up of its statistics shows.
  stats = {"mean": rng.normal(0, 0.1, 1024).astype(np.float32),
           "var": rng.uniform(0.5, 1.5, 1024).astype(np.float32)}
  params = {**params, "feat_bn": {"scale": rng.uniform(0.5, 1.5, 1024).astype(np.float32),
                                  "bias": rng.normal(0, 0.1, 1024).astype(np.float32)}}
  variables = {"params": params,
               "batch_stats": {**variables["batch_stats"], "feat_bn": stats}}
  out = jax.jit(net.apply)(variables, x)
  assert out["pool5"].shape == (8, 512) and out["embedding"].shape == (8, 128)
  assert out["logits"].shape == (8, NUM_CLASSES)

  feat = torch.nn.Linear(512, 1024)
  feat_bn = torch.nn.BatchNorm1d(1024)
  triplet = torch.nn.Linear(1024, 128)
  classifier = torch.nn.Linear(1024, NUM_CLASSES)
  with torch.no_grad():
    for layer, name in ((feat, "feat"), (triplet, "triplet"), (classifier, "classifier")):
      layer.weight.copy_(torch.tensor(np.array(params[name]["kernel"]).T))
      layer.bias.copy_(torch.tensor(np.array(params[name]["bias"])))
    feat_bn.weight.copy_(torch.from_numpy(params["feat_bn"]["scale"]))
    feat_bn.bias.copy_(torch.from_numpy(params["feat_bn"]["bias"]))
    feat_bn.running_mean.copy_(torch.from_numpy(stats["mean"]))
    feat_bn.running_var.copy_(torch.from_numpy(stats["var"]))
    feat_bn.eval()
    r = torch.relu(feat_bn(feat(torch.tensor(np.array(out["pool5"])))))
    embedding, logits = triplet(r), classifier(torch.nn.functional.dropout(r, 0.5, training=False))
  np.testing.assert_allclose(out["embedding"], embedding.numpy(), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-4, atol=1e-6)

  features = jax.jit(lambda v, x: net.apply(v, x, features_only=True))(variables, x)
  assert set(features) == {"pool5"}
  np.testing.assert_allclose(features["pool5"], out["pool5"], rtol=1e-6)
  trunk_map = net.apply(variables, x, method=lambda m, x: m.backbone(x))
  np.testing.assert_allclose(out["pool5"], np.asarray(trunk_map).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def train_outputs(small_net):
  """Train-mode passes with an identity classifier, under two dropout keys."""
  net, variables, x = small_net
  params = {**variables["params"],
            "classifier": {"kernel": jnp.eye(1024), "bias": jnp.zeros(NUM_CLASSES)}}
  variables = {**variables, "params": params}

  @jax.jit
  def train_apply(variables, key):
    return net.apply(variables, x, train=True, rngs={"dropout": key},
                     mutable=["batch_stats", "intermediates"], capture_intermediates=True)

  return variables, [train_apply(variables, jax.random.key(k)) for k in (1, 2)]


def test_dropout_only_in_train_mode_and_only_before_the_classifier(small_net, train_outputs):
  net, _, x = small_net
  variables, ((out1, state1), (out2, _)) = train_outputs
  r = np.maximum(np.asarray(state1["intermediates"]["feat_bn"]["__call__"][0]), 0.0)
  logits = np.asarray(out1["logits"])
  kept = np.isclose(logits, 2.0 * r, rtol=1e-5, atol=1e-6)  # inverted dropout: kept units x 1/(1-0.5)
  dropped = logits == 0.0
  assert np.all(kept | dropped)
  active = r > 1e-3
  assert 0.45 < dropped[active].mean() < 0.55
  assert not np.array_equal(out1["logits"], out2["logits"])
  np.testing.assert_array_equal(out1["embedding"], out2["embedding"])  # docs/hhl.md §3: before dropout
  # Eval mode: no rng needed; the identity classifier returns r itself (no mask, no 1/(1-p) scale).
  eval_out, eval_state = net.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
  r_eval = np.maximum(np.asarray(eval_state["intermediates"]["feat_bn"]["__call__"][0]), 0.0)
  np.testing.assert_allclose(eval_out["logits"], r_eval, rtol=1e-6, atol=1e-7)


def test_train_mode_updates_feat_bn_running_stats(small_net, train_outputs):
  _, variables, _ = small_net
  _, ((_, state), _) = train_outputs
  feat_out = np.asarray(state["intermediates"]["feat"]["__call__"][0], np.float64)  # [B, 1024]
  new = state["batch_stats"]["feat_bn"]
  old = variables["batch_stats"]["feat_bn"]
  np.testing.assert_allclose(new["mean"], 0.9 * np.asarray(old["mean"]) + 0.1 * feat_out.mean(0),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new["var"], 0.9 * np.asarray(old["var"]) + 0.1 * feat_out.var(0),
                             rtol=1e-4, atol=1e-6)
  assert set(state["batch_stats"]) == {"backbone", "feat_bn"}


def test_test_descriptor_is_f_normalize():
  pool5 = np.random.default_rng(3).standard_normal((5, 2048)).astype(np.float32)
  pool5[2] = 0.0
  pool5[3] *= 1e-8
  ours = np.asarray(heads.test_descriptor(jnp.asarray(pool5)))
  expected = torch.nn.functional.normalize(torch.from_numpy(pool5), p=2, dim=1, eps=1e-12).numpy()
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
  norms = np.linalg.norm(ours, axis=1)
  np.testing.assert_allclose(norms[[0, 1, 3, 4]], 1.0, rtol=1e-5)
  assert norms[2] == 0.0 and np.all(np.isfinite(ours))


def test_flax_tree_names_are_the_optimiser_groups(small_net):
  _, variables, _ = small_net
  assert set(variables["params"]) == {"backbone", "feat", "feat_bn", "triplet", "classifier"}
  paths = flax.traverse_util.flatten_dict(variables["params"])
  assert ("backbone", "layer4", "0", "downsample_conv", "kernel") in paths
