r"""Evaluate a trained workdir's checkpoint on a dataset's query/gallery (docs/hhl.md §8).

  python -m experiments.evaluate --workdir=workdirs/baseline/synth_duke_to_synth_market_tiny \
      --dataset=synth_market [--rerank]

Restores the latest orbax checkpoint, uses the evaluation settings of the workdir's config.json,
prints rank-1/5/10/20 and mAP, sets `eval[<dataset>]` (`eval[<dataset>+rerank]` with --rerank)
in results.json (the other entries are kept) and writes the rank list to
`<workdir>/figures/rank_list_<dataset>[+rerank].png`.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

from pathlib import Path

from absl import flags

from reid_jax import cli
from reid_jax import paths
from reid_jax.evaluation import tables
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import preflight
from reid_jax.training import workdir as workdir_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "a training workdir (holds config.json and checkpoints/)",
                    required=True)
flags.DEFINE_string("dataset", None, "dataset whose query/gallery to evaluate on; --help lists "
                    "the names", required=True)
flags.DEFINE_string("data_dir", None, "data root (default $REID_JAX_DATA or ~/reid_jax_data)")
flags.DEFINE_bool("rerank", False, "k-reciprocal re-ranking (docs/hhl.md §8: off for every paper number)")


def main(overrides):
  del overrides  # this command takes no config
  preflight.dataset_names(FLAGS.dataset)
  workdir = Path(FLAGS.workdir)
  # Before any long work: a trained workdir and the dataset's prepared query/gallery.
  preflight.checkpoint_exists(workdir, "train first (experiments.baseline or experiments.hhl with "
                                       "this --workdir)")
  cli.log_to(workdir)
  config = workdir_lib.load_config(workdir)
  data_dir = FLAGS.data_dir or paths.default_data_dir()
  preflight.datasets(data_dir, (FLAGS.dataset,),
                     size=config.get("data", {}).get("synthetic_size", "tiny"))
  outcome = evaluate_lib.evaluate_workdir(workdir, FLAGS.dataset, data_dir, rerank=FLAGS.rerank,
                                          config=config)
  key, entry = outcome["key"], outcome["entry"]
  print(f"checkpoint step {outcome['step']} of {workdir}; ap={entry['ap']}, "
        f"distance={entry['distance']}, rerank={entry['rerank']}, {entry['n_query']} queries, "
        f"{entry['n_gallery']} gallery")
  print(tables.format_table({key: entry}))
  print(f"eval[{key!r}] set in {workdir / workdir_lib.RESULTS_FILE}; rank list {outcome['figure']}")


if __name__ == "__main__":
  cli.run(main)
