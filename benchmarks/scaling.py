r"""Data-parallel scaling of the baseline train step on one host; on a GPU, bfloat16 vs float32 and
PyTorch AMP.

  python -m benchmarks.scaling [--quick] [--devices 1,2,4,8] [--force_devices 8]
      [--scaling_batch 32] [--repeats 7] [--steps 20] [--batch 128] [--noscaling] [--nogpu]

Scaling (every backend; always on the host CPU): the direct-transfer baseline's train step as
training builds it (`configs/baseline.py:tiny`: resnet_small 64x32, FC-128, dropout 0.5, batch
32, 300 classes; `model.pretrained` empty, the trunk is random: timing only) with
`baseline.METHOD` (`build_model`, `init_model`, `loss_fn`), `optim.build_optimiser`,
`state_lib.create`, `steps.make_train_step`, `loop.jit_step` on `sharding.data_mesh(devices[:n])`
for n = 1, 2, 4, 8, the same global batch every time (n devices hold 32 / n images each;
BatchNorm statistics over the whole batch, bn_groups 1, as the tiny config). A timed step is
what `loop.run` repeats minus the data: `sharding.shard_batch` of the host (numpy) batch, the
compiled step with `loop.step_rng`, `jax.device_get` of the metrics. The steps run in one child
process started with `--xla_force_host_platform_device_count=8` appended to XLA_FLAGS and
JAX_PLATFORMS=cpu (the device count is fixed when JAX starts); its meshes alternate run by run
(the CPU is shared and load drifts), medians. Reference: the 1-device mesh in the same child;
ratio = n devices / 1 device in images per second (> 1: sharding gains). On one host the forced
devices share the same cores, so this measures the partitioning's overhead (smaller per-device
convolutions, the all-reduces of gradients and of every BatchNorm's statistics, the per-device
dispatch), not a speed-up a real multi-device machine would give. Forcing 8 devices also costs the
1-device mesh: XLA:CPU's Eigen thread pool ("tf_XLAEigen") then has 8 threads instead of one per
core; on 2 cores the 1-device step took 1.3-1.7x the CPU time of the same step in a process
without forced devices (`--devices=1 --force_devices=1` times that process).

GPU (only when `jax.devices('gpu')` is non-empty; otherwise one line says it is skipped): the
paper baseline step (`configs/baseline.py:paper`: ResNet-50 256x128, FC-1024, BN-1024, dropout,
702 classes, SGD Nesterov, batch 128 or --batch) on one GPU, with
`model.dtype` 'bfloat16' (compute in bfloat16; parameters, BatchNorm statistics, pool5, logits
and the loss float32: models/resnet.py, models/heads.py) vs 'float32'. Reference: the same
network in PyTorch on tests/models/torch_resnet_reference.py (no torchvision), channels_last,
cudnn.benchmark, `torch.optim.SGD(momentum=0.9, nesterov=True, weight_decay=5e-4)` with the trunk
at 0.01 and the heads at 0.1, float32 and `torch.autocast` bfloat16 and float16 (float16 with a
GradScaler); float32 on both sides at each framework's default precision (both may use TF32).
Both sides keep the batch on the GPU and wait for each step's loss (as `loop.run` and a torch loop
calling `loss.item()` do); the implementations alternate run by run, medians. The PyTorch side
is skipped (one line) when torch has no CUDA. JAX does not preallocate GPU memory here
(XLA_PYTHON_CLIENT_PREALLOCATE=false unless set) so that torch fits beside it.

Images per CPU-second (process user+sys; the child's for the scaling rows) are printed too.
Ends with one JSON line per comparison (benchmarks/report.py). `--quick` (70 s of CPU, most of
it compiling the four meshes' steps: 1-2 minutes on 2 cores): 3 timed rounds of 5 steps; on a GPU
the ResNet-50 step at batch 32 and 2 rounds. The default run took 2 minutes on 2 cores.

Measured (2-core development machine, glibc malloc, beside a running test suite: load 8; the
default run): 1, 2, 4, 8 devices 527, 478, 405, 283 img/s (0.91, 0.77, 0.54 of the 1-device mesh),
the CPU time per image growing with n as much as the wall time (452, 349, 333, 253 img/CPU-s):
the overhead is work (collectives, per-device dispatch, smaller convolutions), not waiting.

Measured on one NVIDIA H200 (2026-12-04; that machine's own jax 0.11.2 with CUDA 13, flax
0.12.10, torch 2.11.0+cu130; `--noscaling`, batch 128, median of 7 runs of 20 steps): ours
float32 4297 img/s, bfloat16 6414 (1.49x); torch float32 4251, AMP bfloat16 5959, AMP float16
6784: ours / torch 1.01 in float32, 1.08 against AMP bfloat16, 0.95 against AMP float16. The
same machine's scaling rows (`--nogpu --quick`, 16 cores): 1951, 1566, 1293, 836 img/s (0.80,
0.66, 0.43 of the 1-device mesh).
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it (the
# child inherits LD_PRELOAD and is not re-executed again).
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import contextlib
import logging
import os
import pathlib
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import report
from reid_jax.configs import baseline as baseline_config
from reid_jax.training import baseline
from reid_jax.training import loop
from reid_jax.training import optim
from reid_jax.training import sharding
from reid_jax.training import state as state_lib
from reid_jax.training import steps

_QUICK = flags.DEFINE_bool("quick", False, "3 rounds of 5 steps; GPU: batch 32, 2 rounds.")
_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4", "8"],
                             "Mesh sizes of the scaling rows (the child forces the largest).")
_FORCE_DEVICES = flags.DEFINE_integer(
    "force_devices", 0, "Host devices the child forces; 0: the largest of --devices (--devices=1 "
    "--force_devices=1: the one-device process without forced devices).")
_SCALING_BATCH = flags.DEFINE_integer("scaling_batch", 0,
                                      "Global batch of the scaling rows; 0: the tiny config's.")
_REPEATS = flags.DEFINE_integer("repeats", 0, "Timed rounds; 0: 7 (quick 3; GPU quick 2).")
_STEPS = flags.DEFINE_integer("steps", 0, "Steps per timed run; 0: 20 (quick 5).")
_BATCH = flags.DEFINE_integer("batch", 0, "Batch of the GPU ResNet-50 step; 0: 128 (quick 32).")
_SCALING = flags.DEFINE_bool("scaling", True, "Run the CPU scaling rows (the child process).")
_GPU = flags.DEFINE_bool("gpu", True, "Run the GPU comparison when there is a GPU.")
_CHILD = flags.DEFINE_bool("scaling_child", False,
                           "Internal: this is the child with the forced host devices.")
_RETAIN_MEMORY = flags.DEFINE_bool(
    "retain_memory", True, "runtime.retain_freed_memory() first (CPU; both sides share the heap).")

REPO = pathlib.Path(__file__).resolve().parent.parent
FORCE_FLAG = "--xla_force_host_platform_device_count"
METRIC = "train_step_img_per_s"
TINY_CLASSES, TINY_STEPS_PER_EPOCH = 300, 5000 // 32  # the `medium` synthetic world (tiny config)
PAPER_CLASSES, PAPER_STEPS_PER_EPOCH = 702, 16522 // 128  # a Duke source (docs/hhl.md §3, §5)


def child_env(environ, device_count: int) -> dict:
  """The child's environment: `FORCE_FLAG=device_count` appended to XLA_FLAGS, JAX on the CPU."""
  xla_flags = " ".join(filter(None, (environ.get("XLA_FLAGS", "").strip(),
                                     f"{FORCE_FLAG}={device_count}")))
  return dict(environ, XLA_FLAGS=xla_flags, JAX_PLATFORMS="cpu")


