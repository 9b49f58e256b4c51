r"""Evaluate a trained workdir's checkpoint on a dataset's query/gallery (hhl.md §8).

  python -m experiments.evaluate --workdir=workdirs/baseline/synth_duke_to_synth_market_tiny \
      --dataset=synth_market [--rerank]

Restores the latest orbax checkpoint, uses the evaluation settings of the workdir's config.json,
prints rank-1/5/10/20 and mAP, and sets `eval[<dataset>]` (`eval[<dataset>+rerank]` with
--rerank) in results.json.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from pathlib import Path

from absl import flags
from absl import logging

from reid_jax import cli
from reid_jax import paths
from reid_jax.data import datasets
from reid_jax.errors import ReidError
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import workdir as workdir_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "a training workdir (holds config.json and checkpoints/)",
                    required=True)
flags.DEFINE_string("dataset", None, "dataset whose query/gallery to evaluate on", required=True)
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_bool("rerank", False, "k-reciprocal re-ranking (hhl.md §8: off for every paper number)")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax/TFDS INFO lines drown the progress bar
  if FLAGS.dataset not in datasets.DATASETS:
    raise ReidError(f"unknown dataset {FLAGS.dataset!r}; choose one of "
                    f"{', '.join(datasets.DATASETS)}")
  workdir = Path(FLAGS.workdir)
  config = workdir_lib.load_config(workdir)
  variables, step = evaluate_lib.restore_variables(workdir)
  model = evaluate_lib.build_reid_net(config["model"],
                                      evaluate_lib.num_classes_of(variables["params"]))
  data_dir = FLAGS.data_dir or paths.default_data_dir()
  entry, _ = evaluate_lib.evaluate_dataset(model, variables, FLAGS.dataset, data_dir, config,
                                           rerank=FLAGS.rerank)
  key = f"{FLAGS.dataset}+rerank" if FLAGS.rerank else FLAGS.dataset
  if workdir_lib.read_results(workdir) is None:
    workdir_lib.write_results(
        workdir, experiment=config.get("experiment", "unknown"),
        variant=config.get("variant", "unknown"), src=config.get("src"), tgt=config.get("tgt"),
        config_name=config.get("config_name", ""), config=config,
        epochs=config.get("num_epochs", 0), steps=step, train_seconds=0.0, eval={key: entry})
  else:
    workdir_lib.update_eval(workdir, FLAGS.dataset, entry, key=key)
  print(f"checkpoint step {step} of {workdir}; ap={entry['ap']}, distance={entry['distance']}, "
        f"rerank={entry['rerank']}, {entry['n_query']} queries, {entry['n_gallery']} gallery")
  print(evaluate_lib.format_table({key: entry}))


if __name__ == "__main__":
  cli.run(main)
