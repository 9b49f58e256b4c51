"""The pretraining pool: deterministic images, labels that follow the drawn person, its own domain."""

import io

import numpy as np
import pytest
from PIL import Image

from reid_jax.data.synthetic import pool, world


def test_named_colours_get_their_basic_term():
  assert pool.BASIC_COLOURS[pool.basic_colour(world.COLOURS["navy"])] == "blue"
  assert pool.BASIC_COLOURS[pool.basic_colour(world.COLOURS["burgundy"])] == "red"
  assert pool.BASIC_COLOURS[pool.basic_colour(world.COLOURS["camel"])] == "brown"
  # A small jitter keeps the term: the nearest named colour does not change.
  assert pool.BASIC_COLOURS[pool.basic_colour(np.add(world.COLOURS["yellow"], 0.02))] == "yellow"


def test_image_is_a_pure_function_of_index_and_seed():
  a, b, c = pool.render_image(7, 0), pool.render_image(7, 0), pool.render_image(7, 1)
  assert a == b and a[0] != c[0]
  image = np.asarray(Image.open(io.BytesIO(a[0])))
  assert image.shape == (128, 64, 3)
  assert 1 <= a[1] <= world.PRETRAIN.num_cameras
  assert len(a[2]) == len(pool.ATTRIBUTES)
  assert all(0 <= v < k for v, (_, k) in zip(a[2], pool.ATTRIBUTES))


def test_labels_describe_the_drawn_person(monkeypatch):
  seen = []
  original = pool.attribute_labels

  def spy(person, view):
    seen.append((person, view))
    return original(person, view)

  monkeypatch.setattr(pool, "attribute_labels", spy)
  labels = [pool.render_image(i, 0)[2] for i in range(40)]
  columns = {name: i for i, (name, _) in enumerate(pool.ATTRIBUTES)}
  for (person, view), row in zip(seen, labels):
    assert row[columns["backpack"]] == (person.backpack is not None)
    assert row[columns["coat"]] == person.coat
    assert world.VIEWS[row[columns["view"]]] == view.view
    assert world.PATTERNS[row[columns["pattern"]]] == person.pattern
  # Every binary attribute takes both values over 40 people (the labels carry information).
  matrix = np.array(labels)
  for name in ("coat", "backpack", "hair_long"):
    assert set(matrix[:, columns[name]]) == {0, 1}


def test_pool_renders_only_its_own_domain(tmp_path, rendered_domains):
  path = pool.write_pool(tmp_path, size=30, seed=0, workers=1, progress=False)
  assert rendered_domains == {"synth_pretrain"}
  assert "synth_pretrain" not in world.DOMAINS  # never a re-ID dataset
  loaded = pool.load_pool(path)
  assert len(loaded) == 30 and loaded.attributes.shape == (30, len(pool.ATTRIBUTES))
  assert loaded.encoded_many([3])[0] == pool.render_image(3, 0)[0]
  assert pool.write_pool(tmp_path, size=30, seed=0, workers=1, progress=False) == path  # cached


def test_unreadable_pool_is_one_clear_error(tmp_path):
  from reid_jax.errors import ReidError
  bad = tmp_path / "pool.npz"
  bad.write_bytes(b"not a pool")
  with pytest.raises(ReidError, match="experiments.pretrain"):
    pool.load_pool(bad)
