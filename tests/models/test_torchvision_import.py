"""torchvision ResNet-50 import: an independent torch.nn ResNet-50 (torchvision's key names) is the
reference for the name mapping, the transposes and the forward pass of our trunk (docs/hhl.md §3)."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import torch

from reid_jax.errors import ReidError
from reid_jax.models import heads, resnet, torchvision_import

_spec = importlib.util.spec_from_file_location(
    "torch_resnet_reference", Path(__file__).with_name("torch_resnet_reference.py"))
torch_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(torch_reference)


@pytest.fixture(scope="module")
def torch_resnet50(tmp_path_factory):
  """A randomly initialised torch ResNet-50 with random BN statistics, saved as .safetensors and .pth."""
  torch.manual_seed(0)
  model = torch_reference.TorchResNet()
  torch_reference.randomize_batch_norm(model, seed=0)
  model.eval()
  folder = tmp_path_factory.mktemp("pretrained")
  safetensors.numpy.save_file(torch_reference.state_dict_numpy(model), str(folder / "resnet50.safetensors"))
  torch.save(model.state_dict(), folder / "resnet50-0676ba61.pth")
  return model, folder


def test_safetensors_and_pth_import_identically_with_transposed_kernels(torch_resnet50):
  model, folder = torch_resnet50
  from_safetensors = torchvision_import.load_torchvision_resnet50(folder / "resnet50.safetensors")
  from_pth = torchvision_import.load_torchvision_resnet50(folder / "resnet50-0676ba61.pth")
  jax.tree_util.tree_map(np.testing.assert_array_equal, from_safetensors, from_pth)
  state = model.state_dict()
  block = from_pth["params"]["layer2"]["0"]
  np.testing.assert_array_equal(block["conv2"]["kernel"],
                                state["layer2.0.conv2.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(block["downsample_conv"]["kernel"][0, 0],
                                state["layer2.0.downsample.0.weight"].numpy()[:, :, 0, 0].T)
  np.testing.assert_array_equal(block["downsample_bn"]["scale"], state["layer2.0.downsample.1.weight"])
  np.testing.assert_array_equal(from_pth["batch_stats"]["layer2"]["0"]["downsample_bn"]["var"],
                                state["layer2.0.downsample.1.running_var"])
  np.testing.assert_array_equal(from_pth["batch_stats"]["bn1"]["mean"], state["bn1.running_mean"])


@pytest.mark.parametrize("last_stride", [2, 1])
def test_eval_forward_matches_torch(torch_resnet50, last_stride):
  model, folder = torch_resnet50
  variables = torchvision_import.load_torchvision_resnet50(folder / "resnet50.safetensors")
  if last_stride == 1:  # the usual re-ID modification: stride 1 on layer4.0's conv2 and downsample
    model = torch_reference.TorchResNet(last_stride=1)
    model.load_state_dict(torch_resnet50[0].state_dict())
    model.eval()
  x = np.random.default_rng(0).standard_normal((2, 64, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  ours = np.asarray(jax.jit(resnet.ResNet50(last_stride=last_stride).apply)(variables, jnp.asarray(x)))
  assert ours.shape == expected.shape == (2, 4 // last_stride, 2 // last_stride, 2048)
  scale = np.abs(expected).max()
  assert scale > 0.1 and (expected > 0).mean() > 0.2  # the random BN statistics kept the net alive
  max_abs = np.abs(ours - expected).max()
  print(f"last_stride={last_stride}: max|ours-torch| = {max_abs:.3g}, max|torch| = {scale:.3g}, "
        f"relative {max_abs / scale:.3g}")
  assert max_abs / scale < 1e-4


@pytest.fixture(scope="module")
def small_state_dict():
  """torchvision-style state dict of the small trunk (1 bottleneck per stage, width 16), numpy."""
  torch.manual_seed(1)
  model = torch_reference.TorchResNet(layers=(1, 1, 1, 1), base_width=16)
  torch_reference.randomize_batch_norm(model, seed=1)
  return torch_reference.state_dict_numpy(model)


def test_small_trunk_imports_without_counters_and_fc(small_state_dict):
  # Old torchvision files (PyTorch 0.3) have no num_batches_tracked; fc.* is optional too.
  state = {k: v for k, v in small_state_dict.items()
           if not k.endswith("num_batches_tracked") and not k.startswith("fc.")}
  variables = torchvision_import.import_torchvision_resnet(state, resnet.SmallResNet())
  np.testing.assert_array_equal(variables["params"]["layer4"]["0"]["bn3"]["bias"], state["layer4.0.bn3.bias"])
  template = jax.eval_shape(lambda: resnet.SmallResNet().init(jax.random.key(0), jnp.zeros((1, 64, 32, 3))))
  assert jax.tree_util.tree_structure(template) == jax.tree_util.tree_structure(variables)


def test_missing_unexpected_and_misshaped_keys_are_named(small_state_dict):
  state = dict(small_state_dict)
  del state["layer3.0.bn2.running_var"]
  state["layer5.0.conv1.weight"] = np.zeros((4, 4, 1, 1), np.float32)
  state["layer2.0.conv2.weight"] = np.zeros((32, 32, 1, 3), np.float32)
  with pytest.raises(ReidError) as error:
    torchvision_import.import_torchvision_resnet(state, resnet.SmallResNet(), source="weights.pth")
  message = str(error.value)
  assert "weights.pth" in message
  assert "missing keys ['layer3.0.bn2.running_var']" in message
  assert "unexpected keys ['layer5.0.conv1.weight']" in message
  assert "layer2.0.conv2.weight: file (32, 32, 1, 3), model (32, 32, 3, 3)" in message


def test_resnet50_file_errors_name_the_file(small_state_dict, tmp_path):
  # A small trunk's file is not a ResNet-50: every layer's shapes and the layer1.1 / layer3.5 keys differ.
  path = tmp_path / "resnet50.safetensors"
  safetensors.numpy.save_file(small_state_dict, str(path))
  with pytest.raises(ReidError, match=r"resnet50\.safetensors.*missing keys \[.*'layer3\.5\.conv1\.weight'"):
    torchvision_import.load_torchvision_resnet50(path)
  with pytest.raises(ReidError, match=r"not found at .*nothing\.pth.*put"):
    torchvision_import.load_torchvision_resnet50(tmp_path / "nothing.pth")
  with pytest.raises(ReidError, match=r"no ImageNet ResNet-50 weights in .*pretrained"):
    torchvision_import.find_pretrained_resnet50(tmp_path)
  (tmp_path / "pretrained").mkdir()
  path.rename(tmp_path / "pretrained" / "resnet50.safetensors")
  assert torchvision_import.find_pretrained_resnet50(tmp_path) == tmp_path / "pretrained" / "resnet50.safetensors"
  bad = tmp_path / "corrupt.safetensors"
  bad.write_bytes(b"not a safetensors file")
  with pytest.raises(ReidError, match="corrupt.safetensors"):
    torchvision_import.load_torchvision_resnet50(bad)


def test_merge_backbone_into_reidnet(small_state_dict):
  imported = torchvision_import.import_torchvision_resnet(small_state_dict, resnet.SmallResNet())
  net = heads.ReIDNet(num_classes=7, arch="resnet_small")
  x = jnp.zeros((1, 64, 32, 3))
  variables = jax.jit(net.init)(jax.random.key(0), x)
  merged = torchvision_import.merge_backbone(variables, imported)
  jax.tree_util.tree_map(np.testing.assert_array_equal, merged["params"]["backbone"], imported["params"])
  jax.tree_util.tree_map(np.testing.assert_array_equal, merged["batch_stats"]["backbone"],
                         imported["batch_stats"])
  for name in ("feat", "triplet", "classifier"):
    jax.tree_util.tree_map(np.testing.assert_array_equal, merged["params"][name], variables["params"][name])
  assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(variables)
  # The original tree is unchanged.
  assert not np.array_equal(variables["params"]["backbone"]["conv1"]["kernel"],
                            imported["params"]["conv1"]["kernel"])
  # A ResNet-50 tree cannot take the small trunk.
  big = jax.eval_shape(lambda: heads.ReIDNet(num_classes=7).init(jax.random.key(0), x))
  with pytest.raises(ReidError, match=r"backbone.*conv1/kernel: imported \(7, 7, 3, 16\), model \(7, 7, 3, 64\)"):
    torchvision_import.merge_backbone(big, imported)
