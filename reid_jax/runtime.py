"""Process-level settings for CPU training processes: entry points call these, libraries never do."""

import ctypes
import ctypes.util
import os
import sys

# gperftools' tcmalloc (Debian/Ubuntu package libtcmalloc-minimal4), preferred over glibc's malloc.
_TCMALLOC_NAMES = ("tcmalloc_minimal", "tcmalloc")
# REID_JAX_MALLOC=glibc keeps glibc's malloc.
MALLOC_ENV = "REID_JAX_MALLOC"


def allocator() -> str:
  """'tcmalloc' if this process has tcmalloc loaded, else 'glibc' ('unknown' off Linux)."""
  if not sys.platform.startswith("linux"):
    return "unknown"
  try:
    with open("/proc/self/maps") as maps:
      return "tcmalloc" if "tcmalloc" in maps.read() else "glibc"
  except OSError:
    return "unknown"


def tcmalloc_library() -> str | None:
  """The name to preload tcmalloc by (e.g. 'libtcmalloc_minimal.so.4'), or None if not installed."""
  return next(filter(None, map(ctypes.util.find_library, _TCMALLOC_NAMES)), None)


def prefer_tcmalloc(module_name: str) -> None:
  """Re-executes this command with tcmalloc preloaded, if it is the program and the system has it.

  Call it first thing in an entry-point module, with `__name__`: it does nothing on import (tests),
  off Linux, with `REID_JAX_MALLOC=glibc`, when tcmalloc is already preloaded or not installed.
  Why: XLA:CPU's Eigen convolutions and dots call oneDNN's sgemm, which allocates a scratch buffer
  per call; glibc's malloc serves those by walking its lists of freed chunks, which the retained
  heap (see `retain_freed_memory`) makes long: 5-7% of the ResNet-50 training step's CPU time.
  Measured on 2 cores (benchmarks.train_step): ResNet-50 256x128 b32 step 7.4-7.8 -> 8.2-8.8
  img/s, the tiny baseline's resnet_small 64x32 step 1,390-1,490 -> 1,950-2,080 img/s.
  """
  if module_name != "__main__" or not sys.platform.startswith("linux"):
    return
  opted_out = os.environ.get(MALLOC_ENV, "").lower() == "glibc"
  if opted_out or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
    return
  library = tcmalloc_library()
  if library is None:
    return
  preload = " ".join(filter(None, (library, os.environ.get("LD_PRELOAD"))))
  try:
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]],
              dict(os.environ, LD_PRELOAD=preload))
  except OSError:
    return  # could not re-execute: carry on with glibc's malloc

# glibc `mallopt` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def retain_freed_memory() -> bool:
  """Makes glibc malloc keep freed memory in the process instead of returning it to the kernel.

  XLA:CPU allocates a step's temporaries as one buffer per execution (~3 GB for the ResNet-50
  256x128 b32 training step) from an XLA thread; glibc serves it with a fresh `mmap` and unmaps it
  on free, so every step page-faults all of it again (~720K faults, ~1 s of kernel time per step,
  13% of the step's CPU time). With one arena, no mmap and no trimming, the buffer is reused from
  the heap: ~0 faults per step. Process-wide; call it first thing in a CPU training / benchmark
  process, before JAX starts its backend (threads that already own an arena keep it). Freed memory
  stays mapped (peak RSS does not shrink back). Returns False (and does nothing) off glibc.
  Also returns False (and does nothing) under a preloaded tcmalloc (`prefer_tcmalloc`), which keeps
  freed memory in the process by itself.
  """
  if allocator() != "glibc":
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
  # -1 is SIZE_MAX in glibc's size_t threshold: never trim the heap top.
  return all(mallopt(param, value) == 1 for param, value in
             ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
