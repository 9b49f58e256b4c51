"""HHL's BatchNorm passes (docs/hhl.md §14): `steps.forward_passes` against a numpy BatchNorm.

Flax BatchNorm in train mode normalises with the batch mean and biased variance and updates
running = momentum x running + (1 - momentum) x batch statistic (biased variance too).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reid_jax.training import steps

MOMENTUM, EPS, IN, OUT = 0.9, 1e-5, 3, 4
SIZES = (4, 6, 8)  # CE, triplet, target: three sizes, each even (bn_groups=2)


class Toy(nn.Module):
  """Dense -> BatchNorm, with ReIDNet's output dict and call signature."""

  @nn.compact
  def __call__(self, x, train=False):
    h = nn.Dense(OUT, name="backbone")(x.reshape(x.shape[0], -1))
    e = nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM, epsilon=EPS,
                     name="feat_bn")(h)
    return {"pool5": h, "embedding": e, "logits": None}


class DropToy(nn.Module):
  """A dropout mask of ones: shows which dropout key each pass received."""

  @nn.compact
  def __call__(self, x, train=False):
    h = nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM, name="feat_bn")(x)
    mask = nn.Dropout(0.5, deterministic=not train)(jnp.ones_like(x))
    return {"pool5": h, "embedding": mask, "logits": None}


def _setup():
  rng = np.random.default_rng(0)
  images = [rng.normal(size=(n, 1, 1, IN)).astype(np.float32) + i for i, n in enumerate(SIZES)]
  model = Toy()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1, 1, IN)))
  params = jax.tree.map(np.asarray, variables["params"])
  # non-default BN parameters and running statistics, so every term of the update shows
  params["feat_bn"]["scale"] = rng.uniform(0.5, 2.0, OUT).astype(np.float32)
  params["feat_bn"]["bias"] = rng.normal(size=OUT).astype(np.float32)
  batch_stats = {"feat_bn": {"mean": rng.normal(size=OUT).astype(np.float32),
                             "var": rng.uniform(0.5, 2.0, OUT).astype(np.float32)}}
  return model, params, batch_stats, images


def _pre_bn(params, x):
  """The Dense output in float64."""
  w = np.asarray(params["backbone"]["kernel"], np.float64)
  b = np.asarray(params["backbone"]["bias"], np.float64)
  return x.reshape(x.shape[0], -1).astype(np.float64) @ w + b


def _normalise(params, h):
  """Train-mode BN output of h with h's own batch mean and biased variance."""
  scale = np.asarray(params["feat_bn"]["scale"], np.float64)
  bias = np.asarray(params["feat_bn"]["bias"], np.float64)
  return (h - h.mean(0)) / np.sqrt(h.var(0) + EPS) * scale + bias


def _ema(stats, h):
  """One running-statistics update from batch h."""
  return (MOMENTUM * stats[0] + (1 - MOMENTUM) * h.mean(0),
          MOMENTUM * stats[1] + (1 - MOMENTUM) * h.var(0))


def _running(batch_stats):
  return (np.asarray(batch_stats["feat_bn"]["mean"], np.float64),
          np.asarray(batch_stats["feat_bn"]["var"], np.float64))


def _assert_running(batch_stats, expected):
  got = _running(batch_stats)
  np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[1], expected[1], rtol=1e-5, atol=1e-6)


def test_separate_passes_three_sequential_updates_in_order():
  """'separate': each batch normalised by its own statistics; EMAs CE -> triplet -> target."""
  model, params, batch_stats, images = _setup()
  outputs, new_stats = steps.forward_passes(model, params, batch_stats,
                                            [jnp.asarray(x) for x in images],
                                            jax.random.PRNGKey(1), bn_passes="separate")
  assert len(outputs) == 3
  expected = _running(batch_stats)
  for x, out in zip(images, outputs):
    h = _pre_bn(params, x)
    np.testing.assert_allclose(np.asarray(out["pool5"]), h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["embedding"]), _normalise(params, h), rtol=1e-4,
                               atol=1e-4)
    assert out["logits"] is None
    expected = _ema(expected, h)
  _assert_running(new_stats, expected)
  # the order matters: target -> triplet -> CE gives other running statistics
  reverse = _running(batch_stats)
  for x in images[::-1]:
    reverse = _ema(reverse, _pre_bn(params, x))
  assert np.abs(reverse[0] - expected[0]).max() > 1e-3
  # the input statistics are not modified in place
  np.testing.assert_array_equal(_running(batch_stats)[0], _setup()[2]["feat_bn"]["mean"])


