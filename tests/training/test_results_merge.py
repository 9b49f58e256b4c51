"""results.json is merged, not overwritten, and `experiments.evaluate`'s library path writes its
rank list (issue 16 item 8)."""

import json
import dataclasses

import numpy as np
import pytest
from PIL import Image

from reid_jax.evaluation import figures
from reid_jax.evaluation import ranking
from reid_jax.training import baseline
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import trainer
from reid_jax.training import workdir as workdir_lib

CONFIG = {"optim": {"base_lr": 0.01}, "seed": 0, "experiment": "baseline", "variant": "tiny",
          "src": "synth_duke", "tgt": "synth_market", "config_name": "baseline.py:tiny",
          "num_epochs": 2, "model": {},
          "eval": {"distance": "sqeuclidean", "ap": "trapezoid", "rerank": False,
                   "figure_queries": 3, "figure_topk": 4}}


def _entry(rank1, rerank=False):
  return workdir_lib.eval_entry({"rank1": rank1, "rank5": 0.6, "rank10": 0.7, "rank20": 0.8,
                                 "mAP": 0.3}, ap="trapezoid", distance="sqeuclidean",
                                rerank=rerank, n_query=10, n_gallery=20)


def _write(workdir, entries, steps=10, config=CONFIG):
  return workdir_lib.write_results(
      workdir, experiment="baseline", variant="tiny", src="synth_duke", tgt="synth_market",
      config_name="baseline.py:tiny", config=config, epochs=2, steps=steps, train_seconds=1.0,
      eval=entries)


def test_rerun_of_the_training_writer_keeps_the_rerank_entry(tmp_path):
  _write(tmp_path, {"synth_market": _entry(0.5), "synth_duke": _entry(0.9)})
  workdir_lib.update_eval(tmp_path, "synth_market", _entry(0.55, True), key="synth_market+rerank")
  # The baseline is rerun on the finished workdir: it recomputes and rewrites its two entries.
  results = _write(tmp_path, {"synth_market": _entry(0.51), "synth_duke": _entry(0.91)})
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk == results
  assert set(on_disk["eval"]) == {"synth_market", "synth_duke", "synth_market+rerank"}
  assert on_disk["eval"]["synth_market+rerank"]["rank1"] == 0.55  # kept
  assert on_disk["eval"]["synth_market"]["rank1"] == 0.51  # replaced by this run's
  assert tuple(on_disk)[:len(workdir_lib.RESULTS_KEYS)] == workdir_lib.RESULTS_KEYS
  assert not [p for p in tmp_path.iterdir() if p.name != "results.json"]  # no temporary left


def test_results_of_another_run_are_dropped(tmp_path):
  _write(tmp_path, {"synth_market": _entry(0.5)})
  workdir_lib.update_eval(tmp_path, "synth_market", _entry(0.55, True), key="synth_market+rerank")
  other = dict(CONFIG, seed=1)  # retrained with another config: the old scores are not its own
  assert set(_write(tmp_path, {"synth_market": _entry(0.4)}, config=other)["eval"]) == {
      "synth_market"}
  workdir_lib.update_eval(tmp_path, "synth_market", _entry(0.45, True), key="synth_market+rerank")
  # A longer run of the same config (e.g. evaluate ran at an intermediate checkpoint).
  assert set(_write(tmp_path, {"synth_market": _entry(0.6)}, steps=20,
                    config=other)["eval"]) == {"synth_market"}


def test_merge_results_tolerates_an_unreadable_file(tmp_path):
  (tmp_path / "results.json").write_text("{not json")
  assert set(_write(tmp_path, {"synth_market": _entry(0.5)})["eval"]) == {"synth_market"}


def test_record_eval_writes_or_updates(tmp_path):
  results = workdir_lib.record_eval(tmp_path, CONFIG, "synth_market+rerank", _entry(0.5), 7)
  assert results["steps"] == 7 and results["variant"] == "tiny"
  assert set(results["eval"]) == {"synth_market+rerank"}
  results = workdir_lib.record_eval(tmp_path, CONFIG, "synth_market", _entry(0.4), 7)
  assert set(results["eval"]) == {"synth_market", "synth_market+rerank"}


class _Source:
  """A split as `evaluate_dataset` returns it: labels and `[i]['image']`."""

  def __init__(self, pids, camids, shade):
    self.labels = {"pid": np.asarray(pids), "camid": np.asarray(camids)}
    self._shade = shade

  def __len__(self):
    return len(self.labels["pid"])

  def __getitem__(self, i):
    return {"image": np.full((32, 16, 3), self._shade + int(i), np.uint8)}


