"""Decoding and augmentation as pure functions of (image, numpy Generator) (docs/hhl.md §7, §10.6).

Images are numpy arrays `[H, W, 3]`: uint8 until `to_unit_range` / `normalize`, float32 after.
Resizing goes through PIL so that bilinear / bicubic downscaling antialiases exactly as the
reference code's torchvision-on-PIL transforms do (docs/hhl.md §7 step 2). Random draws come only from
the `numpy.random.Generator` passed in, so one generator seeded per image makes a batch
reproducible whatever thread runs it.

Composed transforms:
  `train_transform`: RandomSizedRectCrop -> flip p=0.5 -> [0, 1] -> ImageNet normalisation
    (-> random erasing, off by default), docs/hhl.md §7.
  `test_transform`: bicubic resize -> [0, 1] -> ImageNet normalisation, docs/hhl.md §7.
  `stargan_train_transform` / `stargan_test_transform`: docs/hhl.md §10.6.
"""

import functools
import io
import math
import os

import numpy as np
from PIL import Image

from reid_jax.errors import ReidError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # docs/hhl.md §7 step 5
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)  # docs/hhl.md §7 step 5
STARGAN_MEAN = np.array([0.5, 0.5, 0.5], np.float32)  # docs/hhl.md §10.6
STARGAN_STD = np.array([0.5, 0.5, 0.5], np.float32)  # docs/hhl.md §10.6

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def _to_pil(data, name: str | None = None) -> Image.Image:
  """An RGB PIL image from bytes, a path or a uint8 `[H, W, 3]` array (ReidError if corrupt)."""
  if isinstance(data, np.ndarray):
    return Image.fromarray(np.ascontiguousarray(data))
  if isinstance(data, Image.Image):
    return data if data.mode == "RGB" else data.convert("RGB")
  if isinstance(data, (str, os.PathLike)):
    name = name or str(data)
    with open(data, "rb") as f:
      data = f.read()
  try:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img if img.mode == "RGB" else img.convert("RGB")
  except Exception as e:  # PIL raises several unrelated types for truncated / invalid files
    raise ReidError(
        f"corrupt image {name or '<bytes>'}: {e}; restore the file (real datasets: from the "
        "original archive; synthetic ones: rerun python -m data_prep.synthetic, which repairs the "
        "tree) and delete the dataset's prepared folder under <data_dir>/tfds/ to rebuild it") from None


def decode(data, name: str | None = None) -> np.ndarray:
  """Decodes an image file to RGB uint8 `[H, W, 3]`.

  Args:
    data: encoded bytes, a path, or an already decoded `[H, W, 3]` uint8 array (returned as is).
    name: the file name to cite if decoding fails (defaults to the path when `data` is one).

  Raises:
    ReidError: the bytes are not a decodable image.
  """
  if isinstance(data, np.ndarray):
    return data
  return np.asarray(_to_pil(data, name))


def resize(image: np.ndarray, height: int, width: int, method: str = "bilinear") -> np.ndarray:
  """Resizes uint8 `[H, W, 3]` to `[height, width, 3]` with PIL (antialiased when downscaling)."""
  if image.shape[0] == height and image.shape[1] == width:
    return image
  pil = Image.fromarray(np.ascontiguousarray(image))
  return np.asarray(pil.resize((width, height), _RESAMPLE[method]))


def rect_crop_box(image_height: int, image_width: int, rng: np.random.Generator,
                  attempts: int = 10, area_range=(0.64, 1.0),
                  aspect_range=(2.0, 3.0)) -> tuple[int, int, int, int] | None:
  """The crop window `(y0, x0, h, w)` of RandomSizedRectCrop, or None when every attempt failed.

  docs/hhl.md §7 step 2: up to `attempts` draws of area U(0.64, 1)·H·W and aspect h/w U(2, 3); the
  first crop that fits is placed at a uniform integer offset. Python's `round` (half to even) as
  in the reference.
  """
  H, W = image_height, image_width
  for _ in range(attempts):
    target_area = rng.uniform(*area_range) * (H * W)
    aspect = rng.uniform(*aspect_range)
    h = int(round(math.sqrt(target_area * aspect)))
    w = int(round(math.sqrt(target_area / aspect)))
    if w <= W and h <= H:
      x0 = int(rng.integers(0, W - w + 1))
      y0 = int(rng.integers(0, H - h + 1))
      return y0, x0, h, w
  return None


