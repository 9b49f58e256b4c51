r"""The ARN training step (docs/arn_triplet_eval.md §1.2, §1.4): ours vs PyTorch eager, and its memory.

  python -m benchmarks.arn_step [--quick] [--memory_only] [--repeats 3] [--batch_scale 0|1|2|4|8]
      [--nomemory --batch_scale 4] [--nocheck]

The step: `configs/arn.py:reid_256x128`, method variant `arn` (ResNet-50 E_I at 256x128 -> X
8x4x2048, E_C / E_S / E_T = conv6 with the full-map (8, 4) VALID kernel, conv7 1x1, conv8 1x1,
width 2048, each with BN and ReLU, dropout 0.5 after conv6 and conv7; D_C = ConvT 1x1, 1x1,
(8, 4); C_S = dropout 0.5 + Dense 2048 -> 751, a Market source) on one step's batches: a
P x K = 8 x 4 source batch and 32 target images, two train-mode forward passes (source, then
target, each with its own BatchNorm running statistics; E_I in eval mode), L_total = L_class
+ 0.01 L_ctrs + 2 L_rec + 1500 L_diff (contrastive on L2-normalised e_c, summed over ordered
pairs, margin 1; per-element MSE against stop_gradient(X), both domains; DSN difference, both
domains), SGD momentum 0.9, coupled weight decay 5e-4, per-group rates E_I 1e-7, E_C / E_S / E_T
/ D_C 1e-3, C_S 2e-3. The step after the warm-up is timed (`optim.frozen_epochs` cleared, so E_I
is updated at 1e-7; during the warm-up both sides would do the same work anyway).

Ours: `training/arn.py` as the trainer builds it (`build_model`, `METHOD.init_model`,
`per_domain_statistics`, `optim.build_optimiser(..., OPTIMISER_RULES)`, `loss_fn`,
`steps.make_train_step`), compiled like training does (`loop.jit_step` on the one-device data
mesh, state donated). Its step also computes the gradient and parameter norms (the loop logs
them); PyTorch's does not.
Reference: the same network written here with torch.nn modules, on the torchvision-layout ResNet
of tests/models/torch_resnet_reference.py (no torchvision), float32, channels_last, eager: a
per-domain BatchNorm (one affine, two sets of running statistics, `F.batch_norm`), E_I held in
eval mode, the same two passes and four losses, `torch.optim.SGD` with three param groups.
Both sides hold the same weights: ours are initialised (He-normal, docs §1.4 item 8) and copied
into torch (the trunk through `torchvision_import.export_torchvision_resnet`, the heads by name).
Before timing, one step's loss (dropout off on both sides: the masks cannot be matched; same
weights, batch and BN statistics) is compared term by term, and the run stops if it disagrees.
One process; the two sides alternate step by step (the CPU is shared and load drifts), medians;
ratio = ours / torch in images per second (> 1: we are ahead).

Memory: XLA's compiled memory analysis of the full step (32 + 32 images, ~0.6 G parameters: each
encoder and D_C ~142.6 M, E_I 23.5 M, C_S 1.5 M), printed first (the compile is abstract: nothing
is allocated for it). On a CPU backend it is the CPU compile's analysis; a GPU compile schedules
and fuses differently. The state alone is parameters + momentum (2 x 2.4 GB), the step adds the
gradient (2.4 GB) and the activations. When both sides' full step (each holds its own weights,
momentum and a step's gradient and activations) does not fit the available memory, the timed
step is the same network on a batch divided by 2, 4 or 8 (`--batch_scale`; 4: source 2 x 4,
target 8) and the printout says so; the memory figure stays the full step's. On the 2-core,
23 GiB development machine (2026-12-02) the CPU analysis gives 13.1 GiB for the full step
(argument 4.46, temp 8.65; 1 min to compile), "fits a GPU with >= 16 GiB"; both sides are
estimated at 27.2 GiB for the full batch, 20.8 for 1/2 and 17.6 for 1/4, so with about 20 GiB
available it times 1/4 (16 images) there.

`--quick` (about a minute on 2 cores, most of it compiling): resnet_small E_I at 64x32 (2x1x512
map), width 128, source 4 x 4 + target 16, 2 timed rounds; its memory figure is the quick step's
(`--memory_only` compiles the full step and prints its memory alone).
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import dataclasses
import math
import os
import resource
import time

# Before torch starts OpenMP: its threads' default spin-wait took CPU from our step (WORKSPACE.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from absl import app
from absl import flags
import flax
import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn as tnn
from torch.nn import functional as F

from benchmarks import report
# Shared with the HHL step benchmark: the memory analysis, /proc/meminfo, the torch ResNet loader.
# Importing it defines its flags; ours below take their names over (allow_override).
from benchmarks import hhl_step
from reid_jax import xla_options
from reid_jax.configs import arn as arn_config
from reid_jax.models import arn as arn_model
from reid_jax.models import resnet
from reid_jax.models import torchvision_import
from reid_jax.training import arn
from reid_jax.training import loop
from reid_jax.training import optim
from reid_jax.training import sharding as sharding_lib
from reid_jax.training import state as state_lib
from reid_jax.training import steps

_QUICK = flags.DEFINE_bool(
    "quick", False, "resnet_small at 64x32, width 128, 16 + 16 images, 2 rounds (about a minute).",
    allow_override=True)
_MEMORY_ONLY = flags.DEFINE_bool(
    "memory_only", False, "Compile the full step, print its memory analysis, time nothing.",
    allow_override=True)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed rounds (one step of each side per round).",
                                allow_override=True)
_BATCH_SCALE = flags.DEFINE_integer(
    "batch_scale", 0, "Time the step with its batches divided by this (1, 2, 4 or 8); 0: 1 if "
    "both sides fit the available memory, else the smallest division that does.",
    allow_override=True)
_MEMORY = flags.DEFINE_bool(
    "memory", True, "Compile the full step for its memory analysis first (minutes on 2 cores); "
    "--nomemory needs --batch_scale.", allow_override=True)
_RETAIN_MEMORY = flags.DEFINE_bool(
    "retain_memory", True, "runtime.retain_freed_memory() first (both sides share the allocator).",
    allow_override=True)
_CHECK = flags.DEFINE_bool(
    "check", True, "Compare one step's loss (dropout off) between the two sides before timing.")

NUM_CLASSES = 751  # Market-1501 training identities: C_S's outputs (docs/arn_triplet_eval.md §1.2)
STEPS_PER_EPOCH = 375  # passes of Market's P x K = 8 x 4 sampler (§1.4 item 8); only the schedule
GIB = hhl_step.GIB
# Loss check: relative tolerance per weighted term (float32; the two sides' convolutions differ in
# summation order), and an absolute floor for terms near 0.
CHECK_RTOL, CHECK_ATOL = 2e-3, 1e-6
# Memory kept free for the other processes when choosing the timed batch.
_HEADROOM = 2 * GIB
_FIXED = 1 * GIB  # compiles, executables, Python and torch themselves


@dataclasses.dataclass(frozen=True)
class Shape:
  """One ARN step's sizes: trunk, input, code width, source ids x instances, target images."""
  arch: str
  height: int
  width: int
  code_width: int
  ids: int
  instances: int
  target: int

  @property
  def source(self) -> int:
    return self.ids * self.instances

  @property
  def images(self) -> int:
    return self.source + self.target

  @property
  def map_size(self) -> tuple[int, int]:
    return arn_model.map_size_for(self.height, self.width)

  def describe(self) -> str:
    h, w = self.map_size
    return (f"{self.arch} {self.height}x{self.width} (X {h}x{w}), width {self.code_width}, "
            f"source {self.ids}x{self.instances} + target {self.target} = {self.images} images")


