"""ARN model (docs/arn_triplet_eval.md §1.2): shapes and parameter counts of the paper-sized model
(abstractly), the module tree of the ablations, the geometry, E_I's frozen BN, dropout, the
test-time code, the decoder's input, initialisations, importing a trunk; the draft-code variant
(docs/arn_triplet_eval.md §1.3)."""

import functools
from typing import Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reid_jax.errors import ReidError
from reid_jax.models import arn, resnet, torchvision_import

MODULES = {"backbone", "E_C", "E_S", "E_T", "D_C", "C_S"}
SMALL = dict(arch="resnet_small", map_size=(2, 1), width=32)  # 64x32 input, 512-channel X
SMALL_CLASSES = 10


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def _abstract_variables(model, shape):
  images = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, method="initialize"), images)


def _flat(tree):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))


@functools.lru_cache(maxsize=None)
def _full_size(height, width, map_size):
  """The paper-sized model and its abstract variables (shared by two tests: tracing ResNet-50 takes
  seconds)."""
  model = arn.ARN(num_classes=751, map_size=map_size)
  return model, _abstract_variables(model, (2, height, width, 3))


@pytest.mark.parametrize("height, width, map_size", [(224, 224, (7, 7)),   # `paper`
                                                     (256, 128, (8, 4))])  # `reid_256x128`
def test_output_shapes_of_the_full_size_model(height, width, map_size):
  model, variables = _full_size(height, width, map_size)
  assert set(variables["params"]) == MODULES

  def forward(v, x):
    train = lambda d: model.apply(v, x, d, train=True, mutable=["batch_stats"],
                                  rngs={"dropout": jax.random.key(1)})[0]
    return train("source"), train("target"), model.apply(v, x, method=arn.ARN.shared_code)

  source, target, code = jax.eval_shape(
      forward, variables, jax.ShapeDtypeStruct((2, height, width, 3), jnp.float32))
  x_shape, e_shape = ((2, *map_size, 2048), jnp.float32), ((2, 2048), jnp.float32)
  for domain, out in [("source", source), ("target", target)]:
    shapes = {k: None if v is None else (v.shape, v.dtype) for k, v in out.items()}
    assert shapes == {"X": x_shape, "X_hat": x_shape, "e_c": e_shape, "e_p": e_shape,
                      "logits": ((2, 751), jnp.float32) if domain == "source" else None}
  assert (code.shape, code.dtype) == e_shape


def test_paper_parameter_count_matches_the_layer_sizes():
  params = _full_size(224, 224, (7, 7))[1]["params"]
  c, w, k = 2048, 2048, 7 * 7  # X's channels, code width, the full-map kernel (§1.2)
  bn = 2 * w  # scale + bias
  encoder = (k * c * w + w) + bn + (w * w + w) + bn + (w * w + w) + bn  # conv6, conv7, conv8 (+BN)
  decoder = (w * w + w) + bn + (w * w + w) + bn + (k * w * c + c)  # ConvT 1x1, 1x1, 7x7 (no BN)
  classifier = w * 751 + 751
  counts = {name: _count(tree) for name, tree in params.items()}
  assert counts == {"backbone": 23_508_032,  # ResNet-50 without fc (tests/models/test_resnet.py)
                    "E_C": encoder, "E_S": encoder, "E_T": encoder, "D_C": decoder,
                    "C_S": classifier}
  assert encoder == pytest.approx(213.9e6, rel=1e-3) and decoder == pytest.approx(214e6, rel=1e-3)
  assert _count(params) == pytest.approx(0.88e9, rel=0.01)  # §1.2 "Size"


def test_ablations_drop_exactly_their_modules():
  shape = (2, 64, 32, 3)
  full = _flat(_abstract_variables(arn.ARN(num_classes=SMALL_CLASSES, **SMALL), shape))
  for kwargs, dropped in [({"private_encoders": False}, {"E_S", "E_T"}),
                          ({"num_classes": 0}, {"C_S"}),
                          ({"num_classes": 0, "private_encoders": False}, {"E_S", "E_T", "C_S"})]:
    model = arn.ARN(**{"num_classes": SMALL_CLASSES, **SMALL, **kwargs})
    variables = _flat(_abstract_variables(model, shape))
    kept = {p: v for p, v in full.items() if p[1] not in dropped}
    assert jax.tree_util.tree_map(lambda a: a.shape, variables) == \
        jax.tree_util.tree_map(lambda a: a.shape, kept)
    assert {p[1] for p in full} - {p[1] for p in variables} == dropped
    out = jax.eval_shape(lambda v, x, m=model: m.apply(v, x, "source"),
                         flax.traverse_util.unflatten_dict(variables),
                         jax.ShapeDtypeStruct(shape, jnp.float32))
    assert (out["e_p"] is None) == ("E_S" in dropped)
    assert (out["logits"] is None) == ("C_S" in dropped)
    assert out["X_hat"].shape == out["X"].shape == (2, 2, 1, 512)


