"""Samplers (docs/arn_triplet_eval.md §2.4, docs/hhl.md §5)."""

import collections
import json

import numpy as np
import pytest

from reid_jax.data import samplers
from reid_jax.errors import ReidError


def _pids(counts):
  """Image labels: identity i has counts[i] images, labels are 100 + 7 i (non-contiguous)."""
  return np.concatenate([np.full(n, 100 + 7 * i) for i, n in enumerate(counts)])


def _chunks(batch, K):
  return batch.reshape(-1, K)


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_pk_torchreid_composition(epoch):
  counts = [3, 8, 9, 4, 12, 5, 1, 16]
  pids = _pids(counts)
  K, P = 4, 3
  batches = samplers.pk_batches(pids, P * K, K, seed=0, epoch=epoch)
  assert batches.dtype == np.int64 and batches.shape[1] == P * K and len(batches) > 0
  used_chunks = collections.Counter()
  seen = collections.Counter()
  for batch in batches:
    chunk_pids = []
    for chunk in _chunks(batch, K):
      # Each chunk: K images of one identity.
      assert len(set(pids[chunk])) == 1
      chunk_pids.append(pids[chunk][0])
      used_chunks[pids[chunk][0]] += 1
      seen.update(chunk.tolist())
    assert len(set(chunk_pids)) == P  # P distinct identities per batch
  chunks_available = {100 + 7 * i: max(n // K, 1) for i, n in enumerate(counts)}
  for pid, used in used_chunks.items():
    assert used <= chunks_available[pid]
  # Leftovers: a pid with 9 images contributes at most 8; the epoch stops only when fewer than P
  # identities still have chunks.
  unfinished = [p for p, n in chunks_available.items() if used_chunks[p] < n]
  assert len(unfinished) < P
  # No image twice in an epoch for identities with >= K images (no replacement there).
  for i, n in enumerate(counts):
    if n >= K:
      own = np.flatnonzero(pids == 100 + 7 * i)
      assert max(seen[j] for j in own) <= 1


def test_pk_torchreid_resamples_small_identities_with_replacement():
  pids = _pids([2, 2, 1])
  batches = samplers.pk_batches(pids, 12, 4, seed=1, epoch=0)
  assert batches.shape == (1, 12)  # every pid has one chunk of 4 made with replacement
  for chunk in _chunks(batches[0], 4):
    assert len(set(pids[chunk])) == 1
  single = np.flatnonzero(pids == 114)[0]
  chunk = [c for c in _chunks(batches[0], 4) if pids[c][0] == 114][0]
  np.testing.assert_array_equal(chunk, [single] * 4)
  # Duplicates do occur somewhere across epochs for the 2-image identities.
  dup = any(len(set(c.tolist())) < 4 for e in range(5)
            for c in _chunks(samplers.pk_batches(pids, 12, 4, 1, e)[0], 4))
  assert dup


def test_pk_drops_leftover_images():
  # One identity with 2K + 3 images and P = 1: exactly two batches, 2K distinct images.
  K = 4
  pids = _pids([2 * K + 3])
  batches = samplers.pk_batches(pids, K, K, seed=0, epoch=0)
  assert batches.shape == (2, K)
  assert len(set(batches.ravel().tolist())) == 2 * K


def test_pk_determinism_and_epochs_differ():
  pids = _pids([5, 6, 7, 8, 9, 10, 11, 12])
  a = samplers.pk_batches(pids, 8, 4, seed=3, epoch=2)
  b = samplers.pk_batches(pids, 8, 4, seed=3, epoch=2)
  np.testing.assert_array_equal(a, b)
  c = samplers.pk_batches(pids, 8, 4, seed=3, epoch=3)
  d = samplers.pk_batches(pids, 8, 4, seed=4, epoch=2)
  assert not (a.shape == c.shape and np.array_equal(a, c))
  assert not (a.shape == d.shape and np.array_equal(a, d))


def test_pk_batch_divisibility_and_too_few_identities():
  with pytest.raises(ReidError, match="multiple of num_instances=4"):
    samplers.pk_batches(_pids([4, 4, 4]), 10, 4, 0, 0)
  with pytest.raises(ReidError, match="fewer than the 3"):
    samplers.pk_batches(_pids([4, 4]), 12, 4, 0, 0)


def test_pk_hhl_variant_one_chunk_per_identity():
  counts = [3, 8, 9, 4, 12, 5, 1, 16, 7]
  pids = _pids(counts)
  K, B = 4, 8
  batches = samplers.pk_batches(pids, B, K, seed=0, epoch=0, variant="hhl")
  assert batches.shape == (len(counts) * K // B, B)  # floor(M K / B) batches, drop_last
  chunk_pids = [pids[c][0] for c in _chunks(batches.ravel(), K)
                if len(set(pids[c])) == 1]
  assert len(chunk_pids) == batches.size // K  # every chunk is one identity
  assert len(set(chunk_pids)) == len(chunk_pids)  # each identity at most once per pass
  for c in _chunks(batches.ravel(), K):
    if len(np.flatnonzero(pids == pids[c][0])) >= K:
      assert len(set(c.tolist())) == K  # without replacement when the pid has >= K images
  other = samplers.pk_batches(pids, B, K, seed=0, epoch=1, variant="hhl")
  assert not np.array_equal(batches, other)


def test_shuffled_batches():
  b = samplers.shuffled_batches(23, 5, seed=0, epoch=0)
  assert b.shape == (4, 5)
  assert len(set(b.ravel().tolist())) == 20 and b.max() < 23
  np.testing.assert_array_equal(b, samplers.shuffled_batches(23, 5, seed=0, epoch=0))
  assert not np.array_equal(b, samplers.shuffled_batches(23, 5, seed=0, epoch=1))
  assert not np.array_equal(b, samplers.shuffled_batches(23, 5, seed=0, epoch=0, stream=1))
  full = samplers.shuffled_batches(23, 5, seed=0, epoch=0, drop_last=False)
  assert sorted(np.concatenate(full).tolist()) == list(range(23)) and len(full[-1]) == 3
  # Uniform: over many epochs each item lands in the first batch about B/N of the time.
  hits = np.zeros(23)
  for e in range(2000):
    hits[samplers.shuffled_batches(23, 5, seed=0, epoch=e)[0]] += 1
  assert np.abs(hits / 2000 - 5 / 23).max() < 0.04


def test_target_batches_fake_paths(tmp_path):
  names = ["bounding_box_train/0002_c1s1_000451_03.jpg", "bounding_box_train/0007_c2s1_000001_01.jpg",
           "bounding_box_train/0009_c6s2_000002_02.jpg"]
  out = samplers.target_batches(names, 2, seed=0, epoch=0, camstyle_folder=tmp_path, num_cameras=6)
  assert len(out) == 1
  batch = out[0]
  assert batch.indices.shape == (2,) and batch.fake_paths.shape == (2, 6)
  for i, row in zip(batch.indices, batch.fake_paths):
    stem = names[i].split("/")[-1][:-4]
    assert list(row) == [str(tmp_path / f"{stem}_fake_{j}.jpg") for j in range(1, 7)]
  none = samplers.target_batches(names, 2, seed=0, epoch=0)
  assert none[0].fake_paths.shape == (2, 0)
  np.testing.assert_array_equal(none[0].indices, batch.indices)


def test_sampler_state_roundtrip():
  state = samplers.SamplerState(seed=5, epoch=3, step=2)
  assert samplers.SamplerState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