FULL = Shape("resnet50", 256, 128, 2048, ids=8, instances=4, target=32)
SCALED = {1: FULL,
          2: dataclasses.replace(FULL, ids=4, target=16),
          4: dataclasses.replace(FULL, ids=2, target=8),
          8: dataclasses.replace(FULL, ids=2, instances=2, target=4)}
QUICK = Shape("resnet_small", 64, 32, 128, ids=4, instances=4, target=16)


def arn_config_for(shape: Shape, dropout_rate: float | None = None):
  """`reid_256x128` with the shape's trunk, input, width and batches; the warm-up cleared."""
  config = arn_config.apply_method_variant(arn_config.get_config("reid_256x128"), "arn")
  config.model.arch = shape.arch
  config.model.map_size = shape.map_size
  config.model.width = shape.code_width
  config.data.height, config.data.width = shape.height, shape.width
  config.data.batch_size, config.data.num_instances = shape.source, shape.instances
  config.data.target_batch_size = shape.target
  config.optim.frozen_epochs = {}  # time the step after the warm-up (E_I updated at 1e-7)
  if dropout_rate is not None:
    config.model.dropout_rate = dropout_rate
  arn.check_config(config)
  return config


def numpy_batch(shape: Shape, seed: int = 0) -> dict:
  """The step's two batches as numpy arrays (NHWC float32 images); the source P x K."""
  rng = np.random.default_rng(seed)

  def images(n):
    return rng.standard_normal((n, shape.height, shape.width, 3), dtype=np.float32)

  ids = rng.choice(NUM_CLASSES, shape.ids, replace=False)
  return {"source": {"image": images(shape.source),
                     "label": np.repeat(ids, shape.instances).astype(np.int32)},
          "target": {"image": images(shape.target)}}