def test_joint_pass_one_update_with_the_concatenated_batch():
  """'joint': every output normalised with the concatenation's statistics; one EMA update."""
  model, params, batch_stats, images = _setup()
  outputs, new_stats = steps.forward_passes(model, params, batch_stats,
                                            [jnp.asarray(x) for x in images],
                                            jax.random.PRNGKey(1), bn_passes="joint")
  h_all = _pre_bn(params, np.concatenate(images))
  normalised = _normalise(params, h_all)
  bounds = np.cumsum((0,) + SIZES)
  assert [o["embedding"].shape[0] for o in outputs] == list(SIZES)
  for i, out in enumerate(outputs):
    np.testing.assert_allclose(np.asarray(out["embedding"]), normalised[bounds[i]:bounds[i + 1]],
                               rtol=1e-4, atol=1e-4)
    assert out["logits"] is None
  _assert_running(new_stats, _ema(_running(batch_stats), h_all))


def test_bn_groups_2_per_half_statistics_first_half_update():
  """bn_groups=2: each half normalised by its own statistics; only first halves update, in order."""
  model, params, batch_stats, images = _setup()
  outputs, new_stats = steps.forward_passes(model, params, batch_stats,
                                            [jnp.asarray(x) for x in images],
                                            jax.random.PRNGKey(1), bn_passes="separate",
                                            bn_groups=2)
  expected = _running(batch_stats)
  for x, out in zip(images, outputs):
    h = _pre_bn(params, x)
    half = len(h) // 2
    per_half = np.concatenate([_normalise(params, h[:half]), _normalise(params, h[half:])])
    np.testing.assert_allclose(np.asarray(out["embedding"]), per_half, rtol=1e-4, atol=1e-4)
    assert np.abs(per_half - _normalise(params, h)).max() > 1e-2  # halves differ from whole
    expected = _ema(expected, h[:half])
  _assert_running(new_stats, expected)


def test_joint_with_bn_groups_2_splits_the_concatenation():
  """'joint' + bn_groups=2: halves of the concatenated 18 images; one update from its first 9."""
  model, params, batch_stats, images = _setup()
  outputs, new_stats = steps.forward_passes(model, params, batch_stats,
                                            [jnp.asarray(x) for x in images],
                                            jax.random.PRNGKey(1), bn_passes="joint",
                                            bn_groups=2)
  h_all = _pre_bn(params, np.concatenate(images))
  half = len(h_all) // 2
  expected = np.concatenate([_normalise(params, h_all[:half]), _normalise(params, h_all[half:])])
  got = np.concatenate([np.asarray(o["embedding"]) for o in outputs])
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  _assert_running(new_stats, _ema(_running(batch_stats), h_all[:half]))


def test_bad_switches_refused():
  """An odd pass under bn_groups=2 and an unknown bn_passes raise."""
  model, params, batch_stats, images = _setup()
  with pytest.raises(ValueError, match="does not split"):
    steps.forward_passes(model, params, batch_stats, [jnp.ones((5, 1, 1, IN))],
                         jax.random.PRNGKey(0), bn_groups=2)
  with pytest.raises(ValueError, match="bn_passes"):
    steps.forward_passes(model, params, batch_stats, [jnp.asarray(images[0])],
                         jax.random.PRNGKey(0), bn_passes="together")


def test_each_pass_gets_its_own_dropout_key():
  """Three identical batches get three different dropout masks, the same ones for the same rng."""
  model = DropToy()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64)))
  images = [jnp.ones((2, 64))] * 3
  outputs, _ = steps.forward_passes(model, variables["params"], variables["batch_stats"], images,
                                    jax.random.PRNGKey(3))
  masks = [np.asarray(o["embedding"]) for o in outputs]
  assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])
  assert not np.array_equal(masks[0], masks[2])
  again, _ = steps.forward_passes(model, variables["params"], variables["batch_stats"], images,
                                  jax.random.PRNGKey(3))
  for m, a in zip(masks, again):
    np.testing.assert_array_equal(m, np.asarray(a["embedding"]))
