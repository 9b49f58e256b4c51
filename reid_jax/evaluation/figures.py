"""Rank-list figures: each query next to its top-k gallery images, green border = same identity,
red = different identity (design README §5 `figures/`).

The gallery list follows the evaluator's rules (arn_triplet_eval.md §3.2): stable sort by
distance, same identity + same camera and junk (pid -1) left out, distractors kept. Rendered with
matplotlib's Agg canvas (no display, no pyplot state) and written atomically
(`reid_jax.atomic_io`), so a reader never sees half a PNG.
"""

import io
from typing import Callable, Sequence, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from reid_jax import atomic_io
from reid_jax.evaluation import ranking

GREEN = (0, 170, 0)  # correct match
RED = (220, 0, 0)  # wrong identity
QUERY_COLOUR = (40, 80, 200)
BACKGROUND = (255, 255, 255)
LABEL_HEIGHT = 14  # pixels under each cell for its caption
GAP = 8  # pixels between the query column and the ranked list

ImageSource = Union[Sequence[np.ndarray], Callable[[int], np.ndarray]]


def rank_list(distances, q_pid, q_camid, g_pids, g_camids, topk=10):
  """Top-k gallery indices for one query and whether each is the same identity.

  distances `[Ng]`; returns (indices `[<=topk]` int, correct `[<=topk]` bool).
  """
  distances = np.asarray(distances)
  g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
  valid = ranking.query_validity(np.array([q_pid]), np.array([q_camid]), g_pids, g_camids)[0]
  order = np.argsort(distances, kind="stable")
  order = order[valid[order]][:topk]
  return order, g_pids[order] == q_pid


def _get(source: ImageSource, index: int) -> np.ndarray:
  return source(index) if callable(source) else source[index]


def _to_cell(image, height, width):
  """Image (uint8, or float in [0, 1]) `[H, W, 3]` resized to `[height, width, 3]` uint8."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  return np.asarray(Image.fromarray(image[..., :3]).resize((width, height), Image.BILINEAR))


def cell_origin(row, column, cell_size=(128, 64), border=4):
  """Top-left pixel (y, x) of the bordered cell at (row, column); column 0 is the query.

  Ranked gallery images are columns 1..topk.
  """
  cell_h, cell_w = cell_size[0] + 2 * border, cell_size[1] + 2 * border
  x = column * cell_w + (GAP if column > 0 else 0)
  return row * (cell_h + LABEL_HEIGHT), x


def save_rank_lists(path, query_images: ImageSource, gallery_images: ImageSource, distmat,
                    q_pids, g_pids, q_camids, g_camids, topk: int = 10,
                    cell_size=(128, 64), border: int = 4, dpi: int = 100):
  """Writes a PNG with one row per query: the query, then its top-k valid gallery images.

  Args:
    path: output PNG path (parent folders are created).
    query_images: the shown queries' images, a sequence or a function index -> image, one per
      row of distmat (`[H, W, 3]` uint8 or float in [0, 1]).
    gallery_images: sequence or function gallery index -> image (only the shown ones are read).
    distmat: `[Nshow, Ng]` distance rows of the shown queries.
    q_pids, q_camids `[Nshow]`, g_pids, g_camids `[Ng]`: labels for the correctness colours and the
      same-camera/junk exclusion.
    cell_size: (height, width) each image is resized to; border: coloured frame width in pixels.

  The image is exactly `(Nshow * (h + 2b + LABEL_HEIGHT), (topk + 1) * (w + 2b) + GAP)` pixels.
  """
  distmat = np.asarray(distmat)
  num_rows = distmat.shape[0]
  cell_h, cell_w = cell_size[0] + 2 * border, cell_size[1] + 2 * border
  height = num_rows * (cell_h + LABEL_HEIGHT)
  width = (topk + 1) * cell_w + GAP
  canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
  captions = []

  def paste(row, column, image, colour, caption):
    y, x = cell_origin(row, column, cell_size, border)
    canvas[y:y + cell_h, x:x + cell_w] = colour
    canvas[y + border:y + border + cell_size[0], x + border:x + border + cell_size[1]] = (
        _to_cell(image, *cell_size))
    captions.append((x + cell_w / 2, y + cell_h + LABEL_HEIGHT / 2, caption))

  for row in range(num_rows):
    paste(row, 0, _get(query_images, row), QUERY_COLOUR, f"q {int(q_pids[row])}")
    indices, correct = rank_list(distmat[row], q_pids[row], q_camids[row], g_pids, g_camids, topk)
    for rank, (index, is_match) in enumerate(zip(indices, correct), start=1):
      paste(row, rank, _get(gallery_images, int(index)), GREEN if is_match else RED,
            f"{rank}: {distmat[row, index]:.2f}")

  figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
  FigureCanvasAgg(figure)
  figure.figimage(canvas, xo=0, yo=0, origin="upper")
  for x, y, caption in captions:
    figure.text(x / width, 1.0 - y / height, caption, ha="center", va="center", fontsize=6)

  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=dpi)
  atomic_io.write_bytes(path, buffer.getvalue())
  return path
