"""ARN, the Adaptation and Re-Identification Network (docs/arn_triplet_eval.md §1), as we read it (§1.2).

```
images ─► E_I `backbone` (ResNet stem..layer4, BN frozen) ─► X [B, h, w, C]      (h, w) = map_size
X ─► E_C ─► e_c [B, width]          shared encoder, both domains
X ─► E_S | E_T ─► e_p [B, width]    private encoder of the source | the target (absent in `rec`, `rec_sup`)
e_c + e_p ─► D_C ─► X̂ [B, h, w, C]  shared decoder; the reconstruction target is X (§1.1)
e_c ─► C_S ─► logits [B, #ids]      source only
```

Encoders (§1.2 table): conv6 (kernel = the whole map, VALID) BN ReLU Dropout, conv7 1x1 BN ReLU
Dropout, conv8 1x1 [BN] [ReLU]; conv6 sees the full map, so the code is a 1x1 map, squeezed to a
vector. D_C mirrors them: ConvT 1x1 BN ReLU, ConvT 1x1 BN ReLU, ConvT (kernel = map) from 1x1 back
to the map, ReLU (X is post-ReLU), no BN on the output.

BatchNorm (§1.2, §1.4 item 5): E_I always runs in eval mode, so its running statistics never
change whatever `train` says; `train` drives the BN and dropout of E_C, E_S, E_T, D_C and C_S.
Per-domain running statistics are the caller's business (one `apply` per domain, each with its
own `batch_stats` tree).

Top-level module names `backbone`, `E_C`, `E_S`, `E_T`, `D_C`, `C_S` are what the optimiser groups
(§1.2: E_I 1e-7, encoders and decoder 1e-3, C_S 2e-3) and `torchvision_import.merge_backbone` key on.
Size of the `paper` model (§1.2): each encoder ≈ 213.9 M parameters, D_C ≈ 214 M, ≈ 0.88 G in all.

`ARNDraft` (end of the file) is the first author's draft code instead (§1.3): layer3 trunk, layer4
copies as encoders, pooled codes, an RGB image decoder; same interface, `merge_draft_trunk` loads it.
"""

from typing import Any

import flax
import flax.linen as nn
import jax.numpy as jnp

from reid_jax.errors import ReidError
from reid_jax.models import resnet, torchvision_import
from reid_jax.models.conv import Conv, ConvTranspose

# §1.4 item 8: He-normal for conv and ConvT, untruncated as PyTorch's kaiming_normal_ (fan_in =
# kh * kw * in-channels of the HWIO / [kh, kw, in, out] kernel); zero biases.
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
zeros = nn.initializers.zeros_init()
# §1.4 item 8: the classifier's kernel normal(0, 0.001), bias 0 (as HHL's, heads.py).
classifier_kernel_init = nn.initializers.normal(stddev=0.001)

DOMAINS = ("source", "target")