# ---------------------------------------------------------------------------------------------
# Ours.


def init_variables(model, config, shape: Shape, abstract: bool):
  """ARN's variables as the trainer arranges them (`{'params', 'batch_stats': {domain: tree}}`),
  or their shapes only."""
  images = jnp.zeros((1, shape.height, shape.width, 3), jnp.float32)

  def init(key):
    return arn.per_domain_statistics(config, arn.METHOD.init_model(model, key, images))

  if abstract:
    return jax.eval_shape(init, jax.random.PRNGKey(0))
  return jax.jit(init)(jax.random.PRNGKey(0))


def optimiser_for(config, params):
  return optim.build_optimiser(params, config.optim, arn.METHOD.optimiser_rules(config),
                               STEPS_PER_EPOCH)


def compile_step(shape: Shape, config):
  """(compiled step, seconds): the library's ARN step lowered on abstract state and batch and
  compiled ahead of time (nothing is allocated or run)."""
  model = arn.build_model(config.model, NUM_CLASSES)
  variables = init_variables(model, config, shape, abstract=True)
  optimiser = optimiser_for(config, variables["params"])
  state = jax.eval_shape(lambda v: state_lib.create(v["params"], v["batch_stats"], optimiser.tx),
                         variables)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                       numpy_batch(shape))
  jitted = loop.jit_step(steps.make_train_step(arn.loss_fn(model, config), optimiser.tx),
                         sharding_lib.data_mesh())
  start = time.perf_counter()
  compiled = jitted.lower(state, batch, jax.random.PRNGKey(3)).compile()
  return compiled, time.perf_counter() - start


def jax_state(shape: Shape, config):
  """(state, variables): the initial train state, and the variables (the same buffers) for the
  torch copy and the loss check, before the first step donates them."""
  model = arn.build_model(config.model, NUM_CLASSES)
  variables = init_variables(model, config, shape, abstract=False)
  optimiser = optimiser_for(config, variables["params"])
  state = state_lib.create(variables["params"], variables["batch_stats"], optimiser.tx)
  # The compiled step's layout (a no-op on one device).
  state = sharding_lib.replicate(state, sharding_lib.data_mesh())
  return state, variables


def jax_check_loss(shape: Shape, variables, batch):
  """(loss, weighted terms) of ARN's loss function at `variables` with dropout off."""
  config = arn_config_for(shape, dropout_rate=0.0)
  model = arn.build_model(config.model, NUM_CLASSES)
  loss_fn = arn.loss_fn(model, config)
  forward = xla_options.jit(lambda p, s, b, r: loss_fn(p, s, b, r))
  loss, (_, metrics) = forward(variables["params"], variables["batch_stats"], batch,
                               jax.random.PRNGKey(3))
  a = config.arn
  return float(loss), {"cross_entropy": float(metrics["cross_entropy"]),
                       "alpha x contrastive": a.alpha * float(metrics["contrastive"]),
                       "beta x reconstruction": a.beta * float(metrics["reconstruction"]),
                       "gamma x difference": a.gamma * float(metrics["difference"])}


