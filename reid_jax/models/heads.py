"""The IDE re-ID network of HHL and the baseline (docs/hhl.md §3, §3.1, §9): trunk + pool5 + FC heads.

```
layer4 map ─► global average pool = pool5 [B, 2048]
pool5 ─► FC-1024 `feat` ─► BN-1024 `feat_bn` ─► ReLU = r [B, 1024]
r ─► FC-128 `triplet`                       = embedding   (docs/hhl.md §3: before dropout; none in §9's baseline)
r ─► Dropout(0.5) ─► FC-#ID `classifier`   = logits
```

Top-level parameter names `backbone`, `feat`, `feat_bn`, `triplet`, `classifier` are what the optimiser
labelling keys on (docs/hhl.md §6: trunk / embedding layers / classifier). At test time the descriptor is
the L2-normalised pool5 (`test_descriptor`); FC-1024 and FC-128 are never used for retrieval.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from reid_jax.models import resnet

# docs/hhl.md §3.1. FC-1024: kaiming_normal_(mode='fan_out'), gain sqrt(2), untruncated. A PyTorch
# weight [1024, 2048] has fan_out 1024; a Flax kernel [2048, 1024] has fan_out 1024 too.
feat_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# docs/hhl.md §3.1: FC-128 and the classifier: Normal(0, 0.001^2), bias 0.
small_normal_init = nn.initializers.normal(stddev=0.001)

L2_EPSILON = 1e-12  # F.normalize's eps (docs/hhl.md §3)


def global_average_pool(feature_map):
  """`[B, H, W, C] -> [B, C]` float32 (pool5), averaged over the full map (docs/hhl.md §3)."""
  return jnp.mean(feature_map.astype(jnp.float32), axis=(1, 2))


def test_descriptor(pool5):
  """L2-normalised pool5 `[B, C] -> [B, C]`, like `F.normalize(x, p=2, dim=1, eps=1e-12)` (docs/hhl.md §3)."""
  pool5 = jnp.asarray(pool5, jnp.float32)
  norm = jnp.linalg.norm(pool5, axis=-1, keepdims=True)
  return pool5 / jnp.maximum(norm, L2_EPSILON)


class ReIDNet(nn.Module):
  """HHL's `resnet50(num_features=1024, dropout=0.5, num_classes=M_s, triplet_features=128)`.

  Attributes:
    num_classes: source training identities (FC-#ID outputs); 0 drops the classifier (logits None).
    arch: trunk name for `resnet.build_backbone` ('resnet50', 'resnet_small').
    num_features: FC-1024 width; 0 drops FC + BN + ReLU so r = pool5 (open-reid's `has_embedding`).
    triplet_features: FC-128 width; 0 drops it (the baseline, docs/hhl.md §9) and `embedding` is None.
    dropout_rate: dropout before the classifier (docs/hhl.md §3: 0.5), active only with train=True and an
      rng named 'dropout'.
    last_stride: layer4 stride (docs/hhl.md §3: 2).
    dtype: computation dtype of trunk and heads; parameters, BN statistics, pool5 and outputs float32.
  """

  num_classes: int
  arch: str = "resnet50"
  num_features: int = 1024
  triplet_features: int = 128
  dropout_rate: float = 0.5
  last_stride: int = 2
  dtype: Any = None

  def setup(self):
    self.backbone = resnet.build_backbone(self.arch, last_stride=self.last_stride, dtype=self.dtype)
    if self.num_features > 0:
      self.feat = nn.Dense(self.num_features, kernel_init=feat_kernel_init,
                           bias_init=nn.initializers.zeros_init(), dtype=self.dtype)
      # BatchNorm1d(1024): gamma 1, beta 0, running mean 0 / var 1 (Flax defaults), PyTorch momentum/eps.
      self.feat_bn = nn.BatchNorm(momentum=resnet.BN_MOMENTUM, epsilon=resnet.BN_EPSILON,
                                  dtype=self.dtype, param_dtype=jnp.float32)
    if self.triplet_features > 0:
      self.triplet = nn.Dense(self.triplet_features, kernel_init=small_normal_init,
                              bias_init=nn.initializers.zeros_init(), dtype=self.dtype)
    if self.num_classes > 0:
      self.drop = nn.Dropout(self.dropout_rate)
      self.classifier = nn.Dense(self.num_classes, kernel_init=small_normal_init,
                                 bias_init=nn.initializers.zeros_init(), dtype=self.dtype)

  def pool5(self, x, train: bool = False):
    """Normalised images `[B, H, W, 3]` -> pool5 `[B, C]` float32 (trunk only; the feature-extraction path)."""
    return global_average_pool(self.backbone(x, train))

  def __call__(self, x, train: bool = False, features_only: bool = False):
    """x: normalised images `[B, H, W, 3]` float32.

    Returns `{'pool5': [B, 2048], 'embedding': [B, 128] or None, 'logits': [B, num_classes] or None}`
    (all float32), or `{'pool5': ...}` alone when `features_only` (heads skipped, as HHL's 'pool5'
    output mode; `test_descriptor` then normalises it). With `train=True`, BN layers use batch
    statistics and update `batch_stats` (apply with `mutable=['batch_stats']`) and dropout needs
    `rngs={'dropout': key}`.
    """
    pool5 = self.pool5(x, train)
    if features_only:
      return {"pool5": pool5}
    r = pool5
    if self.num_features > 0:
      r = nn.relu(self.feat_bn(self.feat(r), use_running_average=not train))
    embedding = None
    if self.triplet_features > 0:
      embedding = self.triplet(r).astype(jnp.float32)  # docs/hhl.md §3: from r, before dropout
    logits = None
    if self.num_classes > 0:
      logits = self.classifier(self.drop(r, deterministic=not train)).astype(jnp.float32)
    return {"pool5": pool5, "embedding": embedding, "logits": logits}


def build_reid_net(model_config, num_classes: int) -> ReIDNet:
  """`ReIDNet` from a config's `model` block (ConfigDict or the dict saved in config.json)."""
  get = model_config.get
  dtype = get("dtype", "float32")
  return ReIDNet(
      num_classes=int(num_classes), arch=get("arch"), num_features=int(get("num_features")),
      triplet_features=int(get("triplet_features")), dropout_rate=float(get("dropout_rate")),
      last_stride=int(get("last_stride")), dtype=None if dtype == "float32" else dtype)
