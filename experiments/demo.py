r"""The main job: both papers' tables on the synthetic world, from an empty data dir to a report.

  python -m experiments.demo                        # synth_duke -> synth_market, main rows, 1 seed
  python -m experiments.demo --reverse              # synth_market -> synth_duke
  python -m experiments.demo --ablations --seeds=3  # + HHL's Table 2 rows and ARN's four rows
  python -m experiments.demo --quick                # a miniature of the whole job (tests)

Makes what is missing (the pretrained CPU trunk, the synthetic worlds, the target's StarGAN and
camera-style set), then trains and evaluates the hand-crafted reference, the direct-transfer
baseline, the supervised bound, HHL and ARN, each with the command a user would type (printed
before it runs), measures Table 1 and writes the report (`experiments.report`). Prints one table,
the paper's figure beside each row, and whether the papers' claims hold here. Rerunning resumes:
a finished stage is not run again, an interrupted one continues from its checkpoint.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import shlex
import sys
from pathlib import Path

from absl import flags

from reid_jax import cli
from reid_jax import demo
from reid_jax import paths
from reid_jax.errors import UsageError

FLAGS = flags.FLAGS
flags.DEFINE_bool("reverse", False, "synth_market -> synth_duke instead of synth_duke -> "
                  "synth_market")
flags.DEFINE_bool("ablations", False, "add HHL's Table 2 rows (+L_T, +L_D, +L_C) and ARN's "
                  "ablation rows (L_rec only, + private encoders, + supervised losses)")
flags.DEFINE_integer("seeds", 1, "seeds 0..N-1 of every learned row (mean ± std)")
flags.DEFINE_enum("size", None, ["tiny", "small", "medium", "full"],
                  "synthetic world (default: the tiny configs' own, medium)")
flags.DEFINE_bool("quick", False, "a miniature: tiny world, 2 epochs, no pretrained trunk, a "
                  "3-iteration StarGAN (checks the mechanics, not the figures)")
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_string("workdir", None, "default workdirs/demo/<src>_to_<tgt>[_quick]")


def main(overrides):
  del overrides  # every stage uses its own tiny config
  if FLAGS.seeds < 1:
    raise UsageError(f"--seeds={FLAGS.seeds}: give at least 1")
  if FLAGS.quick and FLAGS.size:
    raise UsageError("--quick runs on the tiny world: drop --size")
  src, tgt = ("synth_market", "synth_duke") if FLAGS.reverse else ("synth_duke", "synth_market")
  workdir = Path(FLAGS.workdir or paths.default_workdir("demo", src, tgt,
                                                        "quick" if FLAGS.quick else None))
  options = demo.Options(src=src, tgt=tgt, workdir=workdir,
                         data_dir=Path(FLAGS.data_dir or paths.default_data_dir()),
                         seeds=FLAGS.seeds, ablations=FLAGS.ablations, size=FLAGS.size,
                         quick=FLAGS.quick,
                         command=shlex.join(["python", "-m", "experiments.demo", *sys.argv[1:]]))
  print(f"demo {src} -> {tgt}: workdir {workdir}, data dir {options.data_dir}", flush=True)
  plan = demo.plan(options)
  demo.run(plan)
  record = demo.write_demo_json(plan)
  report_path = demo.write_report(workdir)
  print(f"\ndemo {src} -> {tgt}, {demo.world_size(options)} world, {options.seeds} seed(s); "
        f"target {tgt} (%), the paper's figures are on the real datasets:")
  print(demo.format_table(record["rows"], options.seeds))
  print()
  for claim in demo.claims(record, workdir):
    print(claim)
  print(f"\nruns: {workdir / demo.RUNS_DIR}/ (each with results.json, figures/, tb/)")
  print(f"report: {report_path}")
  print(f"TensorBoard: tensorboard --logdir {workdir / demo.RUNS_DIR}")


if __name__ == "__main__":
  cli.run(main)
