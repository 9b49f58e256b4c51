"""WGAN-GP, camera CE and cycle losses of StarGAN (docs/hhl.md §10.4)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import torch

from reid_jax.losses import gan
from reid_jax.models import stargan

_D = stargan.Discriminator(num_cameras=3, image_size=8, conv_dim=2, repeat_num=2)


def _d_setup(dtype=jnp.float32, batch=2, seed=0):
  rng = np.random.default_rng(seed)
  x_real = jnp.asarray(rng.uniform(-1, 1, (batch, 8, 4, 3)), dtype)
  x_fake = jnp.asarray(rng.uniform(-1, 1, (batch, 8, 4, 3)), dtype)
  params = _D.init(jax.random.key(seed), x_real)["params"]
  params = jax.tree.map(lambda p: (p * 3).astype(dtype), params)  # gradient norms away from 1
  return params, x_real, x_fake


def _disc(params):
  return functools.partial(_D.apply, {"params": params})


def test_gradient_penalty_matches_finite_differences():
  with jax.enable_x64(True):
    params, x, _ = _d_setup(jnp.float64)
    d = _disc(params)
    eps = 1e-6
    flat = np.asarray(x).reshape(2, -1)
    src_sum = jax.jit(lambda z, i: jnp.sum(d(z.reshape(x.shape))[0][i]), static_argnums=1)
    norms = []
    for i in range(2):  # d sum(D_src(x)_i) / d x_i by central differences, one pixel at a time
      grad = np.zeros(flat.shape[1])
      for k in range(flat.shape[1]):
        plus, minus = flat.copy(), flat.copy()
        plus[i, k] += eps
        minus[i, k] -= eps
        grad[k] = (float(src_sum(plus, i)) - float(src_sum(minus, i))) / (2 * eps)
      norms.append(np.linalg.norm(grad))
    expected = np.mean((np.array(norms) - 1) ** 2)
    assert abs(expected) > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(float(gan.gradient_penalty(d, x)), expected, rtol=1e-6)


def test_gradient_penalty_second_order_gradient_matches_finite_differences():
  """d GP / d params (what the D update uses) along a random direction of parameter space."""
  with jax.enable_x64(True):
    params, x, _ = _d_setup(jnp.float64, seed=1)
    gp = lambda p: gan.gradient_penalty(_disc(p), x)
    grads = jax.grad(gp)(params)
    keys = jax.random.split(jax.random.key(7), len(jax.tree.leaves(params)))
    direction = jax.tree.unflatten(
        jax.tree.structure(params),
        [jax.random.normal(k, p.shape, jnp.float64) for k, p in zip(keys, jax.tree.leaves(params))])
    eps = 1e-6
    shifted = lambda s: jax.tree.map(lambda p, v: p + s * v, params, direction)
    numeric = (float(gp(shifted(eps))) - float(gp(shifted(-eps)))) / (2 * eps)
    analytic = sum(float(jnp.vdot(g, v)) for g, v in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    assert abs(analytic) > 1e-3
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5)


def test_gradient_penalty_of_a_linear_critic_is_hand_computable():
  w = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2, 3)), jnp.float32)
  scales = jnp.array([0.5, 2.0])
  # D_src(x)_i = <w, x_i>: its gradient w.r.t. x_i is w wherever x_i is, so GP = (|w| - 1)^2.
  linear = lambda x: (jnp.einsum("bhwc,hwc->b", x, w)[:, None], None)
  x = jnp.ones((2, 4, 2, 3)) * scales[:, None, None, None]
  expected = (float(jnp.linalg.norm(w)) - 1) ** 2
  np.testing.assert_allclose(float(gan.gradient_penalty(linear, x)), expected, rtol=1e-5)


def test_discriminator_loss_matches_torch_autograd():
  """The whole L_D and its parameter gradient against PyTorch with create_graph=True."""
  params, x_real, x_fake = _d_setup(seed=2)
  cameras = jnp.array([2, 0])
  alpha = jnp.array([0.3, 0.8])
  loss, terms = gan.discriminator_loss(_disc(params), x_real, x_fake, cameras, alpha)
  grads = jax.grad(lambda p: gan.discriminator_loss(_disc(p), x_real, x_fake, cameras, alpha)[0])(params)

  t = lambda a: torch.tensor(np.asarray(a), requires_grad=True)
  tp = jax.tree.map(t, params)
  nchw = lambda a: torch.from_numpy(np.asarray(a).transpose(0, 3, 1, 2).copy())
  oihw = lambda k: k.permute(3, 2, 0, 1)

  def torch_d(x):
    h = x
    for i in range(2):
      h = torch.nn.functional.conv2d(h, oihw(tp[f"conv{i}"]["kernel"]), tp[f"conv{i}"]["bias"], 2, 1)
      h = torch.nn.functional.leaky_relu(h, 0.01)
    src = torch.nn.functional.conv2d(h, oihw(tp["src"]["kernel"]), None, 1, 1)
    cls = torch.nn.functional.conv2d(h, oihw(tp["cls"]["kernel"]))
    return src, cls.flatten(1)

  xr, xf = nchw(x_real), nchw(x_fake)
  src_r, cls_r = torch_d(xr)
  src_f, _ = torch_d(xf)
  a = torch.tensor(np.asarray(alpha))[:, None, None, None]
  x_hat = (a * xr + (1 - a) * xf).requires_grad_(True)
  out, _ = torch_d(x_hat)
  dydx = torch.autograd.grad(out, x_hat, torch.ones_like(out), create_graph=True)[0]
  gp = ((dydx.flatten(1).norm(dim=1) - 1) ** 2).mean()
  ce = torch.nn.functional.cross_entropy(cls_r, torch.tensor(np.asarray(cameras)).long())
  ref = -src_r.mean() + src_f.mean() + ce + 10 * gp
  ref.backward()

  np.testing.assert_allclose(float(terms["D/loss_gp"]), gp.item(), rtol=1e-4)
  np.testing.assert_allclose(float(terms["D/loss_cls"]), ce.item(), rtol=1e-5)
  np.testing.assert_allclose(float(loss), ref.item(), rtol=1e-5)
  for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(tp)):
    np.testing.assert_allclose(np.asarray(ours), theirs.grad.numpy(), rtol=1e-3, atol=1e-5)


def test_discriminator_loss_treats_fakes_as_constants():
  params, x_real, x_fake = _d_setup(seed=3)
  g = jax.grad(lambda xf: gan.discriminator_loss(_disc(params), x_real, xf, jnp.array([0, 1]),
                                                 jnp.array([0.5, 0.5]))[0])(x_fake)
  np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_generator_loss_terms_by_hand():
  rng = np.random.default_rng(0)
  x_real, x_fake, x_rec = (jnp.asarray(rng.uniform(-1, 1, (2, 4, 2, 3)), jnp.float32) for _ in range(3))
  src = jnp.asarray(rng.normal(size=(2, 2, 1)), jnp.float32)
  logits = jnp.asarray([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
  d = lambda x: (src, logits)
  loss, terms = gan.generator_loss(d, x_real, x_fake, x_rec, jnp.array([0, 2]))
  ce = -0.5 * (np.log(np.exp(2) / (np.exp(2) + 1 + np.exp(-1))) + np.log(1 / (2 + np.e)))
  l1 = np.abs(np.asarray(x_real) - np.asarray(x_rec)).mean()
  np.testing.assert_allclose(float(terms["G/loss_cls"]), ce, rtol=1e-5)
  np.testing.assert_allclose(float(terms["G/loss_rec"]), l1, rtol=1e-5)
  np.testing.assert_allclose(float(loss), -float(src.mean()) + 10 * l1 + ce, rtol=1e-5)


def test_identity_term_is_off_by_default_and_adds_lambda_id_l1():
  rng = np.random.default_rng(1)
  x_real, x_fake, x_rec, x_id = (jnp.asarray(rng.uniform(-1, 1, (2, 4, 2, 3)), jnp.float32)
                                 for _ in range(4))
  d = lambda x: (jnp.zeros((2, 2, 1)), jnp.zeros((2, 3)))
  base, terms = gan.generator_loss(d, x_real, x_fake, x_rec, jnp.array([0, 2]), x_id=x_id)
  assert "G/loss_id" not in terms  # lambda_id = 0: StarGAN's loss exactly
  loss, terms = gan.generator_loss(d, x_real, x_fake, x_rec, jnp.array([0, 2]), x_id=x_id,
                                   lambda_id=5.0)
  l1 = np.abs(np.asarray(x_real) - np.asarray(x_id)).mean()
  np.testing.assert_allclose(float(terms["G/loss_id"]), l1, rtol=1e-6)
  np.testing.assert_allclose(float(loss), float(base) + 5.0 * l1, rtol=1e-6)
