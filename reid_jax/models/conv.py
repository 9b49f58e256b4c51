"""Convolutions with PyTorch's padding semantics, shared by the ResNet, the heads and StarGAN.

Every convolution of the project goes through `conv2d` / `conv_transpose2d` so that one place
decides how it is computed: the native XLA convolution on GPU/TPU, and (issue "training speed") a
formulation whose forward and gradients run at matmul speed on the CPU backend.

Layouts: activations NHWC; kernels HWIO `[kh, kw, in/groups, out]`. Padding is explicit and
symmetric, as PyTorch's `padding=p` (XLA's 'SAME' pads stride-2 convolutions asymmetrically, which
would break imported weights).
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _pair(value) -> tuple[int, int]:
  return (value, value) if isinstance(value, int) else tuple(value)


def conv2d(x, kernel, *, strides=1, padding=0, dilation=1, groups=1):
  """PyTorch `Conv2d` maths on NHWC: x `[B, H, W, Cin]`, kernel `[kh, kw, Cin/groups, Cout]`.

  `padding` is an int or (ph, pw), applied symmetrically like PyTorch.
  """
  ph, pw = _pair(padding)
  return lax.conv_general_dilated(
      x, kernel, window_strides=_pair(strides), padding=((ph, ph), (pw, pw)),
      rhs_dilation=_pair(dilation), dimension_numbers=_DIMENSION_NUMBERS,
      feature_group_count=groups)


def conv_transpose2d(x, kernel, *, strides=1, padding=0, output_padding=0):
  """PyTorch `ConvTranspose2d` maths on NHWC.

  kernel `[kh, kw, Cin, Cout]` is PyTorch's weight `[Cin, Cout, kh, kw]` transposed by (2, 3, 0, 1):
  input pixel i scatters `x[i] * kernel[k]` to output position `i * stride - padding + k`.
  Output size: `(H - 1) * stride - 2 * padding + kh + output_padding`.
  """
  kh, kw = kernel.shape[:2]
  (sh, sw), (ph, pw), (oph, opw) = _pair(strides), _pair(padding), _pair(output_padding)
  flipped = kernel[::-1, ::-1]  # scatter with kernel == gather with the flipped kernel
  return lax.conv_general_dilated(
      x, flipped, window_strides=(1, 1),
      padding=((kh - 1 - ph, kh - 1 - ph + oph), (kw - 1 - pw, kw - 1 - pw + opw)),
      lhs_dilation=(sh, sw), dimension_numbers=_DIMENSION_NUMBERS)


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

  @nn.compact
  def __call__(self, x):
    kh, kw = _pair(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1] // self.groups, self.features))
    dtype = self.dtype or x.dtype
    y = conv2d(x.astype(dtype), kernel.astype(dtype), strides=self.strides, padding=self.padding,
               dilation=self.dilation, groups=self.groups)
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

  @nn.compact
  def __call__(self, x):
    kh, kw = _pair(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features))
    dtype = self.dtype or x.dtype
    y = conv_transpose2d(x.astype(dtype), kernel.astype(dtype), strides=self.strides,
                         padding=self.padding, output_padding=self.output_padding)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,)).astype(dtype)
    return y
