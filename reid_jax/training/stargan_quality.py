"""StarGAN's own figures: does a generator change the camera style and keep the person?

HHL needs fakes that look like camera j *and* still show the same person (docs/hhl.md §10.1);
a generator that emits one camera-typical image whatever its input satisfies its camera
classifier and the adversary, yet gives HHL positives with no identity in them. These figures
judge a generator by itself, before any re-ID model trains on its fakes:

- `cycle_l1`: mean |G(G(x, c_j), c_x) - x| over every image x and every other camera j, images
  in [-1, 1] (the quantity StarGAN's L_rec trains, here on the test transform of a fixed sample);
- `change_l1`: mean |G(x, c_j) - x| over the same pairs (0 for a generator that copies);
- `camera_accuracy`: the share of those fakes that the workdir's own camera classifier (D_cls,
  trained on real images only) assigns to camera j; `real_camera_accuracy` is D_cls on the reals;
- `person_kept_rank1`: the share of fakes G(x_i, c_j) whose nearest real image among the sample's
  images *of x_i's own camera* is x_i, under the hand-crafted descriptor (`evaluation.handcrafted`:
  stripe colour statistics after a gray-world correction). Those reals share x_i's camera, scene
  and background, so whatever background the fake was given is equally far from all of them and
  only the person can single x_i out; `chance` is the mean of 1 / (images of that camera) over the
  pairs, what a generator that loses the person scores; a copy scores 1.
  `own_camera_kept_rank1` is the same for j = c_x.

  python -m experiments.stargan --dataset=synth_market --quality_only   # a trained workdir
"""

import numpy as np

from reid_jax.evaluation import handcrafted

DEFAULT_IMAGES = 500  # the sample judged (seeded, without replacement)


def nearest_is_self(queries: np.ndarray, gallery: np.ndarray, groups=None) -> np.ndarray:
  """bool `[n]`: is row i of `gallery` the nearest (Euclidean) to row i of `queries`?

  With `groups` (`[n]` labels), row i is compared only with the gallery rows of its own group. A
  tie at the smallest distance counts as a miss unless row i is the first of the tied rows, so
  identical queries (a collapsed generator) cannot all score.
  """
  d2 = (np.sum(queries ** 2, 1)[:, None] + np.sum(gallery ** 2, 1)[None, :]
        - 2.0 * queries @ gallery.T)
  if groups is not None:
    groups = np.asarray(groups)
    d2 = np.where(groups[:, None] == groups[None, :], d2, np.inf)
  return np.argmin(d2, axis=1) == np.arange(len(queries))


def score(translate, classify, reals: np.ndarray, cameras: np.ndarray, num_cameras: int, *,
          to_uint8, batch_size: int = 64) -> dict:
  """The figures above for any generator and classifier.

  translate(images [b, H, W, 3] in [-1, 1], cameras int [b]) -> fakes [b, H, W, 3] in [-1, 1];
  classify(images) -> camera logits [b, C]; reals `[n, H, W, 3]`, cameras int `[n]` (0-based);
  to_uint8 maps [-1, 1] images to uint8 (the camera-style writer's quantisation).
  """
  n = len(reals)
  cameras = np.asarray(cameras, np.int64)
  real_desc = handcrafted.describe(to_uint8(reals))
  cycle, change, correct, kept = [], [], [], []
  own_kept = np.zeros(n, bool)
  real_correct = []
  for start in range(0, n, batch_size):
    x, c = reals[start:start + batch_size], cameras[start:start + batch_size]
    real_correct.append(np.argmax(np.asarray(classify(x)), 1) == c)
  for j in range(num_cameras):
    fakes = np.concatenate([
        np.asarray(translate(reals[s:s + batch_size], np.full(len(reals[s:s + batch_size]), j)))
        for s in range(0, n, batch_size)])
    hits = nearest_is_self(handcrafted.describe(to_uint8(fakes)), real_desc, cameras)
    own = cameras == j
    own_kept[own] = hits[own]
    other = ~own
    if not other.any():
      continue
    kept.append(hits[other])
    change.append(np.mean(np.abs(fakes[other] - reals[other]), axis=(1, 2, 3)))
    for s in range(0, n, batch_size):
      rows = np.flatnonzero(other[s:s + batch_size]) + s
      if not len(rows):
        continue
      rec = np.asarray(translate(fakes[rows], cameras[rows]))
      cycle.append(np.mean(np.abs(rec - reals[rows]), axis=(1, 2, 3)))
      correct.append(np.argmax(np.asarray(classify(fakes[rows])), 1) == j)
  cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)
  return {
      "num_images": int(n), "num_cameras": int(num_cameras),
      "cycle_l1": float(np.mean(cat(cycle))), "change_l1": float(np.mean(cat(change))),
      "camera_accuracy": float(np.mean(cat(correct))),
      "real_camera_accuracy": float(np.mean(cat(real_correct))),
      "person_kept_rank1": float(np.mean(cat(kept))),
      "own_camera_kept_rank1": float(np.mean(own_kept)),
      "chance": float(np.mean(1.0 / np.bincount(cameras)[cameras])),
  }


