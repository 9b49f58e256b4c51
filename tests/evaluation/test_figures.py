"""Rank-list PNG: size, border colours at known positions, evaluator's exclusion rules."""

import numpy as np
from PIL import Image

from reid_jax.evaluation import figures


def test_rank_list_png(tmp_path):
  # Query 0: pid 1 camera 0. Gallery in distance order: pid 1 cam 0 (same camera, excluded),
  # junk -1 (excluded), pid 1 cam 1 (right), distractor 0 (wrong), pid 2 (wrong), pid 1 cam 2.
  g_pids = np.array([1, -1, 1, 0, 2, 1])
  g_camids = np.array([0, 1, 1, 1, 1, 2])
  distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                      [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])
  q_pids, q_camids = np.array([1, 2]), np.array([0, 0])
  gallery = [np.full((32, 16, 3), 30 * i, np.uint8) for i in range(6)]
  queries = [np.full((20, 10, 3), 0.5, np.float32)] * 2
  topk, cell, border = 4, (40, 20), 3
  path = figures.save_rank_lists(tmp_path / "figs" / "rank.png", queries, gallery.__getitem__,
                                 distmat, q_pids, g_pids, q_camids, g_camids, topk=topk,
                                 cell_size=cell, border=border)
  assert not [p for p in (tmp_path / "figs").iterdir() if p.name != "rank.png"]  # no temp left
  image = np.asarray(Image.open(path).convert("RGB"))
  cell_h, cell_w = cell[0] + 2 * border, cell[1] + 2 * border
  height, width = figures.grid_shape(2, topk, cell, border)
  assert image.shape[0] == height and image.shape[1] >= width

  def border_colour(row, column):
    y, x = figures.cell_origin(row, column, cell, border)
    return tuple(image[y + 1, x + cell_w // 2])  # inside the top border, mid-width

  def centre(row, column):
    y, x = figures.cell_origin(row, column, cell, border)
    return tuple(image[y + cell_h // 2, x + cell_w // 2])

  assert border_colour(0, 0) == figures.QUERY_COLOUR
  # Query 0 shows gallery items 2 (right), 3 (wrong), 4 (wrong), 5 (right).
  assert [border_colour(0, c) for c in range(1, 5)] == [figures.GREEN, figures.RED, figures.RED,
                                                        figures.GREEN]
  assert centre(0, 1) == (60, 60, 60)  # the image of gallery item 2 is in the first slot
  # Query 1 (pid 2, camera 0): order 5, 4, 3, 2, (1 junk), 0 -> wrong, right, wrong, wrong.
  assert [border_colour(1, c) for c in range(1, 5)] == [figures.RED, figures.GREEN, figures.RED,
                                                        figures.RED]
  assert centre(1, 2) == (120, 120, 120)


def test_rank_list_follows_evaluator_rules():
  indices, correct = figures.rank_list([0.5, 0.5, 0.1, 0.2], 3, 1, [3, 3, -1, 3], [0, 2, 0, 1])
  # Item 2 is junk, item 3 is same pid same camera; the tie (0, 1) keeps gallery order.
  assert indices.tolist() == [0, 1] and correct.tolist() == [True, True]
