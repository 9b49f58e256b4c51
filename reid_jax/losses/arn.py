"""ARN's auxiliary losses: contrastive (2), reconstruction (3), difference (4) and the draft's MMD.

Definitions: docs/arn_triplet_eval.md §1.1 (the paper's equations), §1.3 (the first author's draft
code) and §1.4 (our defaults: items 1-3 for the normalisations, item 6 for the numerically safe
forms). Each function is one term for one domain (or one pair of batches); the weights
(α, β, γ of (5)) and the sum over the two domains are the caller's.

All functions compute in float32 whatever the input dtype, are pure and jit-able (under jax.jit
`normalize`, `reduction`, `form` and `sigmas` must be static; `margin` may be traced), and have
finite gradients when vectors coincide or a row is zero: distances use `triplet.safe_sqrt`
(distance 0 and gradient 0 for d2 <= 1e-12), L2 normalisation is `x rsqrt(max(Σx², 1e-12))`
(`evaluation.distances.l2_normalize`).
"""

import jax
import jax.numpy as jnp
from jax import lax

from reid_jax.evaluation.distances import l2_normalize
from reid_jax.losses.triplet import safe_sqrt, squared_distances

MMD_SIGMAS = (1.0, 2.0, 10.0)  # the draft's sigma list (docs/arn_triplet_eval.md §1.3)


def _float32(x):
  return jnp.asarray(x).astype(jnp.float32)


def _normalize_rows(x):
  return l2_normalize(_float32(x), axis=-1)


def contrastive_loss(embeddings, labels, margin: float = 1.0, normalize: bool = True,
                     reduction: str = "sum"):
  """Hadsell contrastive loss (2) on the source batch's shared codes (§1.1, §1.4 item 1).

  Over all ordered pairs i != j: same label D_ij² (d2 itself, no root), different label
  max(0, m - D_ij)², D_ij the safe Euclidean distance (§1.4 item 6).

  Args:
    embeddings: `[B, D]` shared codes e_c^s.
    labels: `[B]` integer identities.
    margin: m (1.0, §1.4 item 1; keep it below √2 with normalize).
    normalize: L2-normalise the rows first (default, §1.4 item 1).
    reduction: 'sum' over the B(B-1) ordered pairs (as written in (2)) or 'mean' (divides by
      max(B(B-1), 1)).

  Returns:
    Scalar float32.
  """
  if reduction not in ("sum", "mean"):
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
  x = _normalize_rows(embeddings) if normalize else _float32(embeddings)
  batch = x.shape[0]
  d2 = squared_distances(x)
  dist = safe_sqrt(d2)
  same = labels[:, None] == labels[None, :]
  off_diagonal = ~jnp.eye(batch, dtype=bool)
  terms = jnp.where(same, d2, jnp.square(jax.nn.relu(margin - dist)))
  total = jnp.sum(jnp.where(off_diagonal, terms, 0.0))
  if reduction == "mean":
    return total / float(max(batch * (batch - 1), 1))
  return total


def contrastive_loss_draft(embeddings, labels, margin: float = 2.0):
  """The draft code's contrastive loss (§1.3), for comparison runs: over pairs i <= j (diagonal
  included, where it is 0), distance = mean squared difference |e_i - e_j|² / D, same label:
  distance, different label: max(0, margin - distance) (a linear hinge, margin 2), the sum
  times 2 / (B(B-1)). No normalisation and no root, so gradients are finite everywhere.
  """
  x = _float32(embeddings)
  batch, dim = x.shape
  distance = squared_distances(x) / float(dim)
  same = labels[:, None] == labels[None, :]
  upper = jnp.triu(jnp.ones((batch, batch), dtype=bool))
  terms = jnp.where(same, distance, jax.nn.relu(margin - distance))
  total = jnp.sum(jnp.where(upper, terms, 0.0))
  return total * (2.0 / float(max(batch * (batch - 1), 1)))