def mesh_sizes(values, batch: int) -> list[int]:
  """The sorted distinct mesh sizes of --devices; ValueError unless each is >= 1 and splits
  `batch` evenly."""
  sizes = sorted({int(v) for v in values})
  bad = [n for n in sizes if n < 1 or batch % n]
  if not sizes or bad:
    raise ValueError(f"--devices {','.join(map(str, values))}: every size must be >= 1 and divide "
                     f"the batch {batch}")
  return sizes


def scaling_rows(rates: dict[int, float], cpu_rates: dict[int, float], batch: int) -> list[str]:
  """The printed table: one row per mesh size, images/s and its ratio to the smallest mesh."""
  base = rates[min(rates)]
  rows = [f"{'devices':>7s} {'img/s':>9s} {'vs ' + str(min(rates)):>6s} {'img/CPU-s':>10s} "
          f"{'img/device':>10s}"]
  for n in sorted(rates):
    rows.append(f"{n:7d} {rates[n]:9.1f} {rates[n] / base:6.2f} {cpu_rates[n]:10.1f} "
                f"{batch // n:10d}")
  return rows


# ---------------------------------------------------------------------------------------------
# Ours: the baseline step as `trainer.train` builds it.


def host_batch(config, batch: int, num_classes: int, seed: int = 0) -> dict:
  """A combined batch `{'ce': {'image': [B, H, W, 3] float32, 'label': [B] int32}}` in numpy."""
  rng = np.random.default_rng(seed)
  shape = (batch, config.data.height, config.data.width, 3)
  return {"ce": {"image": rng.standard_normal(shape, dtype=np.float32),
                 "label": rng.integers(0, num_classes, batch).astype(np.int32)}}


