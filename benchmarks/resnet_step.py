"""Our ResNet re-ID training step as the benchmarks time it: no flags, no torch.

`benchmarks.train_step` (against PyTorch) and `benchmarks.input_pipeline` (the rate training
consumes) both time this step; `benchmarks.extract` builds the same network for inference.
"""

import contextlib
import functools

import jax
import jax.numpy as jnp
import optax

from reid_jax import xla_options
from reid_jax.models import conv
from reid_jax.models import heads
from reid_jax.models import resnet
from reid_jax.training import state as state_lib
from reid_jax.training import steps

NUM_CLASSES = 751  # Market-1501 training identities (docs/hhl.md §3)


@contextlib.contextmanager
def conv_impl(impl: str):
  """Trace the trunk with every `Conv` on `impl` (a benchmark-only switch; the default is 'auto')."""
  original = resnet.Conv
  resnet.Conv = functools.partial(conv.Conv, impl=impl)
  try:
    yield
  finally:
    resnet.Conv = original


def reid_net(arch):
  return heads.ReIDNet(num_classes=NUM_CLASSES, arch=arch, num_features=0, triplet_features=0,
                       dropout_rate=0.0)


def jax_train_step(arch, batch, height, width, impl):
  """(jitted step, state, batch): the library's baseline step, SGD momentum, state donated."""
  model = reid_net(arch)
  images = jax.random.normal(jax.random.PRNGKey(0), (batch, height, width, 3))
  labels = jnp.arange(batch, dtype=jnp.int32) % NUM_CLASSES
  with conv_impl(impl):
    variables = jax.jit(functools.partial(model.init, train=False))(
        {"params": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}, images)
    tx = optax.sgd(0.01, momentum=0.9)
    state = state_lib.create(variables["params"], variables.get("batch_stats"), tx)
    train_step = steps.make_train_step(steps.baseline_loss_fn(model), tx)
    step = xla_options.jit(train_step, donate_argnums=0)
    data = {"image": images, "label": labels}
    state, _ = step(state, data, jax.random.PRNGKey(3))  # compile under the chosen impl
  jax.block_until_ready(state)
  return step, state, data
