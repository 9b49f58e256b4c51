"""Rank-list figures: each query next to its top-k gallery images, green border = same identity,
red = different identity (docs/design.md §5 `figures/`).

The gallery list follows the evaluator's rules (docs/arn_triplet_eval.md §3.2): stable sort by
distance, same identity + same camera and junk (pid -1) left out, distractors kept. The figure has
a title (what was ranked, by which model, with which distance), a legend (border colours and what
is left out) and, under each tile, its rank and distance and its identity and camera
("id 12 c3", cameras numbered from 1 as in the file names). Queries of distinct identities are
chosen by `select_queries`. Drawn with PIL only and written atomically (`reid_jax.atomic_io`), so
a reader never sees half a PNG.
"""

import io
from typing import Callable, Sequence, Union

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from reid_jax import atomic_io
from reid_jax.evaluation import ranking

GREEN = (0, 170, 0)  # correct match
RED = (220, 0, 0)  # wrong identity
QUERY_COLOUR = (40, 80, 200)
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
TITLE_SIZE = 16  # font pixel sizes
TEXT_SIZE = 12
MIN_TEXT_SIZE = 8  # captions shrink down to this to fit a narrow cell
HEADER_HEIGHT = 64  # pixels above the first row: title and two legend lines
LINE_HEIGHT = 15  # one caption line
LABEL_HEIGHT = 2 * LINE_HEIGHT  # pixels under each cell: "rank distance", then "id camera"
GAP = 8  # pixels between the query column and the ranked list
MARGIN = 6  # left margin of the header text

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


def select_queries(q_pids, count: int, q_camids=None, g_pids=None, g_camids=None) -> np.ndarray:
  """Indices of up to `count` queries of distinct identities, deterministically.

  Junk queries (pid < 0) are skipped; with the gallery labels, so are queries without a valid
  true match (same identity, another camera). Each identity is represented by its first query;
  when there are more identities than `count`, they are taken evenly spaced over the order of
  first appearance (the first and the last included), so the figure is not one corner of the set.
  Returns int64 indices in increasing order; fewer than `count` when there are fewer identities.
  """
  q_pids = np.asarray(q_pids)
  candidates = np.flatnonzero(q_pids >= 0)
  if g_pids is not None and q_camids is not None and g_camids is not None:
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    q_camids = np.asarray(q_camids)
    matchable = [i for i in candidates
                 if np.any((g_pids == q_pids[i]) & (g_camids != q_camids[i]))]
    candidates = np.asarray(matchable, np.int64)
  _, first = np.unique(q_pids[candidates], return_index=True)
  firsts = np.sort(candidates[first]).astype(np.int64)
  count = max(int(count), 0)
  if len(firsts) <= count:
    return firsts
  if count == 1:
    return firsts[:1]
  positions = np.round(np.linspace(0, len(firsts) - 1, count)).astype(np.int64)
  return firsts[positions]


def rank_list_title(dataset: str, model: str, distance: str, rerank: bool,
                    step: int | None = None) -> str:
  """e.g. "synth_market: rank lists of baseline/synth_duke_to_synth_market_tiny (step 360),
  distance sqeuclidean, no re-ranking"."""
  at = f" (step {step})" if step is not None else ""
  return (f"{dataset}: rank lists of {model}{at}, distance {distance}, "
          f"{'k-reciprocal re-ranking' if rerank else 'no re-ranking'}")


def camera_name(camid) -> str:
  """0-based camera index -> "c3" (cameras numbered from 1, as in the file names)."""
  return f"c{int(camid) + 1}"


def tile_label(pid, camid) -> str:
  return f"id {int(pid)} {camera_name(camid)}"


