"""Evaluate a re-ID model on a query/gallery (docs/hhl.md §8); restore a model from a workdir.

  entry, ranking = evaluate_dataset(model, variables, "synth_market", data_dir, config)

`entry` is the results.json record of docs/design.md §5; `ranking` holds what the rank-list
figures need (`write_rank_list`). `evaluate_workdir` is `experiments.evaluate`: checkpoint,
scores, results.json entry and figure.
"""

from pathlib import Path

import jax
import numpy as np

from reid_jax.data import pipeline
from reid_jax.data import streams
from reid_jax.errors import ReidError
from reid_jax.evaluation import features as features_lib
from reid_jax.evaluation import ranking
from reid_jax.training import checkpoint as checkpoint_lib
from reid_jax.training import workdir as workdir_lib


def evaluate_dataset(model, variables, dataset: str, data_dir, config, rerank: bool | None = None,
                     descriptor=None):
  """Query/gallery descriptors (L2-normalised; pool5 unless a method's `descriptor` is given),
  distances and CMC/mAP of `dataset`.

  Returns:
    (entry, extras): entry = the results.json record `{rank1, rank5, rank10, rank20, mAP, ap,
    distance, rerank, n_query, n_gallery}`; extras = `{'query', 'gallery'}` sources, the
    descriptors `qf`, `gf` and, with re-ranking, the figure's queries `shown` and their re-ranked
    rows `distmat` `[len(shown), Ng]`.
  """
  data_config, eval_config = config["data"], config["eval"]
  rerank = bool(eval_config["rerank"]) if rerank is None else rerank
  descriptor = features_lib.pool5_descriptor(model) if descriptor is None else descriptor
  out = {}
  for split in ("query", "gallery"):
    source = streams.load_split(dataset, split, data_dir, config)
    batches = pipeline.eval_batches(source, int(data_config["eval_batch_size"]),
                                    int(data_config["height"]), int(data_config["width"]),
                                    num_threads=int(data_config["num_workers"]))
    out[split] = source
    out[split[0] + "f"] = features_lib.extract(descriptor, variables, batches,
                                               flip=bool(eval_config["flip"]),
                                               total=len(source), desc=f"{dataset} {split}")
  if rerank:
    q, g = out["query"].labels, out["gallery"].labels
    out["shown"] = _figure_queries(q, g, eval_config)
    entry, out["distmat"] = _reranked_entry(out["qf"], out["gf"], q, g, ap=eval_config["ap"],
                                            keep=out["shown"])
  else:
    entry = _entry(out["qf"], out["gf"], out["query"].labels, out["gallery"].labels,
                   metric=eval_config["distance"], ap=eval_config["ap"], rerank=False)
  return entry, out


def _entry(qf, gf, q, g, **options) -> dict:
  """The results.json record of query/gallery descriptors with labels `q`, `g`."""
  scores = ranking.evaluate(qf, gf, q["pid"], g["pid"], q["camid"], g["camid"], **options)
  return _record(scores)


def _record(scores) -> dict:
  return workdir_lib.eval_entry(scores, ap=scores["ap"], distance=scores["distance"],
                                rerank=scores["rerank"], n_query=scores["n_query"],
                                n_gallery=scores["n_gallery"])


def _figure_queries(q, g, eval_config):
  """The rank-list figure's queries (`figures.select_queries`)."""
  from reid_jax.evaluation import figures  # pylint: disable=g-import-not-at-top
  return figures.select_queries(q["pid"], int(eval_config["figure_queries"]), q["camid"],
                                g["pid"], g["camid"])


def _reranked_entry(qf, gf, q, g, ap: str, keep=None):
  """(record, re-ranked distance rows of the queries `keep` (default all) `[len(keep), Ng]`):
  `ranking.evaluate(..., rerank=True)`'s scores, block by block (never `[Nq, Ng]`), with the rows
  the figure shows kept so that it needs no second re-ranking."""
  from reid_jax.evaluation import rerank as rerank_lib  # pylint: disable=g-import-not-at-top
  for name, features in (("query", qf), ("gallery", gf)):
    if not np.isfinite(np.asarray(features)).all():
      raise ReidError(f"{name} features contain NaN or inf: the model diverged or the checkpoint "
                      "is corrupt; evaluate a finite checkpoint")
  keep = np.arange(np.shape(qf)[0]) if keep is None else np.asarray(keep, np.int64)
  kept = np.empty((keep.shape[0], np.shape(gf)[0]), np.float32)
  accumulator = ranking.RankAccumulator(g["pid"], g["camid"], ap=ap)
  q_pids, q_camids = np.asarray(q["pid"]), np.asarray(q["camid"])
  for start, block in ranking.rechunk(rerank_lib.re_ranking_blocks(qf, gf),
                                      ranking.DEFAULT_CHUNK_SIZE):
    stop = start + block.shape[0]
    accumulator.add(block, q_pids[start:stop], q_camids[start:stop])
    inside = (keep >= start) & (keep < stop)
    kept[inside] = block[keep[inside] - start]
  # Re-ranking starts from Euclidean distances whatever eval.distance says (as ranking.evaluate).
  scores = ranking.summarize(accumulator.result(), ap, "euclidean", True, np.shape(gf)[0])
  return _record(scores), kept


