"""Import torchvision's ImageNet ResNet-50 weights into the `resnet.ResNet` trunk (docs/hhl.md §3, §3.1).

Reads a local state dict, `.safetensors` (no torch needed) or `.pth` (needs torch); never downloads.
docs/hhl.md §3 asks for torchvision's original "V1" weights (`resnet50-0676ba61.pth`, the re-saved
`resnet50-19c8e357.pth` of torchvision 0.2), not the later V2 recipe.

Name mapping (torchvision key -> variables path, `resnet.py` mirrors torchvision's module tree):

  conv1.weight                       params/conv1/kernel
  bn1.{weight,bias}                  params/bn1/{scale,bias}
  bn1.{running_mean,running_var}     batch_stats/bn1/{mean,var}
  layerS.I.convK.weight              params/layerS/I/convK/kernel            (K = 1, 2, 3)
  layerS.I.bnK.*                     params|batch_stats/layerS/I/bnK/*
  layerS.0.downsample.0.weight       params/layerS/0/downsample_conv/kernel
  layerS.0.downsample.1.*            params|batch_stats/layerS/0/downsample_bn/*
  *.num_batches_tracked, fc.*        read and ignored (HHL never uses fc; old files lack the counters)

Conv weights are transposed OIHW -> HWIO. Every other key must be used and every shape must match,
else a ReidError lists the missing and unexpected keys and the shape mismatches.
"""

from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np

from reid_jax.errors import ReidError
from reid_jax.models import resnet

# Accepted file names under `<data_dir>/pretrained/`, first found wins (`find_pretrained_resnet50`).
PRETRAINED_FILENAMES = ("resnet50.safetensors", "resnet50-0676ba61.pth", "resnet50-19c8e357.pth")

_BN_PARAMS = {"scale": "weight", "bias": "bias"}
_BN_STATS = {"mean": "running_mean", "var": "running_var"}
_IGNORED_KEYS = ("fc.weight", "fc.bias")


def pretrained_dir(data_dir) -> Path:
  """Where the ImageNet checkpoint is looked for: `<data_dir>/pretrained`."""
  return Path(data_dir) / "pretrained"


def find_pretrained_resnet50(data_dir) -> Path:
  """The first of `PRETRAINED_FILENAMES` present in `pretrained_dir(data_dir)`, else a ReidError."""
  folder = pretrained_dir(data_dir)
  for filename in PRETRAINED_FILENAMES:
    if (folder / filename).is_file():
      return folder / filename
  raise ReidError(
      f"no ImageNet ResNet-50 weights in {folder}: put torchvision's V1 ResNet-50 state dict there as "
      f"one of {', '.join(PRETRAINED_FILENAMES)} (reid_jax never downloads weights; docs/hhl.md §3)")


def _torch_module_name(module_path) -> str:
  """('layer1', '0', 'downsample_bn') -> 'layer1.0.downsample.1'."""
  names = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}
  return ".".join(names.get(name, name) for name in module_path)


def torchvision_key(collection: str, path) -> str:
  """The torchvision state-dict key of one trunk leaf, e.g. ('params', ('conv1', 'kernel')) -> 'conv1.weight'."""
  *module_path, leaf = path
  module = _torch_module_name(module_path)
  if collection == "params" and leaf == "kernel":
    return f"{module}.weight"
  if collection == "params" and leaf in _BN_PARAMS:
    return f"{module}.{_BN_PARAMS[leaf]}"
  if collection == "batch_stats" and leaf in _BN_STATS:
    return f"{module}.{_BN_STATS[leaf]}"
  raise ValueError(f"no torchvision name for {collection}/{'/'.join(path)}")


def _torch_shape(path, shape) -> tuple[int, ...]:
  return tuple(shape[i] for i in (3, 2, 0, 1)) if path[-1] == "kernel" else tuple(shape)


def _leaves(tree):
  """{path tuple: leaf} of a nested dict."""
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))


def read_state_dict(path) -> dict[str, np.ndarray]:
  """A torchvision state dict from `.safetensors` or `.pth` as float32 numpy arrays."""
  path = Path(path)
  if not path.is_file():
    raise ReidError(
        f"ImageNet ResNet-50 weights not found at {path}: put torchvision's V1 ResNet-50 state dict "
        f"there (torchvision's resnet50-0676ba61.pth, or the same tensors saved with safetensors); "
        f"reid_jax never downloads weights (docs/hhl.md §3)")
  if path.suffix == ".safetensors":
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    try:
      tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own SafetensorError / OSError on corrupt files
      raise ReidError(f"cannot read {path} as safetensors: {e}") from e
  elif path.suffix in (".pth", ".pt"):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ReidError(f"reading {path} needs torch; without it, save the state dict as .safetensors") from e
    try:
      loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors of a corrupt or non-state-dict file
      raise ReidError(f"cannot read {path} as a PyTorch state dict: {e}") from e
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
      raise ReidError(f"{path} is not a flat state dict of tensors (a torchvision checkpoint is)")
    tensors = {k: v.detach().float().numpy() for k, v in loaded.items()}
  else:
    raise ReidError(f"{path}: expected a .safetensors or .pth file")
  return {k: np.asarray(v, np.float32) for k, v in tensors.items()}


