"""Max pooling with PyTorch's semantics and a gradient written as elementwise work.

JAX differentiates `reduce_window` max through `select_and_scatter_add`, which XLA:CPU expands into
a variadic reduce-window carrying four int32 index arrays plus a scatter: about 120 ms per training
step for ResNet-50's stem pool at 256x128, batch 32 (2 cores). Here the backward pass visits the
window's taps in row-major order and gives each output's gradient to the first tap equal to the
maximum, exactly the choice of PyTorch (`val > maxval` keeps the first maximum) and of JAX's
`select_and_scatter_add` (select `ge`), then scatters the taps back with the convolutions' col2im.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from reid_jax.models import conv


def max_pool(x, window: tuple[int, int], strides: tuple[int, int], padding: tuple[int, int]):
  """`nn.MaxPool2d(window, strides, padding)` on NHWC `x`; the padding takes the value -inf.

  Within `conv.plain_convolutions()` (export), the maximum of the window's strided taps: the
  same values, in ops jax2onnx maps correctly (its MaxPool from this reduce_window fails in
  onnxruntime, "Unsupported pooling size")."""
  if conv.exporting():
    geo = conv.Geometry(tuple(window), tuple(strides), tuple(padding), (1, 1))
    (ph, pw), (kh, kw), (sh, sw) = padding, window, strides
    out_hw = ((x.shape[1] + 2 * ph - kh) // sh + 1, (x.shape[2] + 2 * pw - kw) // sw + 1)
    return functools.reduce(jnp.maximum, conv.taps(x, geo, out_hw, pad_value=-jnp.inf))
  return _max_pool(x, window, strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, padding):
  (ph, pw) = padding
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1),
                           ((0, 0), (ph, ph), (pw, pw), (0, 0)))


def _max_pool_fwd(x, window, strides, padding):
  y = _max_pool(x, window, strides, padding)
  return y, (x, y)


def _max_pool_bwd(window, strides, padding, residuals, g):
  x, y = residuals
  geo = conv.Geometry(tuple(window), tuple(strides), tuple(padding), (1, 1))
  taken = jnp.zeros(y.shape, bool)
  shares = []
  for tap in conv.taps(x, geo, y.shape[1:3], pad_value=-jnp.inf):
    hit = (tap == y) & ~taken
    taken = taken | hit
    shares.append(jnp.where(hit, g, jnp.zeros((), g.dtype)))
  return (conv.col2im(jnp.concatenate(shares, axis=-1), geo, x.shape[1:3]),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
