"""`model.dtype = bfloat16`: bfloat16 compute, float32 parameters, BatchNorm statistics and losses
(issue 20), on HHL's train step (its CE, triplet and target passes), against the float32 step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.training import multi_device_steps as child  # the multi-device test's step builder
from reid_jax.training import sharding


@pytest.fixture(scope="module")
def both():
  mesh = sharding.data_mesh(jax.devices()[:1])
  runs = {}
  for dtype in ("float32", "bfloat16"):
    config = child.config_of("hhl", 1)
    config.model.dtype = dtype
    runs[dtype] = child.run("hhl", config, mesh)
  return runs


def test_parameters_and_statistics_stay_float32(both):
  params, batch_stats, _, _ = both["bfloat16"]
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {np.dtype(np.float32)}
  assert {leaf.dtype for leaf in jax.tree.leaves(batch_stats)} == {np.dtype(np.float32)}


def test_losses_are_float32_and_track_the_float32_step(both):
  _, _, losses16, _ = both["bfloat16"]
  _, _, losses32, _ = both["float32"]
  relative = np.abs(losses16 - losses32) / np.abs(losses32)
  assert np.all(relative < 0.02), (losses16, losses32)
  assert np.any(losses16 != losses32)  # the bfloat16 path really computed in bfloat16


def test_the_loss_itself_is_float32_under_bfloat16_compute():
  from reid_jax.training import hhl
  config = child.config_of("hhl", 1)
  config.model.dtype = "bfloat16"
  model = hhl.METHOD.build_model(config.model, child.CLASSES)
  variables = jax.eval_shape(lambda: hhl.METHOD.init_model(
      model, jax.random.PRNGKey(0), jnp.zeros((1, child.HEIGHT, child.WIDTH, 3))))
  batch = jax.tree.map(jnp.asarray, child.batches("hhl", config)[0])
  loss, (_, metrics) = jax.eval_shape(
      hhl.loss_fn(model, config), variables["params"], variables["batch_stats"], batch,
      jax.random.PRNGKey(0))
  assert loss.dtype == jnp.float32
  assert all(m.dtype == jnp.float32 for m in jax.tree.leaves(metrics))