def font(size: int):
  """PIL's default font at `size` pixels (a scalable font on Pillow >= 10.1, else the bitmap)."""
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1: only the fixed bitmap font
    return ImageFont.load_default()


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

  Ranked gallery images are columns 1..topk; the captions are the LABEL_HEIGHT pixels below.
  """
  cell_h, cell_w = cell_size[0] + 2 * border, cell_size[1] + 2 * border
  x = column * cell_w + (GAP if column > 0 else 0)
  return HEADER_HEIGHT + row * (cell_h + LABEL_HEIGHT), x


def grid_shape(num_rows: int, topk: int, cell_size=(128, 64), border: int = 4) -> tuple[int, int]:
  """(height, width) of the tiles' part; the figure is that high and at least that wide (wider
  only when the title or legend needs it)."""
  cell_h, cell_w = cell_size[0] + 2 * border, cell_size[1] + 2 * border
  return HEADER_HEIGHT + num_rows * (cell_h + LABEL_HEIGHT), (topk + 1) * cell_w + GAP


def _fitting_font(draw, text: str, width: int):
  for size in range(TEXT_SIZE, MIN_TEXT_SIZE - 1, -1):
    candidate = font(size)
    if draw.textlength(text, font=candidate) <= width:
      return candidate
  return font(MIN_TEXT_SIZE)


LEGEND_ITEMS = ((QUERY_COLOUR, "query"), (GREEN, "same identity"), (RED, "different identity"))
LEGEND_NOTE = ("not shown: the query's identity in the query's camera, and junk (id -1); "
               "under each image: rank and distance, identity and camera")


def _header_width(draw, title: str) -> int:
  text = font(TEXT_SIZE)
  legend = sum(14 + 4 + draw.textlength(label, font=text) + 16 for _, label in LEGEND_ITEMS)
  widths = (draw.textlength(title, font=font(TITLE_SIZE)), legend,
            draw.textlength(LEGEND_NOTE, font=text))
  return int(np.ceil(max(widths))) + 2 * MARGIN


def _draw_header(draw, title: str) -> None:
  draw.text((MARGIN, 6), title, fill=TEXT_COLOUR, font=font(TITLE_SIZE))
  text = font(TEXT_SIZE)
  x, y = MARGIN, 28
  for colour, label in LEGEND_ITEMS:
    draw.rectangle((x, y + 1, x + 13, y + 12), outline=colour, width=3)
    x += 14 + 4
    draw.text((x, y), label, fill=TEXT_COLOUR, font=text)
    x += draw.textlength(label, font=text) + 16
  draw.text((MARGIN, y + 17), LEGEND_NOTE, fill=TEXT_COLOUR, font=text)


def save_rank_lists(path, query_images: ImageSource, gallery_images: ImageSource, distmat,
                    q_pids, g_pids, q_camids, g_camids, topk: int = 10,
                    cell_size=(128, 64), border: int = 4, title: str | None = None):
  """Writes a PNG with one row per query: the query, then its top-k valid gallery images.

  Args:
    path: output PNG path (parent folders are created).
    query_images: the shown queries' images, a sequence or a function index -> image, one per
      row of distmat (`[H, W, 3]` uint8 or float in [0, 1]).
    gallery_images: sequence or function gallery index -> image (only the shown ones are read).
    distmat: `[Nshow, Ng]` distance rows of the shown queries (pick them with `select_queries`).
    q_pids, q_camids `[Nshow]`, g_pids, g_camids `[Ng]`: labels for the correctness colours, the
      same-camera/junk exclusion and the captions (camids 0-based, shown from 1).
    cell_size: (height, width) each image is resized to; border: coloured frame width in pixels.
    title: the first line (e.g. `rank_list_title(...)`); a generic one when None.

  The image is `grid_shape(Nshow, topk, cell_size, border)` pixels, wider if the header needs it.
  """
  distmat = np.asarray(distmat)
  num_rows = distmat.shape[0]
  if title is None:
    title = f"rank lists: the top {topk} valid gallery images of {num_rows} queries"
  cell_h, cell_w = cell_size[0] + 2 * border, cell_size[1] + 2 * border
  height, width = grid_shape(num_rows, topk, cell_size, border)
  width = max(width, _header_width(ImageDraw.Draw(Image.new("RGB", (1, 1))), title))
  canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
  captions = []  # (x centre, y top, first line, second line)

  def paste(row, column, image, colour, first_line, second_line):
    y, x = cell_origin(row, column, cell_size, border)
    canvas[y:y + cell_h, x:x + cell_w] = colour
    canvas[y + border:y + border + cell_size[0], x + border:x + border + cell_size[1]] = (
        _to_cell(image, *cell_size))
    captions.append((x + cell_w / 2, y + cell_h, first_line, second_line))

  for row in range(num_rows):
    paste(row, 0, _get(query_images, row), QUERY_COLOUR, "query",
          tile_label(q_pids[row], q_camids[row]))
    indices, correct = rank_list(distmat[row], q_pids[row], q_camids[row], g_pids, g_camids, topk)
    for rank, (index, is_match) in enumerate(zip(indices, correct), start=1):
      paste(row, rank, _get(gallery_images, int(index)), GREEN if is_match else RED,
            f"{rank}  {distmat[row, index]:.2f}", tile_label(g_pids[index], g_camids[index]))

  image = Image.fromarray(canvas)
  draw = ImageDraw.Draw(image)
  _draw_header(draw, title)
  for x, y, first_line, second_line in captions:
    for line, text in enumerate((first_line, second_line)):
      draw.text((x, y + line * LINE_HEIGHT + LINE_HEIGHT / 2), text, fill=TEXT_COLOUR,
                font=_fitting_font(draw, text, cell_w - 2), anchor="mm")

  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  atomic_io.write_bytes(path, buffer.getvalue())
  return path
