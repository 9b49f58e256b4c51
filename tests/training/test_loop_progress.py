"""The shared loop's progress: the compiling first step is announced and the bar reaches the end."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from reid_jax.training import loop
from reid_jax.training import state as state_lib
from reid_jax.training import steps

BATCH, STEPS_PER_EPOCH, EPOCHS = 4, 2, 2


def _epoch_batches(epoch, start):
  for position in range(start, STEPS_PER_EPOCH):
    rng = np.random.default_rng([epoch, position])
    yield {"image": rng.normal(size=(BATCH, 2, 2, 3)).astype(np.float32),
           "label": rng.integers(0, 2, BATCH).astype(np.int32)}


class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.BatchNorm(use_running_average=not train, name="feat_bn")(x.reshape(x.shape[0], -1))
    return {"logits": nn.Dense(2, name="classifier")(x)}


def test_first_step_compiling_is_announced_once_and_bar_completes(tmp_path, capsys):
  model = _Tiny()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 3)))
  tx = optax.sgd(0.1)
  state = state_lib.create(variables["params"], variables["batch_stats"], tx)
  config = loop.LoopConfig(num_epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, seed=0,
                           images_per_step=BATCH, log_every=1, description="tiny")
  loop.run(config, workdir=tmp_path, state=state,
           train_step=steps.make_train_step(steps.baseline_loss_fn(model), tx),
           epoch_batches=_epoch_batches)
  out = capsys.readouterr().out
  assert out.count("compiling the train step ...") == 1
  assert "compiled the train step in " in out
  assert out.index("compiling the train step") < out.index("compiled the train step")
  total = EPOCHS * STEPS_PER_EPOCH
  assert "tiny: 100%" in out and f"{total}/{total}" in out and "img_s=" in out
