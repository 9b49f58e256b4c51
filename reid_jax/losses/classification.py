"""Softmax cross-entropy for the identity classifiers (docs/hhl.md §4, docs/arn_triplet_eval.md §1.4 item 3).

Computed from `log_softmax` in float32 whatever the logits' dtype (docs/arn_triplet_eval.md §1.4 item 6).
"""

import jax
import jax.numpy as jnp


def cross_entropy(logits, labels, label_smoothing: float = 0.0, valid=None):
  """Mean softmax cross-entropy over the batch.

  Args:
    logits: `[B, C]` classifier outputs.
    labels: `[B]` integer class indices in `[0, C)`.
    label_smoothing: eps of torchreid's `CrossEntropyLoss(label_smooth=True)` / the LSR loss: the
      target is `(1 - eps) * one_hot + eps / C`, the same as
      `torch.nn.functional.cross_entropy(..., label_smoothing=eps)`. HHL and the baseline use 0
      (docs/hhl.md §4).
    valid: optional `[B]` bool; rows that are False (padding) are left out of the mean.

  Returns:
    Scalar float32: the mean over valid rows (0 when no row is valid).
  """
  logits = logits.astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  if label_smoothing:
    per_example = (1.0 - label_smoothing) * nll - label_smoothing * log_probs.mean(axis=-1)
  else:
    per_example = nll
  if valid is None:
    return per_example.mean()
  valid = valid.astype(jnp.float32)
  return (per_example * valid).sum() / jnp.maximum(valid.sum(), 1.0)


def accuracy(logits, labels, valid=None):
  """Fraction of rows whose arg-max class equals the label (a logging statistic). Shapes as above."""
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  if valid is None:
    return correct.mean()
  valid = valid.astype(jnp.float32)
  return (correct * valid).sum() / jnp.maximum(valid.sum(), 1.0)
