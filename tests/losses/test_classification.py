"""Cross-entropy against a hand-worked case and torch.nn.functional.cross_entropy."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from reid_jax.losses import classification


def test_hand_worked_two_classes():
  # logits (0, ln 3): softmax = (1/4, 3/4); labels (1, 0) -> losses ln(4/3), ln 4.
  logits = jnp.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]])
  loss = classification.cross_entropy(logits, jnp.array([1, 0]))
  np.testing.assert_allclose(loss, (np.log(4 / 3) + np.log(4)) / 2, rtol=1e-6)
  # eps 0.2, C = 2: target (0.9, 0.1) for label 0 -> 0.9 ln 4 + 0.1 ln(4/3).
  smoothed = classification.cross_entropy(logits[:1], jnp.array([0]), label_smoothing=0.2)
  np.testing.assert_allclose(smoothed, 0.9 * np.log(4) + 0.1 * np.log(4 / 3), rtol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_matches_torch(eps):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(16, 11)).astype(np.float32) * 3
  labels = rng.integers(0, 11, size=16)
  ours = classification.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), label_smoothing=eps)
  ref = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels),
                                          label_smoothing=eps)
  np.testing.assert_allclose(ours, ref.item(), rtol=1e-5)


def test_valid_mask_ignores_padded_rows():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 5, size=6))
  valid = jnp.array([True, True, True, True, False, False])
  padded = classification.cross_entropy(logits.at[4:].set(100.0), labels, 0.1, valid=valid)
  np.testing.assert_allclose(padded, classification.cross_entropy(logits[:4], labels[:4], 0.1),
                             rtol=1e-6)
