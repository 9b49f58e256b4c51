"""What benchmarks print (docs/design.md §8): alternated timings, medians, one JSON comparison a line."""

import json
import resource
import statistics
import time
from typing import Callable

from reid_jax import runtime


def comparison(metric: str, ours: float, reference: str, reference_value: float, config: str,
               *, lower_is_better: bool = False, device: str = "cpu") -> str:
  """`{"metric", "ours", "reference", "reference_value", "ratio", "device", "config"}` as JSON.

  ratio > 1 means we are ahead: ours / reference for rates, reference / ours for times and sizes
  (`lower_is_better`). The config ends with the process's allocator (both sides share it).
  """
  config = f"{config} malloc={runtime.allocator()}"
  ratio = reference_value / ours if lower_is_better else ours / reference_value
  return json.dumps({"metric": metric, "ours": round(ours, 4), "reference": reference,
                     "reference_value": round(reference_value, 4), "ratio": round(ratio, 3),
                     "device": device, "config": config})


def alternate(runners: dict[str, Callable[[], object]], repeats: int):
  """Runs every runner `repeats` times, alternating (the CPU is shared and load drifts).

  Prints one line per round; returns `({name: [wall s]}, {name: [process user+sys s]})`. CPU time
  is less sensitive than wall time to other load, but counts busy-waiting threads.
  """
  times = {name: [] for name in runners}
  cpu_times = {name: [] for name in runners}
  for r in range(repeats):
    for name, run in runners.items():
      start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
      run()
      times[name].append(time.perf_counter() - start)
      after = resource.getrusage(resource.RUSAGE_SELF)
      cpu_times[name].append(after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime)
    print(f"run {r}: " + "  ".join(f"{n} {t[-1]:.2f}s (cpu {cpu_times[n][-1]:.1f}s)"
                                   for n, t in times.items()), flush=True)
  return times, cpu_times


def print_rates(metric: str, times, cpu_times, images: int, config: str):
  """Median images/s (and per CPU-second) per runner, then one comparison line for each `ours_*`
  runner against each `torch_*` one."""
  rates = {name: images / statistics.median(t) for name, t in times.items()}
  print(f"\nimages/s (median of {len(next(iter(times.values())))}), and images per CPU-second:")
  for name, rate in rates.items():
    print(f"  {name:30s} {rate:7.2f}   {images / statistics.median(cpu_times[name]):7.2f}")
  for ours in [n for n in rates if n.startswith("ours")]:
    for ref in [n for n in rates if n.startswith("torch")]:
      print(comparison(metric, rates[ours], ref, rates[ref], f"{config} conv impl={ours[5:]}"))


def _resident_high_water_mib() -> float | None:
  try:
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return None


def peak_resident(fn: Callable[[], object]):
  """`(fn(), seconds, peak resident MiB of the whole process during the call)`.

  The peak is Linux's VmHWM after resetting it (`/proc/self/clear_refs` <- 5), so it counts every
  page the process holds: numpy arrays, JAX's buffers, the interpreter, the inputs already in
  memory. Without that reset (another OS), the process's lifetime peak (`ru_maxrss`) is reported.
  """
  try:
    with open("/proc/self/clear_refs", "w") as clear:
      clear.write("5")
    resettable = True
  except OSError:
    resettable = False
  start = time.perf_counter()
  out = fn()
  seconds = time.perf_counter() - start
  peak = _resident_high_water_mib() if resettable else None
  if peak is None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return out, seconds, peak


def resident_mib() -> float:
  """The process's resident memory now (VmRSS), MiB; 0 where /proc is absent."""
  try:
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return 0.0