def param_count(shape: Shape) -> dict[str, int]:
  """Parameters per top-level module (from shapes; nothing is allocated)."""
  config = arn_config_for(shape)
  model = arn.build_model(config.model, NUM_CLASSES)
  params = init_variables(model, config, shape, abstract=True)["params"]
  return {name: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
          for name, tree in params.items()}


def print_memory(figures, shape: Shape, full: bool, counts: dict[str, int] | None):
  backend = jax.default_backend()
  what = "the full step" if full else "this step (not the full step: --memory_only for it)"
  print(f"\nmemory of {what}, {shape.describe()}, from XLA's compiled memory analysis "
        f"({backend} backend):")
  if counts:
    print("  parameters: " + ", ".join(f"{n} {c / 1e6:.1f} M" for n, c in counts.items())
          + f"; {sum(counts.values()) / 1e6:.1f} M in all, {sum(counts.values()) * 4 / GIB:.2f} "
          "GiB in float32")
  if figures is None:
    print("  not available on this backend")
    return
  for name in ("argument", "output", "alias", "temp", "generated_code", "total"):
    print(f"  {name:15s} {figures[name] / GIB:8.2f} GiB")
  total = figures["total"] / GIB
  needed = math.ceil(total * 1.1 + 1.0)  # headroom: CUDA context, workspaces, fragmentation
  print(f"  total = argument + output - alias + temp + generated code: {total:.2f} GiB of state "
        f"(parameters, momentum, BN statistics), batch and the step's gradient and activations; "
        f"fits a GPU with >= {needed} GiB")
  if backend == "cpu":
    print("  (the CPU compile's analysis, convolutions in models/conv.py's CPU formulations; a "
          "GPU compile schedules and fuses differently and can differ)")


def both_sides_bytes(full_figures, param_bytes: int, scale: int) -> float:
  """What this process needs to time the step at 1/scale: each side holds its parameters and
  momentum, and during its step a gradient and the activations. The full step's temporaries are
  one gradient plus the activations, which scale with the batch."""
  activations = max(full_figures["temp"] - param_bytes, 0) / scale
  ours = full_figures["argument"] + full_figures["generated_code"] + param_bytes + activations
  torch_side = 3 * param_bytes + activations
  return ours + torch_side + _FIXED


def choose_scale(full_figures, param_bytes: int | None) -> tuple[int, str]:
  """The batch scale to time at and why (the full step unless it does not fit the memory)."""
  if _BATCH_SCALE.value:
    return _BATCH_SCALE.value, "--batch_scale"
  available = hhl_step.available_bytes()
  if full_figures is None or available is None or param_bytes is None:
    return 1, "memory unknown"
  usable = available - _HEADROOM
  for scale in sorted(SCALED):
    needed = both_sides_bytes(full_figures, param_bytes, scale)
    if needed <= usable:
      return scale, (f"both sides need about {needed / GIB:.1f} GiB, {available / GIB:.1f} GiB "
                     f"available, {_HEADROOM / GIB:.0f} GiB left to other processes")
  needed = both_sides_bytes(full_figures, param_bytes, max(SCALED))
  return max(SCALED), (f"even 1/{max(SCALED)} may not fit: about {needed / GIB:.1f} GiB, "
                       f"{available / GIB:.1f} GiB available")


# ---------------------------------------------------------------------------------------------
# The reference: ARN in PyTorch eager.


