"""StarGAN G/D: shapes and parameter counts (docs/hhl.md §10.2, §10.3), PyTorch parity, weight import."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn as tnn

from reid_jax.models import stargan
from reid_jax.models.conv import Conv, ConvTranspose


def _shapes(module, *inputs):
  """Parameter count and output shapes without computing anything (jax.eval_shape)."""
  variables = jax.eval_shape(lambda *xs: module.init(jax.random.key(0), *xs), *inputs)
  outputs = jax.eval_shape(module.apply, variables, *inputs)
  return stargan.count_params(variables["params"]), outputs


@pytest.mark.parametrize("num_cameras, expected", [(5, 8_430_528), (6, 8_433_664), (8, 8_439_936)])
def test_generator_parameter_count_and_shape(num_cameras, expected):
  x = jax.ShapeDtypeStruct((2, 256, 128, 3), jnp.float32)
  c = jax.ShapeDtypeStruct((2, num_cameras), jnp.float32)
  count, out = _shapes(stargan.Generator(num_cameras), x, c)
  assert count == expected  # docs/hhl.md §10.2
  assert out.shape == (2, 256, 128, 3)


@pytest.mark.parametrize("num_cameras, image_size, expected, patch", [
    (6, 256, 44_819_392, (4, 2)), (8, 256, 44_852_160, (4, 2)),
    (6, 128, 44_745_664, (2, 1)), (8, 128, 44_753_856, (2, 1))])
def test_discriminator_parameter_count_and_shapes(num_cameras, image_size, expected, patch):
  x = jax.ShapeDtypeStruct((2, image_size, image_size // 2, 3), jnp.float32)
  count, (src, cls) = _shapes(stargan.Discriminator(num_cameras, image_size), x)
  assert count == expected  # docs/hhl.md §10.3
  assert src.shape == (2,) + patch
  assert cls.shape == (2, num_cameras)


def test_discriminator_refuses_wrong_aspect():
  d = stargan.Discriminator(6, 64, conv_dim=4, repeat_num=4)
  with pytest.raises(ValueError, match="64x32"):
    d.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))


# --- one PyTorch reference layer of each kind, weights imported --------------------------------------


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _nhwc(t):
  return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


def test_conv_4x4_stride2_matches_torch():
  torch.manual_seed(0)
  layer = tnn.Conv2d(5, 7, kernel_size=4, stride=2, padding=1, bias=True)
  x = np.random.default_rng(0).normal(size=(2, 10, 6, 5)).astype(np.float32)
  params = {"kernel": jnp.asarray(layer.weight.detach().numpy().transpose(2, 3, 1, 0)),
            "bias": jnp.asarray(layer.bias.detach().numpy())}
  ours = Conv(7, 4, strides=2, padding=1).apply({"params": params}, jnp.asarray(x))
  np.testing.assert_allclose(ours, _nhwc(layer(_nchw(x))), rtol=1e-5, atol=1e-5)


def test_transposed_conv_4x4_stride2_matches_torch():
  """The import's transposed-conv mapping: `[in, out, kh, kw]` -> `[kh, kw, in, out]`."""
  torch.manual_seed(0)
  layer = tnn.ConvTranspose2d(6, 3, kernel_size=4, stride=2, padding=1, bias=False)
  x = np.random.default_rng(1).normal(size=(2, 5, 4, 6)).astype(np.float32)
  kernel = jnp.transpose(jnp.asarray(layer.weight.detach().numpy()), (2, 3, 0, 1))
  ours = ConvTranspose(3, 4, strides=2, padding=1, use_bias=False).apply(
      {"params": {"kernel": kernel}}, jnp.asarray(x))
  assert ours.shape == (2, 10, 8, 3)  # k4/s2/p1 doubles H and W exactly
  np.testing.assert_allclose(ours, _nhwc(layer(_nchw(x))), rtol=1e-5, atol=1e-5)