def baseline_parts(config, num_classes: int, steps_per_epoch: int):
  """(train_step, host state): `trainer.train`'s baseline step (not jitted) and its initial state
  as numpy arrays (every mesh replicates its own copy: the step donates it)."""
  method = baseline.METHOD
  model = method.build_model(config.model, num_classes)
  init_images = jnp.zeros((1, config.data.height, config.data.width, 3), jnp.float32)
  variables = jax.jit(lambda key: method.init_model(model, key, init_images))(
      jax.random.PRNGKey(config.seed))
  params, batch_stats = variables["params"], variables.get("batch_stats", {})
  optimiser = optim.build_optimiser(params, config.optim, method.optimiser_rules(config),
                                    steps_per_epoch)
  state = jax.device_get(state_lib.create(params, batch_stats, optimiser.tx))
  return steps.make_train_step(method.loss_fn(model, config), optimiser.tx), state


def compile_on(mesh, train_step, host_state, data: dict, seed: int):
  """(compiled step, state on `mesh`, compile seconds): `loop.jit_step` on `mesh`, lowered for
  `data` (a host batch) and compiled ahead of time."""
  state = sharding.replicate(host_state, mesh)
  start = time.perf_counter()
  compiled = loop.jit_step(train_step, mesh).lower(
      state, sharding.shard_batch(data, mesh), loop.step_rng(seed, 0)).compile()
  return compiled, state, time.perf_counter() - start


def loop_runner(compiled, state, data: dict, mesh, seed: int, steps_per_run: int,
                host_data: bool = True):
  """`run()`: `steps_per_run` steps as `loop.run` takes them: shard the host batch (or reuse it
  on the devices, `host_data=False`), step with the step's key, fetch the metrics."""
  holder = {"state": state, "step": 0}
  device_data = None if host_data else sharding.shard_batch(data, mesh)

  def run():
    for _ in range(steps_per_run):
      batch = sharding.shard_batch(data, mesh) if host_data else device_data
      holder["state"], metrics = compiled(holder["state"], batch,
                                          loop.step_rng(seed, holder["step"]))
      host = jax.device_get(metrics)
      holder["step"] += 1
    return float(host["loss"])

  return run


def tiny_config():
  config = baseline_config.get_config("tiny")
  config.model.pretrained = ""  # timing only: a random trunk
  return config


