"""Pretraining the testbed's trunk: its own data only, strict import, exact resume after SIGKILL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from reid_jax.configs import pretrain as pretrain_config
from reid_jax.data import tfds_builders
from reid_jax.errors import ReidError
from reid_jax.models import resnet, torchvision_import
from reid_jax.training import pretrain

REPO = Path(__file__).resolve().parents[2]
# In-process rendering and decoding (num_workers 0), so the render spy sees every image; the
# results do not depend on the thread count.
QUICK = {"pool.size": 240, "pool.val_size": 48, "num_epochs": 2, "data.batch_size": 32,
         "checkpoint_every_steps": 3, "optim.milestones": (1,), "data.num_workers": 0}


def _quick_config(**extra):
  config = pretrain_config.get_config("tiny")
  for key, value in {**QUICK, **extra}.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


@pytest.fixture(scope="module")
def quick_trunk(tmp_path_factory, spy_on_render):
  """An uninterrupted in-process quick pretraining: (data_dir, trunk path, rendered domains)."""
  data_dir = tmp_path_factory.mktemp("pretrain")
  with pytest.MonkeyPatch.context() as monkeypatch:
    domains = spy_on_render(monkeypatch)

    def no_reid_data(*args, **kwargs):
      raise AssertionError("pretraining opened a re-ID dataset")

    monkeypatch.setattr(tfds_builders, "load_split", no_reid_data)
    monkeypatch.setattr(tfds_builders, "builder", no_reid_data)
    path = pretrain.train_trunk(_quick_config(), data_dir)
  return data_dir, path, domains


def test_pretraining_reads_no_reid_image_and_its_trunk_imports_strictly(quick_trunk):
  tmp_path, path, rendered_domains = quick_trunk
  config = _quick_config()
  assert rendered_domains == {"synth_pretrain"}
  assert not (tmp_path / "raw").exists() and not (tmp_path / "tfds").exists()
  assert path == pretrain.trunk_path(config, tmp_path) and path.is_file()
  trunk = torchvision_import.load_trunk(path, "resnet_small")
  assert "layer4" in trunk["params"] and "bn1" in trunk["batch_stats"]
  # The cache is keyed by the config: the default config's trunk is not this one.
  assert pretrain.trunk_path(pretrain_config.get_config("tiny"), tmp_path) != path
  with pytest.raises(ReidError, match="missing"):
    pretrain.ensure_trunk("synth_pretrain:tiny", tmp_path, build=False)


def _random_trunk():
  module = resnet.build_backbone("resnet_small")
  variables = module.init(jax.random.key(0), jnp.zeros((1, 64, 32, 3)))
  return {c: variables[c] for c in ("params", "batch_stats")}


def test_export_import_round_trip_is_exact():
  trunk = _random_trunk()
  state_dict = torchvision_import.export_torchvision_resnet(trunk)
  assert state_dict["conv1.weight"].shape == (16, 3, 7, 7)  # OIHW, as torchvision stores it
  back = torchvision_import.import_torchvision_resnet(state_dict, resnet.build_backbone(
      "resnet_small"))
  for a, b in zip(jax.tree.leaves(trunk), jax.tree.leaves(back)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_missing_key_and_wrong_arch_are_refused_by_name(tmp_path):
  state_dict = torchvision_import.export_torchvision_resnet(_random_trunk())
  del state_dict["layer2.0.bn2.running_var"]
  path = tmp_path / "trunk.safetensors"
  save_file(state_dict, str(path))
  with pytest.raises(ReidError, match=r"missing keys \['layer2.0.bn2.running_var'\]"):
    torchvision_import.load_trunk(path, "resnet_small")
  with pytest.raises(ReidError, match="shape mismatches"):
    torchvision_import.load_trunk(path, "resnet50")


def test_missing_trunk_without_build_names_the_command(tmp_path):
  with pytest.raises(ReidError, match="python -m experiments.pretrain"):
    pretrain.ensure_trunk("synth_pretrain:tiny", tmp_path, build=False)
  with pytest.raises(ReidError, match="only one is tiny"):
    pretrain.ensure_trunk("synth_pretrain:huge", tmp_path, build=False)


def _command(data_dir):
  flags = [f"--config.{k}={v}" for k, v in QUICK.items()]
  return [sys.executable, "-m", "experiments.pretrain", f"--data_dir={data_dir}", *flags]


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_pretraining_exactly(quick_trunk, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  whole, cut = quick_trunk[0], tmp_path / "cut"
  config = _quick_config()
  runs = pretrain.run_dir(config, cut) / "checkpoints"
  process = subprocess.Popen(_command(cut), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  start = time.time()
  while not (runs.is_dir() and any(p.name.isdigit() for p in runs.iterdir())):
    assert process.poll() is None, process.stderr.read()[-2000:]
    assert time.time() - start < 600
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not pretrain.trunk_path(config, cut).exists()
  resumed = subprocess.run(_command(cut), cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resuming from the checkpoint of step" in resumed.stdout
  a = load_file(str(pretrain.trunk_path(config, whole)))
  b = load_file(str(pretrain.trunk_path(config, cut)))
  assert sorted(a) == sorted(b)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
