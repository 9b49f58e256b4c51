"""materialize: exact, gradient-transparent, and XLA:CPU stops recomputing a residual stream."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from reid_jax import xla_options
from reid_jax.models.materialize import materialize


def test_values_are_bitwise_unchanged_and_gradients_pass_through():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 5, 3, 8)) * 1e3
  x = x.at[0, 0, 0, 0].set(-7.5).at[1].set(0.0).at[2, 0].set(1e-30).at[3, 0].set(-3e37)
  assert jax.default_backend() == "cpu"
  np.testing.assert_array_equal(jax.jit(materialize)(x), x)
  weights = jax.random.normal(jax.random.PRNGKey(1), x.shape)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(materialize(x) * weights)))(x)
  np.testing.assert_array_equal(grad, weights)


def _stream_fusion_inputs(barrier: bool) -> list[int]:
  """Operands of each fusion producing a stream value in a 7-step residual stream whose every
  value also feeds a matmul (as a block output feeds the next block's convolution)."""
  def stream(ys, w):
    out, total = ys[0], 0.0
    for y in ys[1:]:
      out = jax.nn.relu(y + out)
      out = materialize(out) if barrier else out
      total = total + jnp.sum(out @ w)
    return total

  ys = [jax.random.normal(jax.random.PRNGKey(i), (64, 32)) for i in range(7)]
  text = xla_options.jit(stream).lower(ys, jnp.ones((32, 8))).compile().as_text()
  entry = text.split("\nENTRY")[1]
  fusions = re.findall(r"= f32\[64,32\]\{1,0\} fusion\((.*?)\), kind=kLoop", entry)
  return [len(operands.split(", ")) for operands in fusions]


def test_xla_computes_each_stream_value_once():
  # Without: the k-th value is recomputed from all k + 1 inputs (the case `materialize` exists
  # for; if XLA stops doing this, the barrier may be removed).
  assert max(_stream_fusion_inputs(barrier=False)) == 7
  # With: each value from its own input and the previous value.
  assert _stream_fusion_inputs(barrier=True) == [2] * 6