class DomainBatchNorm(tnn.Module):
  """BatchNorm over channels (NCHW) with one affine and running statistics per domain
  (§1.4 item 5: the source pass reads and updates the source's, the target pass the target's)."""

  def __init__(self, num_features, momentum=1.0 - resnet.BN_MOMENTUM, eps=resnet.BN_EPSILON):
    super().__init__()
    self.momentum, self.eps = momentum, eps
    self.weight = tnn.Parameter(torch.ones(num_features))
    self.bias = tnn.Parameter(torch.zeros(num_features))
    for domain in arn.DOMAINS:
      self.register_buffer(f"running_mean_{domain}", torch.zeros(num_features))
      self.register_buffer(f"running_var_{domain}", torch.ones(num_features))

  def forward(self, x, domain):
    return F.batch_norm(x, getattr(self, f"running_mean_{domain}"),
                        getattr(self, f"running_var_{domain}"), self.weight, self.bias,
                        self.training, self.momentum, self.eps)


class TorchEncoder(tnn.Module):
  """conv6 (kernel = the map, VALID) BN ReLU Dropout, conv7 1x1 BN ReLU Dropout, conv8 1x1 BN
  ReLU; `[B, C, h, w] -> [B, width]`."""

  def __init__(self, channels, map_size, width, dropout_rate):
    super().__init__()
    self.conv6, self.bn6 = tnn.Conv2d(channels, width, tuple(map_size)), DomainBatchNorm(width)
    self.conv7, self.bn7 = tnn.Conv2d(width, width, 1), DomainBatchNorm(width)
    self.conv8, self.bn8 = tnn.Conv2d(width, width, 1), DomainBatchNorm(width)
    self.drop = tnn.Dropout(dropout_rate)

  def forward(self, x, domain):
    y = self.drop(torch.relu(self.bn6(self.conv6(x), domain)))
    y = self.drop(torch.relu(self.bn7(self.conv7(y), domain)))
    y = torch.relu(self.bn8(self.conv8(y), domain))
    return y.flatten(1)


class TorchDecoder(tnn.Module):
  """ConvT 1x1 BN ReLU, ConvT 1x1 BN ReLU, ConvT (kernel = the map) ReLU; `[B, width] -> [B, C,
  h, w]`."""

  def __init__(self, channels, map_size, width):
    super().__init__()
    self.convt1, self.bn1 = tnn.ConvTranspose2d(width, width, 1), DomainBatchNorm(width)
    self.convt2, self.bn2 = tnn.ConvTranspose2d(width, width, 1), DomainBatchNorm(width)
    self.convt3 = tnn.ConvTranspose2d(width, channels, tuple(map_size))

  def forward(self, e, domain):
    y = e[:, :, None, None].contiguous(memory_format=torch.channels_last)
    y = torch.relu(self.bn1(self.convt1(y), domain))
    y = torch.relu(self.bn2(self.convt2(y), domain))
    return torch.relu(self.convt3(y))


class TorchClassifier(tnn.Module):

  def __init__(self, width, num_classes, dropout_rate):
    super().__init__()
    self.drop = tnn.Dropout(dropout_rate)
    self.fc = tnn.Linear(width, num_classes)

  def forward(self, e):
    return self.fc(self.drop(e))


class TorchARN(tnn.Module):
  """E_I (always in eval mode), E_C, E_S, E_T, D_C, C_S; module names as ours."""

  def __init__(self, model_config, num_classes):
    super().__init__()
    layers, base_width = hhl_step._TORCH_ARCHS[model_config.arch]  # pylint: disable=protected-access
    torch_resnet = hhl_step._load_torch_resnet()  # pylint: disable=protected-access
    self.backbone = torch_resnet.TorchResNet(layers, base_width)
    self.backbone.fc = tnn.Identity()  # only its keys exist there; ARN has no ImageNet fc
    channels = base_width * 8 * torch_resnet.Bottleneck.expansion
    map_size, width = tuple(model_config.map_size), int(model_config.width)
    rate = float(model_config.dropout_rate)
    self.E_C = TorchEncoder(channels, map_size, width, rate)
    self.E_S = TorchEncoder(channels, map_size, width, rate)
    self.E_T = TorchEncoder(channels, map_size, width, rate)
    self.D_C = TorchDecoder(channels, map_size, width)
    self.C_S = TorchClassifier(width, num_classes, rate)

  def train(self, mode: bool = True):
    super().train(mode)
    self.backbone.eval()  # §1.2: E_I's BatchNorm frozen whatever the mode
    return self

  def forward(self, images, domain):
    x = self.backbone(images)
    e_c = self.E_C(x, domain)
    e_p = (self.E_S if domain == "source" else self.E_T)(x, domain)
    return {"X": x, "e_c": e_c, "e_p": e_p, "X_hat": self.D_C(e_c + e_p, domain),
            "logits": self.C_S(e_c) if domain == "source" else None}


