"""What every re-ID training command does after reading its flags (experiments.baseline, .hhl,
.arn): print the config, route library logs to the workdir, check everything it will read before
any long work, train with resume, evaluate and print the table.

  command.train_and_report(hhl.METHOD, config, config_name, src=src, tgt=tgt, workdir=workdir,
                           data_dir=data_dir, title="hhl (lc)", heading="variant lc",
                           before_training=check_fakes)
"""

from typing import Callable

from reid_jax import cli
from reid_jax.evaluation import tables
from reid_jax.training import preflight
from reid_jax.training import trainer
from reid_jax.training import workdir as workdir_lib


def train_and_report(method: trainer.Method, config, config_name: str, *, src: str, tgt: str,
                     workdir, data_dir, title: str, heading: str = "",
                     before_training: Callable[[], None] | None = None) -> dict:
  """Trains and evaluates `method` in `workdir` and prints the results table; returns results.json.

  before_training: a method's own checks (e.g. HHL's camera-style set), run after the shared
    preflight (the workdir's config, every dataset, the pretrained file) and before the workdir is
    written.
  """
  print(f"config {config_name}{', ' + heading if heading else ''}:\n{config}")
  cli.log_to(workdir)
  preflight.training_run(workdir, config, data_dir, src, tgt)
  if before_training is not None:
    before_training()
  workdir_lib.prepare(workdir, config, ignore=("config_name",))
  print(f"workdir {workdir}")
  results = trainer.train_and_evaluate(method, config, workdir, data_dir, src, tgt, config_name)
  print(f"\n{title} {src} -> {tgt}, {results['steps']} steps "
        f"({results['train_seconds']:.0f} s training); ap={config.eval.ap}, "
        f"distance={config.eval.distance}")
  print(tables.format_table(results["eval"]))
  print(f"results: {workdir}/results.json")
  return results
