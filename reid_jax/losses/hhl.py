"""HHL's triplet term: which images one batch-hard loss sees in each variant (docs/hhl.md §4).

  embeddings, labels, valid = triplet_batch("hhl", source=(emb_s, y_s),
                                            target=(emb_t, y_t, is_fake))
  loss = triplet.batch_hard_triplet_loss(embeddings, labels, margin=0.3, valid=valid)

| variant | images of the loss |
|---|---|
| `lt`  | the source triplet batch (P x K) |
| `ld`  | source triplet batch + target reals (each real only its own positive) |
| `lc`  | target reals + their fakes (+ the source batch with `lc_source_triplet`) |
| `hhl` | source triplet batch + target reals + fakes (L_CD) |

Every image is an anchor; mining runs over the whole concatenated batch, so source and target
images are each other's negatives (domain connectedness) and a real's fakes are its positives
(camera invariance). Source labels are 0..M-1, target pseudo-labels never meet them
(`pipeline.TARGET_LABEL_OFFSET`, or the reference's [1000, 10999]).
"""

import jax.numpy as jnp

from reid_jax.errors import ReidError
from reid_jax.losses import triplet

# variant -> (source triplet batch, target reals, target fakes) in the loss (docs/hhl.md §4 table)
VARIANT_INPUTS = {
    "baseline": (False, False, False),
    "lt": (True, False, False),
    "ld": (True, True, False),
    "lc": (False, True, True),
    "hhl": (True, True, True),
}


def variant_inputs(variant: str, lc_source_triplet: bool = False) -> tuple[bool, bool, bool]:
  """(source triplet batch, target reals, target fakes) that `variant`'s loss reads."""
  if variant not in VARIANT_INPUTS:
    raise ReidError(f"config field hhl.variant={variant!r} is not one of "
                    f"{', '.join(VARIANT_INPUTS)} (docs/hhl.md §4)")
  source, reals, fakes = VARIANT_INPUTS[variant]
  if variant == "lc" and lc_source_triplet:
    source = True
  return source, reals, fakes


def triplet_batch(variant: str, source=None, target=None, lc_source_triplet: bool = False):
  """The combined batch of `variant`'s triplet loss: `(embeddings [N, D], labels [N], valid [N])`.

  Args:
    variant: 'lt' | 'ld' | 'lc' | 'hhl'.
    source: `(embeddings [Ns, D], labels [Ns])` of the source triplet batch, or None.
    target: `(embeddings [Nt, D], labels [Nt], is_fake [Nt])` of the target batch, or None.
      Under `ld` the fakes, if the batch has any, are masked out (`valid` False).
  """
  use_source, use_reals, use_fakes = variant_inputs(variant, lc_source_triplet)
  if not (use_source or use_reals):
    raise ReidError(f"hhl.variant={variant!r} has no triplet term")
  parts = []
  if use_source:
    if source is None:
      raise ReidError(f"hhl.variant={variant!r} needs the source triplet batch")
    embeddings, labels = source
    parts.append((embeddings, labels, jnp.ones(labels.shape, bool)))
  if use_reals:
    if target is None:
      raise ReidError(f"hhl.variant={variant!r} needs the target batch")
    embeddings, labels, is_fake = target
    parts.append((embeddings, labels, jnp.ones(labels.shape, bool) if use_fakes else ~is_fake))
  return tuple(jnp.concatenate([p[i] for p in parts]) for i in range(3))


def triplet_term(variant: str, source, target, margin: float = 0.3, reduction: str = "mean",
                 lc_source_triplet: bool = False):
  """`(loss, metrics)`: the batch-hard loss of `triplet_batch(...)` and its monitoring numbers
  (HHL's `prec`: anchors with d_an > d_ap, docs/hhl.md §4)."""
  embeddings, labels, valid = triplet_batch(variant, source, target, lc_source_triplet)
  loss = triplet.batch_hard_triplet_loss(embeddings, labels, margin=margin, reduction=reduction,
                                         valid=valid)
  stats = triplet.triplet_metrics(embeddings, labels, margin=margin, valid=valid)
  metrics = {"triplet": loss, "triplet_prec": stats["prec"],
             "triplet_active_fraction": stats["active_fraction"],
             "embedding_norm": stats["embedding_norm_mean"]}
  return loss, metrics