@pytest.mark.parametrize("last_stride, stride", [(2, 32), (1, 16)])
def test_map_size_for_matches_the_trunk(last_stride, stride):
  # resnet_small has ResNet-50's strides and paddings (resnet.py), and traces 10x faster.
  trunk = resnet.build_backbone("resnet_small", last_stride=last_stride)
  variables = jax.eval_shape(lambda: trunk.init(jax.random.key(0), jnp.zeros((1, 64, 32, 3))))
  for height, width in [(224, 224), (256, 128), (64, 32), (100, 50), (250, 97)]:
    x = jax.eval_shape(trunk.apply, variables, jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32))
    assert arn.map_size_for(height, width, stride) == x.shape[1:3]


def test_a_map_size_that_does_not_fit_the_input_is_refused():
  model = arn.ARN(num_classes=SMALL_CLASSES, **SMALL)  # (2, 1) for 64x32
  with pytest.raises(ReidError, match=r"map_size=\(2, 2\)"):  # names the map_size to set
    _abstract_variables(model, (1, 64, 64, 3))
  variables = _abstract_variables(model, (1, 64, 32, 3))
  with pytest.raises(ReidError, match="domain"):
    jax.eval_shape(lambda v, x: model.apply(v, x, "test"), variables,
                   jax.ShapeDtypeStruct((1, 64, 32, 3), jnp.float32))


def test_dtype_keeps_parameters_statistics_and_outputs_float32():
  model = arn.ARN(num_classes=SMALL_CLASSES, dtype=jnp.bfloat16, **SMALL)
  variables = _abstract_variables(model, (2, 64, 32, 3))
  assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
  out = jax.eval_shape(lambda v, x: model.apply(v, x, "source"), variables,
                       jax.ShapeDtypeStruct((2, 64, 32, 3), jnp.float32))
  assert {k: v.dtype for k, v in out.items()} == {k: jnp.float32 for k in out}


# Real computations on the small model.


class Small(NamedTuple):
  model: arn.ARN
  variables: dict
  trunk_variables: dict  # another resnet_small trunk's variables, for merge_backbone
  images: jax.Array
  train: Callable  # (variables, domain, key) -> (outputs, {'batch_stats'}), jitted once
  eval: Callable  # (variables, domain) -> outputs
  trunk: Callable  # (trunk variables) -> the trunk's eval-mode map


