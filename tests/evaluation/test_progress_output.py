"""Progress on stdout for extraction, evaluation and re-ranking (the compiling batch announced)."""

import re

import jax.numpy as jnp
import numpy as np

from reid_jax.evaluation import features
from reid_jax.evaluation import ranking
from reid_jax.evaluation import rerank


def _batches(images, batch_size):
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    mask = np.arange(batch_size) < len(chunk)
    padded = np.zeros((batch_size,) + images.shape[1:], images.dtype)
    padded[:len(chunk)] = chunk
    yield {"image": padded, "mask": mask}


def _descriptor(variables, images):
  return images.reshape(images.shape[0], -1) @ variables["params"]["w"]


def test_extraction_shows_a_bar_with_the_total_and_compiles_once(capsys):
  variables = {"params": {"w": jnp.asarray(np.random.default_rng(0).normal(size=(12, 5)),
                                           jnp.float32)}}
  images = np.random.default_rng(1).normal(size=(7, 2, 2, 3)).astype(np.float32)
  out = features.extract(_descriptor, variables, _batches(images, 3), total=7,
                         desc="synth query")
  assert out.shape == (7, 5)
  first = capsys.readouterr().out
  assert re.search(r"synth query: 100%.*\b7/7 ", first), first
  assert "compiling the feature extractor (batches of 3) ..." in first
  assert "compiled the feature extractor (batches of 3) in " in first
  # the gallery after the query: same descriptor, same batch shape, nothing compiles
  again = features.extract(_descriptor, variables, _batches(images[:4], 3), total=4,
                           desc="synth gallery")
  np.testing.assert_allclose(again, out[:4], atol=1e-6)
  second = capsys.readouterr().out
  assert re.search(r"synth gallery: 100%.*\b4/4 ", second), second
  assert "compil" not in second
  features.extract(_descriptor, variables, _batches(images, 3), progress=False)
  assert capsys.readouterr().out == ""


def _labelled(num_query, num_gallery, seed=0):
  rng = np.random.default_rng(seed)
  q_pids = rng.integers(0, 5, num_query)
  g_pids = np.concatenate([q_pids, rng.integers(0, 5, num_gallery - num_query)])
  qf = rng.normal(size=(num_query, 4)).astype(np.float32)
  gf = rng.normal(size=(num_gallery, 4)).astype(np.float32)
  return qf, gf, q_pids, g_pids, np.zeros(num_query, int), np.ones(num_gallery, int)


def test_evaluation_shows_query_progress(capsys):
  qf, gf, q_pids, g_pids, q_cams, g_cams = _labelled(10, 30)
  ranking.evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, chunk_size=4)
  out = capsys.readouterr().out
  assert re.search(r"CMC/mAP: 100%.*\b10/10 ", out), out
  ranking.evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, chunk_size=4, progress=False)
  assert capsys.readouterr().out == ""


def test_rerank_shows_progress(capsys):
  qf, gf, q_pids, g_pids, q_cams, g_cams = _labelled(6, 20)
  plain = rerank.re_ranking_features(qf, gf, k1=4, k2=2, progress=False)
  assert capsys.readouterr().out == ""
  shown = rerank.re_ranking_features(qf, gf, k1=4, k2=2)
  np.testing.assert_array_equal(plain, shown)
  out = capsys.readouterr().out
  assert re.search(r"re-ranking: 100%", out), out
  scores = ranking.evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, rerank=True,
                            rerank_k1=4, rerank_k2=2)
  out = capsys.readouterr().out
  # One bar: the scoring runs block by block inside re-ranking's last step.
  assert scores["rerank"] and "re-ranking: 100%" in out and "CMC/mAP" not in out
