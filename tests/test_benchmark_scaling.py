"""benchmarks/scaling.py's pure helpers (the benchmark itself is not run here)."""

import pytest

from benchmarks import scaling


def test_child_env_appends_the_forced_device_count_and_pins_the_cpu():
  env = scaling.child_env({"XLA_FLAGS": " --xla_foo=1 ", "HOME": "/h"}, 8)
  assert env["XLA_FLAGS"] == "--xla_foo=1 --xla_force_host_platform_device_count=8"
  assert env["JAX_PLATFORMS"] == "cpu" and env["HOME"] == "/h"
  assert scaling.child_env({}, 4)["XLA_FLAGS"] == "--xla_force_host_platform_device_count=4"


def test_mesh_sizes_sorted_distinct_and_dividing_the_batch():
  assert scaling.mesh_sizes(["8", "1", "2", "4", "2"], 32) == [1, 2, 4, 8]
  for bad in (["3"], ["0"], []):
    with pytest.raises(ValueError):
      scaling.mesh_sizes(bad, 32)


def test_scaling_rows_ratio_to_the_smallest_mesh():
  rows = scaling.scaling_rows({1: 400.0, 2: 300.0, 8: 200.0}, {1: 300.0, 2: 250.0, 8: 100.0}, 32)
  assert rows[0].split() == ["devices", "img/s", "vs", "1", "img/CPU-s", "img/device"]
  assert [r.split() for r in rows[1:]] == [["1", "400.0", "1.00", "300.0", "32"],
                                           ["2", "300.0", "0.75", "250.0", "16"],
                                           ["8", "200.0", "0.50", "100.0", "4"]]
