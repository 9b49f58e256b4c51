"""`python -m experiments.export` / `reid_jax.export`: the test-time descriptor of a baseline and
an ARN workdir as ONNX (run with onnxruntime) and as a `jax.export` artifact (run after
`jax.export.deserialize`), equal to the JAX descriptor on random images at two batch sizes; a bad
--format or workdir is one line and exit 1."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reid_jax.configs import arn as arn_config
from reid_jax.configs import baseline as baseline_config
from reid_jax.training import checkpoint as checkpoint_lib
from reid_jax.training import trainer
from reid_jax.training import workdir as workdir_lib

REPO = Path(__file__).resolve().parents[2]


def _config(experiment):
  if experiment == "arn":
    config = arn_config.apply_method_variant(arn_config.get_config("tiny"), "arn")
    config.model.width = 16
  else:
    config = baseline_config.get_config("tiny")
  config.model.pretrained = ""
  return config


def _initialised_workdir(path, experiment):
  """config.json and one checkpoint of freshly initialised variables (BN statistics perturbed so
  that the eval-mode normalisation is not the identity)."""
  config = _config(experiment)
  method = trainer.method_of(experiment)
  model = method.build_model(config.model, 4)
  images = jnp.zeros((1, config.data.height, config.data.width, 3))
  variables = jax.jit(lambda key: method.init_model(model, key, images))(jax.random.PRNGKey(0))
  variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
  variables = method.arrange_variables(config, variables)
  rng = np.random.default_rng(1)
  variables["batch_stats"] = jax.tree.map(
      lambda x: np.asarray(x) + rng.uniform(0, 0.1, np.shape(x)).astype(np.float32),
      variables["batch_stats"])
  path.mkdir(parents=True)
  (path / workdir_lib.CONFIG_FILE).write_text(json.dumps(workdir_lib.config_to_dict(config)))
  with checkpoint_lib.Checkpointer(path / workdir_lib.CHECKPOINT_DIR) as ckpt:
    ckpt.save(3, jax.tree.map(np.asarray, variables))
  return path


@pytest.mark.parametrize("experiment", ["baseline", "arn"])
def test_onnx_and_stablehlo_match_the_jax_descriptor(tmp_path, experiment):
  onnxruntime = pytest.importorskip("onnxruntime")
  pytest.importorskip("jax2onnx")
  from reid_jax.export import deployed_descriptor, export_descriptor
  workdir = _initialised_workdir(tmp_path / experiment, experiment)
  fn, spec = deployed_descriptor(workdir)
  onnx_out = export_descriptor(workdir, "onnx")
  hlo_out = export_descriptor(workdir, "stablehlo", tmp_path / "hlo")
  sidecar = json.loads(Path(onnx_out["sidecar"]).read_text())
  assert sidecar["input"]["dtype"] == "uint8" and sidecar["input"]["shape"][0] == "batch"
  assert sidecar["experiment"] == experiment and sidecar["step"] == 3
  exported = jax.export.deserialize(bytearray(Path(hlo_out["artifact"]).read_bytes()))
  session = onnxruntime.InferenceSession(str(onnx_out["artifact"]))
  name = session.get_inputs()[0].name
  assert sidecar["input"]["name"] == name
  _, height, width, _ = spec["input"]["shape"]
  reference_fn = jax.jit(fn)
  for batch in (1, 3):
    images = np.random.default_rng(batch).integers(0, 256, (batch, height, width, 3), np.uint8)
    reference = np.asarray(reference_fn(images))
    assert reference.shape == (batch, spec["feature_dim"])
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1, atol=1e-5)
    tolerance = 1e-4 * np.abs(reference).max()
    for got in (session.run(None, {name: images})[0], np.asarray(exported.call(images))):
      assert got.shape == reference.shape
      assert np.abs(got - reference).max() <= tolerance


def _run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", "experiments.export", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def _one_line_failure(result):
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 1, result.stderr[-2000:]
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  return lines[0]


def test_bad_format_and_missing_workdir_are_one_line_exit_1(tmp_path):
  line = _one_line_failure(_run(f"--workdir={tmp_path}", "--format=tflite"))
  assert "--format='tflite'" in line and "onnx, stablehlo" in line
  missing = tmp_path / "missing"
  line = _one_line_failure(_run(f"--workdir={missing}", "--format=stablehlo"))
  assert str(missing) in line and "train first" in line


def test_missing_jax2onnx_is_one_line_naming_the_install(monkeypatch):
  from reid_jax import export as export_lib
  from reid_jax.errors import ReidError
  monkeypatch.setitem(sys.modules, "jax2onnx", None)
  with pytest.raises(ReidError, match=r"pip install \.\[export\].*requirements-test\.txt"):
    export_lib.load_jax2onnx()
