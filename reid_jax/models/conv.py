"""Convolutions with PyTorch's padding semantics, shared by the ResNet, the heads and StarGAN.

Every convolution of the project goes through `conv2d` / `conv_transpose2d` so that one place
decides how it is computed: the native XLA convolution on GPU/TPU, and on the CPU backend a
formulation whose forward and gradients run at matmul speed (issue "training speed").

Layouts: activations NHWC; kernels HWIO `[kh, kw, in/groups, out]`. Padding is explicit and
symmetric, as PyTorch's `padding=p` (XLA's 'SAME' pads stride-2 convolutions asymmetrically, which
would break imported weights).

`impl` (every function and module takes it):
  'xla': `lax.conv_general_dilated` and JAX's own gradients of it.
  'matmul': no convolution op at all. 1x1 convolutions (forward, input gradient, weight gradient)
    are `dot_general`s on the (strided) subsampled input; kxk ones are im2col matmuls: forward
    `patches @ kernel`, input gradient `g @ kernel^T` then col2im (overlap-add of the kh*kw taps),
    weight gradient `g^T @ patches`, all blocked over the batch.
  'winograd': 3x3 stride-1 float32 convolutions as F(4x4, 3x3) Winograd transforms around a batch
    of 36 channel matmuls (forward, input gradient and weight gradient: 4x fewer multiplies than
    the direct convolution); every other convolution as 'auto'.
  'auto' (default): on the CPU backend, per operation the fastest formulation as measured on
    ResNet-50 and StarGAN layer shapes (benchmarks/conv_layers.py); elsewhere 'xla'. Decided at
    trace time from `jax.default_backend()`.
Grouped convolutions always use 'xla' (no model of the project uses them).

"""

import contextlib
import contextvars
import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
IMPLS = ("auto", "xla", "matmul", "winograd")

# Upper bound on the im2col / col2im buffer of one block: the batch is cut into blocks of whole
# images so that a block's patch matrix `[b * Ho * Wo, kh * kw * C]` stays under this size (one image
# per block when a single image is larger). Extra memory of a kxk convolution is therefore
# max(_BLOCK_BYTES, one image's patches) per operation, instead of kh*kw times the activation.
# Blocks of a few MiB also stay in cache between the copy that builds them and the matmul.
_BLOCK_BYTES = 8 * 2**20
# Weight gradients of convolutions with fewer input channels build channel-major patches
# (stem 7x7/2 on RGB: 2x less CPU time than the channels-last patches, 15% more at C=64).
_CHANNEL_MAJOR_BELOW = 16
# Weight-gradient contractions over at least this many pixels run as a batch of
# `_CONTRACTION_CHUNKS` contractions summed afterwards: YNNPACK then splits the work better than one
# long contraction (ResNet-50 b32: layer1 1x1 256->64 weight gradient 25.6 -> 15.7 ms, layer2.0
# 1x1 256->128 50.6 -> 27.9 ms; 4,096 pixels and fewer are faster in one piece).
_CHUNKED_CONTRACTION_PIXELS = 16384
_CONTRACTION_CHUNKS = 4
# 3x3 stride-1 convolutions with fewer input channels stay on XLA's convolution under 'auto'.
_WINOGRAD_MIN_CHANNELS = 64


def _pair(value) -> tuple[int, int]:
  return (value, value) if isinstance(value, int) else tuple(value)


class Geometry(NamedTuple):
  """A convolution's static shape parameters (hashable: a `custom_vjp` nondiff argument)."""
  kernel: tuple[int, int]
  strides: tuple[int, int]
  padding: tuple[int, int]
  dilation: tuple[int, int]

  @property
  def pointwise(self) -> bool:
    return self.kernel == (1, 1)

  def out_size(self, size: tuple[int, int]) -> tuple[int, int]:
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                 zip(size, self.kernel, self.strides, self.padding, self.dilation))


