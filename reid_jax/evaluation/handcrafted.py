"""The hand-crafted reference: per-stripe colour statistics, no learning (docs/testbed.md).

The papers print LOMO and BoW beside the learned methods (docs/hhl.md §13, Table 4); on the synthetic
world this descriptor plays that part, so a report can say whether a trained network beats
features that know nothing of people:

1. resize to 128x64 (bilinear) and apply the gray-world correction: each channel divided by its
   mean over the image, which removes a camera's global colour cast and gain;
2. cut the image into `stripes` horizontal stripes (LOMO's horizontal structure);
3. per stripe: the mean and standard deviation of each corrected channel and an 8-bin histogram
   of each channel (square-rooted, Hellinger), concatenated.

Compared by Euclidean distance (`metric='euclidean'` in `ranking.evaluate`).
"""

import io

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 128, 64
BINS = 8


def _decode(image) -> np.ndarray:
  if isinstance(image, (bytes, bytearray)):
    image = Image.open(io.BytesIO(image)).convert("RGB")
  elif isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  return np.asarray(image.resize((WIDTH, HEIGHT), Image.BILINEAR), np.float32) / 255.0


def stripe_colour_descriptor(image, stripes: int = 6) -> np.ndarray:
  """One image (uint8 `[H, W, 3]` or JPEG bytes) -> float32 `[stripes * 30]`."""
  x = _decode(image)
  x = x / np.maximum(x.reshape(-1, 3).mean(0), 1e-3) * 0.5  # gray world: mean grey 0.5
  x = np.clip(x, 0.0, 1.0)
  parts = []
  for block in np.array_split(x, stripes, axis=0):
    pixels = block.reshape(-1, 3)
    histograms = [np.histogram(pixels[:, c], BINS, (0.0, 1.0))[0] for c in range(3)]
    histograms = np.sqrt(np.concatenate(histograms) / len(pixels) / 3)
    parts += [pixels.mean(0), pixels.std(0), histograms]
  return np.concatenate(parts).astype(np.float32)


def describe(images, stripes: int = 6) -> np.ndarray:
  """`[N, D]` descriptors of an iterable of images."""
  return np.stack([stripe_colour_descriptor(image, stripes) for image in images])