def scaling_child() -> int:
  """The child: the scaling rows over `jax.devices()[:n]` (forced host CPU devices)."""
  retained = _RETAIN_MEMORY.value and runtime.retain_freed_memory()  # before JAX starts its threads
  config = tiny_config()
  batch = _SCALING_BATCH.value or config.data.batch_size
  config.data.batch_size = batch
  sizes = mesh_sizes(_DEVICES.value, batch)
  devices = jax.devices()
  if len(devices) < max(sizes):
    print(f"only {len(devices)} devices ({FORCE_FLAG} not honoured?); --devices wants "
          f"{max(sizes)}", flush=True)
    return 1
  steps_per_run = _STEPS.value or (5 if _QUICK.value else 20)
  repeats = _REPEATS.value or (3 if _QUICK.value else 7)
  cores = len(os.sched_getaffinity(0))
  describe = (f"baseline tiny {config.model.arch} {config.data.height}x{config.data.width} "
              f"b{batch} f32")
  print(f"child: {len(devices)} {devices[0].platform} devices on {cores} cores, jax "
        f"{jax.__version__}, malloc {runtime.allocator()}{' retained heap' if retained else ''}; "
        f"{describe}; a run = {steps_per_run} x (shard_batch + step + device_get)", flush=True)
  data = host_batch(config, batch, TINY_CLASSES)
  start = time.perf_counter()
  train_step, host_state = baseline_parts(config, TINY_CLASSES, TINY_STEPS_PER_EPOCH)
  print(f"state initialised in {time.perf_counter() - start:.1f} s", flush=True)
  runners = {}
  for n in sizes:
    mesh = sharding.data_mesh(devices[:n])
    sharding.check_batch_size(batch, mesh)
    compiled, state, seconds = compile_on(mesh, train_step, host_state, data, config.seed)
    print(f"mesh of {n}: compiled in {seconds:.1f} s", flush=True)
    runners[n] = loop_runner(compiled, state, data, mesh, config.seed, steps_per_run)
  for run in runners.values():  # warm-up: the first steps after compiling allocate
    run()
  times, cpu_times = report.alternate({f"{n}dev": run for n, run in runners.items()}, repeats)
  images = batch * steps_per_run
  rates = {n: images / statistics.median(times[f"{n}dev"]) for n in sizes}
  cpu_rates = {n: images / max(statistics.median(cpu_times[f"{n}dev"]), 1e-9) for n in sizes}
  print(f"\nimages/s (median of {repeats} runs of {steps_per_run} steps), the same global batch "
        f"of {batch} on every mesh:")
  for row in scaling_rows(rates, cpu_rates, batch):
    print("  " + row)
  base = min(sizes)
  for n in sizes:
    if n != base:
      print(report.comparison(
          METRIC, rates[n], f"{base}_device_mesh", rates[base],
          f"{describe} mesh of {n} of {len(devices)} forced host cpu devices, {cores} cores, "
          f"shard_batch+step+device_get"), flush=True)
  return 0


def run_scaling_child() -> int:
  """Starts the child with the forced devices; its output goes straight to ours."""
  count = max(int(v) for v in _DEVICES.value)
  if _FORCE_DEVICES.value:
    if _FORCE_DEVICES.value < count:
      raise app.UsageError(f"--force_devices={_FORCE_DEVICES.value} is below the largest of "
                           f"--devices ({count})")
    count = _FORCE_DEVICES.value
  command = [sys.executable, "-m", "benchmarks.scaling", *sys.argv[1:], "--scaling_child"]
  env = child_env(os.environ, count)
  print(f"\n== scaling: child with XLA_FLAGS={env['XLA_FLAGS']!r} JAX_PLATFORMS=cpu", flush=True)
  return subprocess.run(command, env=env, cwd=REPO, check=False).returncode


# ---------------------------------------------------------------------------------------------
# GPU: ResNet-50 bfloat16 vs float32, and PyTorch AMP.


