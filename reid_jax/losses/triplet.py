"""Triplet losses on a batch: batch hard, batch all, and the training-batch precision metrics.

Definitions: docs/arn_triplet_eval.md §2.1 (Hermans et al.); HHL's batch-hard loss is open-reid's
(docs/hhl.md §4): Euclidean (not squared) distance on raw embeddings, every batch member an anchor,
hardest positive and hardest negative per anchor, margin 0.3, mean over anchors. As in open-reid
and torchreid the anchor counts as its own positive (distance 0), so an anchor with no other
positive gets `d_ap = 0` and a pure push-away term `max(0, m - d_an)`.

Gradients are finite when embeddings coincide (docs/arn_triplet_eval.md §2.2): distances go through a
double-`where` root that returns distance 0 and gradient 0 for `d2 <= 1e-12`. open-reid instead
returns `sqrt(1e-12) = 1e-6` there (also with gradient 0); the values differ by 1e-6.

All functions are pure and jit-able; `valid` (`[B]` bool) drops padded rows from every set and
every mean, so a padded batch gives the same numbers as the unpadded one.
"""

import jax
import jax.numpy as jnp
from jax import lax

SQRT_EPS = 1e-12  # docs/arn_triplet_eval.md §1.4 item 6
# Above this many elements in `[Nx, Ny, D]`, squared distances use the expanded form
# ||x||^2 + ||y||^2 - 2 x.y (one matmul) instead of explicit differences. Differences are exact
# (0 for coinciding rows); the expanded form leaves a rounding residual ~1e-7 * ||x||^2 there.
_DIFFERENCE_FORM_MAX_ELEMENTS = 1 << 24


def safe_sqrt(d2, eps: float = SQRT_EPS):
  """`sqrt(d2)` for `d2 > eps`, else 0, with a finite (zero) gradient in the second case."""
  positive = d2 > eps
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


def squared_distances(x, y=None, form: str = "auto"):
  """Squared Euclidean distances `[Nx, Ny]` between rows of x `[Nx, D]` and y `[Ny, D]` (y = x if None).

  form: 'difference' (sum of squared differences; exact zeros at coincidence), 'expanded'
  (||x||^2 + ||y||^2 - 2 x.y clamped at 0; the diagonal is set to exactly 0 when y is None), or
  'auto' (difference up to 2^24 elements of `[Nx, Ny, D]`, else expanded).
  """
  same = y is None
  x = x.astype(jnp.float32)
  y = x if same else y.astype(jnp.float32)
  if form == "auto":
    size = x.shape[0] * y.shape[0] * x.shape[1]
    form = "difference" if size <= _DIFFERENCE_FORM_MAX_ELEMENTS else "expanded"
  if form == "difference":
    return jnp.sum(jnp.square(x[:, None, :] - y[None, :, :]), axis=-1)
  if form != "expanded":
    raise ValueError(f"form must be 'auto', 'difference' or 'expanded', got {form!r}")
  cross = jnp.matmul(x, y.T, precision=lax.Precision.HIGHEST)
  d2 = jnp.sum(x * x, axis=1)[:, None] + jnp.sum(y * y, axis=1)[None, :] - 2.0 * cross
  d2 = jnp.maximum(d2, 0.0)  # rounding makes the expanded form slightly negative (§2.2)
  if same:
    d2 = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0.0, d2)
  return d2


def pairwise_distance(x, y=None, metric: str = "euclidean", form: str = "auto"):
  """Distances `[Nx, Ny]` between rows of x `[Nx, D]` and y `[Ny, D]` (y = x if None), float32.

  metric: 'euclidean' (safe root: 0 distance and 0 gradient at coincidence) or 'sqeuclidean'.
  """
  d2 = squared_distances(x, y, form=form)
  if metric == "sqeuclidean":
    return d2
  if metric == "euclidean":
    return safe_sqrt(d2)
  raise ValueError(f"metric must be 'euclidean' or 'sqeuclidean', got {metric!r}")


def _masks(labels, valid):
  """Positive (same label, anchor included) and negative masks `[B, B]` restricted to valid rows."""
  batch = labels.shape[0]
  if valid is None:
    valid = jnp.ones((batch,), dtype=bool)
  valid = valid.astype(bool)
  both_valid = valid[:, None] & valid[None, :]
  same = labels[:, None] == labels[None, :]
  return same & both_valid, (~same) & both_valid, valid


def _hinge(difference, margin, soft_margin):
  if soft_margin:
    return jax.nn.softplus(difference)  # docs/arn_triplet_eval.md §2.1: softplus replaces m + x
  return jax.nn.relu(margin + difference)


