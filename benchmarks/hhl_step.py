r"""The HHL training step (docs/hhl.md §4, §5, §14): ours vs PyTorch eager, and its memory.

  python -m benchmarks.hhl_step [--quick] [--memory_only] [--repeats 3] [--batch_scale 0|1|2|4]
      [--nomemory --batch_scale 4]

The step: `configs/hhl.py:paper` (ResNet-50 at 256x128, FC-1024, BN-1024, FC-128, classifier of 702
identities: a Duke source) on one Duke -> Market batch: CE 128 images, triplet 64 = 8 ids x 8,
target 16 x 7 = 112 (16 reals, then 6 camera-style fakes of each), 304 images in three train-mode
forward passes CE -> triplet -> target threading the BatchNorm statistics, L = CE + 0.5 x batch-hard
triplet (margin 0.3) over the triplet and target embeddings, SGD Nesterov (trunk 0.01, classifier
0.1, FC-1024 / BN-1024 / FC-128 frozen, weight decay 5e-4 on the trained groups).

Ours: `heads.build_reid_net(config.model, 702)`, `optim.build_optimiser(..., reid_net_rules(
'reference_code'), steps_per_epoch=129)`, `hhl.loss_fn`, `steps.make_train_step`, compiled like
training does (`loop.jit_step` on the one-device data mesh, state donated).
Reference: the same network written here in PyTorch on the torchvision-layout ResNet-50 of
tests/models/torch_resnet_reference.py (no torchvision), float32, channels_last, eager: three
forward passes in train mode in the same order, the same losses, `torch.optim.SGD(momentum=0.9,
nesterov=True, weight_decay=5e-4)` with the trunk (0.01) and classifier (0.1) groups and the three
head modules in no group (gradients flow through them, nobody updates them: HHL.py).
Random initialisation and random images on both sides (timing only). One process; the two sides
alternate step by step (the CPU is shared and load drifts), medians; ratio = ours / torch in
images per second (> 1: we are ahead).

Memory: XLA's compiled memory analysis of the paper step (arguments, outputs, temporaries,
generated code), always for the full 304-image step. On a CPU backend it is the CPU compile's
analysis (convolutions in `models/conv.py`'s CPU formulations); a GPU compile schedules and fuses
differently, so its figure can differ (docs/hhl.md §14 estimates 20-25 GB).

When the full step does not fit this machine's available memory (both sides hold a step's
activations, one after the other), the timed step is the paper step scaled down (`--batch_scale`
4: CE 32, triplet 4 x 4, target 4 x 7, the tiny config's ratio; the network and image size stay)
and the printout says so; the memory figure stays the paper step's. On the 2-core, 23 GiB
development machine the CPU analysis gives 26.4 GiB for the paper step (temp 26.1), so it times
the 1/4 step there (76 images, peak RSS 16 GiB); the paper step needs a larger machine.

`--quick` (1-2 minutes on 2 cores, most of it compiling): resnet_small at 128x64, CE 16, triplet
2 x 4, target 2 x 7, 2 timed rounds; its memory figure is the quick step's (`--memory_only`
compiles the paper step and prints its memory alone).
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import dataclasses
import functools
import importlib.util
import math
import os
import pathlib
import resource
import time

# Before torch starts OpenMP: its threads' default spin-wait took CPU from our step (WORKSPACE.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn as tnn
from torch.nn import functional as F

from benchmarks import report
from reid_jax.configs import hhl as hhl_config
from reid_jax.models import heads
from reid_jax.training import hhl
from reid_jax.training import loop
from reid_jax.training import optim
from reid_jax.training import sharding as sharding_lib
from reid_jax.training import state as state_lib
from reid_jax.training import steps

_QUICK = flags.DEFINE_bool("quick", False,
                           "resnet_small at 128x64, 38 images, 2 rounds (1-2 minutes).")
_MEMORY_ONLY = flags.DEFINE_bool("memory_only", False,
                                 "Compile the paper step, print its memory analysis, time nothing.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed rounds (one step of each side per round).")
_BATCH_SCALE = flags.DEFINE_integer(
    "batch_scale", 0, "Time the paper step with its batches divided by this (1, 2 or 4); 0: 1 if "
    "it fits the available memory, else the largest that does.")
_MEMORY = flags.DEFINE_bool(
    "memory", True, "Compile the paper step for its memory analysis first (a few minutes on 2 "
    "cores); --nomemory needs --batch_scale.")
_RETAIN_MEMORY = flags.DEFINE_bool(
    "retain_memory", True, "runtime.retain_freed_memory() first (both sides share the allocator).")

NUM_CLASSES = 702  # Duke training identities (docs/hhl.md §3)
STEPS_PER_EPOCH = 129  # Duke -> Market: floor(16,522 / 128) (docs/hhl.md §5)
STYLES = 7  # a Market target sample: its real image and 6 camera-style fakes (docs/hhl.md §5)
TARGET_LABEL_BASE = 1000  # the reference's target pseudo-labels: [1000, 10999] (docs/hhl.md §4)
GIB = 2**30
# The memory the timed step needs, as a multiple of ours plus a fixed part: the torch side holds a
# step's activations too (alternating, from the same allocator; with the retained glibc heap freed
# memory is not returned), and the paper step's compile stays in the heap. Measured: the 1/4 step
# (ours 6.6 GiB) peaked at 16.1 GiB RSS, both sides and the paper compile included.
_BOTH_SIDES = 2.5
_FIXED = 2 * 2**30


@dataclasses.dataclass(frozen=True)
class Shape:
  """One HHL step's sizes: CE images, triplet ids x instances, target samples x STYLES."""
  arch: str
  height: int
  width: int
  ce: int
  ids: int
  instances: int
  target: int

  @property
  def images(self) -> int:
    return self.ce + self.ids * self.instances + self.target * STYLES

  def describe(self) -> str:
    return (f"{self.arch} {self.height}x{self.width}, CE {self.ce} + triplet {self.ids}x"
            f"{self.instances} + target {self.target}x{STYLES} = {self.images} images")


