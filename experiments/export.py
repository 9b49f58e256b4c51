r"""Export a workdir's test-time descriptor for deployment (reid_jax/export.py).

  python -m experiments.export --workdir=workdirs/baseline/synth_duke_to_synth_market_tiny \
      --format=onnx|stablehlo [--out_dir=DIR]

Writes `<out_dir>/descriptor.onnx` (jax2onnx) or `descriptor.stablehlo` (`jax.export`, read with
`jax.export.deserialize`) and its sidecar `<artifact>.json` (input uint8 NHWC RGB [batch, H, W, 3],
batch dynamic; output float32 [batch, D], L2-normalised); `out_dir` defaults to `<workdir>/export`.
"""

from pathlib import Path

from absl import flags

from reid_jax import cli
from reid_jax import export as export_lib
from reid_jax.training import preflight

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "a trained baseline, HHL or ARN workdir", required=True)
flags.DEFINE_string("format", "onnx", f"one of {', '.join(export_lib.FORMATS)}")
flags.DEFINE_string("out_dir", None, "where the artifact goes (default <workdir>/export)")


def main(overrides):
  del overrides  # this command takes no config
  export_lib.check_format(FLAGS.format)
  workdir = Path(FLAGS.workdir)
  preflight.checkpoint_exists(workdir, "train first (experiments.baseline, experiments.hhl or "
                                       "experiments.arn with this --workdir)")
  if FLAGS.format == "onnx":
    export_lib.load_jax2onnx()
  out = export_lib.export_descriptor(workdir, FLAGS.format, FLAGS.out_dir)
  spec = out["spec"]
  print(f"{FLAGS.format} descriptor of {workdir} (step {spec['step']}): {out['artifact']}; input "
        f"uint8 {spec['input']['shape']} NHWC RGB, output float32 [batch, {spec['feature_dim']}] "
        f"L2-normalised; spec {out['sidecar']}")


if __name__ == "__main__":
  cli.run(main)