def _batch_hard_parts(embeddings, labels, margin, soft_margin, metric, anchor_is_positive, valid):
  """Distances, per-anchor d_ap, d_an, loss and the mask of anchors that have a triplet."""
  dist = pairwise_distance(embeddings, metric=metric)
  positive, negative, valid = _masks(labels, valid)
  if not anchor_is_positive:
    positive = positive & ~jnp.eye(labels.shape[0], dtype=bool)
  has_positive = positive.any(axis=1)
  has_negative = negative.any(axis=1)
  # Distances are >= 0, so 0 is a neutral fill for the max.
  hardest_positive = jnp.max(jnp.where(positive, dist, 0.0), axis=1)
  hardest_negative = jnp.min(jnp.where(negative, dist, jnp.inf), axis=1)
  hardest_negative = jnp.where(has_negative, hardest_negative, 0.0)
  anchor_ok = valid & has_positive & has_negative
  per_anchor = _hinge(hardest_positive - hardest_negative, margin, soft_margin)
  per_anchor = jnp.where(anchor_ok, per_anchor, 0.0)
  return dist, hardest_positive, hardest_negative, per_anchor, anchor_ok


def batch_hard_indices(embeddings, labels, metric: str = "euclidean",
                       anchor_is_positive: bool = True, valid=None):
  """Per anchor, the batch index of its hardest positive and of its hardest negative, `([B],
  [B])` int32, -1 where the anchor has none (or is not valid): the pairs the batch-hard loss uses."""
  dist = pairwise_distance(embeddings, metric=metric)
  positive, negative, valid = _masks(labels, valid)
  if not anchor_is_positive:
    positive = positive & ~jnp.eye(labels.shape[0], dtype=bool)
  hardest_positive = jnp.argmax(jnp.where(positive, dist, -1.0), axis=1)
  hardest_negative = jnp.argmin(jnp.where(negative, dist, jnp.inf), axis=1)
  ok_positive = valid & positive.any(axis=1)
  ok_negative = valid & negative.any(axis=1)
  return (jnp.where(ok_positive, hardest_positive, -1).astype(jnp.int32),
          jnp.where(ok_negative, hardest_negative, -1).astype(jnp.int32))


def _reduce(per_anchor, anchor_ok, reduction):
  if reduction == "mean":
    return per_anchor.sum() / jnp.maximum(anchor_ok.sum(), 1).astype(jnp.float32)
  if reduction == "sum":
    return per_anchor.sum()
  if reduction == "none":
    return per_anchor
  raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def batch_hard_triplet_loss(embeddings, labels, margin: float = 0.3, soft_margin: bool = False,
                            reduction: str = "mean", metric: str = "euclidean",
                            anchor_is_positive: bool = True, valid=None):
  """Batch-hard triplet loss (docs/hhl.md §4; docs/arn_triplet_eval.md §2.1).

  Args:
    embeddings: `[B, D]` raw (not normalised) embeddings.
    labels: `[B]` integer identities.
    margin: hinge margin m (0.3, docs/hhl.md §4); unused with soft_margin.
    soft_margin: softplus(d_ap - d_an) instead of max(0, m + d_ap - d_an).
    reduction: 'mean' over anchors (the reference's `MarginRankingLoss`), 'sum', or 'none'
      (per-anchor `[B]`, 0 for anchors without a triplet).
    metric: 'euclidean' (the reference) or 'sqeuclidean'.
    anchor_is_positive: True as open-reid/torchreid/HHL (the anchor is in its own positive set);
      False as triplet-reid (positives exclude the anchor; anchors without another positive drop
      out of the mean).
    valid: optional `[B]` bool mask of real (non-padded) rows.

  Anchors with no negative in the batch (or no positive when anchor_is_positive is False) have no
  triplet: they contribute 0 and are left out of the 'mean' denominator.
  """
  _, _, _, per_anchor, anchor_ok = _batch_hard_parts(
      embeddings, labels, margin, soft_margin, metric, anchor_is_positive, valid)
  return _reduce(per_anchor, anchor_ok, reduction)


