"""Feature extraction: L2-normalised pool5 in eval mode, padding dropped, flip-average."""

import jax
import jax.numpy as jnp
import numpy as np

from reid_jax.evaluation import features
from reid_jax.models import heads


def _model_and_variables():
  model = heads.ReIDNet(num_classes=4, arch="resnet_small", num_features=8, triplet_features=0)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 16, 3)))
  # non-trivial running statistics (one train-mode pass), so eval mode differs from train mode
  images = np.random.default_rng(9).normal(size=(4, 32, 16, 3)).astype(np.float32)
  _, mutated = model.apply(variables, images, train=True, mutable=["batch_stats"],
                           rngs={"dropout": jax.random.PRNGKey(1)})
  variables = {"params": variables["params"], "batch_stats": mutated["batch_stats"]}
  return model, variables


def _batches(images, batch_size):
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    mask = np.ones(batch_size, bool)
    mask[len(chunk):] = False
    padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk),) + chunk.shape[1:],
                                             chunk.dtype)])
    yield {"image": padded, "mask": mask}


def test_extract_matches_per_image_pool5_and_drops_padding():
  model, variables = _model_and_variables()
  images = np.random.default_rng(0).normal(size=(5, 32, 16, 3)).astype(np.float32)
  out = features.extract(features.pool5_descriptor(model), variables, _batches(images, 2))
  assert out.shape == (5, 64 * 8)
  np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
  for i in range(5):
    pool5 = model.apply(variables, images[i:i + 1], train=False)["pool5"][0]
    np.testing.assert_allclose(out[i], pool5 / np.linalg.norm(pool5), atol=2e-5)


def test_flip_average_is_normalised_sum_of_both_views():
  model, variables = _model_and_variables()
  images = np.random.default_rng(1).normal(size=(3, 32, 16, 3)).astype(np.float32)
  out = features.extract(features.pool5_descriptor(model), variables, _batches(images, 3),
                         flip=True)
  a = np.asarray(model.apply(variables, images, train=False)["pool5"])
  b = np.asarray(model.apply(variables, images[:, :, ::-1], train=False)["pool5"])
  expected = (a + b) / np.linalg.norm(a + b, axis=1, keepdims=True)
  np.testing.assert_allclose(out, expected, atol=2e-5)
  plain = features.extract(features.pool5_descriptor(model), variables, _batches(images, 3))
  assert not np.allclose(out, plain, atol=1e-4)
