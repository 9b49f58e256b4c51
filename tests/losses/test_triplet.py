"""Triplet losses against brute-force loops over anchors (values and analytic gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reid_jax.losses import triplet


def _pk_batch(seed, p=4, k=3, dim=5, scale=0.3, spread=1.0):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(p), k)
  centres = rng.normal(size=(p, dim)) * spread
  x = centres[labels] * scale + rng.normal(size=(p * k, dim)) * scale
  return x, labels


def _distance(x, i, j):
  return float(np.sqrt(np.sum((x[i] - x[j]) ** 2)))


def _hinge_and_slope(value, margin, soft):
  """h(value) and h'(value), value = d_ap - d_an."""
  if soft:
    return float(np.log1p(np.exp(value))), float(1 / (1 + np.exp(-value)))
  z = margin + value
  return max(z, 0.0), float(z > 0)


def _add_triplet_gradient(grad, x, a, p, n, weight):
  """Adds weight * d(d_ap - d_an)/dx for one triplet."""
  for other, sign in ((p, 1.0), (n, -1.0)):
    d = _distance(x, a, other)
    if d > 0:
      unit = (x[a] - x[other]) / d
      grad[a] += sign * weight * unit
      grad[other] -= sign * weight * unit


def brute_batch_hard(x, labels, margin=0.3, soft=False, reduction="mean"):
  """Loop reference: positives include the anchor (docs/hhl.md §4); returns loss, gradient."""
  n = len(labels)
  losses, grad = [], np.zeros_like(x)
  for a in range(n):
    positives = [j for j in range(n) if labels[j] == labels[a]]
    negatives = [j for j in range(n) if labels[j] != labels[a]]
    p = max(positives, key=lambda j: _distance(x, a, j))
    q = min(negatives, key=lambda j: _distance(x, a, j))
    loss, slope = _hinge_and_slope(_distance(x, a, p) - _distance(x, a, q), margin, soft)
    losses.append(loss)
    _add_triplet_gradient(grad, x, a, p, q, slope)
  if reduction == "mean":
    return np.mean(losses), grad / n
  return np.sum(losses), grad


def brute_batch_all(x, labels, margin=0.3, soft=False, reduction="mean_all"):
  n = len(labels)
  total, count, nonzero, grad = 0.0, 0, 0, np.zeros_like(x)
  for a in range(n):
    for p in range(n):
      if p == a or labels[p] != labels[a]:
        continue
      for q in range(n):
        if labels[q] == labels[a]:
          continue
        loss, slope = _hinge_and_slope(_distance(x, a, p) - _distance(x, a, q), margin, soft)
        total += loss
        count += 1
        nonzero += loss > 0
        _add_triplet_gradient(grad, x, a, p, q, slope)
  denominator = count if reduction == "mean_all" else max(nonzero, 1)
  return total / denominator, grad / denominator


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_batch_hard_matches_loops(soft, reduction):
  x, labels = _pk_batch(0)
  # One identity with a single image: its anchor only has itself as positive (d_ap = 0).
  labels = labels.copy()
  labels[-1] = 99
  fn = lambda e: triplet.batch_hard_triplet_loss(e, jnp.asarray(labels), 0.3, soft, reduction)
  loss, grad = jax.value_and_grad(fn)(jnp.asarray(x, jnp.float32))
  ref_loss, ref_grad = brute_batch_hard(x, labels, 0.3, soft, reduction)
  assert ref_loss > 0
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["mean_all", "mean_nonzero"])
def test_batch_all_matches_loops(soft, reduction):
  x, labels = _pk_batch(1)
  fn = lambda e: triplet.batch_all_triplet_loss(e, jnp.asarray(labels), 0.3, soft, reduction)
  loss, grad = jax.value_and_grad(fn)(jnp.asarray(x, jnp.float32))
  ref_loss, ref_grad = brute_batch_all(x, labels, 0.3, soft, reduction)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_batch_all_nonzero_mean_is_larger_when_some_triplets_are_satisfied():
  x, labels = _pk_batch(2, scale=1.0)
  e, y = jnp.asarray(x, jnp.float32), jnp.asarray(labels)
  all_terms = triplet.batch_all_triplet_loss(e, y, reduction="mean_all")
  nonzero = triplet.batch_all_triplet_loss(e, y, reduction="mean_nonzero")
  assert 0 < all_terms < nonzero


@pytest.mark.parametrize("form", ["difference", "expanded"])
def test_distances_match_loops(form):
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(7, 4)), rng.normal(size=(5, 4))
  d = triplet.pairwise_distance(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                                form=form)
  ref = np.array([[np.linalg.norm(a - b) for b in y] for a in x])
  np.testing.assert_allclose(d, ref, rtol=1e-5)
  d2 = triplet.pairwise_distance(jnp.asarray(x, jnp.float32), metric="sqeuclidean", form=form)
  np.testing.assert_allclose(d2, [[np.sum((a - b) ** 2) for b in x] for a in x], rtol=1e-5,
                             atol=1e-5)
  assert np.all(np.diag(np.asarray(d2)) == 0)


@pytest.mark.parametrize("form", ["difference", "expanded"])
def test_distance_gradient_is_zero_at_coincidence(form):
  x = jnp.asarray([[0.3, -1.2, 2.0], [0.3, -1.2, 2.0], [1.0, 0.0, 0.5]], jnp.float32)
  d = triplet.pairwise_distance(x, x, form=form)
  assert d[0, 1] == 0.0
  grad = jax.grad(lambda e: triplet.pairwise_distance(e, e, form=form)[0, 1])(x)
  if form == "difference":
    np.testing.assert_array_equal(grad, 0.0)
  # Self pairs (y is None) are exactly 0 with 0 gradient in both forms.
  grad_self = jax.grad(lambda e: triplet.pairwise_distance(e, form=form)[2, 2])(x)
  np.testing.assert_array_equal(grad_self, 0.0)