def random_sized_rect_crop(image: np.ndarray, rng: np.random.Generator, height: int = 256,
                           width: int = 128, attempts: int = 10, area_range=(0.64, 1.0),
                           aspect_range=(2.0, 3.0), method: str = "bilinear") -> np.ndarray:
  """open-reid's RandomSizedRectCrop -> uint8 `[height, width, 3]` (docs/hhl.md §7 step 2).

  The window of `rect_crop_box`, resized (bilinear, antialiased); the whole image resized when no
  attempt fits.
  """
  box = rect_crop_box(image.shape[0], image.shape[1], rng, attempts, area_range, aspect_range)
  if box is not None:
    y0, x0, h, w = box
    image = image[y0:y0 + h, x0:x0 + w]
  return resize(image, height, width, method)


def random_crop(image: np.ndarray, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """torchvision RandomCrop without padding: a `[height, width]` window at a uniform offset."""
  H, W = image.shape[:2]
  if height > H or width > W:
    raise ValueError(f"crop {height}x{width} larger than image {H}x{W}")
  y0 = int(rng.integers(0, H - height + 1))
  x0 = int(rng.integers(0, W - width + 1))
  return image[y0:y0 + height, x0:x0 + width]


def horizontal_flip(image: np.ndarray, rng: np.random.Generator | None = None,
                    p: float = 0.5) -> np.ndarray:
  """Mirrors `[H, W, C]` left-right with probability `p` (always when `rng` is None)."""
  if rng is not None and not rng.uniform() < p:
    return image
  return image[:, ::-1]


def to_unit_range(image: np.ndarray) -> np.ndarray:
  """uint8 `[H, W, C]` -> float32 in [0, 1] (ToTensor, without the CHW transpose)."""
  return image.astype(np.float32) * np.float32(1 / 255)


def normalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
  """(x - mean) / std per channel; uint8 input is first mapped to [0, 1]. Returns float32."""
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  if image.dtype == np.uint8:
    # One affine map from uint8: x/255/std - mean/std.
    scale, offset = 1 / (255 * std), mean / std
  else:
    scale, offset = 1 / std, mean / std
  H, W, C = image.shape
  # Rows of W*C values with the per-channel constants tiled along them: numpy's inner loop then
  # runs over whole rows instead of 3-element pixels (15x faster).
  out = image.astype(np.float32, order="C").reshape(H, W * C)
  out *= np.tile(scale, W)
  out -= np.tile(offset, W)
  return out.reshape(H, W, C)


def normalized_range(mean=IMAGENET_MEAN, std=IMAGENET_STD) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel bounds `(low, high)` of `normalize` on [0, 1] input."""
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  return (0 - mean) / std, (1 - mean) / std


def random_erasing(image: np.ndarray, rng: np.random.Generator, probability: float = 0.5,
                   area_range=(0.02, 0.2), min_aspect: float = 0.3, value=IMAGENET_MEAN,
                   attempts: int = 100) -> np.ndarray:
  """Zhong et al.'s RandomErasing on a normalised float `[H, W, C]` image (docs/hhl.md §7 step 6).

  With probability `probability`, up to `attempts` draws of area U(0.02, 0.2)·H·W and aspect
  U(0.3, 1/0.3); the first rectangle strictly inside the image is filled with `value` (the raw
  ImageNet mean, written into the already-normalised image, as the reference does).
  """
  if not rng.uniform() < probability:
    return image
  H, W = image.shape[:2]
  for _ in range(attempts):
    target_area = rng.uniform(*area_range) * (H * W)
    aspect = rng.uniform(min_aspect, 1 / min_aspect)
    h = int(round(math.sqrt(target_area * aspect)))
    w = int(round(math.sqrt(target_area / aspect)))
    if w < W and h < H:
      y0 = int(rng.integers(0, H - h + 1))
      x0 = int(rng.integers(0, W - w + 1))
      out = np.array(image, np.float32)
      out[y0:y0 + h, x0:x0 + w] = np.asarray(value, np.float32)
      return out
  return image


def train_transform(image, rng: np.random.Generator, height: int = 256, width: int = 128,
                    erasing_probability: float = 0.0) -> np.ndarray:
  """The re-ID training transform of docs/hhl.md §7 -> float32 `[height, width, 3]`, normalised.

  Same draws and result as `random_sized_rect_crop` -> `horizontal_flip` -> `normalize`
  (-> `random_erasing`), with the image kept in PIL until the end.

  Args:
    image: uint8 `[H, W, 3]` or encoded bytes / a path (decoded first).
    rng: the image's own generator.
    height, width: output size (256x128 in the papers; tiny configs use smaller).
    erasing_probability: random erasing probability; 0 (the reference's `--re 0`) disables it.
  """
  pil = _to_pil(image)
  box = rect_crop_box(pil.height, pil.width, rng)
  if box is not None:
    y0, x0, h, w = box
    pil = pil.crop((x0, y0, x0 + w, y0 + h))
  if pil.size != (width, height):
    pil = pil.resize((width, height), _RESAMPLE["bilinear"])
  if rng.uniform() < 0.5:  # docs/hhl.md §7 step 3, the draw `horizontal_flip` makes
    pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  out = normalize(np.asarray(pil))
  if erasing_probability > 0:
    out = random_erasing(out, rng, erasing_probability)
  return out


def resize_crop_transform(image, rng: np.random.Generator, height: int = 224, width: int = 224,
                          erasing_probability: float = 0.0, resize_height: int = 256,
                          resize_width: int = 256) -> np.ndarray:
  """ARN's training transform (docs/arn_triplet_eval.md §1.2, variant `paper`): bilinear resize to
  `resize_height x resize_width`, a random `height x width` crop, a random flip, normalised."""
  out = resize(decode(image), resize_height, resize_width, "bilinear")
  out = horizontal_flip(random_crop(out, rng, height, width), rng)
  out = normalize(np.ascontiguousarray(out))
  if erasing_probability > 0:
    out = random_erasing(out, rng, erasing_probability)
  return out


TRAIN_TRANSFORMS = ("rect_crop", "resize_crop")


def train_transform_for(data_config):
  """`(image, rng, height, width, erasing_probability) -> image` named by config field
  `data.train_transform`: 'rect_crop' (HHL's, docs/hhl.md §7; the default) or 'resize_crop'
  (ARN's, with `data.resize_height`, `data.resize_width`)."""
  name = getattr(data_config, "train_transform", "rect_crop")
  if name == "rect_crop":
    return train_transform
  if name == "resize_crop":
    return functools.partial(resize_crop_transform, resize_height=int(data_config.resize_height),
                             resize_width=int(data_config.resize_width))
  raise ReidError(f"config field data.train_transform={name!r}: choose one of "
                  f"{', '.join(TRAIN_TRANSFORMS)}")


def test_transform(image, height: int = 256, width: int = 128) -> np.ndarray:
  """docs/hhl.md §7 test transform: bicubic resize, [0, 1], ImageNet normalisation. float32."""
  return normalize(resize(decode(image), height, width, "bicubic"))


def stargan_train_transform(image, rng: np.random.Generator, height: int = 256,
                            width: int = 128) -> np.ndarray:
  """docs/hhl.md §10.6: flip p=0.5, bilinear resize to 9/8 of the crop (288x144), random crop, to [-1, 1]."""
  image = horizontal_flip(decode(image), rng, 0.5)
  image = resize(image, height * 9 // 8, width * 9 // 8, "bilinear")
  image = random_crop(image, rng, height, width)
  return normalize(image, STARGAN_MEAN, STARGAN_STD)


def stargan_test_transform(image, height: int = 256, width: int = 128) -> np.ndarray:
  """docs/hhl.md §10.6 generation transform: bilinear resize, to [-1, 1]."""
  return normalize(resize(decode(image), height, width, "bilinear"), STARGAN_MEAN, STARGAN_STD)