def copy_weights(net: TorchARN, variables) -> None:
  """Our variables into the torch network: E_I through the torchvision-key export, the heads by
  name (kernels HWIO -> OIHW, ConvT [kh, kw, in, out] -> [in, out, kh, kw], Dense [in, out] ->
  [out, in]; BN statistics per domain). Every torch parameter and buffer must be written."""
  params, stats = variables["params"], variables["batch_stats"]
  trunk = torchvision_import.export_torchvision_resnet(
      {"params": params["backbone"], "batch_stats": stats["source"]["backbone"]})
  missing, unexpected = net.backbone.load_state_dict(
      {k: torch.from_numpy(np.array(v)) for k, v in trunk.items()}, strict=False)
  if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
    raise RuntimeError(f"trunk copy: missing {missing}, unexpected {unexpected}")
  written = {f"backbone.{k}" for k in trunk}
  modules = dict(net.named_modules())
  heads = [(None, params)] + [(domain, stats[domain]) for domain in arn.DOMAINS]
  with torch.no_grad():
    for domain, tree in heads:
      tree = {k: v for k, v in tree.items() if k != "backbone"}
      for path, leaf in flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)).items():
        *module_path, name = path
        module = modules[".".join(module_path)]
        value = np.asarray(leaf, np.float32)
        if name == "kernel":
          if isinstance(module, tnn.ConvTranspose2d):
            value = value.transpose(2, 3, 0, 1)
          elif isinstance(module, tnn.Conv2d):
            value = value.transpose(3, 2, 0, 1)
          else:
            value = value.T
        attribute = {"kernel": "weight", "scale": "weight", "bias": "bias",
                     "mean": f"running_mean_{domain}", "var": f"running_var_{domain}"}[name]
        target = getattr(module, attribute)
        if tuple(target.shape) != value.shape:
          raise RuntimeError(f"{'/'.join(path)}: ours {value.shape}, torch {tuple(target.shape)}")
        target.copy_(torch.from_numpy(np.array(value, order="C")))
        written.add(f"{'.'.join(module_path)}.{attribute}")
  expected = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
  if written != expected:
    raise RuntimeError(f"weight copy: not written {sorted(expected - written)[:10]}, unknown "
                       f"{sorted(written - expected)[:10]}")


def l2_normalize(x):
  return x * torch.rsqrt(torch.clamp((x * x).sum(1, keepdim=True), min=1e-12))


def torch_contrastive(e, labels, margin):
  """(2) as §1.4 item 1: L2-normalised rows, ordered pairs i != j summed, same id D², different
  id max(0, m - D)², D with the safe root (§1.4 item 6)."""
  x = l2_normalize(e)
  d2 = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)
  positive = d2 > 1e-12
  dist = torch.where(positive, torch.sqrt(torch.where(positive, d2, torch.ones_like(d2))),
                     torch.zeros_like(d2))
  same = labels[:, None] == labels[None, :]
  terms = torch.where(same, d2, torch.relu(margin - dist).pow(2))
  off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
  return torch.where(off_diagonal, terms, torch.zeros_like(terms)).sum()


def torch_difference(shared, private):
  """(4) in DSN's form (§1.4 item 2): centre, L2-normalise rows, mean((P^T S)^2), clipped at 0."""
  p = l2_normalize(private - private.mean(0, keepdim=True))
  s = l2_normalize(shared - shared.mean(0, keepdim=True))
  return torch.clamp((p.t() @ s).pow(2).sum() / (p.shape[1] * s.shape[1]), min=0.0)


def torch_reconstruction(out):
  return (out["X_hat"] - out["X"].detach()).pow(2).mean()


