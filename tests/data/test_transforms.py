"""Augmentation and test transforms (docs/hhl.md §7, §10.6)."""

import io
import types

import numpy as np
import pytest
import torch
from PIL import Image

from reid_jax.data import transforms
from reid_jax.errors import ReidError


def _random_image(h=128, w=64, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg_bytes(image, quality=95):
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def test_decode_roundtrip_and_corrupt_names_file():
  image = np.zeros((40, 20, 3), np.uint8)
  image[:, :10] = (200, 30, 30)
  decoded = transforms.decode(_jpeg_bytes(image))
  assert decoded.shape == (40, 20, 3) and decoded.dtype == np.uint8
  assert np.abs(decoded.astype(int) - image).mean() < 3
  with pytest.raises(ReidError, match="0001_c1s1_000001_00.jpg"):
    transforms.decode(b"\xff\xd8\xff\xe0 not a jpeg", name="0001_c1s1_000001_00.jpg")


def test_decode_converts_grayscale_to_rgb():
  buf = io.BytesIO()
  Image.fromarray(np.full((8, 4), 77, np.uint8), mode="L").save(buf, format="PNG")
  decoded = transforms.decode(buf.getvalue())
  assert decoded.shape == (8, 4, 3) and (decoded == 77).all()


@pytest.mark.parametrize("shape", [(128, 64), (300, 110)])
def test_bilinear_resize_matches_torch_antialias(shape):
  # PIL's bilinear antialiases when downscaling (docs/hhl.md §7); torch's antialiased interpolate is an
  # independent implementation of the same filter.
  image = _random_image(*shape, seed=3)
  ours = transforms.resize(image, 64, 32, "bilinear").astype(np.float32)
  x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
  ref = torch.nn.functional.interpolate(x, size=(64, 32), mode="bilinear", antialias=True,
                                        align_corners=False)[0].permute(1, 2, 0).numpy()
  assert np.abs(ours - ref).max() <= 1.5


def test_rect_crop_box_area_and_aspect_statistics():
  rng = np.random.default_rng(0)
  H, W = 256, 128
  boxes = []
  attempts_used_fallback = 0
  for _ in range(4000):
    box = transforms.rect_crop_box(H, W, rng, attempts=1)
    if box is None:
      attempts_used_fallback += 1
      continue
    y0, x0, h, w = box
    assert 0 <= y0 and y0 + h <= H and 0 <= x0 and x0 + w <= W
    boxes.append((h, w))
  hw = np.array(boxes, float)
  area = hw[:, 0] * hw[:, 1] / (H * W)
  aspect = hw[:, 0] / hw[:, 1]
  # Rounding h and w moves area/aspect by at most a few percent at this size.
  assert area.min() > 0.62 and area.max() <= 1.0
  assert aspect.min() > 1.95 and aspect.max() < 3.05
  # A fit needs a·r <= 2A (height bound), so large areas come with small aspects.
  assert (area * aspect).max() <= 2.0 + 0.05
  # One attempt succeeds with probability ≈ 0.47 on an aspect-2 image (docs/hhl.md §7).
  success = len(boxes) / 4000
  assert 0.42 < success < 0.52
  # Small areas admit every aspect up to 3: the accepted aspects span the range.
  assert aspect.max() > 2.9 and np.mean(aspect > 2.5) > 0.1


def test_rect_crop_fallback_resizes_whole_image():
  # A 10x100 image can never hold an aspect >= 2 crop of >= 64 % area.
  image = _random_image(10, 100)
  assert transforms.rect_crop_box(10, 100, np.random.default_rng(0)) is None
  out = transforms.random_sized_rect_crop(image, np.random.default_rng(0), 32, 16)
  np.testing.assert_array_equal(out, transforms.resize(image, 32, 16, "bilinear"))


def test_rect_crop_content_comes_from_the_box():
  # Pixel value = column index, so the output's columns span the crop's x-range.
  H, W = 200, 100
  image = np.broadcast_to(np.arange(W, dtype=np.uint8)[None, :, None], (H, W, 3)).copy()
  for seed in range(20):
    box = transforms.rect_crop_box(H, W, np.random.default_rng(seed))
    out = transforms.random_sized_rect_crop(image, np.random.default_rng(seed), 50, 25)
    y0, x0, h, w = box
    assert out.shape == (50, 25, 3)
    assert x0 <= out.min() and out.max() <= x0 + w - 1


def test_random_crop_window():
  image = _random_image(288, 144)
  seen = set()
  for seed in range(50):
    out = transforms.random_crop(image, np.random.default_rng(seed), 256, 128)
    assert out.shape == (256, 128, 3)
    # Locate the window: it must be an exact sub-array.
    hits = [(y, x) for y in range(33) for x in range(17)
            if np.array_equal(image[y:y + 256, x:x + 128], out)]
    assert len(hits) == 1
    seen.add(hits[0])
  assert len(seen) > 30


def test_flip_is_mirror_and_fires_half_the_time():
  image = np.zeros((4, 6, 3), np.uint8)
  image[:, :2] = 255  # left third white
  flipped = transforms.horizontal_flip(image)
  assert (flipped[:, 4:] == 255).all() and (flipped[:, :4] == 0).all()
  fired = sum(transforms.horizontal_flip(image, np.random.default_rng(s))[0, 0, 0] == 0
              for s in range(2000))
  assert 900 < fired < 1100


def test_normalize_matches_formula_and_bounds():
  image = np.array([[[0, 128, 255]]], np.uint8)
  out = transforms.normalize(image)
  expected = (np.array([0, 128, 255]) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  np.testing.assert_allclose(out[0, 0], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(transforms.normalize(image / np.float32(255))[0, 0], expected,
                             rtol=1e-5, atol=1e-6)
  low, high = transforms.normalized_range()
  np.testing.assert_allclose(low, [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)
  np.testing.assert_allclose(high, [0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225], rtol=1e-6)


@pytest.mark.parametrize("size", [(256, 128), (128, 64)])
def test_train_transform_shape_dtype_range(size):
  low, high = transforms.normalized_range()
  for seed, shape in enumerate([(128, 64), (300, 120), (90, 70)]):
    image = _random_image(*shape, seed=seed)
    out = transforms.train_transform(_jpeg_bytes(image), np.random.default_rng(seed), *size)
    assert out.shape == (*size, 3) and out.dtype == np.float32
    assert (out >= low - 1e-5).all() and (out <= high + 1e-5).all()
    # Saturated pixels reach the bounds exactly.
  white = np.full((128, 64, 3), 255, np.uint8)
  out = transforms.train_transform(white, np.random.default_rng(0), *size)
  np.testing.assert_allclose(out.reshape(-1, 3).min(0), high, rtol=1e-5)


def test_train_transform_is_a_function_of_the_generator():
  image = _random_image(seed=5)
  a = transforms.train_transform(image, np.random.default_rng(7))
  b = transforms.train_transform(image, np.random.default_rng(7))
  c = transforms.train_transform(image, np.random.default_rng(8))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_train_transform_flip_uses_generator():
  # Aspect-2 image, crop and resize preserve left/right: the left-white image stays white on the
  # left unless the flip fires.
  image = np.zeros((128, 64, 3), np.uint8)
  image[:, :16] = 255
  lefts = []
  for seed in range(200):
    out = transforms.train_transform(image, np.random.default_rng(seed), 64, 32)
    lefts.append(out[:, :2].mean() > out[:, -2:].mean())
  assert 70 < sum(lefts) < 130


def test_random_erasing():
  image = np.zeros((64, 32, 3), np.float32)
  assert transforms.random_erasing(image, np.random.default_rng(0), probability=0.0) is image
  areas = []
  for seed in range(300):
    out = transforms.random_erasing(image, np.random.default_rng(seed), probability=1.0)
    erased = (out != 0).all(-1)
    np.testing.assert_allclose(out[erased][0], transforms.IMAGENET_MEAN)
    ys, xs = np.nonzero(erased)
    # One axis-aligned rectangle strictly smaller than the image.
    assert erased.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
    assert np.ptp(ys) + 1 < 64 and np.ptp(xs) + 1 < 32
    areas.append(erased.mean())
  assert 0.015 < min(areas) and max(areas) < 0.23


def test_test_transform_is_bicubic_resize_then_normalize():
  image = _random_image(300, 110, seed=2)
  out = transforms.test_transform(image, 64, 32)
  resized = np.asarray(Image.fromarray(image).resize((32, 64), Image.Resampling.BICUBIC))
  np.testing.assert_allclose(out, transforms.normalize(resized), rtol=1e-6)
  assert out.shape == (64, 32, 3) and out.dtype == np.float32


def test_stargan_transforms_range_and_shape():
  image = _random_image(128, 64)
  out = transforms.stargan_train_transform(image, np.random.default_rng(0), 256, 128)
  assert out.shape == (256, 128, 3) and out.dtype == np.float32
  assert out.min() >= -1 and out.max() <= 1
  gen = transforms.stargan_test_transform(image, 256, 128)
  resized = transforms.resize(image, 256, 128, "bilinear")
  np.testing.assert_allclose(gen, resized / 127.5 - 1, atol=1e-6)
  # Train: the 256x128 output is a window of the 288x144 resize (possibly mirrored).
  big = transforms.resize(image, 288, 144, "bilinear")
  out_u8 = np.rint((out + 1) * 127.5).astype(np.uint8)
  found = any(np.array_equal(src[y:y + 256, x:x + 128], out_u8)
              for src in (big, big[:, ::-1]) for y in range(33) for x in range(17))
  assert found


def test_train_transform_equals_composition_of_primitives():
  # The fused PIL path makes the same draws as crop -> flip -> normalize on numpy arrays.
  for seed in range(30):
    image = _random_image(100 + seed, 50 + seed // 2, seed=seed)
    fused = transforms.train_transform(image, np.random.default_rng(seed), 64, 32)
    rng = np.random.default_rng(seed)
    composed = transforms.normalize(transforms.horizontal_flip(
        transforms.random_sized_rect_crop(image, rng, 64, 32), rng))
    np.testing.assert_array_equal(fused, composed)


def test_resize_crop_is_resize_then_window_then_flip_with_the_images_own_draws():
  """ARN's `paper` transform (docs/arn_triplet_eval.md §1.2): bilinear resize to 256x256, a random
  224 window, a random flip, normalised; the same draws in the same order as doing it by hand."""
  image = np.random.default_rng(0).integers(0, 256, (128, 64, 3), dtype=np.uint8)
  config = types.SimpleNamespace(train_transform="resize_crop", resize_height=40, resize_width=30)
  transform = transforms.train_transform_for(config)
  for seed in range(6):
    out = transform(image, np.random.default_rng(seed), 32, 24, 0.0)
    rng = np.random.default_rng(seed)
    resized = transforms.resize(image, 40, 30, "bilinear")
    by_hand = transforms.horizontal_flip(transforms.random_crop(resized, rng, 32, 24), rng)
    np.testing.assert_array_equal(out, transforms.normalize(np.ascontiguousarray(by_hand)))
  assert transforms.train_transform_for(types.SimpleNamespace()) is transforms.train_transform
  with pytest.raises(ReidError, match="data.train_transform='zoom'"):
    transforms.train_transform_for(types.SimpleNamespace(train_transform="zoom"))
