"""XLA compiler options for the jitted functions that run convolutions, and the `jit` that sets them.

`models/conv.py`'s CPU plan (which product goes to XLA's convolution and which to matmuls) was
measured with these options, so every jit that runs the models compiles with them. They are
per-compilation `compiler_options`, not process-wide `XLA_FLAGS`: nothing global changes, and a
user's own `jax.jit` of the model still works (at the speed of XLA's defaults).

XLA:CPU (jax 0.10.2) hands dots, reductions and convolutions to the YNNPACK library by default. Its
convolutions are slower than XLA's own (Eigen) ones on the ResNet-50 3x3 layers (64 channels at
64x32, batch 32, 2 cores: forward 50 vs 28 ms, both gradients 126 vs 72 ms), while its dots and
reductions are faster than the alternatives (without its reductions the BatchNorm statistics make
the whole training step 1.5x slower). So: YNNPACK for dots and reductions, XLA for convolutions.
"""

import types
from typing import Any, Callable

import jax

# Repeated enum of xla/backends/cpu/ynn_fusion_options.proto, as a comma-separated list.
CPU_COMPILER_OPTIONS = types.MappingProxyType({
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE",
})


def compiler_options() -> dict[str, Any] | None:
  """The options for the default backend: `CPU_COMPILER_OPTIONS` on CPU, None (XLA's) elsewhere."""
  return dict(CPU_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else None


def jit(fn: Callable, **jit_kwargs) -> Callable:
  """`jax.jit(fn, **jit_kwargs)` compiled with `compiler_options()`."""
  return jax.jit(fn, compiler_options=compiler_options(), **jit_kwargs)
