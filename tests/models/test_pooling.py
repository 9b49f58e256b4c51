"""Max pooling: forward and gradient equal PyTorch's, ties included, and JAX's own autodiff."""

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest
import torch

from reid_jax.models import pooling


def _tied_input(seed, shape):
  # Small integers: most windows hold their maximum more than once, so the tie rule decides.
  return np.random.default_rng(seed).integers(-3, 3, shape).astype(np.float32)


@pytest.mark.parametrize("shape, window, strides, padding", [
    ((2, 9, 7, 3), (3, 3), (2, 2), (1, 1)),   # ResNet stem pool, odd sizes
    ((1, 8, 8, 2), (3, 3), (2, 2), (1, 1)),
    ((2, 6, 5, 1), (2, 2), (2, 2), (0, 0)),
    ((1, 7, 6, 2), (3, 2), (1, 2), (1, 0)),
])
def test_gradient_goes_to_the_first_maximum_like_torch(shape, window, strides, padding):
  x = _tied_input(0, shape)
  g = np.random.default_rng(1).standard_normal(
      jax.eval_shape(lambda v: pooling.max_pool(v, window, strides, padding), x).shape
  ).astype(np.float32)
  y, vjp = jax.vjp(lambda v: pooling.max_pool(v, window, strides, padding), jnp.asarray(x))
  (dx,) = vjp(jnp.asarray(g))

  xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
  yt = torch.nn.functional.max_pool2d(xt, window, strides, padding)
  yt.backward(torch.from_numpy(g).permute(0, 3, 1, 2))
  np.testing.assert_array_equal(np.asarray(y), yt.detach().permute(0, 2, 3, 1).numpy())
  np.testing.assert_allclose(np.asarray(dx), xt.grad.permute(0, 2, 3, 1).numpy(), atol=1e-6)
  # Each output's gradient lands on exactly one input: the totals agree.
  np.testing.assert_allclose(np.asarray(dx).sum(), g.sum(), rtol=1e-5)


def test_gradient_equals_jax_select_and_scatter():
  x = jnp.asarray(_tied_input(2, (3, 11, 10, 4)))

  def reference(v):
    return lax.reduce_window(v, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                             ((0, 0), (1, 1), (1, 1), (0, 0)))

  weights = jnp.asarray(np.random.default_rng(3).standard_normal((3, 6, 5, 4)), jnp.float32)
  ours = jax.grad(lambda v: jnp.sum(pooling.max_pool(v, (3, 3), (2, 2), (1, 1)) * weights))(x)
  theirs = jax.grad(lambda v: jnp.sum(reference(v) * weights))(x)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-6)
