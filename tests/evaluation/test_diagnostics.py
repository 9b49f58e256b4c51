"""Camera-gap ratio and the hand-crafted reference, on hand-worked cases."""

import numpy as np
import pytest

from reid_jax.evaluation import diagnostics, handcrafted


def test_camera_gap_ratio_hand_worked():
  # Identity 1: two images in camera 1 at distance 1, one in camera 2 at distance 3 from both
  # (an isosceles triangle): cross mean 3, same mean 1 -> 3.
  h = np.sqrt(3.0 ** 2 - 0.5 ** 2)
  features = np.array([[0, 0], [1, 0], [0.5, h], [10, 0], [12, 0], [10, 2]], float)
  pids = np.array([1, 1, 1, 2, 2, 2])
  camids = np.array([1, 1, 2, 1, 2, 1])
  # Identity 2: same-camera pair (10,0)-(10,2): 2; cross pairs (12,0)-(10,0): 2, (12,0)-(10,2):
  # sqrt(8): (2 + sqrt(8)) / 2 / 2.
  expected = (3.0 + (2 + np.sqrt(8)) / 2 / 2) / 2
  assert diagnostics.camera_gap_ratio(features, pids, camids) == pytest.approx(expected)


def test_camera_gap_ratio_ignores_junk_and_needs_pairs():
  features = np.eye(3)
  with pytest.raises(ValueError):
    diagnostics.camera_gap_ratio(features, [1, 2, -1], [1, 1, 2])


def _person(rng):
  image = np.zeros((128, 64, 3), np.uint8)
  image[:] = (90, 110, 100)
  image[20:64, 16:48] = rng.integers(40, 220, 3)
  image[64:120, 18:46] = rng.integers(40, 220, 3)
  return image


def test_gray_world_removes_a_camera_colour_gain():
  rng = np.random.default_rng(0)
  image = _person(rng)
  cast = np.clip(image * np.array([1.15, 1.0, 0.85]), 0, 255).astype(np.uint8)
  other = _person(rng)
  d = handcrafted.describe([image, cast, other])
  assert d.shape == (3, 6 * 30)
  same = np.linalg.norm(d[0] - d[1])
  different = np.linalg.norm(d[0] - d[2])
  assert same < 0.2 * different
