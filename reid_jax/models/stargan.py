"""StarGAN generator and discriminator of HHL's camera-style transfer (docs/hhl.md §10.2, §10.3).

The architecture is yunjey's StarGAN as forked by HHL ("stargan4reid"): the generator maps an image in
[-1, 1] plus a target-camera one-hot to an image in [-1, 1]; the discriminator returns a PatchGAN
real/fake map and camera logits from a rectangular (2:1) classification kernel.

Initialisation follows PyTorch's defaults (docs/hhl.md §10.2): weights and biases U(-1/sqrt(fan_in),
1/sqrt(fan_in)). `init_scheme='torch_0.4'` (the reference code's PyTorch) draws the instance-norm scale from
U(0, 1) and takes a transposed conv's fan_in from its input channels; `init_scheme='torch_1.x'` uses scale 1
and the output channels, as PyTorch >= 1.0 does.

`load_torch_generator(state_dict)` imports a reference generator's weights (yunjey key naming,
`main.<i>.weight`, ...), so published checkpoints can be used for generation.
"""

import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from reid_jax.errors import ReidError
from reid_jax.models.conv import Conv, ConvTranspose

INIT_SCHEMES = ("torch_0.4", "torch_1.x")


def torch_uniform(fan_in: int):
  """PyTorch's default conv weight/bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _conv(features, kernel_size, in_features, *, strides=1, padding=0, use_bias=False, impl="auto",
          name=None):
  """A `Conv` initialised as PyTorch's `Conv2d`: fan_in = in_channels * kh * kw."""
  kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
  init = torch_uniform(in_features * kh * kw)
  return Conv(features, (kh, kw), strides=strides, padding=padding, use_bias=use_bias,
              kernel_init=init, bias_init=init, impl=impl, name=name)


class InstanceNorm(nn.Module):
  """Instance norm with affine scale/shift and no running state (docs/hhl.md §10.2, §12 row 21).

  Normalises each sample and channel over H x W with the biased variance, eps 1e-5, as PyTorch's
  `InstanceNorm2d` does in train mode (the reference never switches G to eval mode).
  """

  init_scheme: str = "torch_0.4"
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x):
    """x `[B, H, W, C]` -> `[B, H, W, C]`."""
    features = x.shape[-1]
    if self.init_scheme == "torch_0.4":  # PyTorch < 1.0 initialised the affine weight U(0, 1), docs/hhl.md §10.2
      scale_init = nn.initializers.uniform(scale=1.0)
    else:
      scale_init = nn.initializers.ones_init()
    scale = self.param("scale", scale_init, (features,))
    bias = self.param("bias", nn.initializers.zeros_init(), (features,))
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class ResidualBlock(nn.Module):
  """[Conv 3x3; IN; ReLU; Conv 3x3; IN] + identity, no ReLU after the sum (docs/hhl.md §10.2 rows 4-9)."""

  init_scheme: str = "torch_0.4"
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1]
    h = _conv(features, 3, features, padding=1, impl=self.conv_impl, name="conv1")(x)
    h = nn.relu(InstanceNorm(self.init_scheme, name="norm1")(h))
    h = _conv(features, 3, features, padding=1, impl=self.conv_impl, name="conv2")(h)
    h = InstanceNorm(self.init_scheme, name="norm2")(h)
    return x + h