def reconstruction_loss(x, x_hat):
  """Per-element mean squared error between x_hat and stop_gradient(x), averaged over every
  element (batch included), for one domain (§1.1 (3) normalised as §1.4 item 3). The target is
  not differentiated: a trainable E_I must not shrink X to make reconstruction trivial."""
  target = lax.stop_gradient(_float32(x))
  return jnp.mean(jnp.square(_float32(x_hat) - target))


def _squared_frobenius_of_cross(private, shared):
  """|Pᵀ S|_F² for P `[B, d_p]`, S `[B, d_s]`, float32 at full matmul precision.

  Pᵀ S is formed explicitly (B d_p d_s work, a d_p x d_s matrix). The Gram identity
  Σ_ij (P Pᵀ)_ij (S Sᵀ)_ij is cheaper for B < d but sums O(1) terms to a possibly tiny result
  (a residual ~1e-7 B² instead of exact zeros for orthogonal codes).
  """
  cross = jnp.matmul(private.T, shared, precision=lax.Precision.HIGHEST)
  return jnp.sum(jnp.square(cross))


def difference_loss(shared, private, form: str = "dsn"):
  """Difference loss (4) between one domain's shared and private codes (§1.1, §1.4 item 2).

  Args:
    shared: `[B, d_s]` rows e_c (H_c).
    private: `[B, d_p]` rows e_p (H_p).
    form: 'dsn' (default; DSN's released difference_loss): centre both over the batch,
      L2-normalise each row, C = P̂ᵀ Ŝ (d_p x d_s), return mean(C²) = |C|_F² / (d_p d_s), clipped
      at 0 (γ = 1500 fits this form; it needs B >= 2, B = 1 gives 0). 'raw': |H_cᵀ H_p|_F² as
      written in (4), no centring or normalisation.

  Returns:
    Scalar float32.
  """
  shared, private = _float32(shared), _float32(private)
  if form == "raw":
    return _squared_frobenius_of_cross(private, shared)
  if form != "dsn":
    raise ValueError(f"form must be 'dsn' or 'raw', got {form!r}")
  private = _normalize_rows(private - jnp.mean(private, axis=0, keepdims=True))
  shared = _normalize_rows(shared - jnp.mean(shared, axis=0, keepdims=True))
  elements = float(private.shape[1] * shared.shape[1])
  cost = _squared_frobenius_of_cross(private, shared) / elements
  return jnp.maximum(cost, 0.0)


def mmd_loss(a, b, sigmas=MMD_SIGMAS):
  """The draft code's domain-alignment term (§1.3): sqrt(relu(MMD²)) of the biased multi-RBF
  estimate between batches a `[Na, D]` and b `[Nb, D]` (raw vectors, no normalisation).

  MMD² = mean K(a, a) + mean K(b, b) - 2 mean K(a, b), the means over all pairs (diagonals
  included), with the kernel the sum over sigmas of exp(-d2 / (2 sigma²)): the draft's
  `exp(-gamma d2)` with gamma = 1 / (2 sigma²) and its default sigma list (1, 2, 10), so the two
  parameterisations coincide and values match the draft's. The draft requires Na = Nb; the
  biased estimate does not, and neither does this function. The root is `triplet.safe_sqrt`:
  0 with gradient 0 for MMD² <= 1e-12 (identical batches give exactly 0 while `squared_distances`
  uses its difference form, up to 2^24 elements). The draft's
  sqrt(relu(.)) has a zero gradient at exactly 0 too (relu masks it) but 1 / (2 sqrt(MMD²))
  just above, e.g. 5e9 at a rounding residual of 1e-20.
  """
  a, b = _float32(a), _float32(b)
  inverse_widths = jnp.asarray([1.0 / (2.0 * float(s) ** 2) for s in sigmas], jnp.float32)

  def mean_kernel(d2):
    return jnp.mean(jnp.sum(jnp.exp(-d2[..., None] * inverse_widths), axis=-1))

  mmd2 = (mean_kernel(squared_distances(a)) + mean_kernel(squared_distances(b))
          - 2.0 * mean_kernel(squared_distances(a, b)))
  return safe_sqrt(jax.nn.relu(mmd2))