PAPER = Shape("resnet50", 256, 128, ce=128, ids=8, instances=8, target=16)
SCALED = {1: PAPER,
          2: dataclasses.replace(PAPER, ce=64, ids=4, instances=8, target=8),
          4: dataclasses.replace(PAPER, ce=32, ids=4, instances=4, target=4)}
QUICK = Shape("resnet_small", 128, 64, ce=16, ids=2, instances=4, target=2)


def hhl_config_for(shape: Shape):
  config = hhl_config.get_config("paper")
  config.model.arch = shape.arch
  return config


def numpy_batch(shape: Shape, seed: int = 0) -> dict:
  """The step's three batches as numpy arrays (NHWC float32 images)."""
  rng = np.random.default_rng(seed)

  def images(n):
    return rng.standard_normal((n, shape.height, shape.width, 3), dtype=np.float32)

  triplet_ids = rng.choice(NUM_CLASSES, shape.ids, replace=False)
  target_labels = TARGET_LABEL_BASE + rng.choice(10000, shape.target, replace=False)
  return {
      "ce": {"image": images(shape.ce),
             "label": rng.integers(0, NUM_CLASSES, shape.ce).astype(np.int32)},
      "triplet": {"image": images(shape.ids * shape.instances),
                  "label": np.repeat(triplet_ids, shape.instances).astype(np.int32)},
      # [reals | fakes of style 1 | ... ]: every sample's real and fakes share its label (§4).
      "target": {"image": images(shape.target * STYLES),
                 "label": np.tile(target_labels, STYLES).astype(np.int32),
                 "is_fake": np.arange(shape.target * STYLES) >= shape.target},
  }


# ---------------------------------------------------------------------------------------------
# Ours.