def test_instance_norm_matches_torch_train_mode():
  torch.manual_seed(0)
  layer = tnn.InstanceNorm2d(4, affine=True, track_running_stats=True)
  with torch.no_grad():
    layer.weight.uniform_(0.5, 1.5)
    layer.bias.uniform_(-1, 1)
  x = (np.random.default_rng(2).normal(size=(3, 5, 7, 4)) * 3 + 2).astype(np.float32)
  params = {"scale": jnp.asarray(layer.weight.detach().numpy()),
            "bias": jnp.asarray(layer.bias.detach().numpy())}
  ours = stargan.InstanceNorm().apply({"params": params}, jnp.asarray(x))
  layer.train()  # the reference never calls .eval(): instance statistics (docs/hhl.md §12 row 21)
  np.testing.assert_allclose(ours, _nhwc(layer(_nchw(x))), rtol=1e-4, atol=1e-5)


# --- whole networks against a PyTorch build of the reference structure -------------------------------


class _TorchResidual(tnn.Module):

  def __init__(self, dim):
    super().__init__()
    self.main = tnn.Sequential(
        tnn.Conv2d(dim, dim, 3, 1, 1, bias=False), tnn.InstanceNorm2d(dim, affine=True, track_running_stats=True),
        tnn.ReLU(), tnn.Conv2d(dim, dim, 3, 1, 1, bias=False),
        tnn.InstanceNorm2d(dim, affine=True, track_running_stats=True))

  def forward(self, x):
    return x + self.main(x)


