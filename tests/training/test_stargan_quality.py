"""StarGAN's own figures (reid_jax/training/stargan_quality.py): hand-built generators, brute force."""

import numpy as np

from reid_jax.training import stargan
from reid_jax.training import stargan_quality
from tests.training.test_stargan_trainer import DATASET, NUM_CAMERAS, micro_config

C = 3


def _world(n=24, seed=0):
  """n distinct random images in [-1, 1] with cameras 0..C-1 in turn."""
  rng = np.random.default_rng(seed)
  images = rng.uniform(-1, 1, size=(n, 16, 8, 3)).astype(np.float32)
  return images, np.arange(n) % C


def _to_uint8(x):
  return stargan.to_uint8(x, "round")


def _first_camera_classifier(images):
  logits = np.zeros((len(images), C), np.float32)
  logits[:, 0] = 1.0
  return logits


def test_nearest_is_self_hand_worked():
  gallery = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
  queries = np.array([[0.1, 0.0], [0.2, 0.0], [0.0, 2.0]])  # nearest rows: 0, 0, 2
  assert stargan_quality.nearest_is_self(queries, gallery).tolist() == [True, False, True]
  same = np.repeat(queries[:1], 3, axis=0)  # identical queries: only row 0 can score
  assert stargan_quality.nearest_is_self(same, gallery).tolist() == [True, False, False]
  # Within groups: query 1 is compared with gallery rows 1 and 2 only, and row 1 is nearer.
  assert stargan_quality.nearest_is_self(queries, gallery, [0, 1, 1]).tolist() == [True, True, True]


def test_a_copying_generator_keeps_every_person_and_changes_nothing():
  reals, cameras = _world()
  figures = stargan_quality.score(lambda x, c: x, _first_camera_classifier, reals, cameras, C,
                                  to_uint8=_to_uint8, batch_size=5)
  assert figures["cycle_l1"] == 0.0 and figures["change_l1"] == 0.0
  assert figures["person_kept_rank1"] == 1.0 and figures["own_camera_kept_rank1"] == 1.0
  assert figures["num_images"] == 24 and figures["chance"] == 1 / 8  # 8 images per camera
  # Brute force over the (image, other camera) pairs: the classifier always says camera 0.
  pairs = [(i, j) for i in range(24) for j in range(C) if j != cameras[i]]
  assert figures["camera_accuracy"] == np.mean([j == 0 for _, j in pairs])
  assert figures["real_camera_accuracy"] == np.mean(cameras == 0)


def test_a_collapsed_generator_scores_at_most_chance():
  """One image per camera whatever the input: the fakes of camera j of one source camera's images
  all have the same nearest real of that camera, so at most one of them scores."""
  reals, cameras = _world(n=60)
  blobs = np.linspace(-0.8, 0.8, C)

  def collapsed(x, c):
    return np.broadcast_to(blobs[np.asarray(c)][:, None, None, None], x.shape).astype(np.float32)

  figures = stargan_quality.score(collapsed, _first_camera_classifier, reals, cameras, C,
                                  to_uint8=_to_uint8, batch_size=7)
  # At most one hit per (target camera, source camera) among the 60 x 2 pairs: chance.
  assert figures["person_kept_rank1"] <= C * (C - 1) / (60 * (C - 1))
  np.testing.assert_allclose(figures["chance"], 1 / 20)  # 20 images per camera
  # Reconstruction G(G(x, j), c_x) is camera c_x's blob: brute force.
  expected = np.mean([np.mean(np.abs(blobs[cameras[i]] - reals[i]))
                      for i in range(60) for j in range(C) if j != cameras[i]])
  np.testing.assert_allclose(figures["cycle_l1"], expected, rtol=1e-6)
  change = np.mean([np.mean(np.abs(blobs[j] - reals[i]))
                    for i in range(60) for j in range(C) if j != cameras[i]])
  np.testing.assert_allclose(figures["change_l1"], change, rtol=1e-6)


def test_generator_quality_judges_the_workdirs_last_checkpoint(data_dir, tmp_path):
  """Wiring: the figures of a trained micro workdir equal a brute-force pass over its restored
  generator on the same sample."""
  config = micro_config()
  workdir = tmp_path / "wd"
  stargan.train(config, workdir, DATASET, data_dir, show_progress=False)
  figures = stargan_quality.generator_quality(config, workdir, DATASET, data_dir, num_images=12)
  assert figures["generator_iteration"] == config.optim.num_iters and figures["num_images"] == 12

  data = stargan.TrainingImages(DATASET, data_dir, config)
  rows = stargan_quality.sample_indices(12, len(data), config.seed)
  reals, cameras = data.test_images(rows), data.cameras[rows]
  data.close()
  g_params, _ = stargan.load_generator(config, workdir, NUM_CAMERAS)
  fakes = np.asarray(stargan.make_translate(config, NUM_CAMERAS)(g_params, reals))  # [C, n, ...]
  cycle = []
  for i, source in enumerate(cameras):
    back = np.asarray(stargan.make_translate(config, NUM_CAMERAS)(g_params, fakes[:, i]))
    cycle += [np.mean(np.abs(back[source, j] - reals[i])) for j in range(NUM_CAMERAS)
              if j != source]
  np.testing.assert_allclose(figures["cycle_l1"], np.mean(cycle), rtol=1e-4)
  assert len(set(rows.tolist())) == 12 and np.all(np.diff(rows) > 0)