def jax_step(shape: Shape, data: dict):
  """(compiled step, state, device batch, compile seconds): the library's HHL step as training
  builds it, lowered and compiled ahead of time (nothing runs)."""
  config = hhl_config_for(shape)
  model = heads.build_reid_net(config.model, NUM_CLASSES)
  init_image = jnp.zeros((1, shape.height, shape.width, 3), jnp.float32)
  variables = jax.jit(functools.partial(model.init, train=False))(
      {"params": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}, init_image)
  optimiser = optim.build_optimiser(variables["params"], config.optim,
                                    optim.reid_net_rules(config.optim.embedding_layers),
                                    steps_per_epoch=STEPS_PER_EPOCH)
  state = state_lib.create(variables["params"], variables.get("batch_stats"), optimiser.tx)
  train_step = steps.make_train_step(hhl.loss_fn(model, config), optimiser.tx)
  mesh = sharding_lib.data_mesh()
  jitted = loop.jit_step(train_step, mesh)
  batch = sharding_lib.shard_batch(data, mesh)
  rng = jax.random.PRNGKey(3)
  start = time.perf_counter()
  compiled = jitted.lower(state, batch, rng).compile()
  return compiled, state, batch, time.perf_counter() - start


def memory_figures(compiled) -> dict | None:
  """Bytes from XLA's compiled memory analysis: argument, output, alias (outputs written into
  donated arguments), temp, generated code and their total (what the step holds at its peak)."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  figures = {name: int(getattr(stats, f"{name}_size_in_bytes", 0) or 0)
             for name in ("argument", "output", "alias", "temp", "generated_code")}
  figures["total"] = (figures["argument"] + figures["output"] - figures["alias"]
                      + figures["temp"] + figures["generated_code"])
  return figures


def print_memory(figures: dict | None, shape: Shape, paper: bool):
  backend = jax.default_backend()
  what = "the paper step" if paper else "this step (not the paper step: --memory_only for it)"
  print(f"\nmemory of {what}, {shape.describe()}, from XLA's compiled memory analysis "
        f"({backend} backend):")
  if figures is None:
    print("  not available on this backend")
    return
  for name in ("argument", "output", "alias", "temp", "generated_code", "total"):
    print(f"  {name:15s} {figures[name] / GIB:8.2f} GiB")
  total = figures["total"] / GIB
  # 10 % and 1 GiB of headroom: the CUDA context, cuDNN workspaces, fragmentation.
  needed = math.ceil(total * 1.1 + 1.0)
  print(f"  total = argument + output - alias + temp + generated code: {total:.2f} GiB of state, "
        f"batch and activations for one step; fits a GPU with >= {needed} GiB")
  if backend == "cpu":
    print("  (this is the CPU compile's analysis, convolutions in models/conv.py's CPU "
          "formulations; a GPU compile schedules and fuses differently and can differ; "
          "docs/hhl.md §14 estimates 20-25 GB)")


def available_bytes() -> int | None:
  try:
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


# ---------------------------------------------------------------------------------------------
# The reference: HHL.py's network and step in PyTorch eager.


def _load_torch_resnet():
  path = (pathlib.Path(__file__).resolve().parent.parent / "tests" / "models"
          / "torch_resnet_reference.py")
  spec = importlib.util.spec_from_file_location("torch_resnet_reference", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_TORCH_ARCHS = {"resnet50": ((3, 4, 6, 3), 64), "resnet_small": ((1, 1, 1, 1), 16)}


class TorchHHLNet(tnn.Module):
  """HHL.py's `resnet50(num_features=1024, dropout=0.5, num_classes, triplet_features=128)`
  (docs/hhl.md §3)."""

  def __init__(self, arch, num_classes, num_features, triplet_features, dropout_rate):
    super().__init__()
    torch_resnet = _load_torch_resnet()
    layers, base_width = _TORCH_ARCHS[arch]
    self.base = torch_resnet.TorchResNet(layers, base_width)
    self.base.fc = tnn.Identity()  # torchvision's fc is not used (docs/hhl.md §3)
    channels = base_width * 8 * torch_resnet.Bottleneck.expansion
    self.feat = tnn.Linear(channels, num_features)
    self.feat_bn = tnn.BatchNorm1d(num_features)
    self.triplet = tnn.Linear(num_features, triplet_features)
    self.drop = tnn.Dropout(dropout_rate)
    self.classifier = tnn.Linear(num_features, num_classes)
    # docs/hhl.md §3.1
    tnn.init.kaiming_normal_(self.feat.weight, mode="fan_out")
    tnn.init.zeros_(self.feat.bias)
    for layer in (self.triplet, self.classifier):
      tnn.init.normal_(layer.weight, std=0.001)
      tnn.init.zeros_(layer.bias)

  def forward(self, x, output: str):
    """'logits' (the CE pass) or 'embedding' (the triplet and target passes: FC-128, no dropout)."""
    pool5 = self.base(x).mean((2, 3))
    r = torch.relu(self.feat_bn(self.feat(pool5)))
    if output == "embedding":
      return self.triplet(r)
    return self.classifier(self.drop(r))


def torch_batch_hard_triplet(embeddings, labels, margin):
  """open-reid's TripletLoss (docs/hhl.md §4): Euclidean with a clamp, hardest positive (self
  included) and hardest negative per anchor, MarginRankingLoss mean over anchors."""
  squared = embeddings.pow(2).sum(1, keepdim=True)
  d2 = squared + squared.t() - 2.0 * embeddings @ embeddings.t()
  dist = d2.clamp(min=1e-12).sqrt()
  same = labels[:, None] == labels[None, :]
  d_ap = dist.masked_fill(~same, float("-inf")).max(1).values
  d_an = dist.masked_fill(same, float("inf")).min(1).values
  return F.margin_ranking_loss(d_an, d_ap, torch.ones_like(d_an), margin=margin)


def torch_step(shape: Shape, data: dict):
  """(step(), net): one HHL.py iteration on `data`, channels_last."""
  config = hhl_config_for(shape)
  model, o, h = config.model, config.optim, config.hhl
  torch.manual_seed(0)
  net = TorchHHLNet(model.arch, NUM_CLASSES, model.num_features, model.triplet_features,
                    model.dropout_rate).to(memory_format=torch.channels_last).train()
  # HHL.py: two groups, trunk x0.1 and the classifier x1; feat, feat_bn and triplet in neither.
  optimiser = torch.optim.SGD(
      [{"params": net.base.parameters(), "lr": o.base_lr * o.lr_mult["trunk"]},
       {"params": net.classifier.parameters(), "lr": o.base_lr * o.lr_mult["classifier"]}],
      lr=o.base_lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)

  def images(x):
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

  def labels(y):
    return torch.from_numpy(np.asarray(y, np.int64))

  ce_x, ce_y = images(data["ce"]["image"]), labels(data["ce"]["label"])
  tri_x, tri_y = images(data["triplet"]["image"]), labels(data["triplet"]["label"])
  tgt_x, tgt_y = images(data["target"]["image"]), labels(data["target"]["label"])
  triplet_labels = torch.cat([tri_y, tgt_y])

  def step():
    optimiser.zero_grad(set_to_none=True)
    logits = net(ce_x, "logits")  # CE -> triplet -> target: each pass its own BN statistics
    source = net(tri_x, "embedding")
    target = net(tgt_x, "embedding")
    cross_entropy = F.cross_entropy(logits, ce_y)
    triplet = torch_batch_hard_triplet(torch.cat([source, target]), triplet_labels, h.margin)
    loss = cross_entropy + h.beta * triplet
    loss.backward()
    optimiser.step()
    return loss.item()

  return step, net


# ---------------------------------------------------------------------------------------------


def choose_scale(paper_figures) -> tuple[int, str]:
  """The batch scale to time at and why (the paper step unless it does not fit the memory)."""
  if _BATCH_SCALE.value:
    return _BATCH_SCALE.value, "--batch_scale"
  available = available_bytes()
  if paper_figures is None or available is None:
    return 1, "memory unknown"
  for scale in sorted(SCALED):
    needed = paper_figures["total"] * _BOTH_SIDES / scale + _FIXED
    if needed <= available:
      return scale, (f"needs about {needed / GIB:.1f} GiB for both sides, {available / GIB:.1f} "
                     "GiB available")
  return max(SCALED), f"even 1/{max(SCALED)} may not fit {available / GIB:.1f} GiB available"


def main(argv):
  del argv
  wall_start = time.perf_counter()
  retained = _RETAIN_MEMORY.value and runtime.retain_freed_memory()  # before JAX starts its threads
  threads = len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), malloc {runtime.allocator()}"
        f"{' retained heap' if retained else ''}", flush=True)

  if _QUICK.value:
    shape, note = QUICK, "quick"
    data = numpy_batch(shape)
    compiled, state, batch, seconds = jax_step(shape, data)
    print(f"ours: compiled in {seconds:.1f} s", flush=True)
    print_memory(memory_figures(compiled), shape, paper=False)
  else:
    want_memory = _MEMORY.value or _MEMORY_ONLY.value
    if _BATCH_SCALE.value and _BATCH_SCALE.value not in SCALED:
      raise app.UsageError(f"--batch_scale must be one of {sorted(SCALED)} or 0")
    if not want_memory and not _BATCH_SCALE.value:
      raise app.UsageError("--nomemory needs --batch_scale (the scale is chosen from the memory "
                           "analysis)")
    paper_figures = None
    if want_memory or _BATCH_SCALE.value == 1:
      data = numpy_batch(PAPER)
      compiled, state, batch, seconds = jax_step(PAPER, data)
      print(f"ours: paper step compiled in {seconds:.1f} s", flush=True)
      if want_memory:
        paper_figures = memory_figures(compiled)
        print_memory(paper_figures, PAPER, paper=True)
    if _MEMORY_ONLY.value:
      return
    scale, why = choose_scale(paper_figures)
    shape = SCALED[scale]
    note = "paper step" if scale == 1 else f"paper step / {scale}"
    print(f"\ntimed: {note} ({why})", flush=True)
    if scale != 1:
      if want_memory:
        del compiled, state, batch
      data = numpy_batch(shape)
      compiled, state, batch, seconds = jax_step(shape, data)
      print(f"ours: compiled in {seconds:.1f} s", flush=True)
  print(f"step: {shape.describe()}, three train-mode passes, f32", flush=True)
  holder = {"state": state}
  rng = jax.random.PRNGKey(3)

  def run_ours():
    holder["state"], metrics = compiled(holder["state"], batch, rng)
    jax.block_until_ready(metrics["loss"])
    return metrics

  step_torch, _ = torch_step(shape, data)
  runners = {"ours_auto": run_ours, "torch_eager_channels_last": step_torch}
  start = time.perf_counter()
  metrics = run_ours()
  print(f"ours: first step {time.perf_counter() - start:.1f} s, loss {float(metrics['loss']):.3f}",
        flush=True)
  start = time.perf_counter()
  loss = step_torch()
  print(f"torch: first step {time.perf_counter() - start:.1f} s, loss {loss:.3f}", flush=True)
  if not _QUICK.value:  # one more warm-up each: the first steps after compiling allocate
    for run in runners.values():
      run()

  repeats = 2 if _QUICK.value else _REPEATS.value
  times, cpu_times = report.alternate(runners, repeats)
  config = (f"hhl {note}: {shape.describe()} f32 channels_last eager"
            f"{' retained heap' if retained else ''}")
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  print(f"process peak RSS {peak / GIB:.1f} GiB (both sides); "
        f"wall {time.perf_counter() - wall_start:.0f} s", flush=True)
  report.print_rates("hhl_step_img_per_s", times, cpu_times, shape.images, config)


if __name__ == "__main__":
  app.run(main)