def test_finite_with_duplicates_and_collapse():
  x, labels = _pk_batch(4)
  x = x.astype(np.float32)
  x[1] = x[0]  # duplicated image (sampling with replacement)
  x[5] = x[0]  # and a duplicate carrying another identity
  y = jnp.asarray(labels)
  for fn in (lambda e: triplet.batch_hard_triplet_loss(e, y),
             lambda e: triplet.batch_hard_triplet_loss(e, y, soft_margin=True),
             lambda e: triplet.batch_all_triplet_loss(e, y, reduction="mean_nonzero")):
    for batch in (x, np.ones_like(x)):  # the second one: all embeddings collapsed
      loss, grad = jax.value_and_grad(fn)(jnp.asarray(batch))
      assert np.isfinite(loss) and np.all(np.isfinite(grad))
  # Collapse: every distance 0, loss = margin, and no gradient can flow through a 0 distance.
  loss, grad = jax.value_and_grad(lambda e: triplet.batch_hard_triplet_loss(e, y))(
      jnp.ones_like(jnp.asarray(x)))
  np.testing.assert_allclose(loss, 0.3, rtol=1e-6)
  np.testing.assert_array_equal(grad, 0.0)


def test_duplicate_pair_gradient_matches_loops():
  # Identity 0 has two identical images and one other: the duplicate pair is never the hardest
  # positive, and the loop reference (which skips zero distances) must agree. Other anchors see
  # rows 0 and 1 at tied distances, where JAX's max/min split the gradient and the loop picks
  # one, so rows 0 and 1 are compared through their sum.
  x, labels = _pk_batch(5)
  x[1] = x[0]
  loss, grad = jax.value_and_grad(
      lambda e: triplet.batch_hard_triplet_loss(e, jnp.asarray(labels)))(jnp.asarray(x, jnp.float32))
  ref_loss, ref_grad = brute_batch_hard(x, labels)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(grad[2:], ref_grad[2:], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grad[0] + grad[1], ref_grad[0] + ref_grad[1], rtol=1e-4, atol=1e-6)


def test_anchor_without_other_positive_is_pure_push_away():
  x = np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0]], np.float32)
  labels = jnp.array([0, 1, 2])  # nobody has another positive: d_ap = 0 for all
  per_anchor = triplet.batch_hard_triplet_loss(jnp.asarray(x), labels, reduction="none")
  np.testing.assert_allclose(per_anchor, [0.2, 0.2, 0.0], atol=1e-6)
  # triplet-reid convention: no anchor has a positive, so there is no triplet at all.
  excluded = triplet.batch_hard_triplet_loss(jnp.asarray(x), labels, anchor_is_positive=False)
  assert excluded == 0.0


def test_valid_mask_matches_unpadded_batch():
  x, labels = _pk_batch(6)
  padded_x = np.concatenate([x, np.zeros((3, x.shape[1]))]).astype(np.float32)
  padded_labels = np.concatenate([labels, [0, 0, 7]])
  valid = jnp.arange(len(padded_labels)) < len(labels)
  for fn in (triplet.batch_hard_triplet_loss, triplet.batch_all_triplet_loss):
    full = fn(jnp.asarray(x, jnp.float32), jnp.asarray(labels))
    masked = fn(jnp.asarray(padded_x), jnp.asarray(padded_labels), valid=valid)
    np.testing.assert_allclose(masked, full, rtol=1e-6)
  full = triplet.triplet_metrics(jnp.asarray(x, jnp.float32), jnp.asarray(labels))
  masked = triplet.triplet_metrics(jnp.asarray(padded_x), jnp.asarray(padded_labels), valid=valid)
  for key in full:
    np.testing.assert_allclose(masked[key], full[key], rtol=1e-6, err_msg=key)


def test_metrics_match_loops():
  x, labels = _pk_batch(7, p=5, k=4, scale=0.5, spread=2.0)
  metrics = jax.jit(triplet.triplet_metrics)(jnp.asarray(x, jnp.float32), jnp.asarray(labels))
  n = len(labels)
  top1, precision, prec, losses = [], [], [], []
  for a in range(n):
    others = sorted((j for j in range(n) if j != a), key=lambda j: _distance(x, a, j))
    top1.append(labels[others[0]] == labels[a])
    k = sum(labels == labels[a]) - 1
    precision.append(np.mean([labels[j] == labels[a] for j in others[:k]]))
    d_ap = max(_distance(x, a, j) for j in range(n) if labels[j] == labels[a])
    d_an = min(_distance(x, a, j) for j in range(n) if labels[j] != labels[a])
    prec.append(d_an > d_ap)
    losses.append(max(0.0, 0.3 + d_ap - d_an))
  assert 0 < np.mean(top1) < 1 and 0 < np.mean(prec) < 1  # the case is not degenerate
  np.testing.assert_allclose(metrics["top1"], np.mean(top1), rtol=1e-6)
  np.testing.assert_allclose(metrics["precision_at_k"], np.mean(precision), rtol=1e-6)
  np.testing.assert_allclose(metrics["prec"], np.mean(prec), rtol=1e-6)
  np.testing.assert_allclose(metrics["active_fraction"], np.mean(np.array(losses) > 1e-5))
  np.testing.assert_allclose(metrics["loss_mean"], np.mean(losses), rtol=1e-5)
  np.testing.assert_allclose(metrics["loss_max"], np.max(losses), rtol=1e-5)
  np.testing.assert_allclose(metrics["loss_min"], np.min(losses), atol=1e-6)