class _Plan(NamedTuple):
  """How each of the three products is computed: 'xla' or 'matmul'."""
  forward: str
  input_grad: str
  weight_grad: str


# ---------------------------------------------------------------------------------------------
# XLA formulations (JAX's own convolution and its transposes).


def _forward_xla(x, kernel, geo: Geometry):
  (ph, pw) = geo.padding
  return lax.conv_general_dilated(
      x, kernel, window_strides=geo.strides, padding=((ph, ph), (pw, pw)),
      rhs_dilation=geo.dilation, dimension_numbers=_DIMENSION_NUMBERS)


def _input_grad_xla(g, kernel, geo: Geometry, in_shape):
  x_spec = jax.ShapeDtypeStruct(in_shape, g.dtype)
  transpose = jax.linear_transpose(lambda x: _forward_xla(x, kernel, geo), x_spec)
  return transpose(g)[0]


def _weight_grad_xla(x, g, geo: Geometry, kernel_shape):
  kernel_spec = jax.ShapeDtypeStruct(kernel_shape, g.dtype)
  transpose = jax.linear_transpose(lambda kernel: _forward_xla(x, kernel, geo), kernel_spec)
  return transpose(g)[0]


# ---------------------------------------------------------------------------------------------
# Matmul formulations.


def _batch_blocks(batch: int, bytes_per_image: int) -> int:
  """Largest divisor of `batch` whose block of patches fits `_BLOCK_BYTES` (at least 1)."""
  limit = max(1, _BLOCK_BYTES // max(1, bytes_per_image))
  return max(d for d in range(1, batch + 1) if batch % d == 0 and d <= limit)


def _map_blocks(fn, block: int, *arrays):
  """`fn` over batch blocks of `arrays` (leading axis), results concatenated on the batch axis."""
  batch = arrays[0].shape[0]
  if block == batch:
    return fn(*arrays)
  blocked = [a.reshape(batch // block, block, *a.shape[1:]) for a in arrays]
  out = lax.map(lambda args: fn(*args), blocked)
  return out.reshape(batch, *out.shape[2:])


def _sum_blocks(fn, block: int, *arrays):
  """Sum of `fn` over batch blocks of `arrays`, accumulated in a loop carry."""
  batch = arrays[0].shape[0]
  if block == batch:
    return fn(*arrays)
  blocked = [a.reshape(batch // block, block, *a.shape[1:]) for a in arrays]
  init = jax.eval_shape(fn, *[a[0] for a in blocked])
  step = lambda total, args: (total + fn(*args), None)
  return lax.scan(step, jnp.zeros(init.shape, init.dtype), blocked)[0]


def _subsample(x, geo: Geometry, out_hw):
  """The input pixels a 1x1 convolution reads: `[B, H, W, C] -> [B, Ho, Wo, C]`."""
  (ph, pw), (sh, sw) = geo.padding, geo.strides
  if ph or pw:
    x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
  ho, wo = out_hw
  return lax.slice(x, (0, 0, 0, 0), (x.shape[0], (ho - 1) * sh + 1, (wo - 1) * sw + 1, x.shape[3]),
                   (1, sh, sw, 1))


def _unsubsample(dxs, geo: Geometry, in_hw):
  """Transpose of `_subsample`: scatter `[B, Ho, Wo, C]` back to `[B, H, W, C]` (zeros elsewhere)."""
  config = [(0, 0, 0)]
  for n, no, s, p in zip(in_hw, dxs.shape[1:3], geo.strides, geo.padding):
    config.append((-p, n + p - (no - 1) * s - 1, s - 1))  # negative edges crop the padding
  config.append((0, 0, 0))
  return lax.pad(dxs, jnp.zeros((), dxs.dtype), config)


def taps(x, geo: Geometry, out_hw, pad_value=0.0) -> list:
  """The kh*kw strided views a window reads, in HWIO kernel order: each `[B, Ho, Wo, C]`.

  `pad_value` fills the padding (max pooling pads with -inf).
  """
  (ph, pw), (sh, sw), (dh, dw) = geo.padding, geo.strides, geo.dilation
  xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=pad_value)
  ho, wo = out_hw
  views = []
  for i in range(geo.kernel[0]):
    for j in range(geo.kernel[1]):
      start = (0, i * dh, j * dw, 0)
      limit = (x.shape[0], i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, x.shape[3])
      views.append(lax.slice(xp, start, limit, (1, sh, sw, 1)))
  return views


def _patches(x, geo: Geometry, out_hw):
  """im2col: `[B, H, W, C] -> [B, Ho, Wo, kh*kw*C]`, taps in HWIO kernel order."""
  return jnp.concatenate(taps(x, geo, out_hw), axis=-1)


def _patches_channel_major(x, geo: Geometry, out_hw):
  """im2col transposed: `[B, H, W, C] -> [kh*kw*C, B*Ho*Wo]`, rows in HWIO kernel order.

  For few input channels (the RGB stem): stacking whole tap planes on a major axis copies long
  runs, where the channels-last concatenation moves C floats at a time.
  """
  (ph, pw), (sh, sw), (dh, dw) = geo.padding, geo.strides, geo.dilation
  xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0))).transpose(3, 0, 1, 2)
  ho, wo = out_hw
  taps = []
  for i in range(geo.kernel[0]):
    for j in range(geo.kernel[1]):
      start = (0, 0, i * dh, j * dw)
      limit = (x.shape[3], x.shape[0], i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1)
      taps.append(lax.slice(xp, start, limit, (1, 1, sh, sw)))
  return jnp.stack(taps).reshape(-1, x.shape[0] * ho * wo)


def col2im(cols, geo: Geometry, in_hw):
  """Transpose of `_patches`: `[B, Ho, Wo, kh*kw*C] -> [B, H, W, C]`, overlapping taps summed."""
  kh, kw = geo.kernel
  channels = cols.shape[-1] // (kh * kw)
  cols = cols.reshape(*cols.shape[:3], kh * kw, channels)
  total = None
  for i in range(kh):
    for j in range(kw):
      config = [(0, 0, 0)]
      for n, no, s, p, d, k in zip(in_hw, cols.shape[1:3], geo.strides, geo.padding, geo.dilation,
                                   (i, j)):
        low = k * d - p
        config.append((low, n - low - (no - 1) * s - 1, s - 1))
      config.append((0, 0, 0))
      tap = lax.pad(cols[:, :, :, i * kw + j], jnp.zeros((), cols.dtype), config)
      total = tap if total is None else total + tap
  return total


def _forward_matmul(x, kernel, geo: Geometry):
  out_hw = geo.out_size(x.shape[1:3])
  if geo.pointwise:
    return jnp.einsum("bhwc,co->bhwo", _subsample(x, geo, out_hw), kernel[0, 0])
  kernel_2d = kernel.reshape(-1, kernel.shape[-1])
  per_image = out_hw[0] * out_hw[1] * kernel_2d.shape[0] * x.dtype.itemsize
  block = _batch_blocks(x.shape[0], per_image)
  return _map_blocks(lambda xb: _patches(xb, geo, out_hw) @ kernel_2d, block, x)


def _input_grad_matmul(g, kernel, geo: Geometry, in_shape):
  in_hw = in_shape[1:3]
  if geo.pointwise:
    return _unsubsample(jnp.einsum("bhwo,co->bhwc", g, kernel[0, 0]), geo, in_hw)
  kernel_2d = kernel.reshape(-1, kernel.shape[-1])
  per_image = g.shape[1] * g.shape[2] * kernel_2d.shape[0] * g.dtype.itemsize
  block = _batch_blocks(g.shape[0], per_image)
  return _map_blocks(lambda gb: col2im(gb @ kernel_2d.T, geo, in_hw), block, g)


def _contract_pixels(a, b):
  """`sum_n a[n, i] b[n, j]` -> `[i, j]` over all leading axes of `[..., I]` and `[..., J]` arrays.

  XLA:CPU materialises the left operand transposed (pixels minor) for this dot; that copy is cheap
  when it is the narrower operand, and very slow when it is the wider one fused into its producer
  (a BatchNorm backward writing 4x more floats transposed: 200 ms instead of 110 ms at layer1).
  Many pixels: a batch of `_CONTRACTION_CHUNKS` contractions, summed.
  """
  if a.shape[-1] > b.shape[-1]:
    return _contract_pixels(b, a).T
  a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
  pixels = a.shape[0]
  if pixels >= _CHUNKED_CONTRACTION_PIXELS and pixels % _CONTRACTION_CHUNKS == 0:
    chunked = lambda m: m.reshape(_CONTRACTION_CHUNKS, pixels // _CONTRACTION_CHUNKS, m.shape[1])
    return jnp.einsum("cpi,cpj->cij", chunked(a), chunked(b)).sum(0)
  return a.T @ b


def _weight_grad_matmul(x, g, geo: Geometry, kernel_shape):
  out_hw = g.shape[1:3]
  if geo.pointwise:
    return _contract_pixels(_subsample(x, geo, out_hw), g).reshape(kernel_shape)
  per_image = out_hw[0] * out_hw[1] * kernel_shape[0] * kernel_shape[1] * x.shape[3] * x.dtype.itemsize
  block = _batch_blocks(x.shape[0], per_image)
  if x.shape[3] < _CHANNEL_MAJOR_BELOW:
    grad = _sum_blocks(
        lambda xb, gb: _patches_channel_major(xb, geo, out_hw) @ gb.reshape(-1, gb.shape[3]),
        block, x, g)
    return grad.reshape(kernel_shape)
  grad = _sum_blocks(lambda xb, gb: _contract_pixels(_patches(xb, geo, out_hw), gb), block, x, g)
  return grad.reshape(kernel_shape)


# ---------------------------------------------------------------------------------------------
# Winograd formulation F(4x4, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray, "Fast Algorithms
# for Convolutional Neural Networks", CVPR 2016). Each 4x4 output tile is
# A^T [(G k G^T) * (B^T d B)] A over its 6x6 input tile d: after the transforms, one batch of 36
# matmuls over the channels does 36 multiply-adds per 16 outputs where the direct convolution does
# 144 (4x fewer). The transforms are sums of strided slices that XLA fuses into a few loops. Extra
# memory: the transformed input and output, 2.25x the input and the output. Rounding: relative
# error ~1e-5 against the direct float32 sum (~1e-6), the usual price of F(4x4, 3x3) (cuDNN's
# default float32 algorithm on GPUs); float32 only, other dtypes keep the direct paths.

_WINOGRAD_TILE = 4  # outputs per tile side; input tiles are _WINOGRAD_TILE + 2 = 6 wide
# Interpolation points 0, +-1, +-2 and infinity (the paper's F(4, 3) matrices).
_WINOGRAD_BT = np.array([[4, 0, -5, 0, 1, 0],
                         [0, -4, -4, 1, 1, 0],
                         [0, 4, -4, -1, 1, 0],
                         [0, -2, -1, 2, 1, 0],
                         [0, 2, -1, -2, 1, 0],
                         [0, 4, 0, -5, 0, 1]], np.float64)
_WINOGRAD_G = np.array([[1 / 4, 0, 0],
                        [-1 / 6, -1 / 6, -1 / 6],
                        [-1 / 6, 1 / 6, -1 / 6],
                        [1 / 24, 1 / 12, 1 / 6],
                        [1 / 24, -1 / 12, 1 / 6],
                        [0, 0, 1]], np.float64)
_WINOGRAD_AT = np.array([[1, 1, 1, 1, 1, 0],
                         [0, 1, -1, 2, -2, 0],
                         [0, 1, 1, 4, 4, 0],
                         [0, 1, -1, 8, -8, 1]], np.float64)
# Kernel transform of a flattened [3 * 3, ...] kernel: row (p, q) is G[p, i] G[q, j] over (i, j).
_WINOGRAD_KERNEL_MATRIX = np.kron(_WINOGRAD_G, _WINOGRAD_G).astype(np.float32)


def winograd_applies(geo: Geometry, dtype) -> bool:
  """Whether F(4x4, 3x3) computes this convolution: 3x3, stride 1, no dilation, padding <= 2,
  float32."""
  return (geo.kernel == (3, 3) and geo.strides == (1, 1) and geo.dilation == (1, 1)
          and max(geo.padding) <= 2 and jnp.dtype(dtype) == jnp.float32)


def _combine(coefficients, terms):
  """`sum_i coefficients[i] * terms[i]` without the zero terms: one loop for XLA to fuse."""
  total = None
  for c, term in zip(coefficients, terms):
    if c == 0:
      continue
    term = term if c == 1 else -term if c == -1 else term * np.float32(c)
    total = term if total is None else total + term
  return total


class _TileGrid(NamedTuple):
  batch: int
  rows: int  # output tiles down
  cols: int  # output tiles across
  out_hw: tuple[int, int]


def _winograd_input(x, padding) -> tuple[Any, _TileGrid]:
  """`B^T d B` of every 6x6 input tile (tiles step 4 and overlap by 2): `[N, H, W, C]` ->
  `[36, N * rows * cols, C]`, transformed along H, then along W."""
  m, a = _WINOGRAD_TILE, _WINOGRAD_TILE + 2
  n, h, w, c = x.shape
  (ph, pw) = padding
  out_hw = (h + 2 * ph - 2, w + 2 * pw - 2)
  rows, cols = -(-out_hw[0] // m), -(-out_hw[1] // m)
  # Zeros below and right complete the last tiles; their outputs are cropped.
  xp = jnp.pad(x, ((0, 0), (ph, rows * m + 2 - h - ph), (pw, cols * m + 2 - w - pw), (0, 0)))
  tile_rows = [lax.slice_in_dim(xp, i, i + (rows - 1) * m + 1, m, axis=1) for i in range(a)]
  by_rows = jnp.stack([_combine(_WINOGRAD_BT[p], tile_rows) for p in range(a)])
  tile_cols = [lax.slice_in_dim(by_rows, j, j + (cols - 1) * m + 1, m, axis=3) for j in range(a)]
  tiles = jnp.stack([_combine(_WINOGRAD_BT[q], tile_cols) for q in range(a)], axis=1)
  return tiles.reshape(a * a, n * rows * cols, c), _TileGrid(n, rows, cols, out_hw)


def _winograd_kernel(kernel):
  """`G k G^T`: `[3, 3, Cin, Cout]` -> `[36, Cin, Cout]`."""
  flat = kernel.reshape(9, -1)
  return (_WINOGRAD_KERNEL_MATRIX @ flat).reshape(-1, *kernel.shape[2:])


def _winograd_output(products, grid: _TileGrid):
  """`A^T M A` of every tile: `[36, N * rows * cols, Cout]` -> `[N, Ho, Wo, Cout]`."""
  m, a = _WINOGRAD_TILE, _WINOGRAD_TILE + 2
  products = products.reshape(a, a, grid.batch, grid.rows, grid.cols, -1)
  by_rows = [_combine(_WINOGRAD_AT[r], list(products)) for r in range(m)]
  # Stacked straight into [N, rows, 4, cols, 4, Cout] (row-major image order), no transpose pass.
  out = jnp.stack([jnp.stack([_combine(_WINOGRAD_AT[s], list(row)) for s in range(m)], axis=3)
                   for row in by_rows], axis=2)
  out = out.reshape(grid.batch, grid.rows * m, grid.cols * m, -1)
  return out[:, :grid.out_hw[0], :grid.out_hw[1]]


def _winograd_output_transpose(g, grid: _TileGrid):
  """Transpose of `_winograd_output`: `[N, Ho, Wo, Cout]` -> `[36, N * rows * cols, Cout]`."""
  m, a = _WINOGRAD_TILE, _WINOGRAD_TILE + 2
  n, ho, wo, cout = g.shape
  g = jnp.pad(g, ((0, 0), (0, grid.rows * m - ho), (0, grid.cols * m - wo), (0, 0)))
  g = g.reshape(n, grid.rows, m, grid.cols, m, cout)
  # Two stacked stages as in `_winograd_input` (36 separate sums were 1.2-1.4x slower).
  by_rows = jnp.stack([_combine(_WINOGRAD_AT[:, p], [g[:, :, r] for r in range(m)])
                       for p in range(a)])
  out = jnp.stack([_combine(_WINOGRAD_AT[:, q], [by_rows[:, :, :, :, s] for s in range(m)])
                   for q in range(a)], axis=1)
  return out.reshape(a * a, n * grid.rows * grid.cols, cout)


def _forward_winograd(x, kernel, geo: Geometry):
  tiles, grid = _winograd_input(x, geo.padding)
  return _winograd_output(jnp.einsum("tpi,tio->tpo", tiles, _winograd_kernel(kernel)), grid)


def _input_grad_winograd(g, kernel, geo: Geometry, in_shape):
  # A stride-1 convolution's input gradient is the convolution of g with the flipped kernel
  # (in/out swapped) and padding 2 - p, itself a 3x3 stride-1 convolution: same formulation.
  del in_shape  # equal to the result's shape: (Ho + 2 (2 - p) - 2) = H
  flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
  return _forward_winograd(g, flipped, geo._replace(padding=tuple(2 - p for p in geo.padding)))


def _weight_grad_winograd(x, g, geo: Geometry, kernel_shape):
  tiles, grid = _winograd_input(x, geo.padding)
  products = jnp.einsum("tpi,tpo->tio", tiles, _winograd_output_transpose(g, grid))
  return (_WINOGRAD_KERNEL_MATRIX.T @ products.reshape(products.shape[0], -1)).reshape(kernel_shape)


_FORWARD = {"xla": _forward_xla, "matmul": _forward_matmul, "winograd": _forward_winograd}
_INPUT_GRAD = {"xla": _input_grad_xla, "matmul": _input_grad_matmul,
               "winograd": _input_grad_winograd}
_WEIGHT_GRAD = {"xla": _weight_grad_xla, "matmul": _weight_grad_matmul,
                "winograd": _weight_grad_winograd}


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, geo: Geometry, plan: _Plan):
  return _FORWARD[plan.forward](x, kernel, geo)


def _conv_fwd(x, kernel, geo, plan):
  return _conv(x, kernel, geo, plan), (x, kernel)


def _conv_bwd(geo, plan, residuals, g):
  x, kernel = residuals
  return (_INPUT_GRAD[plan.input_grad](g, kernel, geo, x.shape),
          _WEIGHT_GRAD[plan.weight_grad](x, g, geo, kernel.shape))


_conv.defvjp(_conv_fwd, _conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_transpose(x, kernel, geo: Geometry, plan: _Plan, out_shape):
  """The input gradient of `_conv` (kernel `[kh, kw, out, in]` of that convolution) as a function."""
  return _INPUT_GRAD[plan.input_grad](x, kernel, geo, out_shape)


def _conv_transpose_fwd(x, kernel, geo, plan, out_shape):
  return _conv_transpose(x, kernel, geo, plan, out_shape), (x, kernel)


def _conv_transpose_bwd(geo, plan, out_shape, residuals, g):
  # Roles swap: the cotangent g is the convolution's input, x its output gradient.
  x, kernel = residuals
  return (_FORWARD[plan.forward](g, kernel, geo),
          _WEIGHT_GRAD[plan.weight_grad](g, x, geo, kernel.shape))


_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def _auto_plan(geo: Geometry, in_channels: int, dtype) -> _Plan:
  """Per-operation choice on the CPU backend, measured (benchmarks/conv_layers.py, ResNet-50 256x128
  b32, 2 cores) with the compiler options of `reid_jax.xla_options`, which every jit running the
  models uses: XLA's own convolutions, YNNPACK's dots.

  1x1: forward on XLA's convolution (neutral in the training step, 6% faster feature extraction
  at b128); both gradients as dots (XLA's 1x1 weight gradient is 1.3-2.7x slower, its strided
  input gradient 1.6-1.9x). 3x3 at stride 1 (float32, at least `_WINOGRAD_MIN_CHANNELS` input
  channels): all three products as F(4x4, 3x3) (layer3 3x3 256: forward 12 vs 25 ms, input
  gradient 13 vs 26, weight gradient 19 vs 26-46). Other kxk at stride 1: all three on XLA's
  convolution (faster than im2col: layer1 3x3 forward 28 vs 48 ms, input gradient 28 vs 35, weight
  gradient 44 vs 83). Strided kxk: forward on XLA's convolution (equal within noise); input gradient
  as col2im (XLA's lhs-dilated convolution is 2x slower: layer2 3x3/2 78 vs 37 ms; it is also the
  forward of a transposed convolution); weight gradient as matmuls (layer2 3x3/2 39 vs 50 ms),
  except with few input channels (RGB stem 7x7/2: XLA 66 vs 76 ms).
  """
  if geo.pointwise:
    return _Plan("xla", "matmul", "matmul")
  if winograd_applies(geo, dtype) and in_channels >= _WINOGRAD_MIN_CHANNELS:
    return _Plan("winograd", "winograd", "winograd")
  strided = geo.strides != (1, 1)
  return _Plan("xla", "matmul" if strided else "xla",
               "matmul" if strided and in_channels >= 16 else "xla")


# A trace-time switch scoped like Flax's own contexts: a ContextVar (per thread and per context),
# not a module-level value that other threads would see.
_PLAIN = contextvars.ContextVar("reid_jax_plain_convolutions", default=False)


@contextlib.contextmanager
def plain_convolutions():
  """Within it every convolution traced is plain `lax.conv_general_dilated` (impl 'xla'): the
  form exporters (jax2onnx, `reid_jax.export`) translate op for op; the maths is the same."""
  token = _PLAIN.set(True)
  try:
    yield
  finally:
    _PLAIN.reset(token)


def exporting() -> bool:
  """Whether `plain_convolutions` is in force."""
  return _PLAIN.get()


def _plan(impl: str, geo: Geometry, in_channels: int, dtype) -> _Plan | None:
  """None means plain `lax.conv_general_dilated` with JAX's own autodiff."""
  if impl not in IMPLS:
    raise ValueError(f"impl={impl!r}: expected one of {IMPLS}")
  if _PLAIN.get():
    return None
  if impl == "auto":
    return _auto_plan(geo, in_channels, dtype) if jax.default_backend() == "cpu" else None
  if impl == "winograd":
    return (_Plan("winograd", "winograd", "winograd") if winograd_applies(geo, dtype)
            else _plan("auto", geo, in_channels, dtype))
  return None if impl == "xla" else _Plan("matmul", "matmul", "matmul")


def conv2d(x, kernel, *, strides=1, padding=0, dilation=1, groups=1, impl="auto"):
  """PyTorch `Conv2d` maths on NHWC: x `[B, H, W, Cin]`, kernel `[kh, kw, Cin/groups, Cout]`.

  `padding` is an int or (ph, pw), applied symmetrically like PyTorch. `impl`: see module docstring.
  """
  geo = Geometry(tuple(kernel.shape[:2]), _pair(strides), _pair(padding), _pair(dilation))
  plan = _plan(impl, geo, x.shape[-1], x.dtype)
  if plan is None or groups != 1:
    (ph, pw) = geo.padding
    return lax.conv_general_dilated(
        x, kernel, window_strides=geo.strides, padding=((ph, ph), (pw, pw)),
        rhs_dilation=geo.dilation, dimension_numbers=_DIMENSION_NUMBERS, feature_group_count=groups)
  return _conv(x, kernel, geo, plan)


def conv_transpose2d(x, kernel, *, strides=1, padding=0, output_padding=0, impl="auto"):
  """PyTorch `ConvTranspose2d` maths on NHWC.

  kernel `[kh, kw, Cin, Cout]` is PyTorch's weight `[Cin, Cout, kh, kw]` transposed by (2, 3, 0, 1):
  input pixel i scatters `x[i] * kernel[k]` to output position `i * stride - padding + k`.
  Output size: `(H - 1) * stride - 2 * padding + kh + output_padding`.
  """
  kh, kw = kernel.shape[:2]
  (sh, sw), (ph, pw), (oph, opw) = _pair(strides), _pair(padding), _pair(output_padding)
  geo = Geometry((kh, kw), (sh, sw), (ph, pw), (1, 1))
  # The plan's forward runs on the Cout-channel cotangent.
  plan = _plan(impl, geo, kernel.shape[3], x.dtype)
  if plan is None:
    flipped = kernel[::-1, ::-1]  # scatter with kernel == gather with the flipped kernel
    return lax.conv_general_dilated(
        x, flipped, window_strides=(1, 1),
        padding=((kh - 1 - ph, kh - 1 - ph + oph), (kw - 1 - pw, kw - 1 - pw + opw)),
        lhs_dilation=(sh, sw), dimension_numbers=_DIMENSION_NUMBERS)
  # The transposed convolution is the input gradient of the convolution from its output space
  # (Cout channels) back to x's (Cin channels), whose HWIO kernel is `kernel` with I/O swapped.
  out_shape = (x.shape[0], (x.shape[1] - 1) * sh - 2 * ph + kh + oph,
               (x.shape[2] - 1) * sw - 2 * pw + kw + opw, kernel.shape[3])
  return _conv_transpose(x, kernel.transpose(0, 1, 3, 2), geo, plan, out_shape)


Initializer = Callable[..., Any]


class Conv(nn.Module):
  """`nn.Conv` with PyTorch padding semantics, computed by `conv2d`. Params: kernel (HWIO), bias."""

  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: int | Sequence[int] = 0
  dilation: int | Sequence[int] = 1
  groups: int = 1
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  dtype: Any = None  # computation dtype (e.g. jnp.bfloat16); params stay float32
  impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    kh, kw = _pair(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1] // self.groups, self.features))
    dtype = self.dtype or x.dtype
    y = conv2d(x.astype(dtype), kernel.astype(dtype), strides=self.strides, padding=self.padding,
               dilation=self.dilation, groups=self.groups, impl=self.impl)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,)).astype(dtype)
    return y


class ConvTranspose(nn.Module):
  """PyTorch `ConvTranspose2d` semantics, computed by `conv_transpose2d`. Params: kernel `[kh, kw, in, out]`."""

  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: int | Sequence[int] = 0
  output_padding: int | Sequence[int] = 0
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  dtype: Any = None
  impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    kh, kw = _pair(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features))
    dtype = self.dtype or x.dtype
    y = conv_transpose2d(x.astype(dtype), kernel.astype(dtype), strides=self.strides,
                         padding=self.padding, output_padding=self.output_padding, impl=self.impl)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,)).astype(dtype)
    return y
