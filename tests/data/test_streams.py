"""The §5 stream combinator (docs/hhl.md §5): stream lengths at the paper's sizes, where the
triplet and target streams restart, that passes never repeat, and exact mid-epoch resume."""

import types

import numpy as np
import pytest

from reid_jax.data import streams

DUKE_TRAIN, MARKET_TRAIN = 16_522, 12_936  # training images (docs/hhl.md §5 table)
DUKE_IDS, MARKET_IDS = 702, 751


def _source(num_ids, num_images):
  """A stand-in source with only `labels['pid']` (no images: nothing can be decoded), every
  identity present, as many images as the dataset."""
  pids = np.concatenate([np.arange(num_ids), np.random.default_rng(0).integers(
      0, num_ids, num_images - num_ids)]) * 3 + 1  # arbitrary pid values, not 0..M-1
  return types.SimpleNamespace(labels={"pid": pids})


def _target(num_images):
  return types.SimpleNamespace(labels={"filename": [f"{i:05d}_c1.jpg" for i in range(num_images)]})


# Only the fields the streams read before iterating: anything else would be an AttributeError.
DATA = types.SimpleNamespace(triplet_batch_size=64, num_instances=8, target_batch_size=16)


@pytest.mark.parametrize("num_ids,num_images,triplet,target_images,target", [
    (DUKE_IDS, DUKE_TRAIN, 87, MARKET_TRAIN, 808),  # Duke -> Market
    (MARKET_IDS, MARKET_TRAIN, 93, DUKE_TRAIN, 1032),  # Market -> Duke
])
def test_stream_lengths_at_paper_sizes(num_ids, num_images, triplet, target_images, target):
  """⌊M·8/64⌋ triplet and ⌊N_t/16⌋ target batches per pass, with or without fakes."""
  assert triplet == num_ids * 8 // 64 and target == target_images // 16
  assert streams.pk_stream(_source(num_ids, num_images), DATA, seed=0).num_batches == triplet
  for folder, cameras in ((None, 6), ("/nonexistent/camstyle", 6), ("/nonexistent/camstyle", 0)):
    stream = streams.target_stream(_target(target_images), folder, cameras, DATA, seed=0)
    assert stream.num_batches == target


def _fake_stream(name, num_batches, calls):
  """A Stream whose batches are (name, pass, position), recording each batches() call."""
  def batches(pass_index, start, stop):
    calls.append((name, pass_index, start, stop))
    for position in range(start, stop):
      yield {"stream": name, "pass": pass_index, "position": position}
  return streams.Stream(num_batches, batches)


def _fake_ce(steps_per_epoch):
  def epoch_batches(epoch, start):
    for step in range(start, steps_per_epoch):
      yield {"epoch": epoch, "step": step}
  return epoch_batches


def _combined(ce_steps, triplet, target, calls=None):
  calls = [] if calls is None else calls
  return streams.combine(_fake_ce(ce_steps), ce_steps,
                         {"triplet": _fake_stream("triplet", triplet, calls),
                          "target": _fake_stream("target", target, calls)})


def _segments(items, name):
  """[(pass, [positions])] of the contiguous runs of one stream's pass index."""
  runs = []
  for item in items:
    pass_index, position = item[name]["pass"], item[name]["position"]
    if not runs or runs[-1][0] != pass_index:
      runs.append((pass_index, []))
    runs[-1][1].append(position)
  return runs


def test_duke_to_market_resets_at_step_88_of_129():
  """129 CE steps: positions 0..86 of one pass, then from step 88 position 0 of a new pass, both
  streams, and only the 129 batches the epoch uses are asked for."""
  calls = []
  items = list(_combined(129, 87, 808, calls)(0, 0))
  assert [it["ce"] for it in items] == [{"epoch": 0, "step": s} for s in range(129)]
  for name in ("triplet", "target"):
    runs = _segments(items, name)
    assert [positions for _, positions in runs] == [list(range(87)), list(range(42))]
    assert runs[0][0] != runs[1][0]
    assert items[87][name]["position"] == 0 and items[86][name]["position"] == 86
  for it in items:  # the two streams restart together: same pass at every step
    assert it["triplet"]["pass"] == it["target"]["pass"]
  for name in ("triplet", "target"):
    assert sum(stop - start for n, _, start, stop in calls if n == name) == 129


