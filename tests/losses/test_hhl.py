"""HHL's triplet batch per variant against a brute-force batch-hard loop (docs/hhl.md §4, §5).

The inputs are named images: ('s', k) source triplet image k, ('r', b) target real b, ('f', j, b)
the fake of target sample b in camera j's style. The brute force builds each variant's image set
from docs/hhl.md §4's table, independently of `triplet_batch`'s layout, and the rows that
`triplet_batch` returns are named back by their (unique) embeddings.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from reid_jax.data.pipeline import TARGET_LABEL_OFFSET
from reid_jax.errors import ReidError
from reid_jax.losses import hhl
from reid_jax.losses import triplet

NUM_IDS, INSTANCES = 4, 2  # source triplet batch: 4 ids x 2
B, C = 3, 2  # target batch: 3 reals x (1 + 2 fakes) = 9 images, [reals | cam 1 | cam 2]
DIM, MARGIN = 5, 0.3
# variant -> which parts of the batch are anchors (docs/hhl.md §4 table)
EXPECTED_PARTS = {
    ("lt", False): {"s"}, ("ld", False): {"s", "r"}, ("lc", False): {"r", "f"},
    ("lc", True): {"s", "r", "f"}, ("hhl", False): {"s", "r", "f"},
}


def _inputs(label_mode):
  """Source (emb, labels), target (emb, labels, is_fake) and {name: (emb, label)}."""
  rng = np.random.default_rng(0)
  source_emb = (0.3 * rng.normal(size=(NUM_IDS * INSTANCES, DIM))).astype(np.float32)
  source_labels = np.repeat(np.arange(NUM_IDS), INSTANCES).astype(np.int32)
  target_emb = (0.3 * rng.normal(size=(B * (C + 1), DIM))).astype(np.float32)
  # sample 2 (real and fakes) sits far from sample 0, so under a label collision of 0 and 2 the
  # hardest positive of sample 0's images lies in sample 2
  target_emb[np.arange(C + 1) * B + 2, 0] += 2.0
  if label_mode == "unique":
    sample_labels = TARGET_LABEL_OFFSET + np.array([17, 4, 9])  # dataset indices of the 3 reals
  else:  # 'code_random': labels in [1000, 10999], samples 0 and 2 collide
    sample_labels = np.array([4242, 1777, 4242])
  target_labels = np.tile(sample_labels, C + 1).astype(np.int32)
  is_fake = np.arange(B * (C + 1)) >= B
  named = {}
  for k in range(NUM_IDS * INSTANCES):
    named[("s", k)] = (source_emb[k], int(source_labels[k]))
  for b in range(B):
    named[("r", b)] = (target_emb[b], int(target_labels[b]))
    for j in range(1, C + 1):
      named[("f", j, b)] = (target_emb[j * B + b], int(target_labels[j * B + b]))
  source = (jnp.asarray(source_emb), jnp.asarray(source_labels))
  target = (jnp.asarray(target_emb), jnp.asarray(target_labels), jnp.asarray(is_fake))
  return source, target, named


def _row_names(embeddings, named):
  """The input name of every row of a combined batch, found by exact embedding equality."""
  names = []
  for row in np.asarray(embeddings):
    matches = [n for n, (e, _) in named.items() if np.array_equal(e, row)]
    assert len(matches) == 1, matches
    names.append(matches[0])
  return names


def _brute_force(named, anchors):
  """{anchor: (hardest positive, hardest negative, d_ap, d_an)} by explicit loops, float64."""
  result = {}
  for a in anchors:
    ea, ya = named[a]
    d_pos, d_neg = {}, {}
    for o in anchors:
      eo, yo = named[o]
      d = float(np.sqrt(np.sum((ea.astype(np.float64) - eo.astype(np.float64)) ** 2)))
      (d_pos if yo == ya else d_neg)[o] = d
    pos = max(d_pos, key=d_pos.get)
    neg = min(d_neg, key=d_neg.get)
    # tie-free: the chosen pair is unique by a clear gap
    assert all(abs(d - d_pos[pos]) > 1e-4 for o, d in d_pos.items() if o != pos)
    assert all(abs(d - d_neg[neg]) > 1e-4 for o, d in d_neg.items() if o != neg)
    result[a] = (pos, neg, d_pos[pos], d_neg[neg])
  return result


@pytest.mark.parametrize("label_mode", ["unique", "code_random"])
@pytest.mark.parametrize("variant,lc_source", sorted(EXPECTED_PARTS))
def test_hardest_pairs_and_loss_equal_brute_force(variant, lc_source, label_mode):
  """Every valid anchor's hardest positive/negative and the mean loss equal a brute-force loop."""
  source, target, named = _inputs(label_mode)
  emb, labels, valid = hhl.triplet_batch(variant, source=source, target=target,
                                         lc_source_triplet=lc_source)
  names = _row_names(emb, named)
  valid = np.asarray(valid)
  np.testing.assert_array_equal(np.asarray(labels), [named[n][1] for n in names])
  anchors = [n for n in named if n[0] in EXPECTED_PARTS[(variant, lc_source)]]
  assert sorted(n for n, v in zip(names, valid) if v) == sorted(anchors)
  # the only rows that may be present but invalid: the fakes under ld (docs/hhl.md §4)
  invalid = [n for n, v in zip(names, valid) if not v]
  assert all(n[0] == "f" for n in invalid) and (variant == "ld") == bool(invalid)
  expected = _brute_force(named, anchors)

  pos_idx, neg_idx = triplet.batch_hard_indices(emb, labels, metric="euclidean",
                                                anchor_is_positive=True, valid=jnp.asarray(valid))
  for row, name in enumerate(names):
    if not valid[row]:
      assert int(pos_idx[row]) == -1 and int(neg_idx[row]) == -1
      continue
    assert names[int(pos_idx[row])] == expected[name][0], name
    assert names[int(neg_idx[row])] == expected[name][1], name
    assert valid[int(pos_idx[row])] and valid[int(neg_idx[row])]
  hinges = [max(0.0, d_ap - d_an + MARGIN) for _, _, d_ap, d_an in expected.values()]
  assert any(h > 0 for h in hinges)  # a loss that is not trivially 0
  loss = triplet.batch_hard_triplet_loss(emb, labels, margin=MARGIN, valid=jnp.asarray(valid))
  np.testing.assert_allclose(float(loss), np.mean(hinges), rtol=1e-5, atol=1e-6)
  term, metrics = hhl.triplet_term(variant, source, target, margin=MARGIN,
                                   lc_source_triplet=lc_source)
  np.testing.assert_allclose(float(term), np.mean(hinges), rtol=1e-5, atol=1e-6)
  prec = np.mean([d_an > d_ap for _, _, d_ap, d_an in expected.values()])
  np.testing.assert_allclose(float(metrics["triplet_prec"]), prec, atol=1e-6)