def _filled(abstract, seed=0):
  """Real variables for an abstract tree without a (slow to compile) init: He-scaled kernels,
  BN scale 1, other params and running means 0, running variances 1 plus noise, so that a copied
  trunk is told apart from the model's own."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      std = np.sqrt(2 / np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.standard_normal(leaf.shape) * std, jnp.float32)
    value = np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0)
    if name == "var":
      value += 0.1 * rng.random(leaf.shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, abstract)


@pytest.fixture(scope="module")
def small():
  model = arn.ARN(num_classes=SMALL_CLASSES, **SMALL)
  trunk = resnet.build_backbone("resnet_small")
  images = jnp.asarray(np.random.default_rng(0).standard_normal((8, 64, 32, 3)), jnp.float32)
  # RBG keys: the same initialisers, half threefry's compile time for the trunk's init.
  init = jax.jit(lambda rng, x: model.init(rng, x, method=arn.ARN.initialize))
  variables = init(jax.random.key(0, impl="rbg"), images)
  trunk_variables = _filled(jax.eval_shape(trunk.init, jax.random.key(7), images))
  train = jax.jit(lambda v, d, k: model.apply(v, images, d, train=True, mutable=["batch_stats"],
                                              rngs={"dropout": k}), static_argnums=1)
  evaluate = jax.jit(lambda v, d: model.apply(v, images, d), static_argnums=1)
  return Small(model, variables, trunk_variables, images, train, evaluate,
               jax.jit(lambda v: trunk.apply(v, images)))


def test_initialisations(small):
  params, stats = _flat(small.variables["params"]), _flat(small.variables["batch_stats"])
  for path, leaf in params.items():  # §1.4 item 8: zero biases, BN gamma 1 and beta 0
    if path[0] != "backbone" and path[-1] in ("bias", "scale"):
      np.testing.assert_array_equal(leaf, 0.0 if path[-1] == "bias" else 1.0, err_msg=str(path))
  for path, leaf in stats.items():
    if path[0] != "backbone":
      np.testing.assert_array_equal(leaf, 0.0 if path[-1] == "mean" else 1.0, err_msg=str(path))
  # He-normal (§1.4 item 8), std sqrt(2 / (kh * kw * in)), untruncated.
  for path, fan_in in [(("E_C", "conv6", "kernel"), 2 * 1 * 512),  # [2, 1, 512, 32]
                       (("E_T", "conv7", "kernel"), 32),
                       (("D_C", "convt3", "kernel"), 2 * 1 * 32)]:  # [2, 1, 32, 512]
    kernel = np.asarray(params[path])
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / fan_in), rtol=0.05, err_msg=str(path))
    if kernel.size > 10_000:  # the max of 32,768 normals is ~4.1 std; he_normal would cut at 2
      assert np.abs(kernel).max() > 3.5 * kernel.std(), path
  np.testing.assert_allclose(np.asarray(params[("C_S", "fc", "kernel")]).std(), 1e-3, rtol=0.05)
  # Three encoders of one architecture, each with its own weights.
  kernels = [np.asarray(params[(name, "conv6", "kernel")]) for name in ("E_C", "E_S", "E_T")]
  assert not any(np.allclose(kernels[i], kernels[j]) for i, j in [(0, 1), (0, 2), (1, 2)])


def test_trunk_statistics_stay_frozen_while_the_new_modules_update(small):
  x_eval = small.trunk({c: small.variables[c]["backbone"] for c in ("params", "batch_stats")})
  for domain, other in [("source", "E_T"), ("target", "E_S")]:
    out, updates = small.train(small.variables, domain, jax.random.key(1))
    old, new = _flat(small.variables["batch_stats"]), _flat(updates["batch_stats"])
    assert set(old) == set(new)
    for path in old:
      unchanged = np.array_equal(np.asarray(old[path]), np.asarray(new[path]))
      if path[0] in ("backbone", other):  # §1.2: E_I's BN frozen; the other domain's encoder unused
        assert unchanged, path
      else:  # E_C, this domain's private encoder, D_C
        assert not unchanged, path
    # E_I in eval mode whatever `train` says: X is the trunk's eval-mode map.
    np.testing.assert_allclose(out["X"], x_eval, rtol=1e-5, atol=1e-6)


def test_dropout_only_in_train_mode(small):
  e_c = lambda key: np.asarray(small.train(small.variables, "source", key)[0]["e_c"])
  a, b, a_again = e_c(jax.random.key(1)), e_c(jax.random.key(2)), e_c(jax.random.key(1))
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(a, a_again)
  # Eval mode needs no dropout rng and ignores one.
  with_rng = jax.jit(lambda v, k: small.model.apply(v, small.images, "source", rngs={"dropout": k}))
  np.testing.assert_array_equal(with_rng(small.variables, jax.random.key(1))["e_c"],
                                small.eval(small.variables, "source")["e_c"])


def test_shared_code_is_the_eval_mode_e_c(small):
  out = small.eval(small.variables, "target")
  code = jax.jit(lambda v: small.model.apply(v, small.images, method=arn.ARN.shared_code))(
      small.variables)
  np.testing.assert_allclose(code, out["e_c"], rtol=1e-6, atol=1e-7)
  assert code.shape == (8, 32) and code.dtype == jnp.float32


def test_decoder_reconstructs_the_sum_of_the_codes(small):
  decode = jax.jit(lambda v, e: small.model.apply(v, e, method=lambda m, e: m.D_C(e)))
  classify = jax.jit(lambda v, e: small.model.apply(v, e, method=lambda m, e: m.C_S(e)))
  for domain in ("source", "target"):
    out = small.eval(small.variables, domain)
    np.testing.assert_allclose(out["X_hat"], decode(small.variables, out["e_c"] + out["e_p"]),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(out["X_hat"], decode(small.variables, out["e_c"]))
    # §1.2: conv8's BN + ReLU and D_C's final ReLU make codes and X_hat non-negative like X.
    assert min(float(out[k].min()) for k in ("e_c", "e_p", "X_hat")) >= 0.0
    if domain == "source":  # C_S reads e_c; no classifier on the target (§1.1)
      np.testing.assert_allclose(out["logits"], classify(small.variables, out["e_c"]),
                                 rtol=1e-5, atol=1e-7)
    else:
      assert out["logits"] is None
  # The private encoder is the domain's: E_S for the source, E_T for the target.
  source, target = small.eval(small.variables, "source"), small.eval(small.variables, "target")
  np.testing.assert_array_equal(source["e_c"], target["e_c"])
  assert not np.allclose(source["e_p"], target["e_p"])
  encode = jax.jit(lambda v, x: small.model.apply(v, x, method=lambda m, x: m.E_T(x)))
  np.testing.assert_allclose(target["e_p"], encode(small.variables, target["X"]), rtol=1e-6, atol=1e-7)


def test_merge_backbone_fills_e_i_with_a_trunk(small):
  merged = torchvision_import.merge_backbone(small.variables, small.trunk_variables)
  for c in ("params", "batch_stats"):
    old, imported = _flat(small.variables[c]), _flat(small.trunk_variables[c])
    new = _flat(merged[c])
    assert set(new) == set(old)
    for path, leaf in new.items():
      expected = imported[path[1:]] if path[0] == "backbone" else old[path]
      np.testing.assert_array_equal(leaf, expected, err_msg=str(path))
  np.testing.assert_allclose(small.eval(merged, "source")["X"], small.trunk(small.trunk_variables),
                             rtol=1e-5, atol=1e-6)
  # A trunk of another width (as a ResNet-50 checkpoint into resnet_small) is refused.
  narrow = resnet.ResNet(stage_sizes=(1, 1, 1, 1), base_width=8)
  with pytest.raises(ReidError, match="does not fit"):
    torchvision_import.merge_backbone(
        small.variables, jax.eval_shape(lambda: narrow.init(jax.random.key(0), small.images)))


# The draft-code variant (§1.3).


def test_draft_shapes_and_parameter_counts():
  model = arn.ARNDraft(num_classes=751)
  variables = _abstract_variables(model, (2, 256, 128, 3))
  params = variables["params"]
  assert set(params) == MODULES
  out = jax.eval_shape(lambda v, x: model.apply(v, x, "source", train=True, mutable=["batch_stats"],
                                                rngs={"dropout": jax.random.key(1)})[0],
                       variables, jax.ShapeDtypeStruct((2, 256, 128, 3), jnp.float32))
  assert {k: v.shape for k, v in out.items()} == {
      "X": (2, 256, 128, 3), "X_hat": (2, 256, 128, 3), "e_c": (2, 2048), "e_p": (2, 2048),
      "logits": (2, 751)}
  # Each encoder is ResNet-50's layer4 (§1.3): three bottlenecks of width 512, the first from
  # layer3's 1024 channels with a downsample; E_I (stem..layer3) + one of them is ResNet-50.
  bn = lambda c: 2 * c
  first = 1024 * 512 + 9 * 512 * 512 + 512 * 2048 + 1024 * 2048 + 2 * bn(512) + 2 * bn(2048)
  other = 2048 * 512 + 9 * 512 * 512 + 512 * 2048 + 2 * bn(512) + bn(2048)
  assert _count(params["E_C"]) == _count(params["E_S"]) == _count(params["E_T"]) == first + 2 * other
  assert _count(params["backbone"]) + _count(params["E_C"]) == 23_508_032
  decoder, channels = 0, (2048, 1024, 512, 256, 64, 3)
  for c_in, c_out in zip(channels, channels[1:]):  # per block: 3x3/2 ConvT then two 3x3/1, each + BN
    decoder += (9 * c_in * c_out + c_out) + 2 * (9 * c_out * c_out + c_out) + 3 * 2 * c_out
  assert _count(params["D_C"]) == decoder
  assert _count(params["C_S"]) == 2048 * 751 + 751


def test_draft_loads_layer4_into_the_encoders_and_decodes_images(small):
  images = small.images[:2]
  # A narrow decoder: XLA:CPU takes seconds to compile each 1024-channel 3x3 ConvT.
  model = arn.ARNDraft(num_classes=SMALL_CLASSES, arch="resnet_small",
                       decoder_channels=(32, 16, 16, 8, 3))
  variables = arn.merge_draft_trunk(_filled(_abstract_variables(model, images.shape)),
                                    small.trunk_variables)
  for c in ("params", "batch_stats"):
    trunk, merged = _flat(small.trunk_variables[c]), _flat(variables[c])
    for path, leaf in trunk.items():
      targets = [("E_C",), ("E_S",), ("E_T",)] if path[0] == "layer4" else [("backbone", path[0])]
      for target in targets:
        np.testing.assert_array_equal(merged[(*target, *path[1:])], leaf, err_msg=str(path))
  out, code = jax.jit(lambda v: (model.apply(v, images, "target"),
                                 model.apply(v, images, method=arn.ARNDraft.shared_code)))(variables)
  np.testing.assert_array_equal(out["X"], images)  # the reconstruction target is the image
  assert out["X_hat"].shape == images.shape and float(jnp.abs(out["X_hat"]).max()) <= 1.0  # tanh
  assert out["logits"] is None and out["e_c"].shape == out["e_p"].shape == (2, 512)
  np.testing.assert_allclose(code, out["e_c"], rtol=1e-6, atol=1e-7)
  without = arn.ARNDraft(num_classes=0, arch="resnet_small", private_encoders=False)
  abstract = _abstract_variables(without, images.shape)
  assert set(abstract["params"]) == {"backbone", "E_C", "D_C"}
  arn.merge_draft_trunk(abstract, small.trunk_variables)  # E_S, E_T absent: only E_C receives layer4
  with pytest.raises(ReidError, match="divisible by 32"):
    _abstract_variables(model, (1, 72, 32, 3))