class _TorchGenerator(tnn.Module):
  """docs/hhl.md §10.2 table as an `nn.Sequential` named `main`, as in the reference code."""

  def __init__(self, c_dim, conv_dim, repeat_num):
    super().__init__()
    norm = lambda d: tnn.InstanceNorm2d(d, affine=True, track_running_stats=True)
    layers = [tnn.Conv2d(3 + c_dim, conv_dim, 7, 1, 3, bias=False), norm(conv_dim), tnn.ReLU()]
    d = conv_dim
    for _ in range(2):
      layers += [tnn.Conv2d(d, 2 * d, 4, 2, 1, bias=False), norm(2 * d), tnn.ReLU()]
      d *= 2
    layers += [_TorchResidual(d) for _ in range(repeat_num)]
    for _ in range(2):
      layers += [tnn.ConvTranspose2d(d, d // 2, 4, 2, 1, bias=False), norm(d // 2), tnn.ReLU()]
      d //= 2
    layers += [tnn.Conv2d(d, 3, 7, 1, 3, bias=False), tnn.Tanh()]
    self.main = tnn.Sequential(*layers)

  def forward(self, x, c):
    planes = c[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
    return self.main(torch.cat([x, planes], dim=1))


def _torch_generator(c_dim, conv_dim, repeat_num):
  torch.manual_seed(0)
  g = _TorchGenerator(c_dim, conv_dim, repeat_num)
  with torch.no_grad():  # non-trivial affine parameters so that a swapped scale/shift would show
    for m in g.modules():
      if isinstance(m, tnn.InstanceNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
  return g


def test_generator_import_matches_torch():
  c_dim, conv_dim, repeat_num = 3, 8, 2
  g_torch = _torch_generator(c_dim, conv_dim, repeat_num)
  rng = np.random.default_rng(3)
  x = rng.uniform(-1, 1, size=(2, 16, 8, 3)).astype(np.float32)
  c = np.eye(c_dim, dtype=np.float32)[[2, 0]]
  variables = stargan.load_torch_generator(g_torch.state_dict(), repeat_num=repeat_num)
  g = stargan.Generator(c_dim, conv_dim=conv_dim, repeat_num=repeat_num)
  # Same tree as a freshly initialised generator.
  fresh = g.init(jax.random.key(0), jnp.asarray(x), jnp.asarray(c))
  assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(variables)
  assert jax.tree.map(jnp.shape, fresh) == jax.tree.map(jnp.shape, variables)
  ours = g.apply(variables, jnp.asarray(x), jnp.asarray(c))
  ref = g_torch(_nchw(x), torch.from_numpy(c))
  np.testing.assert_allclose(ours, _nhwc(ref), rtol=1e-4, atol=2e-5)


def test_generator_import_names_missing_key():
  state = _torch_generator(3, 4, 1).state_dict()
  with pytest.raises(stargan.ReidError, match="main.10.main.0.weight"):
    stargan.load_torch_generator(state, repeat_num=2)  # wrong repeat_num: keys shift


def test_discriminator_matches_torch():
  c_dim, image_size, conv_dim, repeat_num = 4, 32, 4, 3
  torch.manual_seed(0)
  layers, d, in_d = [], conv_dim, 3
  for _ in range(repeat_num):
    layers += [tnn.Conv2d(in_d, d, 4, 2, 1), tnn.LeakyReLU(0.01)]
    in_d, d = d, 2 * d
  main = tnn.Sequential(*layers)
  src = tnn.Conv2d(in_d, 1, 3, 1, 1, bias=False)
  cls = tnn.Conv2d(in_d, c_dim, (image_size >> repeat_num, image_size >> (repeat_num + 1)), bias=False)
  x = np.random.default_rng(4).uniform(-1, 1, size=(2, image_size, image_size // 2, 3)).astype(np.float32)
  h = main(_nchw(x))
  ref_src, ref_cls = src(h)[:, 0].detach().numpy(), cls(h).flatten(1).detach().numpy()

  hwio = lambda w: jnp.asarray(w.detach().numpy().transpose(2, 3, 1, 0))
  params = {f"conv{i}": {"kernel": hwio(main[2 * i].weight), "bias": jnp.asarray(main[2 * i].bias.detach().numpy())}
            for i in range(repeat_num)}
  params["src"] = {"kernel": hwio(src.weight)}
  params["cls"] = {"kernel": hwio(cls.weight)}
  d_jax = stargan.Discriminator(c_dim, image_size, conv_dim=conv_dim, repeat_num=repeat_num)
  out_src, out_cls = d_jax.apply({"params": params}, jnp.asarray(x))
  np.testing.assert_allclose(out_src, ref_src, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out_cls, ref_cls, rtol=1e-4, atol=1e-5)
  assert out_src.shape == (2, 4, 2) and out_cls.shape == (2, c_dim)


# --- initialisation (docs/hhl.md §10.2: PyTorch defaults) -------------------------------------------------


@pytest.mark.parametrize("scheme", stargan.INIT_SCHEMES)
def test_generator_init_follows_pytorch_defaults(scheme):
  g = stargan.Generator(6, conv_dim=16, repeat_num=1, init_scheme=scheme)
  params = g.init(jax.random.key(1), jnp.zeros((1, 8, 4, 3)), jnp.zeros((1, 6)))["params"]
  stem = params["stem_conv"]["kernel"]  # fan_in = (3 + 6) * 7 * 7
  bound = 1 / np.sqrt(9 * 49)
  assert np.abs(stem).max() <= bound and np.abs(stem).max() > 0.95 * bound
  up = params["up0_conv"]["kernel"]  # [4, 4, 64, 32]
  up_fan_in = (64 if scheme == "torch_0.4" else 32) * 16
  assert np.abs(up).max() <= 1 / np.sqrt(up_fan_in) and np.abs(up).max() > 0.95 / np.sqrt(up_fan_in)
  scale = np.concatenate([params[n]["scale"] for n in ("stem_norm", "down0_norm", "down1_norm")])
  if scheme == "torch_0.4":  # U(0, 1) affine weight of PyTorch < 1.0
    assert scale.min() >= 0 and scale.max() <= 1 and 0.35 < scale.mean() < 0.65
  else:
    np.testing.assert_array_equal(scale, 1.0)
  np.testing.assert_array_equal(params["stem_norm"]["bias"], 0.0)


def test_generator_uses_the_camera_code():
  g = stargan.Generator(3, conv_dim=8, repeat_num=1)
  x = jnp.asarray(np.random.default_rng(5).uniform(-1, 1, (1, 8, 4, 3)), jnp.float32)
  variables = g.init(jax.random.key(2), x, jnp.zeros((1, 3)))
  y0 = g.apply(variables, x, jnp.eye(3)[:1])
  y1 = g.apply(variables, x, jnp.eye(3)[1:2])
  assert np.abs(y0).max() <= 1
  assert np.abs(np.asarray(y0) - np.asarray(y1)).mean() > 1e-3
