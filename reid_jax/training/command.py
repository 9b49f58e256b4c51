"""What every re-ID training command does after reading its flags (experiments.baseline, .hhl,
.arn): print the config, route library logs to the workdir, check everything it will read before
any long work, train with resume, evaluate and print the table.

  command.train_and_report(hhl.METHOD, config, config_name, src=src, tgt=tgt, workdir=workdir,
                           data_dir=data_dir, title="hhl (lc)", heading="variant lc",
                           before_training=check_fakes)
"""

from typing import Callable

from absl import flags

from reid_jax import cli
from reid_jax.evaluation import tables
from reid_jax.training import preflight
from reid_jax.training import sharding as sharding_lib
from reid_jax.training import trainer
from reid_jax.training import workdir as workdir_lib

# A multi-process (multi-host) run: every process runs the same command with its own
# --process_id (or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID in the
# environment; 'auto': JAX's detection on Cloud TPU pods, SLURM, Open MPI). WORKSPACE.md, "Scale".
flags.DEFINE_string("coordinator_address", None,
                    "multi-process run: host:port of process 0 (or 'auto'); default: one process")
flags.DEFINE_integer("num_processes", None, "multi-process run: the number of processes")
flags.DEFINE_integer("process_id", None, "multi-process run: this process's index, 0 first")


def start_processes() -> None:
  """`jax.distributed.initialize` when the flags or the environment ask for several processes."""
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if sharding_lib.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id):
    import jax  # pylint: disable=g-import-not-at-top
    print(f"process {jax.process_index()} of {jax.process_count()}: "
          f"{len(jax.local_devices())} of {jax.device_count()} devices")


def train_and_report(method: trainer.Method, config, config_name: str, *, src: str, tgt: str,
                     workdir, data_dir, title: str, heading: str = "",
                     before_training: Callable[[], None] | None = None) -> dict:
  """Trains and evaluates `method` in `workdir` and prints the results table; returns results.json.

  before_training: a method's own checks (e.g. HHL's camera-style set), run after the shared
    preflight (the workdir's config, every dataset, the pretrained file) and before the workdir is
    written.
  """
  start_processes()
  main = sharding_lib.is_main_process()
  if main:
    print(f"config {config_name}{', ' + heading if heading else ''}:\n{config}")
    cli.log_to(workdir)
  # The main process prepares (builds datasets, the trunk, config.json); the others then check.
  for turn in (True, False):
    if main == turn:
      preflight.training_run(workdir, config, data_dir, src, tgt)
      if before_training is not None:
        before_training()
      if main:
        workdir_lib.prepare(workdir, config, ignore=("config_name",))
    sharding_lib.sync(f"prepared, main={turn}")
  print(f"workdir {workdir}")
  results = trainer.train_and_evaluate(method, config, workdir, data_dir, src, tgt, config_name)
  if not main:
    return results  # the main process evaluates and prints
  print(f"\n{title} {src} -> {tgt}, {results['steps']} steps "
        f"({results['train_seconds']:.0f} s training); ap={config.eval.ap}, "
        f"distance={config.eval.distance}")
  print(tables.format_table(results["eval"]))
  print(f"results: {workdir}/results.json")
  return results
