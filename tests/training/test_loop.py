"""The shared loop on a tiny stand-in model: resume, NaN guard, checkpoints, TensorBoard lr."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import config_dict

from reid_jax.errors import ReidError
from reid_jax.training import checkpoint as checkpoint_lib
from reid_jax.training import loop
from reid_jax.training import metrics as metrics_lib
from reid_jax.training import optim
from reid_jax.training import state as state_lib
from reid_jax.training import steps

NUM_CLASSES, BATCH, STEPS_PER_EPOCH, EPOCHS = 3, 8, 3, 2


class StandIn(nn.Module):
  """Dense -> BN -> ReLU -> Dropout -> Dense, top-level names like ReIDNet's."""

  @nn.compact
  def __call__(self, x, train=False):
    x = x.reshape(x.shape[0], -1)
    r = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name="feat_bn")(
        nn.Dense(6, name="backbone")(x)))
    r = nn.Dropout(0.5, deterministic=not train)(r)
    return {"logits": nn.Dense(NUM_CLASSES, name="classifier")(r)}


def _epoch_batches(seed, nan_at=None):
  def epoch_batches(epoch, start):
    for position in range(start, STEPS_PER_EPOCH):
      rng = np.random.default_rng([seed, epoch, position])
      labels = rng.integers(0, NUM_CLASSES, BATCH).astype(np.int32)
      images = (rng.normal(size=(BATCH, 2, 2, 3)) + labels[:, None, None, None]).astype(np.float32)
      if nan_at == epoch * STEPS_PER_EPOCH + position:
        images[0, 0, 0, 0] = np.nan
      yield {"image": images, "label": labels}
  return epoch_batches


def _setup(workdir, nan_at=None, on_step=None, checkpoint_every=2):
  model = StandIn()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 3)))
  optim_config = config_dict.ConfigDict({
      "base_lr": 0.1, "lr_mult": {"trunk": 0.1, "classifier": 1.0}, "momentum": 0.9,
      "nesterov": True, "weight_decay": 5e-4, "milestones": (1,), "gamma": 0.1})
  opt = optim.build_optimiser(variables["params"], optim_config,
                              {"backbone": "trunk", "feat_bn": "classifier",
                               "classifier": "classifier"}, STEPS_PER_EPOCH)
  state = state_lib.create(variables["params"], variables["batch_stats"], opt.tx)
  config = loop.LoopConfig(num_epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, seed=7,
                           images_per_step=BATCH, checkpoint_every=checkpoint_every, log_every=1)
  return dict(config=config, workdir=workdir, state=state,
              train_step=steps.make_train_step(steps.baseline_loss_fn(model), opt.tx),
              epoch_batches=_epoch_batches(0, nan_at), learning_rates=opt.learning_rates,
              on_step=on_step)


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state_lib.to_tree(jax.device_get(state)))]


class _Interrupt(Exception):
  pass


def test_interrupted_run_resumes_to_identical_state(tmp_path):
  full = loop.run(**{k: v for k, v in _setup(tmp_path / "full").items() if k != "config"},
                  config=_setup(tmp_path / "full")["config"])
  assert full.steps == EPOCHS * STEPS_PER_EPOCH and full.resumed_from is None

  def stop_after_4(step, _):
    if step == 5:  # step 4's checkpoint exists (checkpoint_every=2), step 5 is lost
      raise _Interrupt()

  with pytest.raises(_Interrupt):
    loop.run(**_setup(tmp_path / "cut", on_step=stop_after_4))
  assert checkpoint_lib.Checkpointer(tmp_path / "cut" / "checkpoints").latest_step() == 4
  resumed = loop.run(**_setup(tmp_path / "cut"))
  assert resumed.resumed_from == 4 and resumed.steps == full.steps
  for a, b in zip(_leaves(full.state), _leaves(resumed.state)):
    np.testing.assert_array_equal(a, b)
  # the params moved and BN running statistics were updated
  initial = _setup(tmp_path / "unused")["state"]
  assert not np.allclose(_leaves(full.state)[0], _leaves(initial)[0])


def test_checkpoints_at_interval_and_epoch_end(tmp_path):
  saved = []
  loop.run(**_setup(tmp_path, checkpoint_every=2,
                    on_step=lambda s, _: saved.append(  # read-only: it must not clean up
                        checkpoint_lib.Checkpointer(tmp_path / "checkpoints",  # the run's saves
                                                    read_only=True).latest_step())))
  # on_step(s) runs before step s's checkpoint: saves at 2, 4 (interval) and 3, 6 (epoch ends)
  assert saved == [None, None, 2, 3, 4, 4]
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "checkpoints")
  assert ckpt.all_steps() == [4, 6]  # max_to_keep=2
  _, meta = ckpt.restore()
  assert meta["epoch"] == EPOCHS and meta["sampler"] == {"seed": 7, "epoch": EPOCHS, "step": 0}


def test_nan_guard_names_step_and_keeps_last_good_checkpoint(tmp_path):
  with pytest.raises(ReidError) as error:
    loop.run(**_setup(tmp_path, nan_at=4))  # 0-based step 4 = the fifth step
  message = str(error.value)
  assert "step 4" in message and "nan" in message and "step 4 in" in message
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "checkpoints")
  assert ckpt.latest_step() == 4
  tree, meta = ckpt.restore()
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))
  assert meta["sampler"] == {"seed": 7, "epoch": 1, "step": 1}


def test_tensorboard_logs_lr_per_group(tmp_path):
  loop.run(**_setup(tmp_path))
  lrs = metrics_lib.read_scalars(tmp_path / "tb")
  assert (1, "train/loss") in lrs
  assert lrs[(1, "lr/trunk")] == pytest.approx(0.01)
  assert lrs[(1, "lr/classifier")] == pytest.approx(0.1)
  assert lrs[(4, "lr/trunk")] == pytest.approx(0.001)  # step 4 = epoch 1, after the drop