def write_rank_list(workdir, dataset: str, extras, config, *, rerank: bool = False,
                    step: int | None = None) -> Path:
  """The rank-list figure of `dataset` as `<workdir>/figures/rank_list_<dataset>[+rerank].png`.

  Rows: `eval.figure_queries` queries of distinct identities (`figures.select_queries`), each
  followed by its top `eval.figure_topk` valid gallery images under the distances that were
  scored (the re-ranked ones in `extras['distmat']` with `rerank`). The title names the dataset,
  the workdir (`<experiment>/<name>`), the distance and whether re-ranking was on.
  """
  from reid_jax.evaluation import distances  # pylint: disable=g-import-not-at-top
  from reid_jax.evaluation import figures  # pylint: disable=g-import-not-at-top
  eval_config = config["eval"]
  query, gallery = extras["query"], extras["gallery"]
  q, g = query.labels, gallery.labels
  shown = _figure_queries(q, g, eval_config)
  if rerank:
    distmat, distance = np.asarray(extras["distmat"]), "euclidean"
    if "shown" in extras:  # `evaluate_dataset` kept only these queries' rows
      if not np.array_equal(extras["shown"], shown):
        raise ValueError("extras['distmat'] holds the rows of other queries than the figure's")
    else:  # the rows of every query
      distmat = distmat[shown]
  else:
    distance = eval_config["distance"]
    distmat = np.asarray(distances.compute_distance_matrix(
        np.asarray(extras["qf"])[shown], extras["gf"], distance))
  workdir = Path(workdir)
  title = figures.rank_list_title(dataset, f"{workdir.parent.name}/{workdir.name}", distance,
                                  rerank, step)
  from reid_jax.data import datasets  # pylint: disable=g-import-not-at-top
  # A user's `folder:/...` dataset: `<basename>_<sha1[:12]>` in the file name.
  name = f"rank_list_{datasets.file_name(dataset)}{'+rerank' if rerank else ''}.png"
  path = workdir / workdir_lib.FIGURES_DIR / name
  figures.save_rank_lists(
      path, lambda i: query[int(shown[i])]["image"], lambda i: gallery[int(i)]["image"], distmat,
      np.asarray(q["pid"])[shown], g["pid"], np.asarray(q["camid"])[shown], g["camid"],
      topk=int(eval_config["figure_topk"]), title=title)
  return path


def evaluate_workdir(workdir, dataset: str, data_dir, *, rerank: bool = False,
                     config: dict | None = None) -> dict:
  """What `experiments.evaluate` does: the latest checkpoint of `workdir` evaluated on `dataset`
  with the settings of its config.json, `eval[<dataset>[+rerank]]` set in results.json (other
  entries kept; the file is written from config.json when training never wrote one) and the
  rank list written to `figures/rank_list_<dataset>[+rerank].png`.

  Returns {'key', 'entry', 'step', 'figure', 'results'}.
  """
  config = workdir_lib.load_config(workdir) if config is None else config
  from reid_jax.training import trainer  # pylint: disable=g-import-not-at-top (imports this module)
  method = trainer.method_of(config.get("experiment", "baseline"))
  variables, step = restore_variables(workdir)
  model = method.build_model(config["model"], method.num_classes(variables["params"]))
  # The trained domain's statistics for its own dataset; the target's for any other (ARN).
  domain = ("source" if dataset == config.get("src") and dataset != config.get("tgt")
            else "target")
  entry, extras = evaluate_dataset(model, method.eval_variables(variables, domain), dataset,
                                   data_dir, config, rerank=rerank,
                                   descriptor=method.descriptor(model))
  key = f"{dataset}+rerank" if rerank else dataset
  figure = write_rank_list(workdir, dataset, extras, config, rerank=rerank, step=step)
  results = workdir_lib.record_eval(workdir, config, key, entry, step)
  return {"key": key, "entry": entry, "step": step, "figure": figure, "results": results}


def evaluate_handcrafted(dataset: str, data_dir, config) -> dict:
  """The results.json record of the hand-crafted reference (`evaluation.handcrafted`) on `dataset`:
  per-stripe colour statistics, Euclidean distance, the config's AP form."""
  from reid_jax.evaluation import handcrafted  # pylint: disable=g-import-not-at-top
  splits = {}
  for split in ("query", "gallery"):
    source = streams.load_split(dataset, split, data_dir, config)
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