def gpu_devices() -> list:
  """`jax.devices('gpu')`, or [] where this jax has no GPU backend or the machine no GPU."""
  bridge = logging.getLogger("jax._src.xla_bridge")  # "Unable to initialize backend 'tpu'" lines
  level = bridge.level
  bridge.setLevel(logging.WARNING)
  try:
    return jax.devices("gpu")
  except RuntimeError:
    return []
  finally:
    bridge.setLevel(level)


def paper_config(dtype: str, arch: str = "resnet50", height: int = 256, width: int = 128):
  config = baseline_config.get_config("paper")
  config.model.pretrained = ""  # timing only: a random trunk
  config.model.dtype = dtype
  config.model.arch = arch
  config.data.height, config.data.width = height, width
  return config


def _load_torch_resnet():
  import importlib.util
  path = REPO / "tests" / "models" / "torch_resnet_reference.py"
  spec = importlib.util.spec_from_file_location("torch_resnet_reference", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_TORCH_ARCHS = {"resnet50": ((3, 4, 6, 3), 64), "resnet_small": ((1, 1, 1, 1), 16)}


def torch_runner(config, data: dict, num_classes: int, device: str, amp_dtype, steps_per_run: int):
  """`run()`: `steps_per_run` steps of the baseline network in PyTorch on `device`, channels_last,
  under `torch.autocast(amp_dtype)` unless it is None (float16: with a GradScaler); each step
  waits for its loss."""
  import torch
  from torch import nn
  from torch.nn import functional as F

  torch_resnet = _load_torch_resnet()
  model, o = config.model, config.optim
  layers, base_width = _TORCH_ARCHS[model.arch]
  torch.manual_seed(0)
  trunk = torch_resnet.TorchResNet(layers, base_width, last_stride=model.last_stride)
  trunk.fc = nn.Identity()
  channels = base_width * 8 * torch_resnet.Bottleneck.expansion
  heads = nn.Sequential(nn.Linear(channels, model.num_features), nn.BatchNorm1d(model.num_features),
                        nn.ReLU(), nn.Dropout(model.dropout_rate),
                        nn.Linear(model.num_features, num_classes))
  trunk = trunk.to(device, memory_format=torch.channels_last).train()
  heads = heads.to(device).train()
  optimiser = torch.optim.SGD(
      [{"params": trunk.parameters(), "lr": o.base_lr * o.lr_mult["trunk"]},
       {"params": heads.parameters(), "lr": o.base_lr * o.lr_mult["classifier"]}],
      lr=o.base_lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
  scaler = torch.amp.GradScaler(device) if amp_dtype == torch.float16 else None
  images = torch.from_numpy(data["ce"]["image"]).permute(0, 3, 1, 2).to(device).contiguous(
      memory_format=torch.channels_last)
  labels = torch.from_numpy(data["ce"]["label"].astype(np.int64)).to(device)

  def step():
    optimiser.zero_grad(set_to_none=True)
    with (contextlib.nullcontext() if amp_dtype is None
          else torch.autocast(device, dtype=amp_dtype)):
      logits = heads(trunk(images).mean((2, 3)))
    loss = F.cross_entropy(logits.float(), labels)
    if scaler is None:
      loss.backward()
      optimiser.step()
    else:
      scaler.scale(loss).backward()
      scaler.step(optimiser)
      scaler.update()
    return loss.item()

  def run():
    for _ in range(steps_per_run):
      loss = step()
    return loss

  return run


def gpu_runners(devices, batch: int, steps_per_run: int, torch_device: str | None,
                arch: str = "resnet50", height: int = 256, width: int = 128):
  """`{name: run}`: ours in float32 and bfloat16 on a one-device mesh of `devices[0]`, then (with
  a `torch_device`) torch float32, AMP bfloat16 and AMP float16."""
  mesh = sharding.data_mesh(devices[:1])
  data = host_batch(paper_config("float32", arch, height, width), batch, PAPER_CLASSES)
  runners = {}
  for dtype in ("float32", "bfloat16"):
    config = paper_config(dtype, arch, height, width)
    config.data.batch_size = batch
    train_step, host_state = baseline_parts(config, PAPER_CLASSES, PAPER_STEPS_PER_EPOCH)
    compiled, state, seconds = compile_on(mesh, train_step, host_state, data, config.seed)
    print(f"ours {dtype}: compiled in {seconds:.1f} s", flush=True)
    runners[f"ours_{dtype}"] = loop_runner(compiled, state, data, mesh, config.seed, steps_per_run,
                                           host_data=False)
  if torch_device is not None:
    import torch
    config = paper_config("float32", arch, height, width)
    for name, amp_dtype in (("float32", None), ("amp_bfloat16", torch.bfloat16),
                            ("amp_float16", torch.float16)):
      runners[f"torch_{name}"] = torch_runner(config, data, PAPER_CLASSES, torch_device, amp_dtype,
                                              steps_per_run)
  return runners


# Ours -> the references it is compared with.
GPU_COMPARISONS = {"ours_bfloat16": ("ours_float32", "torch_amp_bfloat16", "torch_amp_float16"),
                   "ours_float32": ("torch_float32",)}


def gpu_comparison(devices) -> None:
  batch = _BATCH.value or (32 if _QUICK.value else 128)
  repeats = _REPEATS.value or (2 if _QUICK.value else 7)
  steps_per_run = _STEPS.value or (5 if _QUICK.value else 20)
  torch_device = None
  try:
    import torch
    if torch.cuda.is_available():
      torch_device = "cuda"
      torch.backends.cudnn.benchmark = True
      print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}", flush=True)
    else:
      print(f"torch {torch.__version__} has no CUDA here: the PyTorch AMP reference is skipped",
            flush=True)
  except ImportError:
    print("no torch: the PyTorch AMP reference is skipped", flush=True)
  describe = f"baseline paper resnet50 256x128 b{batch}"
  print(f"{describe} on {devices[0].device_kind}, a run = {steps_per_run} steps (batch on the "
        f"device, each step's loss fetched)", flush=True)
  runners = gpu_runners(devices, batch, steps_per_run, torch_device)
  for run in runners.values():  # warm-up (cudnn.benchmark autotunes on the first steps)
    run()
  times, cpu_times = report.alternate(runners, repeats)
  images = batch * steps_per_run
  rates = {name: images / statistics.median(t) for name, t in times.items()}
  print(f"\nimages/s (median of {repeats} runs of {steps_per_run} steps), and images per "
        "CPU-second:")
  for name, rate in rates.items():
    print(f"  {name:22s} {rate:9.1f} {images / max(statistics.median(cpu_times[name]), 1e-9):9.1f}")
  for ours, references in GPU_COMPARISONS.items():
    for reference in references:
      if reference in rates:
        print(report.comparison(METRIC, rates[ours], reference, rates[reference],
                                f"{describe} {ours[5:]} one gpu", device="gpu"), flush=True)


# ---------------------------------------------------------------------------------------------


def main(argv):
  del argv
  # GPU only: JAX would otherwise take 75% of the GPU's memory before torch allocates any.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  # Before torch starts OpenMP: its threads' default spin-wait took CPU from ours (WORKSPACE.md).
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  if _CHILD.value:
    sys.exit(scaling_child())
  start = time.perf_counter()
  failed = 0
  if _SCALING.value:
    failed = run_scaling_child()
    if failed:
      print(f"the scaling child failed (exit status {failed})", flush=True)
  if _GPU.value:
    devices = gpu_devices()
    if not devices:
      print("\n== gpu: no GPU (jax.devices('gpu') is empty): the ResNet-50 bfloat16 vs float32 and "
            "PyTorch AMP comparison is skipped", flush=True)
    else:
      print(f"\n== gpu: {len(devices)} x {devices[0].device_kind}, jax {jax.__version__}",
            flush=True)
      gpu_comparison(devices)
  print(f"\nwall time {time.perf_counter() - start:.0f} s", flush=True)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  app.run(main)
