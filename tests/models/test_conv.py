"""conv2d / conv_transpose2d: the matmul and Winograd paths equal XLA's convolution and its
gradients; torch as reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from reid_jax.models import conv

_TOL = dict(rtol=1e-4, atol=1e-4)


def _random(key, shape):
  return jax.random.normal(jax.random.PRNGKey(key), shape, jnp.float32)


def _value_and_vjp(fn, x, kernel, cotangent_key=7):
  """(y, dx, dkernel) for a random cotangent."""
  y, vjp = jax.vjp(fn, x, kernel)
  return (y, *vjp(_random(cotangent_key, y.shape)))


# (H, W, kernel, stride, padding, dilation, Cin): ResNet-50 (1x1, 3x3 s1/s2, 7x7/2 stem), StarGAN
# (4x4/2 p1, 7x7 p3), odd sizes, 1x1 with stride and padding, dilation 2.
CONV_CASES = [
    (7, 5, 1, 1, 0, 1, 16),
    (9, 6, 1, 2, 0, 1, 16),
    (9, 6, 1, 2, 1, 1, 3),
    (7, 5, 3, 1, 1, 1, 16),
    (9, 6, 3, 2, 1, 1, 16),
    (9, 6, 3, 2, 1, 1, 3),
    (7, 5, 3, 1, 0, 1, 16),
    (11, 9, 7, 2, 3, 1, 3),
    (9, 6, 7, 1, 3, 1, 16),
    (8, 6, 4, 2, 1, 1, 16),
    (9, 7, 4, 2, 1, 1, 3),
    (9, 7, 3, 1, 2, 2, 16),
    (9, 8, 3, 2, 1, 2, 3),
]


# 3x3 stride 1 for F(4x4, 3x3): sizes with partial last tiles, whole tiles, paddings 0-2, channels
# under and over 'auto''s threshold.
WINOGRAD_CASES = [
    (7, 5, 3, 1, 1, 1, 16),
    (7, 5, 3, 1, 0, 1, 16),
    (8, 12, 3, 1, 1, 1, 64),
    (9, 6, 3, 1, 2, 1, 3),
    (3, 3, 3, 1, 1, 1, 5),
]


@pytest.mark.parametrize("h,w,k,stride,padding,dilation,cin,impl",
                         [(*case, "matmul") for case in CONV_CASES]
                         + [(*case, "auto") for case in CONV_CASES if case[2] in (3, 7)][:4]
                         + [(*case, "winograd") for case in WINOGRAD_CASES]
                         + [(*WINOGRAD_CASES[2], "auto")])
def test_conv2d_and_gradients_equal_xla(h, w, k, stride, padding, dilation, cin, impl):
  x, kernel = _random(0, (2, h, w, cin)), _random(1, (k, k, cin, 5))
  conv_with = lambda impl: lambda x, kernel: conv.conv2d(
      x, kernel, strides=stride, padding=padding, dilation=dilation, impl=impl)
  expected = _value_and_vjp(conv_with("xla"), x, kernel)
  actual = _value_and_vjp(conv_with(impl), x, kernel)
  geo = conv.Geometry((k, k), (stride, stride), (padding, padding), (dilation, dilation))
  winograd = "winograd" in conv._plan(impl, geo, cin, x.dtype)
  assert winograd == (impl != "matmul" and (h, w, k, stride, padding, dilation, cin) in
                      WINOGRAD_CASES and (impl == "winograd" or cin >= conv._WINOGRAD_MIN_CHANNELS))
  for name, a, e in zip(("y", "dx", "dkernel"), actual, expected):
    # F(4x4, 3x3) rounds to ~1e-5 of the result's scale (the direct sums to ~1e-6).
    tol = dict(rtol=1e-4, atol=max(1e-4, 2e-5 * np.abs(e).max())) if winograd else _TOL
    np.testing.assert_allclose(a, e, **tol, err_msg=name)


@pytest.mark.parametrize("shape, cin, cout", [((4, 64, 64), 8, 12), ((1, 129, 129), 12, 8)])
def test_weight_gradient_over_many_pixels_equals_xla(shape, cin, cout):
  """Contractions over >= 16,384 pixels run as a sum of 4 chunks (the second case: no 4-split,
  one piece); both orientations of the narrower operand."""
  assert np.prod(shape) >= conv._CHUNKED_CONTRACTION_PIXELS
  x, g = _random(0, (*shape, cin)), _random(1, (*shape, cout))
  geo = conv.Geometry((1, 1), (1, 1), (0, 0), (1, 1))
  ours = conv._weight_grad_matmul(x, g, geo, (1, 1, cin, cout))
  expected = conv._weight_grad_xla(x, g, geo, (1, 1, cin, cout))
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("k,stride,padding,dilation", [(3, 2, 1, 1), (7, 2, 3, 1), (1, 2, 0, 1),
                                                       (3, 1, 2, 2)])
def test_conv2d_matches_torch(k, stride, padding, dilation):
  x, kernel = _random(0, (2, 9, 7, 4)), _random(1, (k, k, 4, 6))
  y = conv.conv2d(x, kernel, strides=stride, padding=padding, dilation=dilation, impl="matmul")
  expected = torch.nn.functional.conv2d(
      torch.from_numpy(np.array(x)).permute(0, 3, 1, 2),
      torch.from_numpy(np.array(kernel)).permute(3, 2, 0, 1),
      stride=stride, padding=padding, dilation=dilation).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(y, expected, **_TOL)


def test_blocked_over_the_batch_equals_one_block(monkeypatch):
  """A patch budget below one image forces the lax.map / lax.scan blocking of every product."""
  x, kernel = _random(0, (6, 9, 7, 16)), _random(1, (3, 3, 16, 5))
  fn = lambda x, kernel: conv.conv2d(x, kernel, strides=2, padding=1, impl="matmul")
  expected = _value_and_vjp(fn, x, kernel)
  monkeypatch.setattr(conv, "_BLOCK_BYTES", 1)
  assert conv._batch_blocks(6, 10) == 1
  actual = _value_and_vjp(fn, x, kernel)
  for a, e in zip(actual, expected):
    np.testing.assert_allclose(a, e, **_TOL)
  monkeypatch.setattr(conv, "_BLOCK_BYTES", 2 * 4 * 9 * 16 * 5)
  assert conv._batch_blocks(6, 4 * 9 * 16 * 5) == 2


def test_grouped_conv_falls_back_to_xla_and_matches_torch():
  x, kernel = _random(0, (2, 7, 5, 6)), _random(1, (3, 3, 3, 4))
  y = conv.conv2d(x, kernel, padding=1, groups=2, impl="matmul")
  expected = torch.nn.functional.conv2d(
      torch.from_numpy(np.array(x)).permute(0, 3, 1, 2),
      torch.from_numpy(np.array(kernel)).permute(3, 2, 0, 1), padding=1,
      groups=2).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(y, expected, **_TOL)


# (H, W, kernel, stride, padding, output_padding, Cin, Cout): StarGAN's 4x4/2 p1 upsampling.
TRANSPOSE_CASES = [
    (5, 3, 4, 2, 1, 0, 16, 8),
    (4, 3, 4, 2, 1, 0, 3, 5),
    (5, 4, 3, 2, 1, 1, 16, 4),
    (4, 5, 3, 1, 1, 0, 4, 16),
]


@pytest.mark.parametrize("impl", ["xla", "matmul", "auto"])
@pytest.mark.parametrize("h,w,k,stride,padding,output_padding,cin,cout", TRANSPOSE_CASES)
def test_conv_transpose2d_matches_torch(h, w, k, stride, padding, output_padding, cin, cout, impl):
  x, kernel = _random(0, (2, h, w, cin)), _random(1, (k, k, cin, cout))
  y = conv.conv_transpose2d(x, kernel, strides=stride, padding=padding,
                            output_padding=output_padding, impl=impl)
  expected = torch.nn.functional.conv_transpose2d(
      torch.from_numpy(np.array(x)).permute(0, 3, 1, 2),
      torch.from_numpy(np.array(kernel)).permute(2, 3, 0, 1),
      stride=stride, padding=padding, output_padding=output_padding).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(y, expected, **_TOL)


@pytest.mark.parametrize("h,w,k,stride,padding,output_padding,cin,cout,impl",
                         [(*case, "matmul") for case in TRANSPOSE_CASES]
                         + [(*TRANSPOSE_CASES[0], "auto"), (*TRANSPOSE_CASES[3], "winograd")])
def test_conv_transpose2d_gradients_equal_xla(h, w, k, stride, padding, output_padding, cin, cout,
                                              impl):
  x, kernel = _random(0, (2, h, w, cin)), _random(1, (k, k, cin, cout))
  conv_with = lambda impl: lambda x, kernel: conv.conv_transpose2d(
      x, kernel, strides=stride, padding=padding, output_padding=output_padding, impl=impl)
  expected = _value_and_vjp(conv_with("xla"), x, kernel)
  actual = _value_and_vjp(conv_with(impl), x, kernel)
  for name, a, e in zip(("y", "dx", "dkernel"), actual, expected):
    np.testing.assert_allclose(a, e, **_TOL, err_msg=name)


def test_winograd_matrices_compute_a_4_output_correlation():
  """1-D F(4, 3) by hand: A^T [(G k) * (B^T d)] is the 4-output correlation of 6 inputs with 3
  taps, for every d and k (checked on a basis of each, which spans all of them)."""
  bt, g, at = conv._WINOGRAD_BT, conv._WINOGRAD_G, conv._WINOGRAD_AT
  for i in range(6):
    for j in range(3):
      d, k = np.eye(6)[i], np.eye(3)[j]
      expected = [sum(d[n + t] * k[t] for t in range(3)) for n in range(4)]
      np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), expected, atol=1e-12)


def test_winograd_applies_only_to_3x3_stride_1_float32():
  geo = conv.Geometry((3, 3), (1, 1), (1, 1), (1, 1))
  assert conv.winograd_applies(geo, jnp.float32)
  assert not conv.winograd_applies(geo, jnp.bfloat16)
  for other in (geo._replace(strides=(2, 2)), geo._replace(dilation=(2, 2)),
                geo._replace(kernel=(5, 5)), geo._replace(padding=(3, 3))):
    assert not conv.winograd_applies(other, jnp.float32)
  # 'winograd' elsewhere falls back to 'auto''s plan.
  strided = geo._replace(strides=(2, 2))
  assert conv._plan("winograd", strided, 64, jnp.float32) == conv._plan("auto", strided, 64,
                                                                          jnp.float32)


def _compiled_text(fn, *args):
  return jax.jit(fn).lower(*args).compile().as_text()


@pytest.mark.parametrize("transposed", [False, True])
def test_impl_selects_the_path(transposed):
  """'matmul' leaves no convolution in the compiled train-step HLO; 'xla' does; 'auto' on CPU mixes."""
  x, kernel = _random(0, (2, 9, 6, 8)), _random(1, (3, 3, 8, 8))
  op = conv.conv_transpose2d if transposed else conv.conv2d

  def loss(impl, kernel_size):
    def fn(x, kernel):
      return jnp.sum(op(x, kernel[:kernel_size, :kernel_size], strides=2, padding=kernel_size // 2,
                        impl=impl) ** 2)
    return jax.grad(fn, argnums=(0, 1))

  for kernel_size in (1, 3):
    assert "convolution(" not in _compiled_text(loss("matmul", kernel_size), x, kernel)
    assert "convolution(" in _compiled_text(loss("xla", kernel_size), x, kernel)
  assert jax.default_backend() == "cpu"
  # 1x1: the forward on XLA's convolution, both gradients as dot_general.
  assert _compiled_text(loss("auto", 1), x, kernel).count("convolution(") == 1
  plan = lambda strides, channels, dtype=jnp.float32: conv._plan(
      "auto", conv.Geometry((3, 3), strides, (1, 1), (1, 1)), channels, dtype)
  assert plan((1, 1), 64) == ("winograd",) * 3
  assert plan((1, 1), 32) == plan((1, 1), 64, jnp.bfloat16) == ("xla", "xla", "xla")
  assert plan((2, 2), 64) == ("xla", "matmul", "matmul")
  with pytest.raises(ValueError, match="impl"):
    conv.conv2d(x, kernel, impl="cudnn")


class _TinyNet(conv.nn.Module):
  impl: str

  @conv.nn.compact
  def __call__(self, x):
    x = conv.Conv(8, 7, strides=2, padding=3, impl=self.impl)(x)
    x = jax.nn.relu(conv.Conv(8, 3, padding=1, use_bias=False, impl=self.impl)(x))
    x = conv.Conv(16, 1, strides=2, impl=self.impl)(x)
    return conv.ConvTranspose(4, 4, strides=2, padding=1, impl=self.impl)(x)


def test_flax_modules_under_jit_give_equal_gradients():
  x = _random(0, (2, 13, 9, 3))
  params = _TinyNet("xla").init(jax.random.PRNGKey(1), x)

  def grads(impl):
    loss = lambda params: jnp.mean(_TinyNet(impl).apply(params, x) ** 2)
    return jax.jit(jax.value_and_grad(loss))(params)

  (loss_xla, grads_xla), (loss_mm, grads_mm) = grads("xla"), grads("matmul")
  np.testing.assert_allclose(loss_mm, loss_xla, rtol=1e-5)
  jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-6),
               grads_mm, grads_xla)
  assert jax.tree.structure(grads_mm) == jax.tree.structure(grads_xla)
