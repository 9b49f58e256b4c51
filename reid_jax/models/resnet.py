"""ResNet trunk in torchvision's layout (docs/hhl.md §3): ResNet-50 and a small ResNet for tests and CPU demos.

torchvision "v1.5" bottleneck: 1x1 -> 3x3 (carries the stride) -> 1x1 (x4 channels), each followed by
BatchNorm; the shortcut is a 1x1 conv with the block's stride + BatchNorm wherever the shape changes.
Every convolution goes through `reid_jax.models.conv.Conv` with PyTorch's symmetric padding, so
imported ImageNet weights compute exactly what they compute in PyTorch.

The forward pass stops after layer4 (docs/hhl.md §3: torchvision's avgpool and fc are unused) and returns
the feature map `[B, H/32, W/32, C]` (`[B, H/16, W/16, C]` with `last_stride=1`). Pooling and heads
live in `heads.py`; ARN (docs/arn_triplet_eval.md §1.2-§1.4) puts its own encoders on the same map, and the
draft-code variant that stops after layer3 uses `out_layer='layer3'` and `ResNetStage` copies of layer4.

Parameter tree (mirrors torchvision's state-dict keys, see `torchvision_import.py`):
  conv1/kernel, bn1/{scale,bias}, layer{1..4}/{i}/{conv1,bn1,conv2,bn2,conv3,bn3}, and in the first
  block of each stage layer{s}/0/{downsample_conv,downsample_bn}. batch_stats: the BN `mean`/`var`.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from reid_jax.errors import ReidError
from reid_jax.models import pooling
from reid_jax.models.materialize import materialize
from reid_jax.models.conv import Conv

# docs/hhl.md §3: PyTorch BatchNorm defaults (running <- 0.9 running + 0.1 batch), in Flax's convention.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# torchvision's `_resnet` init (used only when no ImageNet weights are loaded: tests, tiny configs):
# kaiming_normal_(mode='fan_out', nonlinearity='relu'), untruncated; Flax's HWIO fan_out = kh*kw*out.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

EXPANSION = 4  # bottleneck output channels = 4 x width


def batch_norm(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
  """BatchNorm2d with PyTorch's defaults; params and running statistics stay float32."""
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                      dtype=dtype, param_dtype=jnp.float32, name=name)


def relu(x):
  """ReLU whose result XLA:CPU computes once (models/materialize.py): its consumers would
  otherwise each recompute it from the BatchNorm input, along residual streams from every earlier
  block's."""
  return materialize(nn.relu(x))


def max_pool_3x3_s2(x):
  """`nn.MaxPool2d(3, stride=2, padding=1)`: the padding takes the value -inf, as in PyTorch."""
  return pooling.max_pool(x, (3, 3), (2, 2), (1, 1))


class Bottleneck(nn.Module):
  """torchvision `Bottleneck` (v1.5: stride on the 3x3 conv). `[B, H, W, Cin] -> [B, H/s, W/s, 4*width]`."""

  width: int
  strides: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(Conv, use_bias=False, kernel_init=conv_kernel_init, dtype=self.dtype)
    out_features = self.width * EXPANSION
    y = conv(self.width, 1, name="conv1")(x)
    y = relu(batch_norm(train, self.dtype, "bn1")(y))
    y = conv(self.width, 3, strides=self.strides, padding=1, name="conv2")(y)
    y = relu(batch_norm(train, self.dtype, "bn2")(y))
    y = conv(out_features, 1, name="conv3")(y)
    y = batch_norm(train, self.dtype, "bn3")(y)
    if self.strides != 1 or x.shape[-1] != out_features:
      x = conv(out_features, 1, strides=self.strides, name="downsample_conv")(x)
      x = batch_norm(train, self.dtype, "downsample_bn")(x)
    return relu(y + x.astype(y.dtype))


class ResNetStage(nn.Module):
  """torchvision `layerN`: `num_blocks` bottlenecks, the first carrying the stride. Children '0', '1', ..."""

  num_blocks: int
  width: int
  strides: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i in range(self.num_blocks):
      x = Bottleneck(self.width, self.strides if i == 0 else 1, dtype=self.dtype, name=str(i))(x, train)
    return x


class ResNet(nn.Module):
  """Bottleneck ResNet trunk: stem + layer1..layer4, no pooling, no fc.

  Attributes:
    stage_sizes: bottlenecks per stage, (3, 4, 6, 3) for ResNet-50.
    base_width: width of layer1's bottleneck (64 for ResNet-50); stage s has base_width * 2**s, and
      the stem has base_width channels.
    last_stride: stride of layer4 (docs/hhl.md §3: the default 2; 1 doubles the final map).
    out_layer: 'layer4' (default) or 'layer3' (stop early, e.g. ARN's draft-code E_I).
    dtype: computation dtype (e.g. jnp.bfloat16); parameters and BN statistics stay float32.
  """

  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  base_width: int = 64
  last_stride: int = 2
  out_layer: str = "layer4"
  dtype: Any = None

  @property
  def num_features(self) -> int:
    """Channels of the returned map (2048 for ResNet-50 at layer4)."""
    num_stages = int(self.out_layer[-1])
    return self.base_width * 2 ** (num_stages - 1) * EXPANSION

  @nn.compact
  def __call__(self, x, train: bool = False):
    """x: normalised images `[B, H, W, 3]` -> feature map `[B, H/32, W/32, num_features]` (layer4).

    With `train=True` BN uses batch statistics and updates `batch_stats` (apply with
    `mutable=['batch_stats']`); otherwise it uses the running averages.
    """
    if self.last_stride not in (1, 2):
      raise ReidError(f"model.last_stride must be 1 or 2, got {self.last_stride}")
    if self.out_layer not in ("layer3", "layer4"):
      raise ReidError(f"model.out_layer must be 'layer3' or 'layer4', got {self.out_layer!r}")
    x = Conv(self.base_width, 7, strides=2, padding=3, use_bias=False, kernel_init=conv_kernel_init,
             dtype=self.dtype, name="conv1")(x)
    x = nn.relu(batch_norm(train, self.dtype, "bn1")(x))
    x = max_pool_3x3_s2(x)
    num_stages = int(self.out_layer[-1])
    for s, num_blocks in enumerate(self.stage_sizes[:num_stages]):
      strides = 1 if s == 0 else (self.last_stride if s == 3 else 2)
      x = ResNetStage(num_blocks, self.base_width * 2 ** s, strides, dtype=self.dtype,
                      name=f"layer{s + 1}")(x, train)
    return x


ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), base_width=64)
# Tests and CPU demos (docs/design.md §7 'tiny'): one bottleneck per stage, widths 16..128 -> 512 channels
# at layer4, ~0.6 M parameters (ResNet-50: 23.5 M); same layout, strides and map sizes as ResNet-50.
SmallResNet = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), base_width=16)

BACKBONES = {"resnet50": ResNet50, "resnet_small": SmallResNet}


def build_backbone(name: str, **kwargs) -> ResNet:
  """The trunk a config names ('resnet50' or 'resnet_small'); kwargs: last_stride, dtype, out_layer, name."""
  if name not in BACKBONES:
    raise ReidError(f"model.backbone: unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
  return BACKBONES[name](**kwargs)


def backbone_num_features(name: str) -> int:
  """Channels of the layer4 map of a named trunk (2048 for 'resnet50')."""
  return build_backbone(name).num_features
