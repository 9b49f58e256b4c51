"""ResNet trunk: sizes and parameter counts (docs/hhl.md §3), BatchNorm statistics, max-pool padding.

The forward pass against torch with imported weights is in test_torchvision_import.py.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from reid_jax.errors import ReidError
from reid_jax.models import resnet


def _abstract_variables(module, shape):
  return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape, jnp.float32)))


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def test_resnet50_parameter_count_matches_torchvision_without_fc():
  variables = _abstract_variables(resnet.ResNet50(), (1, 256, 128, 3))
  assert _count(variables["params"]) == 23_508_032  # docs/hhl.md §3
  # Running mean + var: one pair per BN channel, i.e. twice the BN scale parameters.
  bn_scales = [leaf for path, leaf in flax.traverse_util.flatten_dict(variables["params"]).items()
               if path[-1] == "scale"]
  assert _count(variables["batch_stats"]) == 2 * _count(bn_scales)


@pytest.mark.parametrize("name, last_stride, out_layer, expected", [
    ("resnet50", 2, "layer4", (2, 8, 4, 2048)),   # docs/hhl.md §3: 8x4 at 256x128
    ("resnet50", 1, "layer4", (2, 16, 8, 2048)),
    ("resnet50", 2, "layer3", (2, 16, 8, 1024)),  # docs/arn_triplet_eval.md §1.3 draft E_I
    ("resnet_small", 2, "layer4", (2, 8, 4, 512)),
    ("resnet_small", 1, "layer4", (2, 16, 8, 512)),
])
def test_output_map_sizes_at_256x128(name, last_stride, out_layer, expected):
  module = resnet.build_backbone(name, last_stride=last_stride, out_layer=out_layer)
  x = jnp.zeros((2, 256, 128, 3), jnp.float32)
  out = jax.eval_shape(lambda: module.init_with_output(jax.random.key(0), x)[0])
  assert out.shape == expected
  assert module.num_features == expected[-1]


def test_unknown_backbone_and_bad_last_stride_are_user_errors():
  with pytest.raises(ReidError, match="resnet101"):
    resnet.build_backbone("resnet101")
  with pytest.raises(ReidError, match="last_stride"):
    _abstract_variables(resnet.SmallResNet(last_stride=3), (1, 64, 32, 3))


def test_max_pool_pads_with_minus_infinity_like_torch():
  # All-negative input: zero padding would put 0 on every border output.
  x = -1.0 - np.random.default_rng(0).random((2, 9, 7, 3), dtype=np.float32)
  ours = np.asarray(resnet.max_pool_3x3_s2(jnp.asarray(x)))
  ref = torch.nn.MaxPool2d(3, stride=2, padding=1)(torch.from_numpy(x).permute(0, 3, 1, 2))
  np.testing.assert_array_equal(ours, ref.permute(0, 2, 3, 1).numpy())
  assert ours.max() < 0


@pytest.fixture(scope="module")
def small_train_step():
  """SmallResNet, running statistics set to random values, one train-mode forward pass."""
  module = resnet.SmallResNet()
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((4, 64, 32, 3)), jnp.float32)
  variables = jax.jit(module.init)(jax.random.key(0), x)
  # Means around 0 so the ReLUs keep firing, variances in [0.5, 1.5].
  old_stats = flax.traverse_util.unflatten_dict({
      path: jnp.asarray(rng.uniform(-0.2, 0.2, a.shape) + (path[-1] == "var"), jnp.float32)
      for path, a in flax.traverse_util.flatten_dict(variables["batch_stats"]).items()})
  variables = {"params": variables["params"], "batch_stats": old_stats}
  _, state = jax.jit(lambda v, x: module.apply(v, x, train=True, capture_intermediates=True,
                                               mutable=["batch_stats", "intermediates"]))(variables, x)
  return variables, state


@pytest.mark.parametrize("conv_path, bn_path", [
    (("conv1",), ("bn1",)),
    (("layer4", "0", "conv3"), ("layer4", "0", "bn3")),
    (("layer2", "0", "downsample_conv"), ("layer2", "0", "downsample_bn")),
])
def test_train_mode_updates_running_stats_with_momentum_0_9(small_train_step, conv_path, bn_path):
  variables, state = small_train_step

  def get(tree, path):
    for name in path:
      tree = tree[name]
    return tree

  conv_out = np.asarray(get(state["intermediates"], conv_path)["__call__"][0], np.float64)
  bn_out = np.asarray(get(state["intermediates"], bn_path)["__call__"][0], np.float64)
  batch_mean = conv_out.mean(axis=(0, 1, 2))
  batch_var = conv_out.var(axis=(0, 1, 2))  # biased, as Flax uses (docs/hhl.md §3 accepts it)
  old = get(variables["batch_stats"], bn_path)
  new = get(state["batch_stats"], bn_path)
  np.testing.assert_allclose(new["mean"], 0.9 * np.asarray(old["mean"]) + 0.1 * batch_mean,
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(new["var"], 0.9 * np.asarray(old["var"]) + 0.1 * batch_var,
                             rtol=1e-4, atol=1e-5)
  # The train-mode output is normalised with the batch statistics, eps 1e-5, not the running ones.
  params = get(variables["params"], bn_path)
  expected = ((conv_out - batch_mean) / np.sqrt(batch_var + 1e-5) * np.asarray(params["scale"])
              + np.asarray(params["bias"]))
  np.testing.assert_allclose(bn_out, expected, rtol=1e-3, atol=1e-3)


def test_eval_mode_uses_running_stats_and_leaves_them_alone(small_train_step):
  variables, _ = small_train_step
  module = resnet.SmallResNet()
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 64, 32, 3)), jnp.float32)
  out, state = module.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
  conv_out = np.asarray(state["intermediates"]["conv1"]["__call__"][0])
  bn_out = np.asarray(state["intermediates"]["bn1"]["__call__"][0])
  stats, params = variables["batch_stats"]["bn1"], variables["params"]["bn1"]
  expected = ((conv_out - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + 1e-5)
              * np.asarray(params["scale"]) + np.asarray(params["bias"]))
  np.testing.assert_allclose(bn_out, expected, rtol=1e-4, atol=1e-4)
  # Two images alone vs the same two inside a larger batch: eval mode is per-image.
  x4 = jnp.concatenate([x, -x], axis=0)
  np.testing.assert_allclose(module.apply(variables, x4)[:2], out, rtol=1e-4, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_tracks_float32_output(small_train_step):
  variables, _ = small_train_step
  x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 64, 32, 3)), jnp.float32)
  out32 = resnet.SmallResNet().apply(variables, x)
  module16 = resnet.SmallResNet(dtype=jnp.bfloat16)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(_abstract_variables(module16, x.shape)))
  out16 = module16.apply(variables, x)
  assert float(jnp.mean(out32 > 0)) > 0.2
  assert out16.dtype == jnp.bfloat16
  relative = float(jnp.max(jnp.abs(out16.astype(jnp.float32) - out32)) / jnp.max(jnp.abs(out32)))
  assert relative < 0.05


def test_untrained_conv_init_is_kaiming_fan_out():
  block = resnet.Bottleneck(width=256, strides=2)  # ResNet-50's layer3.0
  variables = jax.jit(block.init)(jax.random.key(0), jnp.zeros((1, 4, 4, 512)))
  kernel = np.asarray(variables["params"]["conv2"]["kernel"])  # [3, 3, 256, 256]
  np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (3 * 3 * 256)), rtol=0.02)
  assert np.abs(kernel).max() > 3.5 * kernel.std()  # untruncated normal
