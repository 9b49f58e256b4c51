"""ARN's losses (docs/arn_triplet_eval.md §1.1, §1.3, §1.4) against loops, numpy and torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from reid_jax.losses import arn

# Tests call the losses through jit (each compiles once; eager JAX compiles op by op, slower here).
contrastive = jax.jit(arn.contrastive_loss, static_argnames=("normalize", "reduction"))
difference = jax.jit(arn.difference_loss, static_argnames=("form",))
mmd = jax.jit(arn.mmd_loss, static_argnames=("sigmas",))


def value_and_grad(fn, argnums=0):
  return jax.jit(jax.value_and_grad(fn, argnums=argnums))


def _batch(seed, n=8, dim=5, ids=3):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, dim)), np.arange(n) % ids


def _finite(*arrays):
  return all(np.all(np.isfinite(np.asarray(a))) for a in arrays)


# Contrastive (2), §1.4 item 1.

def brute_contrastive(x, labels, margin, normalize):
  """Double loop over ordered pairs i != j in float64."""
  x = np.asarray(x, np.float64)
  if normalize:
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
  total = 0.0
  for i in range(len(x)):
    for j in range(len(x)):
      if i == j:
        continue
      d = np.linalg.norm(x[i] - x[j])
      total += d * d if labels[i] == labels[j] else max(0.0, margin - d) ** 2
  return total


@pytest.mark.parametrize("normalize, margin", [(True, 1.0), (False, 3.0)])
def test_contrastive_matches_ordered_pair_loops(normalize, margin):
  x, labels = _batch(0)
  ref = brute_contrastive(x, labels, margin, normalize)
  loss = contrastive(jnp.asarray(x, jnp.float32), jnp.asarray(labels), margin, normalize)
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  # Both kinds of term are present and some negatives are outside the margin (not degenerate).
  xn = x / np.linalg.norm(x, axis=1, keepdims=True) if normalize else x
  d = np.linalg.norm(xn[:, None] - xn[None], axis=-1)
  negative = labels[:, None] != labels[None]
  assert (d[negative] < margin).any() and (d[negative] > margin).any()


def test_contrastive_hand_case():
  # x0, x2 share a label (d² = 4 counts, beyond the margin too); x0-x1 is a negative inside the
  # margin (d = 0.6: (1 - 0.6)² = 0.16); x1-x2 a negative outside it (d ≈ 2.09: 0). Ordered pairs
  # count each unordered pair twice.
  x = jnp.asarray([[0.0, 0.0], [0.6, 0.0], [0.0, 2.0]])
  labels = jnp.asarray([0, 1, 0])
  total = contrastive(x, labels, margin=1.0, normalize=False)
  np.testing.assert_allclose(total, 2 * (4.0 + 0.16), rtol=1e-6)
  mean = contrastive(x, labels, margin=1.0, normalize=False, reduction="mean")
  np.testing.assert_allclose(mean, 2 * (4.0 + 0.16) / 6, rtol=1e-6)
  # The outside negative gets no gradient: moving x1 along x1 - x2 only changes the x0-x1 term.
  _, grad = value_and_grad(lambda e: arn.contrastive_loss(e, labels, 1.0, False))(x)
  np.testing.assert_allclose(grad[1], [-4 * 0.4, 0.0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("normalize", [True, False])
def test_contrastive_mean_is_sum_over_ordered_pairs(normalize):
  x, labels = _batch(1, n=6)
  e, y = jnp.asarray(x, jnp.float32), jnp.asarray(labels)
  total = contrastive(e, y, normalize=normalize)
  mean = contrastive(e, y, normalize=normalize, reduction="mean")
  assert total > 0
  np.testing.assert_allclose(mean, total / (6 * 5), rtol=1e-6)
  with pytest.raises(ValueError):
    arn.contrastive_loss(e, y, reduction="none")


@pytest.mark.parametrize("normalize", [True, False])
def test_contrastive_gradient_finite_at_coinciding_and_zero_rows(normalize):
  x, labels = _batch(2)
  x = x.astype(np.float32)
  x[1] = x[0]  # labels 0 and 1: a coinciding negative pair
  x[3] = x[0]  # labels 0 and 0: a coinciding positive pair
  x[4] = 0.0  # a zero row
  fn = lambda e: arn.contrastive_loss(e, jnp.asarray(labels), normalize=normalize)
  loss, grad = value_and_grad(fn)(jnp.asarray(x))
  assert _finite(loss, grad) and loss > 0
  collapsed = jnp.ones_like(jnp.asarray(x))
  loss, grad = value_and_grad(fn)(collapsed)
  assert _finite(loss, grad)
  negatives = np.sum(labels[:, None] != labels[None])
  np.testing.assert_allclose(loss, negatives * 1.0, rtol=1e-6)  # every negative pair: m² = 1
  np.testing.assert_array_equal(grad, 0.0)


def test_contrastive_is_float32_for_bf16_and_jits():
  x, labels = _batch(3)
  e = jnp.asarray(x, jnp.bfloat16)
  loss = contrastive(e, jnp.asarray(labels))
  assert loss.dtype == jnp.float32
  ref = brute_contrastive(np.asarray(e.astype(jnp.float32)), labels, 1.0, True)
  np.testing.assert_allclose(loss, ref, rtol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
def test_contrastive_gradient_matches_torch(normalize):
  x, labels = _batch(4, n=10, dim=6)
  margin = 1.0 if normalize else 3.0
  _, grad = value_and_grad(lambda e: arn.contrastive_loss(e, jnp.asarray(labels), margin,
                                                           normalize))(jnp.asarray(x, jnp.float32))
  t = torch.tensor(x, requires_grad=True)
  e = torch.nn.functional.normalize(t, dim=1) if normalize else t
  d2 = ((e[:, None] - e[None]) ** 2).sum(-1)
  eye = torch.eye(len(x), dtype=torch.bool)
  d = torch.sqrt(torch.where(eye, torch.ones_like(d2), d2))  # no root at the diagonal
  same = torch.from_numpy(labels[:, None] == labels[None])
  terms = torch.where(same, d2, torch.relu(margin - d) ** 2)
  torch.where(eye, torch.zeros_like(terms), terms).sum().backward()
  np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_contrastive_draft_matches_torch_loops():
  x, labels = _batch(5, n=6, dim=4)
  x = x * 0.8  # some mean squared distances below the margin 2, some above
  loss, grad = value_and_grad(lambda e: arn.contrastive_loss_draft(e, jnp.asarray(labels)))(
      jnp.asarray(x, jnp.float32))
  t = torch.tensor(x, requires_grad=True)
  batch, dim = x.shape
  total, hinged = 0.0, []
  for i in range(batch):
    for j in range(i, batch):  # i <= j, as in §1.3
      distance = ((t[i] - t[j]) ** 2).sum() / dim
      if labels[i] == labels[j]:
        total = total + distance
      else:
        total = total + torch.relu(2.0 - distance)
        hinged.append(distance.item() < 2.0)
  total = total * 2 / (batch * (batch - 1))
  total.backward()
  assert any(hinged) and not all(hinged)
  np.testing.assert_allclose(loss, total.item(), rtol=1e-5)
  np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-4, atol=1e-6)


# Reconstruction (3), §1.4 item 3.

def test_reconstruction_is_mse_with_a_fixed_target():
  rng = np.random.default_rng(6)
  x, x_hat = rng.normal(size=(3, 4, 5, 2)), rng.normal(size=(3, 4, 5, 2))
  xj, hj = jnp.asarray(x, jnp.float32), jnp.asarray(x_hat, jnp.float32)
  loss, (grad_x, grad_hat) = value_and_grad(arn.reconstruction_loss, argnums=(0, 1))(xj, hj)
  np.testing.assert_allclose(loss, np.mean((x_hat - x) ** 2), rtol=1e-5)
  np.testing.assert_array_equal(grad_x, 0.0)
  np.testing.assert_allclose(grad_hat, 2 * (x_hat - x) / x.size, rtol=1e-4, atol=1e-7)
  loss = jax.jit(arn.reconstruction_loss)(xj.astype(jnp.bfloat16), hj.astype(jnp.bfloat16))
  assert loss.dtype == jnp.float32


# Difference (4), §1.4 item 2.

SHAPES = [(6, 9, 7), (12, 3, 4)]  # (B, d_s, d_p): B < d and B > d


def numpy_dsn(shared, private):
  def prepare(h):
    h = h - h.mean(axis=0)
    return h / np.sqrt(np.maximum((h * h).sum(axis=1, keepdims=True), 1e-12))
  s, p = prepare(np.asarray(shared, np.float64)), prepare(np.asarray(private, np.float64))
  c = p.T @ s
  return max(np.mean(c ** 2), 0.0)


def _codes(seed, batch, d_s, d_p):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(batch, d_s)) + 2.0, rng.normal(size=(batch, d_p)) - 1.0


def _orthogonal_codes(seed, batch, d_s, d_p):
  """Shared rows in equal pairs (s_k, s_k), private rows in opposite pairs (u_k, -u_k), each plus
  a random offset: after centring and normalisation Σ_i p̂_i ŝ_iᵀ cancels pair by pair."""
  rng = np.random.default_rng(seed)
  s = np.repeat(rng.normal(size=(batch // 2, d_s)), 2, axis=0) + rng.normal(size=d_s)
  u = rng.normal(size=(batch // 2, d_p))
  p = np.stack([u, -u], axis=1).reshape(batch, d_p) + rng.normal(size=d_p)
  return s, p


@pytest.mark.parametrize("batch, d_s, d_p", SHAPES)
def test_difference_dsn_zero_for_orthogonal_codes(batch, d_s, d_p):
  s, p = _orthogonal_codes(7, batch, d_s, d_p)
  assert numpy_dsn(s, p) < 1e-25  # the construction is right
  zero = difference(jnp.asarray(s, jnp.float32), jnp.asarray(p, jnp.float32))
  np.testing.assert_allclose(zero, 0.0, atol=1e-12)
  rng = np.random.default_rng(8)
  perturbed = p + 0.3 * rng.normal(size=p.shape)
  positive = difference(jnp.asarray(s, jnp.float32), jnp.asarray(perturbed, jnp.float32))
  assert positive > 1e-4


@pytest.mark.parametrize("batch, d_s, d_p", SHAPES)
def test_difference_forms_match_numpy(batch, d_s, d_p):
  s, p = _codes(9, batch, d_s, d_p)
  sj, pj = jnp.asarray(s, jnp.float32), jnp.asarray(p, jnp.float32)
  dsn = difference(sj, pj)
  raw = difference(sj, pj, form="raw")
  np.testing.assert_allclose(dsn, numpy_dsn(s, p), rtol=1e-5)
  np.testing.assert_allclose(raw, np.sum((s.T @ p) ** 2), rtol=1e-5)
  assert not np.isclose(dsn, raw, rtol=0.1)
  assert dsn <= batch ** 2 / (d_s * d_p)  # |C_ab| <= B for unit rows
  with pytest.raises(ValueError):
    arn.difference_loss(sj, pj, form="trace")


@pytest.mark.parametrize("batch, d_s, d_p", SHAPES)
def test_difference_dsn_gradient_matches_torch(batch, d_s, d_p):
  s, p = _codes(10, batch, d_s, d_p)
  _, grads = value_and_grad(arn.difference_loss, argnums=(0, 1))(jnp.asarray(s, jnp.float32),
                                                                 jnp.asarray(p, jnp.float32))
  ts, tp = torch.tensor(s, requires_grad=True), torch.tensor(p, requires_grad=True)
  prepare = lambda h: torch.nn.functional.normalize(h - h.mean(dim=0), dim=1)
  (prepare(tp).T @ prepare(ts)).pow(2).mean().backward()
  np.testing.assert_allclose(grads[0], ts.grad.numpy(), rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(grads[1], tp.grad.numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("form", ["dsn", "raw"])
def test_difference_gradient_finite_for_constant_columns_and_zero_rows(form):
  s, p = _codes(11, 6, 5, 4)
  s[:, 2] = 3.0  # a constant column: 0 after centring
  p[2] = np.delete(p, 2, axis=0).mean(axis=0)  # equal to the batch mean: ~0 after centring
  s[4] = 0.0  # a zero row
  fn = value_and_grad(lambda a, b: arn.difference_loss(a, b, form), argnums=(0, 1))
  loss, grads = fn(jnp.asarray(s, jnp.float32), jnp.asarray(p, jnp.float32))
  assert _finite(loss, *grads) and loss > 0
  # All rows equal: every centred row is 0 ('dsn' gives 0); all rows zero ('raw' gives 0).
  same = np.tile(s[:1], (6, 1))
  collapsed = same if form == "dsn" else np.zeros_like(s)
  loss, grads = fn(jnp.asarray(collapsed, jnp.float32), jnp.asarray(np.zeros_like(p), jnp.float32))
  assert loss == 0.0 and _finite(*grads)


# MMD (draft code, §1.3).

def brute_mmd(a, b, sigmas=(1.0, 2.0, 10.0)):
  def mean_kernel(x, y):
    return np.mean([[sum(np.exp(-np.sum((u - v) ** 2) / (2 * s * s)) for s in sigmas) for v in y]
                    for u in x])
  mmd2 = mean_kernel(a, a) + mean_kernel(b, b) - 2 * mean_kernel(a, b)
  return np.sqrt(max(mmd2, 0.0))


@pytest.mark.parametrize("n_a, n_b, sigmas", [(6, 6, (1.0, 2.0, 10.0)), (5, 7, (0.5, 3.0))])
def test_mmd_matches_biased_loops(n_a, n_b, sigmas):
  rng = np.random.default_rng(12)
  a, b = rng.normal(size=(n_a, 4)), rng.normal(size=(n_b, 4)) * 1.3 + 0.4
  loss = mmd(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), sigmas)
  np.testing.assert_allclose(loss, brute_mmd(a, b, sigmas), rtol=1e-4)


def test_mmd_gradient_matches_torch():
  rng = np.random.default_rng(13)
  a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) + 0.5
  _, grads = value_and_grad(arn.mmd_loss, argnums=(0, 1))(jnp.asarray(a, jnp.float32),
                                                          jnp.asarray(b, jnp.float32))
  ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)

  def mean_kernel(x, y):
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    return sum(torch.exp(-d2 / (2 * s * s)) for s in (1.0, 2.0, 10.0)).mean()

  torch.sqrt(torch.relu(mean_kernel(ta, ta) + mean_kernel(tb, tb) - 2 * mean_kernel(ta, tb))
             ).backward()
  np.testing.assert_allclose(grads[0], ta.grad.numpy(), rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(grads[1], tb.grad.numpy(), rtol=1e-3, atol=1e-6)


def test_mmd_zero_for_identical_batches_and_positive_for_shifted():
  rng = np.random.default_rng(14)
  a = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
  loss, grads = value_and_grad(arn.mmd_loss, argnums=(0, 1))(a, a)
  assert loss == 0.0 and _finite(*grads)
  loss, grads = value_and_grad(arn.mmd_loss, argnums=(0, 1))(a, a[::-1])  # the same set
  np.testing.assert_allclose(loss, 0.0, atol=1e-3)  # sqrt of a rounding residual
  assert _finite(*grads)
  shifted = [float(mmd(a, a + shift)) for shift in (0.1, 0.5, 2.0)]
  assert 0 < shifted[0] < shifted[1] < shifted[2]
  assert mmd(a.astype(jnp.bfloat16), a).dtype == jnp.float32

