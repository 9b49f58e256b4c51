"""Rank-list figure (issue 16 item 8): title, legend, distinct query identities, and each tile's
rank, distance, identity and camera written under it."""

import numpy as np
from PIL import Image

from reid_jax.evaluation import figures


def _dark(region) -> int:
  """How many pixels of an RGB region are text-dark (all channels below 100)."""
  return int((np.asarray(region) < 100).all(axis=-1).sum())


def test_select_queries_distinct_identities_deterministic():
  # Market-like query order: several images per identity, consecutive; a junk query first.
  q_pids = np.array([-1, 5, 5, 5, 5, 7, 7, 9, 9, 9, 11, 12, 12, 13])
  chosen = figures.select_queries(q_pids, 4)
  assert len(chosen) == 4
  assert len(set(q_pids[chosen].tolist())) == 4  # distinct identities
  assert -1 not in q_pids[chosen]
  np.testing.assert_array_equal(chosen, figures.select_queries(q_pids, 4))  # deterministic
  # Spread over the identities (first and last included), not the first four.
  assert q_pids[chosen].tolist() == [5, 9, 11, 13]
  # Fewer identities than asked: one query each.
  assert q_pids[figures.select_queries(q_pids, 50)].tolist() == [5, 7, 9, 11, 12, 13]
  # The old selection (the first four queries) is one person: the case this replaces.
  assert len(set(q_pids[1:5].tolist())) == 1


def test_select_queries_skips_queries_without_a_cross_camera_match():
  q_pids, q_camids = np.array([1, 2, 3]), np.array([0, 0, 0])
  g_pids, g_camids = np.array([1, 2, 3, 3]), np.array([0, 1, 0, 2])
  # pid 1 is only in the query's camera: no valid true match, left out.
  assert figures.select_queries(q_pids, 3, q_camids, g_pids, g_camids).tolist() == [1, 2]


def test_tile_labels():
  assert figures.tile_label(12, 2) == "id 12 c3"  # camids are 0-based, shown from 1
  assert "market" in figures.rank_list_title("market", "baseline/x", "sqeuclidean", True, 7)
  title = figures.rank_list_title("market", "baseline/x", "sqeuclidean", False)
  assert "baseline/x" in title and "sqeuclidean" in title and "no re-ranking" in title


def test_figure_has_title_legend_and_captions(tmp_path):
  g_pids = np.array([1, -1, 1, 0, 2, 1])
  g_camids = np.array([0, 1, 1, 1, 1, 2])
  distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                      [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])
  q_pids, q_camids = np.array([1, 2]), np.array([0, 0])
  # Bright images, so that any dark pixel outside them is text.
  gallery = [np.full((32, 16, 3), 200 + 5 * i, np.uint8) for i in range(6)]
  queries = [np.full((32, 16, 3), 0.9, np.float32)] * 2
  topk, cell, border = 4, (128, 64), 4
  title = figures.rank_list_title("synth_market", "baseline/run", "sqeuclidean", False, 3)
  path = figures.save_rank_lists(tmp_path / "rank.png", queries, gallery.__getitem__, distmat,
                                 q_pids, g_pids, q_camids, g_camids, topk=topk, cell_size=cell,
                                 border=border, title=title)
  image = np.asarray(Image.open(path).convert("RGB"))
  cell_h, cell_w = cell[0] + 2 * border, cell[1] + 2 * border
  old_height = 2 * (cell_h + 14)  # the unlabelled figure: 14 px of caption, no header
  assert image.shape[0] > old_height
  height, width = figures.grid_shape(2, topk, cell, border)
  assert image.shape[0] == height and image.shape[1] >= width

  header = image[:figures.HEADER_HEIGHT]
  assert _dark(header[:26]) > 100  # the title line
  legend = header[26:]
  for colour in (figures.GREEN, figures.RED, figures.QUERY_COLOUR):  # the colour swatches
    assert (legend == colour).all(axis=-1).sum() > 20
  assert _dark(legend) > 200  # the legend's words

  for row in range(2):
    for column in range(topk + 1):
      y, x = figures.cell_origin(row, column, cell, border)
      below = image[y + cell_h:y + cell_h + figures.LABEL_HEIGHT, x:x + cell_w]
      first = below[:figures.LINE_HEIGHT]
      second = below[figures.LINE_HEIGHT:]
      assert _dark(first) > 15 and _dark(second) > 15, (row, column)  # two caption lines
      # The tile itself stays free of text.
      tile = image[y + border:y + border + cell[0], x + border:x + border + cell[1]]
      assert _dark(tile) == 0
  # Borders still follow the evaluator's rules (query 0: right, wrong, wrong, right).
  colours = [tuple(image[figures.cell_origin(0, c, cell, border)[0] + 1,
                         figures.cell_origin(0, c, cell, border)[1] + cell_w // 2])
             for c in range(5)]
  assert colours == [figures.QUERY_COLOUR, figures.GREEN, figures.RED, figures.RED, figures.GREEN]


def test_caption_says_the_identity_and_camera(tmp_path):
  """The caption under a tile changes with the tile's identity and camera (it is their text)."""
  def render(g_pid, g_camid, name):
    path = figures.save_rank_lists(
        tmp_path / name, [np.full((8, 4, 3), 255, np.uint8)],
        [np.full((8, 4, 3), 255, np.uint8)], np.array([[0.5]]), np.array([3]),
        np.array([g_pid]), np.array([0]), np.array([g_camid]), topk=1)
    image = np.asarray(Image.open(path).convert("RGB"))
    y, x = figures.cell_origin(0, 1)
    return image[y + 136 + figures.LINE_HEIGHT:y + 136 + figures.LABEL_HEIGHT, x:x + 72]

  a, b, c = render(3, 1, "a.png"), render(3, 4, "b.png"), render(1234, 1, "c.png")
  assert _dark(a) > 15
  assert not np.array_equal(a, b) and not np.array_equal(a, c)