def batch_all_triplet_loss(embeddings, labels, margin: float = 0.3, soft_margin: bool = False,
                           reduction: str = "mean_all", metric: str = "euclidean", valid=None):
  """Batch-all triplet loss over every (a, p, n) with p != a, y_p = y_a, y_n != y_a (§2.1).

  reduction: 'mean_all' (L_BA: divide by the number of triplets), 'mean_nonzero' (L_BA!=0: divide
  by max(1, number of triplets with a loss > 0); equal to 'mean_all' with soft_margin) or 'sum'.
  Memory is `[B, B, B]`.
  """
  dist = pairwise_distance(embeddings, metric=metric)
  positive, negative, _ = _masks(labels, valid)
  positive = positive & ~jnp.eye(labels.shape[0], dtype=bool)
  triplet = positive[:, :, None] & negative[:, None, :]  # [anchor, positive, negative]
  terms = _hinge(dist[:, :, None] - dist[:, None, :], margin, soft_margin)
  terms = jnp.where(triplet, terms, 0.0)
  total = terms.sum()
  if reduction == "sum":
    return total
  if reduction == "mean_all":
    count = triplet.sum()
  elif reduction == "mean_nonzero":
    count = (triplet & (terms > 0.0)).sum()
  else:
    raise ValueError(f"reduction must be 'mean_all', 'mean_nonzero' or 'sum', got {reduction!r}")
  return total / jnp.maximum(count, 1).astype(jnp.float32)


def triplet_metrics(embeddings, labels, margin: float = 0.3, soft_margin: bool = False,
                    metric: str = "euclidean", anchor_is_positive: bool = True, k=None,
                    valid=None, active_threshold: float = 1e-5):
  """Monitoring statistics of a training batch (docs/arn_triplet_eval.md §2.3, docs/hhl.md §4 `prec`).

  Returns a dict of float32 scalars:
    top1: fraction of anchors whose nearest other batch member has the same label.
    precision_at_k: mean over anchors of the fraction of its k nearest others sharing its label;
      k = None uses each anchor's number of other positives (K - 1 in a PK batch); anchors with
      no other positive are left out.
    active_fraction: share of anchors with a batch-hard loss > active_threshold.
    prec: share of anchors with d_an > d_ap (HHL's logged `prec`).
    loss_mean, loss_min, loss_max: of the per-anchor batch-hard losses.
    positive_distance_mean, negative_distance_mean: of the hardest d_ap and d_an.
    embedding_norm_mean.
  Means are over valid anchors that have a triplet (top1/precision_at_k: over valid anchors with
  at least one other valid member / other positive).
  """
  dist, hardest_positive, hardest_negative, per_anchor, anchor_ok = _batch_hard_parts(
      embeddings, labels, margin, soft_margin, metric, anchor_is_positive, valid)
  positive, _, valid = _masks(labels, valid)
  batch = labels.shape[0]
  eye = jnp.eye(batch, dtype=bool)
  others = valid[:, None] & valid[None, :] & ~eye
  ranked = jnp.argsort(jnp.where(others, dist, jnp.inf), axis=1, stable=True)
  ranked_positive = jnp.take_along_axis(positive & ~eye, ranked, axis=1)
  ranked_other = jnp.take_along_axis(others, ranked, axis=1)
  has_other = valid & others.any(axis=1)

  def masked_mean(values, mask):
    mask = mask.astype(jnp.float32)
    return (values.astype(jnp.float32) * mask).sum() / jnp.maximum(mask.sum(), 1.0)

  top1 = masked_mean(ranked_positive[:, 0] & ranked_other[:, 0], has_other)
  if k is None:
    k_per_anchor = (positive & ~eye).sum(axis=1)
  else:
    k_per_anchor = jnp.full((batch,), k, dtype=jnp.int32)
  in_top_k = jnp.arange(batch)[None, :] < k_per_anchor[:, None]
  hits = (ranked_positive & in_top_k).sum(axis=1)
  precision = hits / jnp.maximum(k_per_anchor, 1)
  has_k = valid & (k_per_anchor > 0)

  big = jnp.finfo(jnp.float32).max
  return {
      "top1": top1,
      "precision_at_k": masked_mean(precision, has_k),
      "active_fraction": masked_mean(per_anchor > active_threshold, anchor_ok),
      "prec": masked_mean(hardest_negative > hardest_positive, anchor_ok),
      "loss_mean": masked_mean(per_anchor, anchor_ok),
      "loss_min": jnp.where(anchor_ok.any(), jnp.min(jnp.where(anchor_ok, per_anchor, big)), 0.0),
      "loss_max": jnp.max(jnp.where(anchor_ok, per_anchor, 0.0)),
      "positive_distance_mean": masked_mean(hardest_positive, anchor_ok),
      "negative_distance_mean": masked_mean(hardest_negative, anchor_ok),
      "embedding_norm_mean": masked_mean(jnp.linalg.norm(embeddings.astype(jnp.float32), axis=1),
                                         valid),
  }