def test_code_random_collision_makes_two_samples_positives():
  """Colliding code_random labels make samples 0 and 2 (6 images) one positive set, and every
  image of either sample takes its hardest positive in the other (far) one."""
  source, target, named = _inputs("code_random")
  emb, labels, valid = hhl.triplet_batch("hhl", source=source, target=target)
  names = _row_names(emb, named)
  labels = np.asarray(labels)
  expected = _brute_force(named, list(named))
  pos_idx, _ = triplet.batch_hard_indices(emb, labels, valid=valid)
  colliding = {("r", b) for b in (0, 2)} | {("f", j, b) for j in range(1, C + 1) for b in (0, 2)}
  for row, name in enumerate(names):
    assert names[int(pos_idx[row])] == expected[name][0]
    if name in colliding:
      assert {names[j] for j in range(len(names)) if labels[j] == labels[row]} == colliding
      assert expected[name][0][-1] == 2 - name[-1], name


def test_hhl_positives_and_negatives_follow_the_section_4_table():
  """Under hhl a real's positives are itself + its C fakes; its negatives include all sources."""
  source, target, named = _inputs("unique")
  emb, labels, valid = hhl.triplet_batch("hhl", source=source, target=target)
  names = _row_names(emb, named)
  labels, valid = np.asarray(labels), np.asarray(valid)
  assert valid.all() and len(names) == NUM_IDS * INSTANCES + B * (C + 1)
  sources = {n for n in names if n[0] == "s"}
  for r, name in enumerate(names):
    positives = {names[j] for j in range(len(names)) if labels[j] == labels[r]}
    negatives = set(names) - positives
    if name[0] == "s":
      k = name[1]
      same_id = {("s", i) for i in range(len(sources)) if i // INSTANCES == k // INSTANCES}
      assert positives == same_id
      assert len(negatives) == (NUM_IDS - 1) * INSTANCES + B * (C + 1)
    else:
      b = name[-1]
      assert positives == {("r", b)} | {("f", j, b) for j in range(1, C + 1)}
      assert sources <= negatives
      assert len(negatives) == NUM_IDS * INSTANCES + (B - 1) * (C + 1)


def test_ld_real_is_its_own_only_positive_and_fakes_never_chosen():
  """Under ld a target real's hardest positive is itself (d_ap = 0) and no fake is ever picked."""
  source, target, named = _inputs("unique")
  emb, labels, valid = hhl.triplet_batch("ld", source=source, target=target)
  names = _row_names(emb, named)
  pos_idx, neg_idx = triplet.batch_hard_indices(emb, labels, valid=valid)
  for row, name in enumerate(names):
    if name[0] == "r":
      assert int(pos_idx[row]) == row
    if name[0] != "f":
      assert names[int(pos_idx[row])][0] != "f" and names[int(neg_idx[row])][0] != "f"
  per_anchor = np.asarray(triplet.batch_hard_triplet_loss(emb, labels, margin=MARGIN,
                                                          reduction="none", valid=valid))
  assert np.all(per_anchor[[i for i, n in enumerate(names) if n[0] == "f"]] == 0.0)


def test_variant_inputs_and_refusals():
  """variant_inputs is §4's table; baseline / unknown variants and missing inputs are refused."""
  assert hhl.variant_inputs("lt") == (True, False, False)
  assert hhl.variant_inputs("ld") == (True, True, False)
  assert hhl.variant_inputs("lc") == (False, True, True)
  assert hhl.variant_inputs("lc", lc_source_triplet=True) == (True, True, True)
  assert hhl.variant_inputs("hhl") == (True, True, True)
  assert hhl.variant_inputs("hhl", lc_source_triplet=True) == (True, True, True)
  source, target, _ = _inputs("unique")
  with pytest.raises(ReidError, match="no triplet term"):
    hhl.triplet_batch("baseline", source=source, target=target)
  with pytest.raises(ReidError, match="not one of"):
    hhl.triplet_batch("lcd", source=source, target=target)
  with pytest.raises(ReidError, match="needs the target"):
    hhl.triplet_batch("hhl", source=source)
  with pytest.raises(ReidError, match="needs the source"):
    hhl.triplet_batch("ld", target=target)
