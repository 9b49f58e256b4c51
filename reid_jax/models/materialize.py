"""`materialize(y)`: make XLA:CPU compute an activation once instead of inside each consumer.

XLA fuses cheap element-wise producers into every element-wise consumer, recomputing them there.
Along a ResNet stage's residual stream each block output `relu(bn(conv) + previous output)` is an
element-wise function of all earlier ones, so each consumer re-reads every earlier block's
convolution output: at ResNet-50 b32 the last block of layer3 read 7 full activations to produce
one (quadratic in the blocks), and those fusions took 14% of feature extraction.

XLA never duplicates an "expensive" instruction such as a division, but it rewrites a division by
a constant, a scalar or a broadcast into a multiplication. `y / (y * 0 + 1)` divides by a
full-size 1.0 that XLA cannot prove constant (it does not fold `x * 0` for floats: inf * 0 is
NaN): exact for finite y, computed once per element in the fusion that produces y, and every
consumer reads y (tests/models/test_materialize.py checks both). The gradient is the identity,
materialized the same way. ResNet-50 on 2 cores, block outputs only: feature extraction 1.12x, the
training step 1.08x; the inner BatchNorm-ReLU outputs and the gradients as well: the step another
1.05x (faster in 11 of 12 alternating rounds). On other backends `materialize` is the identity
(their fusion heuristics differ; not measured).
"""

import jax


@jax.custom_vjp
def _divide_by_runtime_one(y):
  return y / (y * 0 + 1)


# The backward pass carries the same chains (each block's input gradient sums the next block's),
# so the cotangent is computed once too; its value is g itself.
_divide_by_runtime_one.defvjp(lambda y: (_divide_by_runtime_one(y), None),
                              lambda _, g: (_divide_by_runtime_one(g),))


def materialize(y):
  """y, computed once by XLA:CPU (see module docstring); the identity elsewhere.

  Values: y wherever y is finite; an infinite element becomes NaN. Decided at trace time from
  `jax.default_backend()`.
  """
  return _divide_by_runtime_one(y) if jax.default_backend() == "cpu" else y