class Generator(nn.Module):
  """StarGAN generator G(x, c) (docs/hhl.md §10.2).

  Attributes:
    num_cameras: C, the size of the camera one-hot (`c_dim`: Market 6, Duke 8).
    conv_dim: width of the first layer (64 in the reference; smaller for CPU tests).
    repeat_num: number of residual blocks (6 in the reference).
    init_scheme: 'torch_0.4' | 'torch_1.x', see the module docstring.
    conv_impl: `reid_jax.models.conv` implementation ('auto' | 'xla' | 'matmul').
  """

  num_cameras: int
  conv_dim: int = 64
  repeat_num: int = 6
  init_scheme: str = "torch_0.4"
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, camera_onehot):
    """x `[B, H, W, 3]` in [-1, 1], camera_onehot `[B, C]` -> `[B, H, W, 3]` in [-1, 1].

    H and W must be divisible by 4.
    """
    if self.init_scheme not in INIT_SCHEMES:
      raise ReidError(f"stargan init {self.init_scheme!r}: choose one of {', '.join(INIT_SCHEMES)}")
    b, h, w, _ = x.shape
    # The one-hot as constant planes concatenated along channels (3 + C inputs).
    planes = jnp.broadcast_to(camera_onehot[:, None, None, :].astype(x.dtype),
                              (b, h, w, camera_onehot.shape[-1]))
    y = jnp.concatenate([x, planes], axis=-1)
    dim = self.conv_dim
    y = _conv(dim, 7, y.shape[-1], padding=3, impl=self.conv_impl, name="stem_conv")(y)
    y = nn.relu(InstanceNorm(self.init_scheme, name="stem_norm")(y))
    for i in range(2):
      y = _conv(dim * 2, 4, dim, strides=2, padding=1, impl=self.conv_impl,
                name=f"down{i}_conv")(y)
      y = nn.relu(InstanceNorm(self.init_scheme, name=f"down{i}_norm")(y))
      dim *= 2
    for i in range(self.repeat_num):
      y = ResidualBlock(self.init_scheme, self.conv_impl, name=f"res{i}")(y)
    for i in range(2):
      # PyTorch 0.4 took a transposed conv's fan_in from in_channels; >= 1.0 from out_channels.
      fan_in = (dim if self.init_scheme == "torch_0.4" else dim // 2) * 16
      y = ConvTranspose(dim // 2, 4, strides=2, padding=1, use_bias=False,
                        kernel_init=torch_uniform(fan_in), impl=self.conv_impl,
                        name=f"up{i}_conv")(y)
      y = nn.relu(InstanceNorm(self.init_scheme, name=f"up{i}_norm")(y))
      dim //= 2
    y = _conv(3, 7, dim, padding=3, impl=self.conv_impl, name="out_conv")(y)
    return jnp.tanh(y)


class Discriminator(nn.Module):
  """PatchGAN discriminator with an auxiliary camera classifier (docs/hhl.md §10.3).

  Attributes:
    num_cameras: C.
    image_size: input height; inputs are `image_size x image_size/2` (the HHL fork's 2:1 kernel).
    conv_dim: width of the first conv (64).
    repeat_num: number of stride-2 convs (6).
    conv_impl: `reid_jax.models.conv` implementation ('auto' | 'xla' | 'matmul').
  """

  num_cameras: int
  image_size: int = 256
  conv_dim: int = 64
  repeat_num: int = 6
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    """x `[B, image_size, image_size/2, 3]` -> (src `[B, h, w]` patch map, cls logits `[B, C]`)."""
    if x.shape[1] != self.image_size or x.shape[2] * 2 != self.image_size:
      raise ValueError(f"discriminator built for {self.image_size}x{self.image_size // 2} inputs, "
                       f"got {x.shape[1]}x{x.shape[2]}")
    dim, in_dim = self.conv_dim, x.shape[-1]
    h = x
    for i in range(self.repeat_num):
      h = _conv(dim, 4, in_dim, strides=2, padding=1, use_bias=True, impl=self.conv_impl,
                name=f"conv{i}")(h)
      h = nn.leaky_relu(h, negative_slope=0.01)
      in_dim, dim = dim, dim * 2
    out_src = _conv(1, 3, in_dim, padding=1, impl=self.conv_impl, name="src")(h)
    # docs/hhl.md §10.3: rectangular kernel (image_size/2^r, image_size/2^(r+1)), (4, 2) at 256x128.
    kernel = (self.image_size >> self.repeat_num, self.image_size >> (self.repeat_num + 1))
    out_cls = _conv(self.num_cameras, kernel, in_dim, impl=self.conv_impl, name="cls")(h)
    return out_src[..., 0], out_cls.reshape(out_cls.shape[0], -1)


def count_params(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


# ---------------------------------------------------------------------------------------------------
# Import of a PyTorch (yunjey / stargan4reid) generator state dict.


def _torch_generator_layout(repeat_num: int) -> list[tuple[str, str, str]]:
  """(torch prefix, flax module path, kind) in the order of yunjey's `Generator.main` Sequential."""
  layout = [("main.0", "stem_conv", "conv"), ("main.1", "stem_norm", "norm")]
  index = 3  # main.2 is the ReLU
  for i in range(2):
    layout += [(f"main.{index}", f"down{i}_conv", "conv"), (f"main.{index + 1}", f"down{i}_norm", "norm")]
    index += 3
  for i in range(repeat_num):
    prefix = f"main.{index}.main"
    layout += [(f"{prefix}.0", f"res{i}/conv1", "conv"), (f"{prefix}.1", f"res{i}/norm1", "norm"),
               (f"{prefix}.3", f"res{i}/conv2", "conv"), (f"{prefix}.4", f"res{i}/norm2", "norm")]
    index += 1
  for i in range(2):
    layout += [(f"main.{index}", f"up{i}_conv", "conv_transpose"),
               (f"main.{index + 1}", f"up{i}_norm", "norm")]
    index += 3
  layout.append((f"main.{index}", "out_conv", "conv"))
  return layout


def load_torch_generator(state_dict: Mapping[str, Any], repeat_num: int = 6) -> dict:
  """Generator params from a PyTorch StarGAN `G.state_dict()` (values: tensors or numpy arrays).

  Conv weights `[out, in, kh, kw]` become HWIO kernels; transposed-conv weights `[in, out, kh, kw]`
  become `[kh, kw, in, out]` (the layout `conv_transpose2d` expects). The instance norms' running
  statistics are ignored (docs/hhl.md §12 row 21). Returns `{'params': ...}` for `Generator.apply`.
  """
  def array(key):
    if key not in state_dict:
      raise ReidError(f"generator state dict lacks {key!r}: expected yunjey StarGAN key naming "
                      f"with {repeat_num} residual blocks")
    value = state_dict[key]
    value = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    return jnp.asarray(value, jnp.float32)

  params: dict = {}
  for torch_prefix, flax_path, kind in _torch_generator_layout(repeat_num):
    node = params
    for part in flax_path.split("/"):
      node = node.setdefault(part, {})
    if kind == "norm":
      node["scale"] = array(f"{torch_prefix}.weight")
      node["bias"] = array(f"{torch_prefix}.bias")
    elif kind == "conv":
      node["kernel"] = jnp.transpose(array(f"{torch_prefix}.weight"), (2, 3, 1, 0))
    else:
      node["kernel"] = jnp.transpose(array(f"{torch_prefix}.weight"), (2, 3, 0, 1))
  return {"params": params}
