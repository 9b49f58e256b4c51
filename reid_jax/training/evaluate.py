"""Evaluate a re-ID model on a dataset's query/gallery (hhl.md §8), and restore one from a workdir.

  entry, ranking = evaluate_dataset(model, variables, "synth_market", data_dir, config)

`entry` is the results.json record of design README §5; `ranking` holds what the rank-list
figures need.
"""

from pathlib import Path

import jax
import numpy as np

from reid_jax.data import pipeline
from reid_jax.data import tfds_builders
from reid_jax.errors import ReidError
from reid_jax.evaluation import features as features_lib
from reid_jax.evaluation import ranking
from reid_jax.models import heads
from reid_jax.training import checkpoint as checkpoint_lib
from reid_jax.training import workdir as workdir_lib

DTYPES = {"float32": None, "bfloat16": "bfloat16"}


def build_reid_net(model_config, num_classes: int) -> heads.ReIDNet:
  """`ReIDNet` from a config's `model` block (ConfigDict or the dict saved in config.json)."""
  get = model_config.get
  dtype = get("dtype", "float32")
  return heads.ReIDNet(
      num_classes=int(num_classes), arch=get("arch"), num_features=int(get("num_features")),
      triplet_features=int(get("triplet_features")), dropout_rate=float(get("dropout_rate")),
      last_stride=int(get("last_stride")), dtype=None if dtype == "float32" else dtype)


def load_split(dataset: str, split: str, data_dir, config):
  return tfds_builders.load_split(dataset, split, data_dir,
                                  size=config["data"].get("synthetic_size", "tiny"))


def evaluate_dataset(model, variables, dataset: str, data_dir, config, rerank: bool | None = None):
  """Query/gallery descriptors (L2-normalised pool5), distances and CMC/mAP of `dataset`.

  Returns:
    (entry, extras): entry = the results.json record `{rank1, rank5, rank10, rank20, mAP, ap,
    distance, rerank, n_query, n_gallery}`; extras = `{'query', 'gallery'}` sources and the
    descriptors `qf`, `gf` (for figures).
  """
  data_config, eval_config = config["data"], config["eval"]
  rerank = bool(eval_config["rerank"]) if rerank is None else rerank
  descriptor = features_lib.pool5_descriptor(model)
  out = {}
  for split in ("query", "gallery"):
    source = load_split(dataset, split, data_dir, config)
    batches = pipeline.eval_batches(source, int(data_config["eval_batch_size"]),
                                    int(data_config["height"]), int(data_config["width"]),
                                    num_threads=int(data_config["num_workers"]))
    out[split] = source
    out[split[0] + "f"] = features_lib.extract(descriptor, variables, batches,
                                               flip=bool(eval_config["flip"]))
  entry = _entry(out["qf"], out["gf"], out["query"].labels, out["gallery"].labels,
                 metric=eval_config["distance"], ap=eval_config["ap"], rerank=rerank)
  return entry, out


def _entry(qf, gf, q, g, **options) -> dict:
  """The results.json record of query/gallery descriptors with labels `q`, `g`."""
  scores = ranking.evaluate(qf, gf, q["pid"], g["pid"], q["camid"], g["camid"], **options)
  return workdir_lib.eval_entry(scores, ap=scores["ap"], distance=scores["distance"],
                                rerank=scores["rerank"], n_query=scores["n_query"],
                                n_gallery=scores["n_gallery"])


def evaluate_handcrafted(dataset: str, data_dir, config) -> dict:
  """The results.json record of the hand-crafted reference (`evaluation.handcrafted`) on `dataset`:
  per-stripe colour statistics, Euclidean distance, the config's AP form."""
  from reid_jax.evaluation import handcrafted  # pylint: disable=g-import-not-at-top
  splits = {}
  for split in ("query", "gallery"):
    source = load_split(dataset, split, data_dir, config)
    splits[split] = (handcrafted.describe(source.encoded_many(np.arange(len(source)))),
                     source.labels)
  (qf, q), (gf, g) = splits["query"], splits["gallery"]
  return _entry(qf, gf, q, g, metric="euclidean", ap=config["eval"]["ap"], rerank=False)


def restore_variables(workdir, step: int | None = None):
  """`({'params', 'batch_stats'}, step)` of the latest (or given) checkpoint of `workdir`."""
  directory = Path(workdir) / workdir_lib.CHECKPOINT_DIR
  with checkpoint_lib.Checkpointer(directory, read_only=True) as ckpt:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise ReidError(f"no checkpoint in {directory}: train first")
    tree, _ = ckpt.restore(None, step=step)
  variables = {"params": tree["params"]}
  if tree.get("batch_stats"):
    variables["batch_stats"] = tree["batch_stats"]
  return jax.tree.map(np.asarray, variables), int(step)


def num_classes_of(params) -> int:
  """Classifier outputs of a ReIDNet parameter tree (0 without a classifier)."""
  classifier = params.get("classifier")
  return int(classifier["kernel"].shape[-1]) if classifier else 0


def format_table(rows: dict[str, dict]) -> str:
  """A people's table: dataset, rank-1/5/10/20 and mAP in % with one decimal (design README §5)."""
  header = f"{'dataset':<16}{'rank-1':>8}{'rank-5':>8}{'rank-10':>9}{'rank-20':>9}{'mAP':>8}"
  lines = [header, "-" * len(header)]
  for name, entry in rows.items():
    lines.append(f"{name:<16}" + "".join(
        f"{100 * entry[k]:>{w}.1f}" for k, w in
        (("rank1", 8), ("rank5", 8), ("rank10", 9), ("rank20", 9), ("mAP", 8))))
  return "\n".join(lines)
