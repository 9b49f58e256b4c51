"""CPU feature extraction (eval forward to pool5): ours vs PyTorch eager and torch.compile.

  python -m benchmarks.extract [--quick] [--arch resnet50|resnet_small] [--batch 128]
      [--height 256 --width 128] [--repeats 5] [--with_xla]

Ours: `ReIDNet.pool5` (trunk in eval mode, running BN statistics, global average pool), one
`jax.jit` per batch shape, convs via `reid_jax.models.conv` impl='auto'; `--with_xla` adds every conv
on `lax.conv_general_dilated`. Reference: the same network in PyTorch (benchmarks/train_step.py),
float32, channels_last, `torch.inference_mode()`, eager and `torch.compile`. One process,
alternating runs, medians; ratio = ours / reference in images per second.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import functools
import os
import time

# Before torch starts OpenMP: its threads' default spin-wait took CPU from our step (WORKSPACE.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from absl import app
from absl import flags
import jax
import torch

from benchmarks import report
from benchmarks import resnet_step
from benchmarks import train_step as bench
from reid_jax import xla_options

# The flags (--quick --arch --batch --height --width --repeats --with_xla --retain_memory) are benchmarks.train_step's;
# --batch defaults to 128 here, --quick means resnet_small at 128x64, batch 32, no torch.compile.
_QUICK, _ARCH, _BATCH, _HEIGHT, _WIDTH, _REPEATS, _WITH_XLA = (
    bench._QUICK, bench._ARCH, bench._BATCH, bench._HEIGHT, bench._WIDTH, bench._REPEATS,
    bench._WITH_XLA)


def jax_extractor(arch, batch, height, width, impl):
  """(jitted pool5 function, variables, images)."""
  model = resnet_step.reid_net(arch)
  images = jax.random.normal(jax.random.PRNGKey(0), (batch, height, width, 3))
  with resnet_step.conv_impl(impl):
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.PRNGKey(1), images)
    extract = xla_options.jit(functools.partial(model.apply, method=model.pool5, train=False))
    jax.block_until_ready(extract(variables, images))  # compile under the chosen impl
  return extract, variables, images


def main(argv):
  del argv
  retained = bench._RETAIN_MEMORY.value and runtime.retain_freed_memory()  # before JAX's threads
  arch, batch, repeats = _ARCH.value, _BATCH.value, _REPEATS.value
  height, width = _HEIGHT.value, _WIDTH.value
  if _QUICK.value:
    arch, batch, repeats, height, width = "resnet_small", 32, 3, 128, 64
  config = f"{arch} {height}x{width} b{batch} f32 eval pool5{' retained heap' if retained else ''}"
  print(f"{config}, jax {jax.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)", flush=True)

  runners = {}
  for impl in ["auto"] + (["xla"] if _WITH_XLA.value else []):
    extract, variables, images = jax_extractor(arch, batch, height, width, impl)
    runners[f"ours_{impl}"] = functools.partial(
        lambda f, v, x: jax.block_until_ready(f(v, x)), extract, variables, images)

  torch_images = bench.torch_images(batch, height, width)
  eager = bench.torch_model(arch, bench._NUM_CLASSES).eval()
  torch_models = {"torch_eager_channels_last": eager.pool5}
  if not _QUICK.value:
    torch_models["torch_compile_channels_last"] = torch.compile(bench.torch_model(arch, bench._NUM_CLASSES).eval().pool5)
  for name, fn in torch_models.items():
    def run(fn=fn):
      with torch.inference_mode():
        return fn(torch_images)
    start = time.perf_counter()
    for _ in range(2):  # warm-up (and compilation)
      run()
    print(f"{name}: warm-up {time.perf_counter() - start:.1f} s", flush=True)
    runners[name] = run

  times, cpu_times = report.alternate(runners, repeats)
  report.print_rates("extract_img_per_s", times, cpu_times, batch, config)


if __name__ == "__main__":
  flags.FLAGS.set_default("batch", 128)
  app.run(main)