def torch_loss(net, source_x, source_y, target_x, a):
  """(L_total, weighted terms): source pass, then target pass, the four losses (§1.1 (5))."""
  out_s = net(source_x, "source")
  out_t = net(target_x, "target")
  terms = {
      "cross_entropy": F.cross_entropy(out_s["logits"], source_y),
      "alpha x contrastive": a.alpha * torch_contrastive(out_s["e_c"], source_y, a.margin),
      "beta x reconstruction": a.beta * (torch_reconstruction(out_s) + torch_reconstruction(out_t)),
      "gamma x difference": a.gamma * (torch_difference(out_s["e_c"], out_s["e_p"])
                                       + torch_difference(out_t["e_c"], out_t["e_p"])),
  }
  return sum(terms.values()), terms


def torch_images(x):
  return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def torch_side(config, variables, data):
  """(step(), check(), net): one ARN iteration on `data`, channels_last, and the dropout-off loss
  of the current weights (BN running statistics restored afterwards)."""
  a, o = config.arn, config.optim
  implemented = dict(variant="arn", normalize_contrastive=True, contrastive_reduction="sum",
                     difference="dsn", shared_bn_stats=False)
  if any(a[k] != v for k, v in implemented.items()) or o.nesterov:
    raise ValueError(f"the torch reference implements {implemented}, SGD without Nesterov")
  torch.manual_seed(0)  # the dropout masks (the weights are ours)
  net = TorchARN(config.model, NUM_CLASSES)
  copy_weights(net, variables)
  net = net.to(memory_format=torch.channels_last).train()
  groups = {"trunk": [], "encoders": [], "classifier": []}
  for name, parameter in net.named_parameters():
    groups[arn.OPTIMISER_RULES[name.split(".")[0]]].append(parameter)
  optimiser = torch.optim.SGD(
      [{"params": ps, "lr": o.base_lr * o.lr_mult[g]} for g, ps in groups.items()],
      lr=o.base_lr, momentum=o.momentum, weight_decay=o.weight_decay)
  source_x, target_x = torch_images(data["source"]["image"]), torch_images(data["target"]["image"])
  source_y = torch.from_numpy(data["source"]["label"].astype(np.int64))

  def step():
    optimiser.zero_grad(set_to_none=True)
    loss, _ = torch_loss(net, source_x, source_y, target_x, a)
    loss.backward()
    optimiser.step()
    return loss.item()

  def check():
    dropouts = [m for m in net.modules() if isinstance(m, tnn.Dropout)]
    rates = [m.p for m in dropouts]
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    try:
      for m in dropouts:
        m.p = 0.0
      with torch.no_grad():
        loss, terms = torch_loss(net, source_x, source_y, target_x, a)
    finally:
      for m, p in zip(dropouts, rates):
        m.p = p
      with torch.no_grad():
        for k, v in net.named_buffers():
          v.copy_(buffers[k])
    return float(loss), {k: float(v) for k, v in terms.items()}

  return step, check, net


def check_losses(ours, theirs) -> bool:
  (loss_ours, terms_ours), (loss_torch, terms_torch) = ours, theirs
  rows = list(terms_ours.items()) + [("L_total", loss_ours)]
  reference = {**terms_torch, "L_total": loss_torch}
  print(f"\nloss check, one step's loss with dropout off (same weights, batch, BN statistics), "
        f"tolerance {CHECK_RTOL:g} relative + {CHECK_ATOL:g}:")
  ok = True
  for name, value in rows:
    error = abs(value - reference[name])
    good = error <= CHECK_RTOL * abs(reference[name]) + CHECK_ATOL
    ok &= good
    print(f"  {name:22s} ours {value:14.6f}  torch {reference[name]:14.6f}  relative "
          f"{error / max(abs(reference[name]), 1e-30):.1e}  {'ok' if good else 'DIFFERS'}")
  return ok


# ---------------------------------------------------------------------------------------------