def test_passes_never_repeat_across_epochs():
  """Two epochs read four distinct passes, each from position 0 after a restart."""
  combined = _combined(129, 87, 808)
  runs = [r for epoch in (0, 1) for r in _segments(list(combined(epoch, 0)), "triplet")]
  assert len(runs) == 4 and len({p for p, _ in runs}) == 4
  assert all(positions[0] == 0 for _, positions in runs)


@pytest.mark.parametrize("start", [1, 50, 86, 87, 88, 128, 129])
def test_resume_mid_epoch_equals_the_tail_of_the_epoch(start):
  """combine(...)(epoch, start) yields item by item the full epoch's items from `start` on."""
  full = list(_combined(129, 87, 808)(1, 0))
  calls = []
  assert list(_combined(129, 87, 808, calls)(1, start)) == full[start:]
  # the streams are asked from the resume position on, not replayed from position 0
  for name in ("triplet", "target"):
    assert sum(stop - begin for n, _, begin, stop in calls if n == name) == 129 - start


def test_market_to_duke_resets_at_step_94_of_101():
  """The real stream sizes 93 / 1032 and 101 CE steps: 101 > 93, so the streams restart at step 94
  (positions 0..92, then 0..7 of a new pass) and every epoch starts a new pass."""
  triplet = streams.pk_stream(_source(MARKET_IDS, MARKET_TRAIN), DATA, seed=0).num_batches
  target = streams.target_stream(_target(DUKE_TRAIN), None, 8, DATA, seed=0).num_batches
  assert (triplet, target) == (93, 1032)
  combined = _combined(101, triplet, target)
  passes = []
  for epoch in (0, 1, 2):
    items = list(combined(epoch, 0))
    assert len(items) == 101
    for name in ("triplet", "target"):
      runs = _segments(items, name)
      assert [positions for _, positions in runs] == [list(range(93)), list(range(8))]
    passes += [p for p, _ in _segments(items, "triplet")]
  assert len(set(passes)) == len(passes) == 6


def test_no_reset_when_the_epoch_is_shorter_than_the_streams():
  """CE steps <= R: one pass per epoch read from position 0, a new pass every epoch."""
  combined = _combined(87, 87, 808)
  runs = [r for epoch in (0, 1, 2) for r in _segments(list(combined(epoch, 0)), "target")]
  assert [positions for _, positions in runs] == [list(range(87))] * 3
  assert len({p for p, _ in runs}) == 3


def test_the_shorter_target_stream_restarts_both():
  """When the target stream is the shorter (4 < 10 batches), both restart every 4 steps."""
  items = list(_combined(9, 10, 4)(0, 0))
  for name in ("triplet", "target"):
    assert [positions for _, positions in _segments(items, name)] == [
        [0, 1, 2, 3], [0, 1, 2, 3], [0]]
  assert streams.restart_period({"a": streams.Stream(10, None), "b": streams.Stream(4, None)}) == 4


def test_without_restarting_streams_only_ce():
  """combine with no other stream yields {'ce': batch} for each CE batch, resumable."""
  combined = streams.combine(_fake_ce(5), 5, {})
  assert list(combined(2, 3)) == [{"ce": {"epoch": 2, "step": s}} for s in (3, 4)]


@pytest.mark.parametrize("start", [0, 37, 50])
def test_without_a_ce_stream_an_epoch_is_the_restarting_streams_alone(start):
  """ARN (no CE stream): `combine(None, S, ...)` yields S steps of the restarting streams under the
  same rule (restart every R steps and at every epoch), and resumes to the same items."""
  steps = 156  # a medium synthetic source at batch 32; its PK stream has 37 batches a pass
  combined = streams.combine(None, steps, {"source": _fake_stream("source", 37, []),
                                           "target": _fake_stream("target", 156, [])})
  full = list(combined(2, 0))
  assert len(full) == steps and all(set(item) == {"source", "target"} for item in full)
  runs = _segments(full, "source")
  assert [positions for _, positions in runs] == [list(range(37))] * 4 + [list(range(8))]
  assert _segments(full, "target") == runs
  assert len({p for p, _ in runs + _segments(list(combined(3, 0)), "source")}) == 10
  assert list(combined(2, start)) == full[start:]


def test_combine_needs_some_stream():
  with pytest.raises(ValueError, match="CE stream or at least one restarting"):
    streams.combine(None, 10, {})