def _extras(rng):
  q_pids = np.array([4, 4, 4, 4, 6, 6, 8, 8])  # the first four queries: one person
  g_pids = np.repeat(np.arange(10), 3)
  return {"query": _Source(q_pids, np.zeros(8, int), 100),
          "gallery": _Source(g_pids, np.tile([0, 1, 2], 10), 150),
          "qf": rng.normal(size=(8, 5)).astype(np.float32),
          "gf": rng.normal(size=(30, 5)).astype(np.float32)}


def test_write_rank_list_names_and_distinct_queries(tmp_path, monkeypatch):
  extras = _extras(np.random.default_rng(0))
  shown = {}
  original = figures.save_rank_lists

  def spy(path, query_images, gallery_images, distmat, q_pids, *args, **kwargs):
    shown.update(pids=np.asarray(q_pids), rows=distmat.shape[0], title=kwargs["title"])
    return original(path, query_images, gallery_images, distmat, q_pids, *args, **kwargs)

  monkeypatch.setattr(figures, "save_rank_lists", spy)
  workdir = tmp_path / "baseline" / "run"
  path = evaluate_lib.write_rank_list(workdir, "synth_market", extras, CONFIG, step=5)
  assert path == workdir / "figures" / "rank_list_synth_market.png"
  assert Image.open(path).size[1] > 0
  assert sorted(shown["pids"].tolist()) == [4, 6, 8]  # distinct identities
  assert "baseline/run" in shown["title"] and "sqeuclidean" in shown["title"]
  extras["distmat"] = np.random.default_rng(1).uniform(size=(8, 30))
  path = evaluate_lib.write_rank_list(workdir, "synth_market", extras, CONFIG, rerank=True)
  assert path.name == "rank_list_synth_market+rerank.png" and path.exists()
  assert "re-ranking" in shown["title"] and "no re-ranking" not in shown["title"]


def test_evaluate_workdir_writes_its_figure_and_keeps_other_entries(tmp_path, monkeypatch):
  """`experiments.evaluate`'s path, with the model and the data faked."""
  workdir = tmp_path / "baseline" / "run"
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps(CONFIG))
  _write(workdir, {"synth_market": _entry(0.5), "synth_duke": _entry(0.9)})
  extras = _extras(np.random.default_rng(0))
  extras["distmat"] = np.random.default_rng(1).uniform(size=(8, 30))
  monkeypatch.setattr(evaluate_lib, "restore_variables", lambda w: ({"params": {}}, 10))
  fake_method = dataclasses.replace(baseline.METHOD, build_model=lambda *a: None,
                                    descriptor=lambda model: None)
  monkeypatch.setattr(trainer, "method_of", lambda experiment: fake_method)
  monkeypatch.setattr(evaluate_lib, "evaluate_dataset",
                      lambda *a, rerank, descriptor: (_entry(0.6, rerank), extras))
  outcome = evaluate_lib.evaluate_workdir(workdir, "synth_market", tmp_path, rerank=True)
  assert outcome["key"] == "synth_market+rerank"
  assert outcome["figure"] == workdir / "figures" / "rank_list_synth_market+rerank.png"
  assert outcome["figure"].exists()
  on_disk = workdir_lib.read_results(workdir)
  assert set(on_disk["eval"]) == {"synth_market", "synth_duke", "synth_market+rerank"}
  outcome = evaluate_lib.evaluate_workdir(workdir, "synth_market", tmp_path)
  assert (workdir / "figures" / "rank_list_synth_market.png").exists()


def test_reranked_entry_matches_the_evaluator():
  """The figure's re-ranked matrix is scored exactly as `ranking.evaluate(rerank=True)` scores."""
  rng = np.random.default_rng(0)
  qf, gf = rng.normal(size=(12, 6)), rng.normal(size=(40, 6))
  q = {"pid": rng.integers(0, 8, 12), "camid": np.zeros(12, int)}
  g = {"pid": np.concatenate([q["pid"], rng.integers(0, 8, 28)]), "camid": np.ones(40, int)}
  entry, distmat = evaluate_lib._reranked_entry(qf, gf, q, g, ap="trapezoid")
  expected = ranking.evaluate(qf, gf, q["pid"], g["pid"], q["camid"], g["camid"],
                              ap="trapezoid", rerank=True, progress=False)
  assert distmat.shape == (12, 40)
  for key in ("rank1", "rank5", "mAP", "distance", "rerank", "n_query", "n_gallery"):
    assert entry[key] == pytest.approx(expected[key]), key
