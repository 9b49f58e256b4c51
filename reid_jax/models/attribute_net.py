"""The pretraining network: a ResNet trunk with one softmax head per pedestrian attribute.

The testbed's analog of an ImageNet classifier (docs/testbed.md): `backbone` is the trunk that
re-ID methods later import (the same module tree and names as `heads.ReIDNet`'s backbone); the
heads over pool5 are dropped after pretraining, as torchvision's `fc` is.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from reid_jax.models import heads
from reid_jax.models import resnet


class AttributeNet(nn.Module):
  """`[B, H, W, 3] -> {'pool5': [B, C], 'logits': tuple of [B, K_a]}` for attribute sizes K_a."""

  num_classes: Sequence[int]
  arch: str = "resnet_small"
  dropout_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    trunk = resnet.BACKBONES[self.arch](dtype=self.dtype, name="backbone")
    pool5 = heads.global_average_pool(trunk(x, train))
    r = nn.Dropout(self.dropout_rate)(pool5, deterministic=not train)
    logits = tuple(
        nn.Dense(k, kernel_init=heads.small_normal_init, dtype=self.dtype,
                 name=f"attribute_{i}")(r).astype(jnp.float32)
        for i, k in enumerate(self.num_classes))
    return {"pool5": pool5, "logits": logits}
