"""Process-level settings (reid_jax/runtime.py), each checked in a fresh Python process."""

import os
import subprocess
import sys

import pytest

from reid_jax import runtime

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _environ(**env: str) -> dict[str, str]:
  """This process's environment without an allocator choice, plus `env`."""
  keep = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", runtime.MALLOC_ENV)}
  return {**keep, **env}


def _python(script: str, *args: str, **env: str) -> list[str]:
  out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                       check=True, cwd=_REPO, env=_environ(**env))
  return out.stdout.splitlines()


def test_retain_freed_memory_reuses_pages_in_a_fresh_process():
  """After `retain_freed_memory`, a freed 256 MiB buffer is reused: the second touch does not fault."""
  script = """
import ctypes, resource
from reid_jax import runtime
retained = runtime.retain_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def touch_faults():  # plain malloc (numpy's large arrays may ask for huge pages)
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  buffer = libc.malloc(256 * 2**20); ctypes.memset(buffer, 1, 256 * 2**20); libc.free(buffer)
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
first = touch_faults()
print(retained, first, touch_faults())
"""
  retained, first, second = _python(script)[0].split()
  if retained != "True":
    pytest.skip("not glibc")
  assert int(first) > 60000  # 256 MiB of fresh 4 KiB pages (the check is meaningful)
  assert int(second) < 1000


_PREFER = """
import sys
from reid_jax import runtime
print("start", runtime.allocator(), flush=True)
runtime.prefer_tcmalloc(sys.argv[1])
print("end", runtime.allocator(), runtime.retain_freed_memory(), *sys.argv[1:])
"""


def test_prefer_tcmalloc_reexecutes_the_program_with_its_arguments():
  """As the program: one re-execution under tcmalloc when installed (arguments kept), else none."""
  lines = _python(_PREFER, "__main__", "--flag=1")
  if runtime.tcmalloc_library():
    assert lines == ["start glibc", "start tcmalloc", "end tcmalloc False __main__ --flag=1"]
  else:
    assert lines == ["start glibc", "end glibc True __main__ --flag=1"]


def test_prefer_tcmalloc_does_nothing_on_import_or_when_opted_out():
  assert _python(_PREFER, "experiments.baseline") == [
      "start glibc", "end glibc True experiments.baseline"]
  assert _python(_PREFER, "__main__", **{runtime.MALLOC_ENV: "glibc"}) == [
      "start glibc", "end glibc True __main__"]


@pytest.mark.skipif(runtime.tcmalloc_library() is None, reason="tcmalloc not installed")
def test_entry_point_runs_under_tcmalloc():
  """`python -m experiments.baseline --helpfull` re-executes under tcmalloc before parsing flags."""
  out = subprocess.run(
      [sys.executable, "-c", "import runpy, sys; sys.argv[0] = 'x'; "
       "import atexit; from reid_jax import runtime; "
       "atexit.register(lambda: print('allocator', runtime.allocator())); "
       "runpy.run_module('experiments.baseline', run_name='__main__')", "--helpfull"],
      capture_output=True, text=True, cwd=_REPO, env=_environ())
  assert "allocator tcmalloc" in out.stdout
