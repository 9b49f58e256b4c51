"""Export a workdir's test-time descriptor for deployment: ONNX (jax2onnx) or a jax.export artifact.

  from reid_jax.export import export_descriptor
  paths = export_descriptor("workdirs/baseline/synth_duke_to_synth_market_tiny", "onnx", out_dir)

The exported function is the evaluator's descriptor (`training.evaluate.evaluate_workdir`: the
method's `descriptor`, its target-domain variables, the config's flip test, L2 normalisation)
with the test transform's normalisation inside: it takes raw RGB pixels, uint8 `[B, H, W, 3]`
(NHWC, B dynamic, H x W the config's `data.height` x `data.width`: resize before, as
`transforms.test_transform` does with bicubic) and returns float32 `[B, D]`, unit L2 norm.
A JSON sidecar `<name>.json` beside the artifact records that input spec, mean/std, the feature
dimension, the source workdir, the experiment, the config's sha256 and the checkpoint step.

Export needs the optional extra `export` (jax2onnx for ONNX; onnxruntime to run it): `pip install
.[export]` or `pip install -r requirements-test.txt`; the StableHLO format needs only jax.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from reid_jax import atomic_io
from reid_jax.data import transforms
from reid_jax.errors import ReidError
from reid_jax.evaluation import features as features_lib
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import workdir as workdir_lib

FORMATS = ("onnx", "stablehlo")
SUFFIX = {"onnx": ".onnx", "stablehlo": ".stablehlo"}
INSTALL_HINT = "pip install .[export] (or pip install -r requirements-test.txt)"


def check_format(fmt: str) -> str:
  if fmt not in FORMATS:
    raise ReidError(f"--format={fmt!r} is not an export format: use one of {', '.join(FORMATS)}")
  return fmt


def load_jax2onnx():
  """The jax2onnx module, or one line naming the extra to install."""
  try:
    import jax2onnx  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ReidError(f"ONNX export needs jax2onnx ({e}): {INSTALL_HINT}") from None
  return jax2onnx


def deployed_descriptor(workdir, step: int | None = None):
  """`(fn, spec)`: `fn(uint8 images [B, H, W, 3]) -> float32 [B, D]` (unit norm), the variables
  closed over, and the sidecar record `spec` of the workdir's latest (or given) checkpoint."""
  from reid_jax.training import trainer  # pylint: disable=g-import-not-at-top (imports evaluate)
  workdir = Path(workdir)
  config = workdir_lib.load_config(workdir)
  experiment = config.get("experiment", "baseline")
  method = trainer.method_of(experiment)
  variables, step = evaluate_lib.restore_variables(workdir, step)
  model = method.build_model(config["model"], method.num_classes(variables["params"]))
  # What evaluate_workdir uses on the target dataset: the target domain's statistics (ARN).
  variables = method.eval_variables(variables, "target")
  flip = bool(config["eval"]["flip"])
  apply = features_lib.normalised_descriptor(method.descriptor(model), flip)
  height, width = int(config["data"]["height"]), int(config["data"]["width"])
  mean, std = transforms.IMAGENET_MEAN, transforms.IMAGENET_STD
  # transforms.normalize on uint8: x / (255 std) - mean / std, in one affine map.
  scale, offset = 1 / (255 * std), mean / std

  def fn(images):
    x = images.astype(jnp.float32) * jnp.asarray(scale) - jnp.asarray(offset)
    return apply(variables, x)

  probe = jax.eval_shape(fn, jax.ShapeDtypeStruct((1, height, width, 3), jnp.uint8))
  spec = {"input": {"name": "images", "shape": ["batch", height, width, 3], "dtype": "uint8",
                    "layout": "NHWC", "channels": "RGB",
                    "resize": f"bicubic to {height}x{width} before (transforms.test_transform)"},
          "normalisation": {"mean": mean.tolist(), "std": std.tolist(),
                            "formula": "(x / 255 - mean) / std, inside the artifact"},
          "output": {"name": "features", "shape": ["batch", int(probe.shape[-1])],
                     "dtype": "float32", "l2_normalised": True},
          "feature_dim": int(probe.shape[-1]), "flip_test": flip, "workdir": str(workdir),
          "experiment": experiment, "variant": config.get("variant"),
          "config_sha256": workdir_lib.config_sha256(config), "step": step}
  return fn, spec


def export_descriptor(workdir, fmt: str, out_dir=None, step: int | None = None) -> dict:
  """Write `<out_dir>/descriptor.<onnx|stablehlo>` and its sidecar `descriptor.<fmt>.json`
  (`out_dir` default `<workdir>/export`). Returns `{'artifact', 'sidecar', 'spec'}`."""
  check_format(fmt)
  if fmt == "onnx":
    jax2onnx = load_jax2onnx()
  fn, spec = deployed_descriptor(workdir, step)
  out_dir = Path(workdir) / "export" if out_dir is None else Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  artifact = out_dir / f"descriptor{SUFFIX[fmt]}"
  _, height, width, _ = spec["input"]["shape"]
  if fmt == "onnx":
    model = _to_onnx(jax2onnx, fn, height, width)
    atomic_io.write_bytes(artifact, model.SerializeToString())
    # The graph's own names (jax2onnx's, e.g. 'in_0'): what onnxruntime's feed dict takes.
    spec = {**spec, "input": {**spec["input"], "name": model.graph.input[0].name},
            "output": {**spec["output"], "name": model.graph.output[0].name}}
  else:
    batch, = jax.export.symbolic_shape("batch")
    exported = jax.export.export(jax.jit(fn))(
        jax.ShapeDtypeStruct((batch, height, width, 3), jnp.uint8))
    atomic_io.write_bytes(artifact, bytes(exported.serialize()))
    spec = {**spec, "deserialize": "jax.export.deserialize(bytearray(open(path, 'rb').read()))"
                                   ".call(images)"}
  spec = {**spec, "format": fmt}
  sidecar = artifact.with_name(artifact.name + ".json")
  atomic_io.write_json(sidecar, spec)
  return {"artifact": artifact, "sidecar": sidecar, "spec": spec}


def _to_onnx(jax2onnx, fn, height: int, width: int):
  from reid_jax.models import conv  # pylint: disable=g-import-not-at-top
  with conv.plain_convolutions():  # plain convolutions and max pooling (see conv, pooling)
    model = jax2onnx.to_onnx(fn, [jax.ShapeDtypeStruct(("B", height, width, 3), jnp.uint8)],
                             model_name="reid_descriptor")
  # jax2onnx 0.17.1 annotates some NCHW intermediates with H and W swapped, which onnxruntime
  # refuses ("Incompatible dimensions"); the annotations are optional: drop them.
  del model.graph.value_info[:]
  return model