def map_size_for(height: int, width: int, arch_stride: int = 32) -> tuple[int, int]:
  """E_I's map size `(h, w)` for an input `height x width` (§1.2 'Geometry'): the trunk divides by
  `arch_stride` (32 with last stride 2, 16 with last stride 1). Every strided layer of the trunk
  pads so that it rounds up, hence ceil; equal to `height // 32` for multiples of 32 (every config).
  """
  return (-(-height // arch_stride), -(-width // arch_stride))


class ARNEncoder(nn.Module):
  """E_C / E_S / E_T (§1.2): `X [B, h, w, C] -> e [B, width]` float32, with `(h, w) == map_size`."""

  map_size: tuple = (7, 7)
  width: int = 2048
  dropout_rate: float = 0.5
  conv8_bn: bool = True
  conv8_relu: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = lambda kernel, name: Conv(self.width, kernel, kernel_init=he_normal, bias_init=zeros,
                                     dtype=self.dtype, name=name)
    y = conv(tuple(self.map_size), "conv6")(x)  # VALID over the whole map: [B, 1, 1, width]
    y = nn.relu(resnet.batch_norm(train, self.dtype, "bn6")(y))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = nn.relu(resnet.batch_norm(train, self.dtype, "bn7")(conv(1, "conv7")(y)))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = conv(1, "conv8")(y)
    if self.conv8_bn:
      y = resnet.batch_norm(train, self.dtype, "bn8")(y)
    if self.conv8_relu:  # §1.2: on by default, so that e is non-negative like X
      y = nn.relu(y)
    return y.reshape(y.shape[0], self.width).astype(jnp.float32)


class ARNDecoder(nn.Module):
  """D_C (§1.2): `e [B, width] -> X̂ [B, h, w, features]` float32, `(h, w) = map_size`."""

  features: int  # E_I's channels (2048 for ResNet-50)
  map_size: tuple = (7, 7)
  width: int = 2048
  dtype: Any = None

  @nn.compact
  def __call__(self, e, train: bool = False):
    convt = lambda features, kernel, name: ConvTranspose(
        features, kernel, kernel_init=he_normal, bias_init=zeros, dtype=self.dtype, name=name)
    y = e.reshape(e.shape[0], 1, 1, e.shape[-1])
    y = nn.relu(resnet.batch_norm(train, self.dtype, "bn1")(convt(self.width, 1, "convt1")(y)))
    y = nn.relu(resnet.batch_norm(train, self.dtype, "bn2")(convt(self.width, 1, "convt2")(y)))
    # Stride 1, no padding: a 1x1 input spreads to exactly the kernel's (h, w). ReLU because X is
    # post-ReLU; no BN, which would fix the output's scale.
    y = nn.relu(convt(self.features, tuple(self.map_size), "convt3")(y))
    return y.astype(jnp.float32)


class ARNClassifier(nn.Module):
  """C_S (§1.2): Dropout(0.5) + Dense(#source training ids); `e_c [B, width] -> logits` float32."""

  num_classes: int
  dropout_rate: float = 0.5
  dtype: Any = None

  @nn.compact
  def __call__(self, e, train: bool = False):
    e = nn.Dropout(self.dropout_rate)(e, deterministic=not train)
    logits = nn.Dense(self.num_classes, kernel_init=classifier_kernel_init, bias_init=zeros,
                      dtype=self.dtype, param_dtype=jnp.float32, name="fc")(e)
    return logits.astype(jnp.float32)


class ARN(nn.Module):
  """ARN as read in docs/arn_triplet_eval.md §1.2.

  Attributes:
    num_classes: source training identities (C_S outputs); 0 drops C_S (logits None).
    arch: E_I's trunk for `resnet.build_backbone` ('resnet50', 'resnet_small'), last stride 2.
    map_size: (h, w) of E_I's map X, conv6's VALID kernel and D_C's last ConvT kernel: (7, 7) at
      224x224 (`paper`), (8, 4) at 256x128 (`reid_256x128`), `map_size_for(H, W)` in general.
    width: channels of E_C / E_S / E_T and of D_C's hidden layers (2048).
    dropout_rate: after conv6 and conv7 and before C_S (0.5).
    conv8_bn, conv8_relu: BN / ReLU after conv8 (§1.2: on).
    private_encoders: E_S and E_T exist (False for the ablations `rec` and `rec_sup`); without
      them e_p is None and D_C decodes e_c alone (§1.1 ablations).
    dtype: computation dtype; parameters, BN statistics and outputs stay float32.
  """

  num_classes: int
  arch: str = "resnet50"
  map_size: tuple = (7, 7)
  width: int = 2048
  dropout_rate: float = 0.5
  conv8_bn: bool = True
  conv8_relu: bool = True
  private_encoders: bool = True
  dtype: Any = None

  def setup(self):
    self.backbone = resnet.build_backbone(self.arch, last_stride=2, dtype=self.dtype)
    encoder = lambda: ARNEncoder(tuple(self.map_size), self.width, self.dropout_rate, self.conv8_bn,
                                 self.conv8_relu, dtype=self.dtype)
    self.E_C = encoder()
    if self.private_encoders:
      self.E_S = encoder()
      self.E_T = encoder()
    self.D_C = ARNDecoder(resnet.backbone_num_features(self.arch), tuple(self.map_size), self.width,
                          dtype=self.dtype)
    if self.num_classes > 0:
      self.C_S = ARNClassifier(self.num_classes, self.dropout_rate, dtype=self.dtype)

  def image_features(self, images):
    """E_I in eval mode, always (§1.2: BN frozen, lr 1e-7): `[B, H, W, 3] -> X [B, h, w, C]` float32."""
    x = self.backbone(images, False)
    if tuple(x.shape[1:3]) != tuple(self.map_size):
      raise ReidError(
          f"ARN model.map_size={tuple(self.map_size)} does not match E_I's {x.shape[1]}x{x.shape[2]} "
          f"map of the {images.shape[1]}x{images.shape[2]} input: conv6 and D_C's last ConvT span the "
          f"whole map; set model.map_size={map_size_for(images.shape[1], images.shape[2])} "
          f"(docs/arn_triplet_eval.md §1.2 'Geometry')")
    return x.astype(jnp.float32)

  def __call__(self, images, domain: str, train: bool = False) -> dict:
    """images: normalised `[B, H, W, 3]`; domain: 'source' or 'target' (static).

    Returns `{'X', 'e_c', 'e_p', 'X_hat', 'logits'}`, float32: X and X_hat `[B, h, w, C]`, e_c and
    e_p `[B, width]` (e_p None without private encoders), logits `[B, num_classes]` for the source
    (None for the target or without C_S). With `train=True` the BN of E_C, E_S/E_T and D_C uses batch
    statistics and updates `batch_stats` (apply with `mutable=['batch_stats']`), and dropout needs
    `rngs={'dropout': key}`; E_I stays in eval mode.
    """
    if domain not in DOMAINS:
      raise ReidError(f"ARN domain={domain!r}: expected one of {DOMAINS}")
    x = self.image_features(images)
    e_c = self.E_C(x, train)
    e_p = None
    if self.private_encoders:
      e_p = (self.E_S if domain == "source" else self.E_T)(x, train)
    x_hat = self.D_C(e_c if e_p is None else e_c + e_p, train)
    logits = None
    if self.num_classes > 0 and domain == "source":
      logits = self.C_S(e_c, train)
    return {"X": x, "e_c": e_c, "e_p": e_p, "X_hat": x_hat, "logits": logits}

  def initialize(self, images):
    """Runs every module once (both private encoders, C_S), eval mode, so that
    `model.init(rng, images, method=ARN.initialize)` creates every parameter and BN statistic."""
    x = self.image_features(images)
    e_c = self.E_C(x)
    e = e_c
    if self.private_encoders:
      e = e_c + self.E_S(x) + self.E_T(x)
    out = {"e_c": e_c, "X_hat": self.D_C(e)}
    if self.num_classes > 0:
      out["logits"] = self.C_S(e_c)
    return out

  def shared_code(self, images):
    """The test-time descriptor before L2 normalisation (§1.4 item 7): eval-mode e_c `[B, width]`."""
    return self.E_C(self.image_features(images))


# ---------------------------------------------------------------------------------------------
# The first author's draft code (docs/arn_triplet_eval.md §1.3), as a variant with the same interface.

DRAFT_DECODER_CHANNELS = (1024, 512, 256, 64, 3)  # §1.3: 2048 -> 1024 -> 512 -> 256 -> 64 -> 3
LEAKY_SLOPE = 0.2


class DraftImageDecoder(nn.Module):
  """The draft's image decoder (§1.3): `[B, h, w, C] -> [B, 32h, 32w, 3]` float32 in (-1, 1).

  Five blocks, each ConvT 3x3/2 (padding 1, output padding 1: doubles the size), ConvT 3x3/1,
  ConvT 3x3/1, every ConvT followed by BN and LeakyReLU(0.2), except the very last: BN then tanh.
  """

  channels: tuple = DRAFT_DECODER_CHANNELS
  dtype: Any = None

  @nn.compact
  def __call__(self, y, train: bool = False):
    last = (len(self.channels) - 1, 2)
    for b, features in enumerate(self.channels):
      for i, (strides, output_padding) in enumerate([(2, 1), (1, 0), (1, 0)]):
        y = ConvTranspose(features, 3, strides=strides, padding=1, output_padding=output_padding,
                          kernel_init=he_normal, bias_init=zeros, dtype=self.dtype,
                          name=f"block{b + 1}_convt{i + 1}")(y)
        y = resnet.batch_norm(train, self.dtype, f"block{b + 1}_bn{i + 1}")(y)
        y = jnp.tanh(y) if (b, i) == last else nn.leaky_relu(y, LEAKY_SLOPE)
    return y.astype(jnp.float32)


class ARNDraft(nn.Module):
  """ARN as the draft code builds it (docs/arn_triplet_eval.md §1.3), same interface as `ARN`.

  E_I `backbone` = stem..layer3 (1024 channels, 16x8 at 256x128), always in eval mode as in `ARN`
  ([D]; the draft trains it in train mode); E_C, E_S, E_T = copies of layer4 (last stride 2,
  2048x8x4), their codes average-pooled to vectors; D_C decodes the *unpooled* sum of the shared and
  private maps to the RGB image (tanh); C_S = Dropout(0.5) + Dense on the pooled e_c. The output's
  `X` is the input image, the reconstruction target: it lies in (-1, 1) only with the draft's
  normalisation mean = std = 0.5 (§1.3), which is the data pipeline's business. H and W must be
  multiples of 32. `merge_draft_trunk` loads a pretrained trunk (layer4 into all three encoders).
  """

  num_classes: int
  arch: str = "resnet50"
  dropout_rate: float = 0.5
  private_encoders: bool = True
  # §1.3's channels; narrower ones for tests and CPU demos (the last must be 3, RGB; five blocks
  # double 8x4 back to 256x128).
  decoder_channels: tuple = DRAFT_DECODER_CHANNELS
  dtype: Any = None

  def setup(self):
    if len(self.decoder_channels) != 5 or self.decoder_channels[-1] != 3:
      raise ReidError(f"ARNDraft decoder_channels={tuple(self.decoder_channels)}: expected five "
                      f"blocks ending in 3 (RGB), e.g. {DRAFT_DECODER_CHANNELS} "
                      f"(docs/arn_triplet_eval.md §1.3)")
    self.backbone = resnet.build_backbone(self.arch, last_stride=2, out_layer="layer3", dtype=self.dtype)
    # torchvision's layer4 (resnet.ResNet: 2**3 x base_width bottleneck width, stride 2).
    encoder = lambda: resnet.ResNetStage(self.backbone.stage_sizes[3], self.backbone.base_width * 8,
                                         strides=2, dtype=self.dtype)
    self.E_C = encoder()
    if self.private_encoders:
      self.E_S = encoder()
      self.E_T = encoder()
    self.D_C = DraftImageDecoder(tuple(self.decoder_channels), dtype=self.dtype)
    if self.num_classes > 0:
      self.C_S = ARNClassifier(self.num_classes, self.dropout_rate, dtype=self.dtype)

  def _features(self, images):
    if images.shape[1] % 32 or images.shape[2] % 32:
      raise ReidError(f"ARNDraft needs an input size divisible by 32 (the decoder doubles 8x4 five "
                      f"times back to 256x128), got {images.shape[1]}x{images.shape[2]} "
                      f"(docs/arn_triplet_eval.md §1.3)")
    return self.backbone(images, False)

  def __call__(self, images, domain: str, train: bool = False) -> dict:
    """As `ARN.__call__`; `X` is `images` (float32), `X_hat` `[B, H, W, 3]`, e_c / e_p pooled."""
    if domain not in DOMAINS:
      raise ReidError(f"ARN domain={domain!r}: expected one of {DOMAINS}")
    features = self._features(images)
    map_c = self.E_C(features, train)
    e_c, e_p, decoded = _pool(map_c), None, map_c
    if self.private_encoders:
      map_p = (self.E_S if domain == "source" else self.E_T)(features, train)
      e_p, decoded = _pool(map_p), map_c + map_p  # §1.3: the maps are summed before pooling
    logits = None
    if self.num_classes > 0 and domain == "source":
      logits = self.C_S(e_c, train)
    return {"X": images.astype(jnp.float32), "e_c": e_c, "e_p": e_p,
            "X_hat": self.D_C(decoded, train), "logits": logits}

  def initialize(self, images):
    """Runs every module once (see `ARN.initialize`)."""
    features = self._features(images)
    map_c = self.E_C(features)
    decoded = map_c + self.E_S(features) + self.E_T(features) if self.private_encoders else map_c
    out = {"X_hat": self.D_C(decoded)}
    if self.num_classes > 0:
      out["logits"] = self.C_S(_pool(map_c))
    return out

  def shared_code(self, images):
    """Eval-mode pooled e_c `[B, 2048]` float32 (§1.3: the draft's test feature)."""
    return _pool(self.E_C(self._features(images)))


def _pool(feature_map):
  return jnp.mean(feature_map.astype(jnp.float32), axis=(1, 2))


def merge_draft_trunk(variables, trunk_variables):
  """Loads a full trunk's `{'params', 'batch_stats'}` (stem..layer4, e.g. ImageNet weights from
  `torchvision_import.load_trunk`) into `ARNDraft` variables: stem..layer3 into `backbone`, layer4
  into each of E_C, E_S, E_T (§1.3: three copies of pretrained layer4). Shapes are checked by
  `torchvision_import.merge_backbone`; returns a new tree."""
  trunk = {c: dict(flax.core.unfreeze(trunk_variables[c])) for c in ("params", "batch_stats")}
  layer4 = {c: trunk[c].pop("layer4") for c in trunk}  # ResNetStage's tree: '0', '1', ... as layer4's
  merged = torchvision_import.merge_backbone(variables, trunk)
  for name in ("E_C", "E_S", "E_T"):
    if name in merged["params"]:  # no E_S / E_T without private encoders
      merged = torchvision_import.merge_backbone(merged, layer4, name=name)
  return merged