def main(argv):
  del argv
  wall_start = time.perf_counter()
  retained = _RETAIN_MEMORY.value and runtime.retain_freed_memory()  # before JAX starts its threads
  threads = len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), malloc {runtime.allocator()}"
        f"{' retained heap' if retained else ''}", flush=True)

  compiled = None
  if _QUICK.value:
    shape, note = QUICK, "quick"
    compiled, seconds = compile_step(shape, arn_config_for(shape))
    print(f"ours: compiled in {seconds:.1f} s", flush=True)
    print_memory(hhl_step.memory_figures(compiled), shape, full=False, counts=param_count(shape))
  else:
    want_memory = _MEMORY.value or _MEMORY_ONLY.value
    if _BATCH_SCALE.value and _BATCH_SCALE.value not in SCALED:
      raise app.UsageError(f"--batch_scale must be one of {sorted(SCALED)} or 0")
    if not want_memory and not _BATCH_SCALE.value:
      raise app.UsageError("--nomemory needs --batch_scale (the scale is chosen from the memory "
                           "analysis)")
    full_figures, param_bytes = None, None
    if want_memory:
      counts = param_count(FULL)
      param_bytes = 4 * sum(counts.values())
      compiled, seconds = compile_step(FULL, arn_config_for(FULL))
      print(f"ours: full step compiled in {seconds:.1f} s", flush=True)
      full_figures = hhl_step.memory_figures(compiled)
      print_memory(full_figures, FULL, full=True, counts=counts)
      if full_figures is not None:
        print("  to time it, this process needs for both sides (weights, momentum, a step's "
              "gradient and activations each): " + ", ".join(
                  f"1/{s} {both_sides_bytes(full_figures, param_bytes, s) / GIB:.1f} GiB"
                  for s in sorted(SCALED)), flush=True)
    if _MEMORY_ONLY.value:
      return
    scale, why = choose_scale(full_figures, param_bytes)
    shape = SCALED[scale]
    note = "full step" if scale == 1 else f"full step / {scale} (the full batch does not fit)"
    print(f"\ntimed: {note} ({why})", flush=True)
    if scale != 1 or compiled is None:
      compiled = None
      compiled, seconds = compile_step(shape, arn_config_for(shape))
      print(f"ours: compiled in {seconds:.1f} s", flush=True)
  config = arn_config_for(shape)
  print(f"step: {shape.describe()}, two train-mode passes (source, target), four losses, f32",
        flush=True)

  data = numpy_batch(shape)
  batch = sharding_lib.shard_batch(data, sharding_lib.data_mesh())
  state, variables = jax_state(shape, config)
  step_torch, check_torch, _ = torch_side(config, variables, data)
  if _CHECK.value:
    start = time.perf_counter()
    ours = jax_check_loss(shape, variables, batch)
    print(f"ours: loss check compiled and run in {time.perf_counter() - start:.1f} s", flush=True)
    if not check_losses(ours, check_torch()):
      raise SystemExit("the two sides' losses differ: not timing them")
  del variables  # the state holds the same buffers; the first step donates them
  holder = {"state": state}
  del state
  rng = jax.random.PRNGKey(3)

  def run_ours():
    holder["state"], metrics = compiled(holder["state"], batch, rng)
    jax.block_until_ready(metrics["loss"])
    return metrics

  runners = {"ours_auto": run_ours, "torch_eager_channels_last": step_torch}
  start = time.perf_counter()
  metrics = run_ours()
  print(f"\nours: first step {time.perf_counter() - start:.1f} s, loss {float(metrics['loss']):.4f} "
        "(dropout on)", flush=True)
  start = time.perf_counter()
  loss = step_torch()
  print(f"torch: first step {time.perf_counter() - start:.1f} s, loss {loss:.4f} (dropout on, "
        "other masks)", flush=True)
  if not _QUICK.value:  # one more warm-up each: the first steps after compiling allocate
    for run in runners.values():
      run()

  repeats = 2 if _QUICK.value else _REPEATS.value
  times, cpu_times = report.alternate(runners, repeats)
  description = (f"arn {note}: {shape.describe()} f32 channels_last eager"
                 f"{' retained heap' if retained else ''}")
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  print(f"process peak RSS {peak / GIB:.1f} GiB (both sides); "
        f"wall {time.perf_counter() - wall_start:.0f} s", flush=True)
  report.print_rates("arn_step_img_per_s", times, cpu_times, shape.images, description)


if __name__ == "__main__":
  app.run(main)