def sample_indices(count: int, total: int, seed: int = 0) -> np.ndarray:
  """The judged images: `min(count, total)` distinct indices drawn with `seed`, sorted."""
  rng = np.random.default_rng([seed, 17])
  return np.sort(rng.choice(total, size=min(count, total), replace=False))


def generator_quality(config, workdir, dataset: str, data_dir, *,
                      num_images: int = DEFAULT_IMAGES) -> dict:
  """`score` of the latest checkpoint of a StarGAN workdir on a fixed sample of its training images."""
  import jax  # pylint: disable=g-import-not-at-top
  from reid_jax import xla_options  # pylint: disable=g-import-not-at-top
  from reid_jax.training import stargan  # pylint: disable=g-import-not-at-top

  data = stargan.TrainingImages(dataset, data_dir, config)
  try:
    num_cameras = data.num_cameras
    state, _ = stargan.restore_state(workdir, config, num_cameras)
    g, d = stargan.build_models(config, num_cameras)
    rows = sample_indices(num_images, len(data), config.seed)
    reals = data.test_images(rows)

    # The parameters are arguments, not constants folded into the programs (a paper-size G would
    # make every compilation slow and large).
    translate = xla_options.jit(lambda params, images, cameras: g.apply(
        {"params": params}, images, jax.nn.one_hot(cameras, num_cameras)))
    classify = xla_options.jit(lambda params, images: d.apply({"params": params}, images)[1])
    quantize = config.generate.quantize
    figures = score(lambda x, c: translate(state.g_params, x, c),
                    lambda x: classify(state.d_params, x), reals, data.cameras[rows], num_cameras,
                    to_uint8=lambda x: stargan.to_uint8(x, quantize))
    figures["generator_iteration"] = int(state.step)
    return figures
  finally:
    data.close()


def judge_and_record(config, workdir, dataset: str, data_dir, *,
                     num_images: int = DEFAULT_IMAGES) -> dict:
  """`generator_quality`, merged into the workdir's results.json as `quality`; returns it."""
  from reid_jax.training import stargan  # pylint: disable=g-import-not-at-top
  figures = generator_quality(config, workdir, dataset, data_dir, num_images=num_images)
  stargan.write_results(workdir, config, dataset, quality=figures)
  return figures


def describe(figures: dict) -> str:
  """One line for the console and the report."""
  return (f"cycle L1 {figures['cycle_l1']:.3f}, change L1 {figures['change_l1']:.3f}, "
          f"D_cls on fakes {100 * figures['camera_accuracy']:.1f} % "
          f"(reals {100 * figures['real_camera_accuracy']:.1f} %), person kept "
          f"{100 * figures['person_kept_rank1']:.1f} % rank-1 among the reals of its source camera "
          f"(own camera {100 * figures['own_camera_kept_rank1']:.1f} %, chance "
          f"{100 * figures['chance']:.1f} %)")