def import_torchvision_resnet(state_dict, module: resnet.ResNet | None = None, source: str = "state dict"):
  """Map a torchvision state dict onto `module`'s variables (default `ResNet50()`), strictly.

  Returns `{'params': ..., 'batch_stats': ...}` for the trunk, float32. `source` names the file in errors.
  """
  module = resnet.ResNet50() if module is None else module
  template = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32)))
  variables, used, missing, mismatched = {}, set(), [], []
  for collection in ("params", "batch_stats"):
    flat = {}
    for path, leaf in _leaves(template[collection]).items():
      key = torchvision_key(collection, path)
      expected = _torch_shape(path, leaf.shape)
      if key not in state_dict:
        missing.append(key)
        continue
      used.add(key)
      value = np.asarray(state_dict[key], np.float32)
      if value.shape != expected:
        mismatched.append(f"{key}: file {tuple(value.shape)}, model {expected}")
        continue
      flat[path] = jnp.asarray(value.transpose(2, 3, 1, 0) if path[-1] == "kernel" else value)
    variables[collection] = flax.traverse_util.unflatten_dict(flat)
  unexpected = sorted(k for k in state_dict if k not in used and k not in _IGNORED_KEYS
                      and not k.endswith(".num_batches_tracked"))
  if missing or unexpected or mismatched:
    problems = []
    if missing:
      problems.append(f"missing keys {sorted(missing)}")
    if unexpected:
      problems.append(f"unexpected keys {unexpected}")
    if mismatched:
      problems.append(f"shape mismatches [{'; '.join(mismatched)}]")
    raise ReidError(f"{source} is not a torchvision ResNet-50 state dict matching the model: "
                    + "; ".join(problems))
  return variables


def load_torchvision_resnet50(path) -> dict:
  """`{'params', 'batch_stats'}` of `resnet.ResNet50` from a local torchvision ResNet-50 checkpoint.

  The key set does not depend on `last_stride`, so the result serves ResNet50(last_stride=1) too.
  """
  return import_torchvision_resnet(read_state_dict(path), resnet.ResNet50(), source=str(path))


def merge_backbone(variables, backbone_variables, name: str = "backbone"):
  """Copy imported trunk variables into a full model's tree (e.g. `heads.ReIDNet`'s `backbone`).

  Checks that both hold the same leaves with the same shapes (a ResNet-50 checkpoint cannot go into
  'resnet_small'); returns a new tree, `variables` is left unchanged.
  """
  variables = flax.core.unfreeze(variables)
  merged = dict(variables)
  for collection in ("params", "batch_stats"):
    if collection not in variables or name not in variables[collection]:
      raise ReidError(f"the model's variables have no {collection}/{name} to receive the imported trunk")
    target = _leaves(variables[collection][name])
    source = _leaves(backbone_variables[collection])
    differences = [f"{'/'.join(p)}: imported {tuple(source[p].shape)}, model {tuple(target[p].shape)}"
                   for p in sorted(set(target) & set(source)) if source[p].shape != target[p].shape]
    differences += [f"{'/'.join(p)} missing from the imported trunk" for p in sorted(set(target) - set(source))]
    differences += [f"{'/'.join(p)} not in the model" for p in sorted(set(source) - set(target))]
    if differences:
      raise ReidError(f"imported trunk does not fit the model's {collection}/{name} (is model.arch "
                      f"'resnet50'?): " + "; ".join(differences[:20])
                      + (f"; ... {len(differences) - 20} more" if len(differences) > 20 else ""))
    merged[collection] = {**variables[collection],
                          name: jax.tree_util.tree_map(jnp.asarray, backbone_variables[collection])}
  return merged


def export_torchvision_resnet(variables) -> dict[str, np.ndarray]:
  """The inverse of `import_torchvision_resnet`: a trunk's `{'params', 'batch_stats'}` as a
  torchvision state dict (kernels HWIO -> OIHW), e.g. to save a pretrained trunk."""
  state_dict = {}
  for collection in ("params", "batch_stats"):
    for path, leaf in _leaves(variables[collection]).items():
      value = np.asarray(leaf, np.float32)
      state_dict[torchvision_key(collection, path)] = np.ascontiguousarray(
          value.transpose(3, 2, 0, 1) if path[-1] == "kernel" else value)
  return state_dict


def load_trunk(path, arch: str) -> dict:
  """`{'params', 'batch_stats'}` of the trunk `arch` from a torchvision-layout file, strictly
  (every key used, every shape checked): ImageNet weights or a synthetic pretrained trunk."""
  return import_torchvision_resnet(read_state_dict(path), resnet.build_backbone(arch),
                                   source=str(path))
