"""CPU training step: our ResNet-50 re-ID step vs the same network in PyTorch (eager and compiled).

  python -m benchmarks.train_step [--quick] [--arch resnet50|resnet_small] [--batch 32]
      [--height 256 --width 128] [--repeats 5] [--with_xla] [--noretain_memory]

Ours: `reid_jax.models.heads.ReIDNet(arch, num_features=0, triplet_features=0, dropout_rate=0)`
(trunk -> pool5 -> linear classifier), the library's `steps.baseline_loss_fn` (softmax cross-entropy)
and `steps.make_train_step` with SGD momentum 0.9, one `jax.jit` step with the state donated; convs
via `reid_jax.models.conv` with impl='auto' (matmul and Winograd formulations on CPU).
`--with_xla` also times the same step with every conv on `lax.conv_general_dilated` (the plain
Flax baseline, slow).
Reference: the same architecture written below in PyTorch (no torchvision), float32, channels_last,
`torch.optim.SGD(momentum=0.9)`, eager and `torch.compile`. One process, the implementations
alternate run by run (the CPU is shared), medians; ratio = ours / reference in images per second.
`runtime.retain_freed_memory()` is called first (process-wide, so torch gets it too; --noretain_memory
to compare). Images per CPU-second (process user+sys) are printed too: under heavy load wall times
mostly measure the other processes.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import os
import time

# Before torch starts OpenMP: its threads' default spin-wait took CPU from our step (WORKSPACE.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from absl import app
from absl import flags
import jax
import torch
from torch import nn as tnn

from benchmarks import report
from benchmarks import resnet_step

_QUICK = flags.DEFINE_bool("quick", False,
                           "resnet_small at 128x64, batch 16, 3 repeats, no torch.compile (a minute).")
_ARCH = flags.DEFINE_enum("arch", "resnet50", ["resnet50", "resnet_small"], "Trunk.")
_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_HEIGHT = flags.DEFINE_integer("height", 256, "Image height.")
_WIDTH = flags.DEFINE_integer("width", 128, "Image width.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps per implementation.")
_WITH_XLA = flags.DEFINE_bool("with_xla", False, "Also time convs on lax.conv_general_dilated.")
_NO_COMPILE = flags.DEFINE_bool("no_compile", False, "Skip torch.compile.")
_RETAIN_MEMORY = flags.DEFINE_bool(
    "retain_memory", True, "runtime.retain_freed_memory() first (both sides share the allocator).")
_NUM_CLASSES = resnet_step.NUM_CLASSES

_ARCHS = {"resnet50": ((3, 4, 6, 3), 64), "resnet_small": ((1, 1, 1, 1), 16)}


# ---------------------------------------------------------------------------------------------
# The reference: torchvision's ResNet (v1.5 bottleneck) re-written, with our re-ID head.


class TorchBottleneck(tnn.Module):

  def __init__(self, cin, width, stride):
    super().__init__()
    out = 4 * width
    self.conv1, self.bn1 = tnn.Conv2d(cin, width, 1, bias=False), tnn.BatchNorm2d(width)
    self.conv2 = tnn.Conv2d(width, width, 3, stride, 1, bias=False)
    self.bn2 = tnn.BatchNorm2d(width)
    self.conv3, self.bn3 = tnn.Conv2d(width, out, 1, bias=False), tnn.BatchNorm2d(out)
    self.downsample = None
    if stride != 1 or cin != out:
      self.downsample = tnn.Sequential(tnn.Conv2d(cin, out, 1, stride, bias=False),
                                       tnn.BatchNorm2d(out))

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchReIDNet(tnn.Module):
  """ResNet trunk -> global average pool (pool5) -> linear classifier."""

  def __init__(self, stage_sizes, base_width, num_classes):
    super().__init__()
    layers = [tnn.Conv2d(3, base_width, 7, 2, 3, bias=False), tnn.BatchNorm2d(base_width),
              tnn.ReLU(), tnn.MaxPool2d(3, 2, 1)]
    cin = base_width
    for s, blocks in enumerate(stage_sizes):
      width = base_width * 2**s
      for b in range(blocks):
        layers.append(TorchBottleneck(cin, width, 2 if (b == 0 and s > 0) else 1))
        cin = 4 * width
    self.trunk = tnn.Sequential(*layers)
    self.classifier = tnn.Linear(cin, num_classes)

  def pool5(self, x):
    return self.trunk(x).mean((2, 3))

  def forward(self, x):
    return self.classifier(self.pool5(x))


def torch_model(arch, num_classes):
  torch.manual_seed(0)
  return TorchReIDNet(*_ARCHS[arch], num_classes).to(memory_format=torch.channels_last)


def torch_images(batch, height, width):
  generator = torch.Generator().manual_seed(0)
  images = torch.randn(batch, 3, height, width, generator=generator)
  return images.contiguous(memory_format=torch.channels_last)


def torch_train_step(model):
  optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

  def step(images, labels):
    optimiser.zero_grad(set_to_none=True)
    loss = tnn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimiser.step()
    return loss

  return step


def main(argv):
  del argv
  retained = _RETAIN_MEMORY.value and runtime.retain_freed_memory()  # before JAX starts its threads
  arch, batch, repeats = _ARCH.value, _BATCH.value, _REPEATS.value
  height, width = _HEIGHT.value, _WIDTH.value
  if _QUICK.value:
    arch, batch, repeats, height, width = "resnet_small", 16, 3, 128, 64
  config = f"{arch} {height}x{width} b{batch} f32{' retained heap' if retained else ''}"
  print(f"{config}, jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)", flush=True)

  runners = {}
  impls = ["auto"] + (["xla"] if _WITH_XLA.value else [])
  for impl in impls:
    start = time.perf_counter()
    step, state, data = resnet_step.jax_train_step(arch, batch, height, width, impl)
    print(f"ours[{impl}]: compiled + first step {time.perf_counter() - start:.1f} s", flush=True)
    holder = {"state": state}

    def run_ours(step=step, holder=holder, data=data):
      holder["state"], metrics = step(holder["state"], data, jax.random.PRNGKey(3))
      jax.block_until_ready(metrics["loss"])
    runners[f"ours_{impl}"] = run_ours

  images = torch_images(batch, height, width)
  labels = torch.arange(batch) % _NUM_CLASSES
  eager_step = torch_train_step(torch_model(arch, _NUM_CLASSES))
  runners["torch_eager_channels_last"] = lambda: eager_step(images, labels)
  if not (_NO_COMPILE.value or _QUICK.value):
    compiled_model = torch.compile(torch_model(arch, _NUM_CLASSES))
    compiled_step = torch_train_step(compiled_model)
    start = time.perf_counter()
    compiled_step(images, labels)
    print(f"torch.compile: compiled + first step {time.perf_counter() - start:.1f} s", flush=True)
    runners["torch_compile_channels_last"] = lambda: compiled_step(images, labels)
  for _ in range(2):  # warm-up, every implementation alike: the first steps after compiling allocate
    for run in runners.values():
      run()

  times, cpu_times = report.alternate(runners, repeats)
  report.print_rates("train_step_img_per_s", times, cpu_times, batch, config)

if __name__ == "__main__":
  app.run(main)
