"""Checkpoints, TensorBoard writer and the workdir contract (docs/design.md §5)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import config_dict

from reid_jax.errors import ReidError
from reid_jax.training import checkpoint as checkpoint_lib
from reid_jax.training import metrics as metrics_lib
from reid_jax.training import workdir as workdir_lib


def _tree(seed):
  rng = np.random.default_rng(seed)
  return {"params": {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                     "b": jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
          "step": jnp.asarray(seed, jnp.int32)}


def test_checkpoint_roundtrip_restores_latest_and_keeps_max(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "checkpoints", max_to_keep=2)
  assert ckpt.latest_step() is None
  for step in (1, 2, 3):
    ckpt.save(step, _tree(step), {"sampler": {"seed": 0, "epoch": step, "step": 0}})
  assert ckpt.all_steps() == [2, 3]
  state, meta = ckpt.restore(_tree(0))
  np.testing.assert_array_equal(state["params"]["w"], _tree(3)["params"]["w"])
  assert int(state["step"]) == 3 and meta["sampler"]["epoch"] == 3
  older, _ = ckpt.restore(step=2)
  np.testing.assert_array_equal(np.asarray(older["params"]["b"]), np.asarray(_tree(2)["params"]["b"]))
  ckpt.close()
  # A new manager over the same folder (a rerun) sees the same latest step.
  assert checkpoint_lib.Checkpointer(tmp_path / "checkpoints", read_only=True).latest_step() == 3


def test_checkpoint_missing_is_reid_error(tmp_path):
  with pytest.raises(ReidError, match="no checkpoints"):
    checkpoint_lib.Checkpointer(tmp_path / "nothing", read_only=True)


def test_metric_writer_writes_scalars_and_images(tmp_path):
  with metrics_lib.MetricWriter(tmp_path / "tb") as writer:
    writer.scalars(5, {"loss": 1.5, "lr/trunk": 0.01})
    writer.images(7, {"grid": np.full((8, 4, 3), 0.5, np.float32)})
  assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
  values = {(e.step, v.tag): v for e in metrics_lib.read_events(tmp_path / "tb")
            for v in e.summary.value}
  assert values[(5, "loss")].simple_value == pytest.approx(1.5)
  assert values[(5, "lr/trunk")].simple_value == pytest.approx(0.01)
  image = values[(7, "grid")].image
  assert (image.height, image.width, image.colorspace) == (8, 4, 3)


def _config(lr=0.01):
  config = config_dict.ConfigDict()
  config.optim = config_dict.ConfigDict({"base_lr": lr, "milestones": (40,)})
  config.seed = 0
  return config


def test_prepare_saves_then_accepts_same_and_refuses_different(tmp_path):
  workdir_lib.prepare(tmp_path, _config())
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["optim"]["milestones"] == [40]
  workdir_lib.prepare(tmp_path, _config())  # same config: accepted
  (tmp_path / "checkpoints" / "3").mkdir(parents=True)  # training started: the config is locked
  workdir_lib.prepare(tmp_path, _config())  # same config: still accepted
  changed = _config(lr=0.1)
  changed.seed = 3
  with pytest.raises(ReidError) as error:
    workdir_lib.prepare(tmp_path, changed)
  message = str(error.value)
  assert "optim.base_lr" in message and "seed" in message and "\n" not in message
  assert "milestones" not in message


def test_config_sha256_is_canonical():
  a = workdir_lib.config_sha256({"b": 1, "a": (1, 2)})
  assert a == workdir_lib.config_sha256({"a": [1, 2], "b": 1})
  assert a != workdir_lib.config_sha256({"a": [1, 2], "b": 2})


def test_results_schema_and_update(tmp_path):
  entry = workdir_lib.eval_entry({"rank1": 0.5, "rank5": 0.6, "rank10": 0.7, "rank20": 0.8,
                                  "mAP": 0.3}, ap="step", distance="euclidean", rerank=False,
                                 n_query=10, n_gallery=20)
  results = workdir_lib.write_results(
      tmp_path, experiment="baseline", variant="baseline", src="synth_duke", tgt="synth_market",
      config_name="reid_jax/configs/baseline.py:tiny", config=_config(), epochs=2, steps=10,
      train_seconds=1.0, eval={"synth_market": entry})
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk == results
  assert tuple(on_disk) == workdir_lib.RESULTS_KEYS
  assert tuple(on_disk["eval"]["synth_market"]) == workdir_lib.EVAL_KEYS
  assert on_disk["config_sha256"] == workdir_lib.config_sha256(_config())
  assert on_disk["devices"] == [f"{d.platform}:{d.id}" for d in jax.devices()]
  workdir_lib.update_eval(tmp_path, "synth_duke", entry)
  assert set(workdir_lib.read_results(tmp_path)["eval"]) == {"synth_market", "synth_duke"}
  assert not list(tmp_path.glob(".results.json.*"))  # no temporary left behind
