"""The StarGAN trainer and camera-style writer of HHL (docs/hhl.md §10).

  summary = stargan.train(config, workdir, dataset, data_dir)        # resumes from <workdir>
  manifest = stargan.write_camstyle_set(config, workdir, dataset, data_dir)

Training (docs/hhl.md §10.4-10.6): on the target's training images with their camera labels, D is
updated every iteration and G every `n_critic`-th, both with Adam(beta1, beta2); the target cameras
are the batch's own camera labels randomly permuted. Everything random is a function of
(seed, iteration): the batch is `epoch_permutation(seed, epoch)[position]`, each image's augmentation
draws from `default_rng([seed, iteration, k])`, the permutation and GP mixing weights from
`fold_in(PRNGKey(seed), iteration)`, so a resumed run ends bit-identical to an uninterrupted one.

Workdir (docs/design.md §5): `config.json`, `checkpoints/` (orbax: both networks and both Adam states),
`tb/` (losses and lr every `log_every` iterations, sample grids), `figures/stargan_samples_<it>.png`
(rows: real images, named by their camera; columns: the real image, then its fake in camera 1..C,
named "real", "to c1", ...; tiles upscaled to at least 128 px high), `results.json` (the run's
iterations, time and final losses; the camera-style set it wrote, see `write_results`).

Generation (docs/hhl.md §10.7): every training image, sorted by file name, resized to the training size,
through G once per camera j = 1..C (its own camera included), (y + 1) / 2 clamped to [0, 1], to uint8,
saved as JPEG quality 75 under `camstyle.set_dir(data_dir, world)/<stem>_fake_<j>.jpg`. Each file is
written to a temporary name and renamed, so no truncated JPEG is ever visible; a rerun skips files
already there; MANIFEST.json, naming the world, is written last.

World: a synthetic dataset is read (trained on and translated) in the world of
`config.data.synthetic_size` (`world`), and its set is keyed by that world (docs/design.md §4).
"""

import concurrent.futures
import dataclasses
import functools
import io
import json
import os
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from reid_jax import atomic_io
from reid_jax import paths
from reid_jax import progress as progress_lib
from reid_jax import xla_options
from reid_jax.data import camstyle
from reid_jax.data import datasets
from reid_jax.data import transforms
from reid_jax.errors import ReidError
from reid_jax.losses import gan
from reid_jax.models import stargan as stargan_models
from reid_jax.training import sharding

LR_DECAYS = ("code_effective", "linear_to_zero")


@flax.struct.dataclass
class StarGANState:
  step: jax.Array  # iterations done
  g_params: Any
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any


# --- world, models, schedule, optimiser -------------------------------------------------------------


def synthetic_size(config) -> str:
  """The synthetic world size read (`tiny` for a config.json written before the field existed)."""
  return config.data.get("synthetic_size", "tiny")


def world(config, dataset: str) -> dict:
  """`camstyle.world_of` the images this config trains on and writes fakes of."""
  return camstyle.world_of(dataset, synthetic_size(config))


def image_shape(config) -> tuple[int, int]:
  """(H, W) of training and generation: image_size x image_size / 2 (docs/hhl.md §10.1)."""
  return config.model.image_size, config.model.image_size // 2


def build_models(config, num_cameras: int):
  g = stargan_models.Generator(num_cameras, conv_dim=config.model.g_conv_dim,
                               repeat_num=config.model.g_repeat_num,
                               init_scheme=config.model.init_scheme,
                               conv_impl=config.model.conv_impl)
  d = stargan_models.Discriminator(num_cameras, image_size=config.model.image_size,
                                   conv_dim=config.model.d_conv_dim,
                                   repeat_num=config.model.d_repeat_num,
                                   conv_impl=config.model.conv_impl)
  return g, d


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Length and lr schedule in iterations (docs/hhl.md §10.5)."""

  num_iters: int
  decay_start: int
  iters_per_epoch: int
  lr_decay: str
  lr_update_step: int

  def lr_factor(self, iteration):
    """Multiplier of the base lr at iteration `iteration` (0-based; numpy or traced).

    code_effective: after iteration j with (j + 1) % lr_update_step == 0 and j + 1 > decay_start,
      lr -= base / (num_iters - decay_start); at 220k iterations it ends at 0.999 x base.
    linear_to_zero: base until decay_start, then linear to 0 at num_iters (per iteration).
    """
    span = max(self.num_iters - self.decay_start, 1)
    if self.lr_decay == "code_effective":
      steps = self.lr_update_step
      updates = jnp.maximum(iteration // steps - self.decay_start // steps, 0)
      return 1.0 - updates / span
    if self.lr_decay == "linear_to_zero":
      return jnp.clip((self.num_iters - iteration) / span, 0.0, 1.0)
    raise ReidError(f"config.optim.lr_decay={self.lr_decay!r}: choose one of {', '.join(LR_DECAYS)}")


def make_schedule(config, num_images: int) -> Schedule:
  """Iterations from config.optim; from epochs (x floor(N / batch), drop_last) when num_epochs > 0."""
  iters_per_epoch = num_images // config.batch_size
  if iters_per_epoch < 1:
    raise ReidError(f"config.batch_size={config.batch_size} exceeds the {num_images} training images")
  optim = config.optim
  if optim.lr_decay not in LR_DECAYS:
    raise ReidError(f"config.optim.lr_decay={optim.lr_decay!r}: choose one of {', '.join(LR_DECAYS)}")
  if optim.num_epochs > 0:
    num_iters = optim.num_epochs * iters_per_epoch
    decay_start = optim.decay_start_epoch * iters_per_epoch
  else:
    num_iters, decay_start = optim.num_iters, optim.decay_start
  return Schedule(int(num_iters), int(decay_start), iters_per_epoch, optim.lr_decay,
                  int(optim.lr_update_step))


def _adam(config):
  """Adam's moment scaling; the lr is applied in the step so that it can follow the schedule."""
  return optax.scale_by_adam(b1=config.optim.beta1, b2=config.optim.beta2, eps=config.optim.eps)


def init_state(config, num_cameras: int, seed: int | None = None) -> StarGANState:
  g, d = build_models(config, num_cameras)
  h, w = image_shape(config)
  g_key, d_key = jax.random.split(jax.random.PRNGKey(config.seed if seed is None else seed))
  x = jnp.zeros((1, h, w, 3), jnp.float32)
  g_params = g.init(g_key, x, jnp.zeros((1, num_cameras), jnp.float32))["params"]
  d_params = d.init(d_key, x)["params"]
  tx = _adam(config)
  return StarGANState(step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
                      g_opt_state=tx.init(g_params), d_opt_state=tx.init(d_params))


def target_cameras(key, cameras_org):
  """docs/hhl.md §10.4: the batch's own camera labels randomly permuted (may equal the source camera)."""
  return jax.random.permutation(key, cameras_org)


def make_train_step(config, num_cameras: int, schedule: Schedule, mesh=None):
  """`train_step(state, images, cameras, key, update_g) -> (state, metrics)`, jitted.

  images `[B, H, W, 3]` in [-1, 1], cameras int32 `[B]` (0-based), key: the run's base key. D is
  updated; with `update_g` (static) G is then updated against the new D (docs/hhl.md §10.4).
  mesh: the data mesh (default: every device of this process); the batch is split over it, the
  state replicated, so the step is that of one device on the global batch.
  """
  mesh = sharding.local_mesh() if mesh is None else mesh
  g, d = build_models(config, num_cameras)
  tx = _adam(config)
  loss_cfg = config.loss

  def apply_updates(params, opt_state, grads, lr):
    updates, opt_state = tx.update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p - lr * u, params, updates), opt_state

  def train_step(state, images, cameras_org, key, update_g):
    iteration = state.step
    perm_key, alpha_key = jax.random.split(jax.random.fold_in(key, iteration))
    # docs/hhl.md §10.4: target cameras = the batch's own labels randomly permuted.
    cameras_trg = target_cameras(perm_key, cameras_org)
    onehot_org = jax.nn.one_hot(cameras_org, num_cameras)
    onehot_trg = jax.nn.one_hot(cameras_trg, num_cameras)
    alpha = jax.random.uniform(alpha_key, (images.shape[0],), images.dtype)
    factor = schedule.lr_factor(iteration)

    x_fake = g.apply({"params": state.g_params}, images, onehot_trg)

    def d_loss(d_params):
      disc = functools.partial(d.apply, {"params": d_params})
      return gan.discriminator_loss(disc, images, x_fake, cameras_org, alpha,
                                    lambda_cls=loss_cfg.lambda_cls, lambda_gp=loss_cfg.lambda_gp)

    (_, metrics), d_grads = jax.value_and_grad(d_loss, has_aux=True)(state.d_params)
    d_params, d_opt_state = apply_updates(state.d_params, state.d_opt_state, d_grads,
                                          config.optim.d_lr * factor)
    g_params, g_opt_state = state.g_params, state.g_opt_state
    if update_g:
      disc = functools.partial(d.apply, {"params": d_params})

      def g_loss(g_params):
        fake = g.apply({"params": g_params}, images, onehot_trg)
        rec = g.apply({"params": g_params}, fake, onehot_org)
        lambda_id = loss_cfg.get("lambda_id", 0.0)  # absent from configs saved before the field
        x_id = g.apply({"params": g_params}, images, onehot_org) if lambda_id > 0 else None
        return gan.generator_loss(disc, images, fake, rec, cameras_trg,
                                  lambda_cls=loss_cfg.lambda_cls, lambda_rec=loss_cfg.lambda_rec,
                                  x_id=x_id, lambda_id=lambda_id)

      (_, g_metrics), g_grads = jax.value_and_grad(g_loss, has_aux=True)(g_params)
      g_params, g_opt_state = apply_updates(g_params, g_opt_state, g_grads,
                                            config.optim.g_lr * factor)
      metrics = {**metrics, **g_metrics}
    metrics["lr/D"] = config.optim.d_lr * factor
    metrics["lr/G"] = config.optim.g_lr * factor
    new_state = StarGANState(step=iteration + 1, g_params=g_params, d_params=d_params,
                             g_opt_state=g_opt_state, d_opt_state=d_opt_state)
    return new_state, metrics

  # The inputs arrive placed (state replicated, batch split: `_train`); jit follows them (jax
  # takes no in_shardings beside a keyword argument such as update_g) and returns replicated.
  replicated = sharding.replicated(mesh)
  return xla_options.jit(train_step, static_argnames=("update_g",), donate_argnums=(0,),
                         out_shardings=(replicated, replicated))


def make_translate(config, num_cameras: int):
  """`translate(g_params, images [B, H, W, 3]) -> [C, B, H, W, 3]` in [-1, 1]: every camera's fake."""
  g, _ = build_models(config, num_cameras)

  @xla_options.jit
  def translate(g_params, images):
    def one_camera(camera):
      onehot = jnp.broadcast_to(jax.nn.one_hot(camera, num_cameras), (images.shape[0], num_cameras))
      return g.apply({"params": g_params}, images, onehot)
    return jax.lax.map(one_camera, jnp.arange(num_cameras))

  return translate


def to_uint8(images, quantize: str = "truncate") -> np.ndarray:
  """[-1, 1] float -> uint8 via (y + 1) / 2 clamped to [0, 1], x 255 (docs/hhl.md §10.7)."""
  unit = np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0) * 255.0
  if quantize == "round":
    unit = np.rint(unit)
  elif quantize != "truncate":
    raise ReidError(f"config.generate.quantize={quantize!r}: choose 'truncate' or 'round'")
  return unit.astype(np.uint8)


# --- data --------------------------------------------------------------------------------------------


class TrainingImages:
  """The target's training images with camera labels, batched as a pure function of the iteration.

  Epoch e's order is `default_rng([seed, e]).permutation(N)`, cut into floor(N / B) batches
  (drop_last, docs/hhl.md §10.5); image k of iteration i is augmented with `default_rng([seed, i, k])`.
  """

  def __init__(self, dataset: str, data_dir, config):
    from reid_jax.data import tfds_builders  # lazy: TFDS is only needed once data is read
    self.source = tfds_builders.load_split(dataset, "train", data_dir, size=synthetic_size(config))
    self.cameras = np.asarray(self.source.labels["camid"], np.int32)
    self.filenames = [str(f) for f in self.source.labels["filename"]]
    self.num_cameras = datasets.get_spec(dataset).num_cameras
    self.batch_size = config.batch_size
    self.seed = config.seed
    self.height, self.width = image_shape(config)
    self._pool = concurrent.futures.ThreadPoolExecutor(max(1, config.data.num_workers))
    if len(self.cameras) and (self.cameras.min() < 0 or self.cameras.max() >= self.num_cameras):
      raise ReidError(f"{dataset} training cameras span {self.cameras.min()}..{self.cameras.max()}, "
                      f"expected 0..{self.num_cameras - 1}")

  def __len__(self) -> int:
    return len(self.cameras)

  def batch_indices(self, iteration: int) -> np.ndarray:
    per_epoch = len(self) // self.batch_size
    epoch, position = divmod(iteration, per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self))
    return order[position * self.batch_size:(position + 1) * self.batch_size]

  def _train_image(self, index: int, iteration: int, k: int) -> np.ndarray:
    rng = np.random.default_rng([self.seed, iteration, k])
    return transforms.stargan_train_transform(self.source[index]["image"], rng, self.height, self.width)

  def train_batch(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 `[B, H, W, 3]` in [-1, 1], cameras int32 `[B]`) of iteration `iteration`."""
    indices = self.batch_indices(iteration)
    images = list(self._pool.map(self._train_image, indices, [iteration] * len(indices),
                                 range(len(indices))))
    return np.stack(images), self.cameras[indices]

  def test_images(self, indices) -> np.ndarray:
    """Generation input (docs/hhl.md §10.6): bilinear resize to H x W, [-1, 1]. `[n, H, W, 3]`."""
    load = lambda i: transforms.stargan_test_transform(self.source[int(i)]["image"], self.height, self.width)
    return np.stack(list(self._pool.map(load, indices)))

  def sample_indices(self, count: int) -> np.ndarray:
    """Fixed rows of the sample grid: the first images of each camera in turn."""
    per_camera = [np.flatnonzero(self.cameras == c) for c in range(self.num_cameras)]
    chosen = []
    for rank in range(len(self)):
      for members in per_camera:
        if rank < len(members) and len(chosen) < count:
          chosen.append(members[rank])
      if len(chosen) >= count:
        break
    return np.asarray(chosen)

  def close(self):
    self._pool.shutdown()


# --- sample grid --------------------------------------------------------------------------------------

SAMPLE_TILE_HEIGHT = 128  # sample tiles are upscaled (integer factor, nearest) to at least this
SAMPLE_LABEL_SIZE = 14  # font pixel size of the row and column names


def sample_grid(real: np.ndarray, fakes: np.ndarray, gap: int = 2) -> np.ndarray:
  """uint8 grid: row r = [real r, fake of r in camera 1, ..., camera C].

  real `[R, H, W, 3]`, fakes `[C, R, H, W, 3]`, both in [-1, 1] -> `[R(H+gap)-gap, (C+1)(W+gap)-gap, 3]`.
  """
  columns = np.concatenate([real[None], fakes], axis=0)  # [C+1, R, H, W, 3]
  tiles = to_uint8(columns, "round")
  cols, rows, h, w, _ = tiles.shape
  grid = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
  for c in range(cols):
    for r in range(rows):
      grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[c, r]
  return grid


def sample_scale(height: int, tile_height: int = SAMPLE_TILE_HEIGHT) -> int:
  """The integer upscaling factor that brings `height`-pixel tiles to at least `tile_height`."""
  return max(1, -(-int(tile_height) // int(height)))


def labelled_sample_grid(real: np.ndarray, fakes: np.ndarray, real_cameras,
                         tile_height: int = SAMPLE_TILE_HEIGHT, gap: int = 2) -> np.ndarray:
  """The sample figure: `sample_grid` with tiles upscaled by `sample_scale` (nearest, so pixels
  stay exact), a header naming the columns ("real", then "to c1".."to cC": the camera each fake
  was translated to) and a left column naming each real image's own camera ("from c3").

  real_cameras `[R]`: 0-based cameras of the real rows. Returns uint8 `[H', W', 3]`.
  """
  from reid_jax.evaluation import figures  # pylint: disable=g-import-not-at-top
  from PIL import ImageDraw  # pylint: disable=g-import-not-at-top
  num_cameras, h, w = fakes.shape[0], real.shape[1], real.shape[2]
  scale = sample_scale(h, tile_height)
  upscale = lambda x: np.repeat(np.repeat(np.asarray(x), scale, axis=-3), scale, axis=-2)
  grid = sample_grid(upscale(real), upscale(fakes), gap=gap)
  tile_h, tile_w = h * scale, w * scale
  step_h, step_w = tile_h + gap, tile_w + gap
  font = figures.font(SAMPLE_LABEL_SIZE)
  row_labels = [f"from {figures.camera_name(c)}" for c in np.asarray(real_cameras)]
  column_labels = ["real"] + [f"to {figures.camera_name(c)}" for c in range(num_cameras)]
  probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  left = int(max(probe.textlength(t, font=font) for t in row_labels)) + 12
  top = SAMPLE_LABEL_SIZE + 12
  canvas = Image.new("RGB", (left + grid.shape[1], top + grid.shape[0]), (255, 255, 255))
  canvas.paste(Image.fromarray(grid), (left, top))
  draw = ImageDraw.Draw(canvas)
  black = (0, 0, 0)
  for c, text in enumerate(column_labels):
    draw.text((left + c * step_w + tile_w / 2, top / 2), text, fill=black, font=font, anchor="mm")
  for r, text in enumerate(row_labels):
    draw.text((left / 2, top + r * step_h + tile_h / 2), text, fill=black, font=font, anchor="mm")
  return np.asarray(canvas)


# --- results.json ---------------------------------------------------------------------------------

LOSS_WINDOW = 10  # results.json: the mean of each loss over its last LOSS_WINDOW logged values


def loss_summary(workdir, last_n: int = LOSS_WINDOW) -> dict:
  """Each logged loss of `<workdir>/tb` (the lr/* scalars left out):
  `{name: {final, final_iteration, mean_last, last_n}}`, `last_n` = how many logged values the
  mean covers (fewer than asked when fewer were logged). Empty without TensorBoard files."""
  from reid_jax.training import metrics as metrics_lib
  from reid_jax.training import workdir as workdir_lib
  logdir = Path(workdir) / workdir_lib.TB_DIR
  if not logdir.is_dir():
    return {}
  series: dict[str, dict[int, float]] = {}
  for (step, tag), value in metrics_lib.read_scalars(logdir).items():
    if not tag.startswith("lr/"):
      series.setdefault(tag, {})[int(step)] = float(value)  # a resumed run's rewrite wins
  summary = {}
  for tag in sorted(series):
    steps = sorted(series[tag])
    window = [series[tag][s] for s in steps[-max(int(last_n), 1):]]
    summary[tag] = {"final": series[tag][steps[-1]], "final_iteration": steps[-1],
                    "mean_last": float(np.mean(window)), "last_n": len(window)}
  return summary


def write_results(workdir, config, dataset: str, *, summary: dict | None = None,
                  manifest: dict | None = None, camstyle_dir=None,
                  generator: str | None = None, quality: dict | None = None) -> dict:
  """Writes (merges into) `<workdir>/results.json`; returns it.

  Always: experiment, variant, dataset, config name and sha256, devices, versions. With the
  training `summary` of `train`: iterations, num_iters, train_seconds, num_images, num_cameras and
  `losses` (`loss_summary`, unless the summary carries them). With the camera-style `manifest`:
  `camstyle` = {dir, num_files, num_images, num_cameras, generator_iteration, generator, and
  world when the manifest records one}. With `quality`: the generator's own figures
  (`stargan_quality.generator_quality`). What this call does not give is kept from the file (so
  `--generate_only` updates only the set), unless
  the file was written under another config (config_sha256), whose results it drops.
  """
  from reid_jax.training import workdir as workdir_lib
  update = {"experiment": "stargan", "variant": config.get("variant"), "dataset": dataset,
            "config": config.get("config_name", ""),
            "config_sha256": workdir_lib.config_sha256(config)}
  if summary is not None:
    losses = summary.get("losses")
    update.update(
        iterations=int(summary["steps"]), num_iters=int(summary["num_iters"]),
        train_seconds=float(summary["train_seconds"]), num_images=int(summary["num_images"]),
        num_cameras=int(summary["num_cameras"]),
        losses=loss_summary(workdir) if losses is None else losses)
  update.update(devices=workdir_lib.device_names(), versions=workdir_lib.versions())
  if manifest is not None:
    folder = camstyle_dir if camstyle_dir is not None else camstyle.set_dir(
        paths.default_data_dir(), manifest.get("world") or world(config, dataset))
    step = int(manifest["checkpoint_step"])
    update["camstyle"] = {
        "dir": str(folder), "num_files": int(manifest["num_files"]),
        "num_images": int(manifest["num_images"]), "num_cameras": int(manifest["num_cameras"]),
        "generator_iteration": step,
        "generator": generator or ("workdir checkpoint" if step >= 0 else "imported"),
        **({"world": manifest["world"]} if "world" in manifest else {}),
    }
  if quality is not None:
    update["quality"] = quality
  return workdir_lib.merge_results(workdir, update, merge_keys=(),
                                   same_run_keys=("config_sha256",))


# --- training loop --------------------------------------------------------------------------------


def restore_state(workdir, config, num_cameras):
  """The latest checkpoint's state and meta, read only (generation)."""
  from reid_jax.training import loop
  saved, meta = loop.restore_tree(workdir, dataclasses.asdict(init_state(config, num_cameras)))
  return StarGANState(**saved), meta


def train(config, workdir, dataset: str, data_dir, *, stop_at: int | None = None,
          show_progress: bool = True) -> dict:
  """Trains (or resumes) StarGAN on `dataset`'s training images (`_train`), then merges the run
  into `<workdir>/results.json` (`write_results`); returns the summary dict, whose `losses` are
  `loss_summary(workdir)`."""
  summary = _train(config, workdir, dataset, data_dir, stop_at=stop_at,
                   show_progress=show_progress)
  summary["losses"] = loss_summary(workdir)
  write_results(workdir, config, dataset, summary=summary)
  return summary


def _train(config, workdir, dataset: str, data_dir, *, stop_at: int | None = None,
           show_progress: bool = True) -> dict:
  """Trains (or resumes) StarGAN on `dataset`'s training images; returns a summary dict.

  Runs on `loop.Session` (restore-or-start, clock, NaN guard, cadence, TensorBoard, bar), like the
  re-ID trainers' loop. Checkpoints every `config.checkpoint_every` iterations and at the end; a
  rerun on a finished workdir returns at once. `stop_at` ends this session after that many
  iterations (with a checkpoint), e.g. to fit a time slot; the next call resumes. A non-finite loss
  raises ReidError (rerun resumes from the last checkpoint).
  """
  from reid_jax.training import loop
  from reid_jax.training import workdir as workdir_lib

  mesh = sharding.local_mesh()  # one host's devices (multi-host StarGAN is not built)
  sharding.check_batch_size(config.batch_size, mesh)
  workdir = workdir_lib.prepare(workdir, config)
  data = TrainingImages(dataset, data_dir, config)
  num_cameras = data.num_cameras
  schedule = make_schedule(config, len(data))
  session = loop.Session(workdir, checkpoint_every=config.checkpoint_every)
  figures = workdir / workdir_lib.FIGURES_DIR
  figures.mkdir(parents=True, exist_ok=True)
  try:
    state = init_state(config, num_cameras)
    saved, _ = session.restore(dataclasses.asdict(state))
    if saved is not None:
      state = StarGANState(**saved)
    start = int(state.step)
    state = sharding.replicate(state, mesh)

    def summary():
      return {"steps": int(state.step), "num_iters": schedule.num_iters,
              "resumed_from": session.resumed_from, "train_seconds": session.seconds(),
              "num_cameras": num_cameras, "num_images": len(data)}

    if start >= schedule.num_iters:
      return summary()

    train_step = make_train_step(config, num_cameras, schedule, mesh)
    translate = make_translate(config, num_cameras)
    key = jax.random.PRNGKey(config.seed)
    sample_rows = data.sample_indices(config.num_sample_images)
    sample_real = data.test_images(sample_rows)
    n_critic = config.optim.n_critic

    def save_samples(iteration):
      fakes = np.asarray(translate(state.g_params, sample_real))
      grid = labelled_sample_grid(sample_real, fakes, data.cameras[sample_rows])
      Image.fromarray(grid).save(figures / f"stargan_samples_{iteration:07d}.png")
      session.writer.images(iteration, {"stargan/samples": grid})

    prefetch = concurrent.futures.ThreadPoolExecutor(1)
    next_batch = prefetch.submit(data.train_batch, start)
    progress = session.begin(schedule.num_iters, f"stargan {dataset}", initial=start, unit="it",
                             enabled=show_progress)
    end = schedule.num_iters if stop_at is None else min(max(stop_at, start), schedule.num_iters)
    try:
      for iteration in range(start, end):
        images, cameras = sharding.shard_batch(next_batch.result(), mesh)
        if iteration + 1 < end:
          next_batch = prefetch.submit(data.train_batch, iteration + 1)
        update_g = (iteration + 1) % n_critic == 0  # docs/hhl.md §10.5
        # Two programs (D only; D then G): each compiles at its first use, kept out of the ETA.
        state, metrics = progress.first_call("the D+G step" if update_g else "the D step",
                                             train_step, state, images, cameras, key,
                                             update_g=update_g)
        done = iteration + 1
        # Metrics reach the host only every log_every iterations: no per-step synchronisation.
        if done % config.log_every == 0 or done == schedule.num_iters:
          metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
          session.guard(metrics, f"iteration {done}",
                        "Rerun to resume from it, or lower config.optim.g_lr and d_lr")
          session.writer.scalars(done, metrics)
          progress.update_to(done)
          rate = progress.rate  # iterations/s, compilation left out
          images_per_second = "?" if rate is None else f"{rate * config.batch_size:.1f}"
          progress.set_postfix({"D": f"{metrics['D/loss']:.3f}",
                                "G": f"{metrics.get('G/loss', float('nan')):.3f}",
                                "img/s": images_per_second}, refresh=True)
        if done % config.sample_every == 0 or done == schedule.num_iters:
          progress.first_call("the sample translator", save_samples, done, units=0)
        if session.due(done) or done in (end, schedule.num_iters):
          jax.block_until_ready(state)
          session.save(done, dataclasses.asdict(state), step=done)
    finally:
      prefetch.shutdown(wait=True, cancel_futures=True)
    return summary()
  finally:
    session.close()
    data.close()


# --- writing the camera-style set ---------------------------------------------------------------


def _save_jpeg_atomic(path: Path, image: np.ndarray, quality: int) -> None:
  """Encodes to memory, then writes atomically: an interrupted run never leaves a truncated JPEG."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
  atomic_io.write_bytes(path, buffer.getvalue())


def load_generator(config, workdir, num_cameras: int) -> tuple[dict, int]:
  """The latest checkpoint's generator params and its iteration."""
  state, _ = restore_state(workdir, config, num_cameras)
  return state.g_params, int(state.step)


def write_camstyle_set(config, workdir, dataset: str, data_dir, *, g_params=None,
                       checkpoint_step: int | None = None, out_dir=None,
                       show_progress: bool = True) -> dict:
  """Writes every training image's C fakes and MANIFEST.json; returns the manifest.

  The generator is the latest checkpoint of `workdir` unless `g_params` (and `checkpoint_step`)
  are given, e.g. imported with `stargan_models.load_torch_generator`. The set goes to
  `camstyle.set_dir(data_dir, world(config, dataset))` unless `out_dir` is given. Resumable: files
  already there are kept, a crash leaves no partial file under a final name. A folder begun by
  another generator or config, or for another world, is refused.
  """
  from reid_jax.training import workdir as workdir_lib

  num_cameras = datasets.get_spec(dataset).num_cameras
  if g_params is None:
    g_params, checkpoint_step = load_generator(config, workdir, num_cameras)
  checkpoint_step = -1 if checkpoint_step is None else int(checkpoint_step)
  config_hash = workdir_lib.config_sha256(config)
  target = world(config, dataset)
  out = Path(out_dir) if out_dir is not None else camstyle.set_dir(data_dir, target)
  identity = {"checkpoint_step": checkpoint_step, "config_sha256": config_hash}

  data = TrainingImages(dataset, data_dir, config)
  try:
    order = np.argsort(np.asarray(data.filenames, dtype=object), kind="stable")  # docs/hhl.md §10.7
    stems = [camstyle.stem_of(data.filenames[i]) for i in order]
    if len(set(stems)) != len(stems):
      raise ReidError(f"{dataset} training file names are not unique once flattened; "
                      "the camera-style folder is flat (docs/hhl.md §10.7)")
    manifest = camstyle.read_manifest(out)
    if manifest is not None:
      check_same_generator(out / camstyle.MANIFEST, manifest, identity, dataset, target)
      if not camstyle.missing_names(out, stems, num_cameras):
        return manifest
    out.mkdir(parents=True, exist_ok=True)
    partial = out / camstyle.PARTIAL
    if partial.exists():
      check_same_generator(partial, json.loads(partial.read_text()), identity, dataset, target)
    else:
      atomic_io.write_json(partial, {**identity, "world": target})
    for stale in out.glob(".*.tmp"):  # left by an interrupted writer; never under a final name
      stale.unlink()

    present = set(os.listdir(out))
    todo = [k for k, stem in enumerate(stems)
            if any(camstyle.fake_name(stem, j) not in present for j in range(1, num_cameras + 1))]
    translate = make_translate(config, num_cameras)
    quality, quantize = config.generate.jpeg_quality, config.generate.quantize
    batch = config.generate.batch_size
    writers = concurrent.futures.ThreadPoolExecutor(max(1, config.data.num_workers))
    pending = []
    with progress_lib.Bar(len(todo), f"camstyle {dataset}", unit="img",
                          enabled=show_progress) as progress:
      for begin in range(0, len(todo), batch):
        chunk = todo[begin:begin + batch]
        images = data.test_images(order[chunk])
        fakes = progress.first_call(f"the generator (batches of {len(chunk)})", translate,
                                    g_params, images, units=len(chunk))
        fakes = to_uint8(fakes, quantize)  # [C, b, H, W, 3]
        for pending_write in pending:
          pending_write.result()
        pending = [writers.submit(_save_jpeg_atomic, out / name, fakes[j, n], quality)
                   for n, k in enumerate(chunk) for j in range(num_cameras)
                   if (name := camstyle.fake_name(stems[k], j + 1)) not in present]
        progress.update(len(chunk))
      for pending_write in pending:
        pending_write.result()
    writers.shutdown()
    missing = camstyle.missing_names(out, stems, num_cameras)
    if missing:
      raise ReidError(f"{out}: {len(missing)} camera-style files still missing after writing "
                      f"(e.g. {missing[0]}); rerun to finish")
    h, w = image_shape(config)
    manifest = camstyle.write_manifest(
        out, dataset=dataset, num_cameras=num_cameras, num_images=len(stems),
        checkpoint_step=checkpoint_step, config_sha256=config_hash, world=target, image_size=[h, w],
        format="jpeg", jpeg_quality=quality, quantize=quantize, variant=config.get("variant"))
    partial.unlink(missing_ok=True)
    return manifest
  finally:
    data.close()


def check_same_generator(path: Path, saved: dict, identity: dict, dataset: str,
                         target: dict) -> None:
  """Refuses a camera-style folder whose MANIFEST/.PARTIAL record (`saved`) names another world
  than `target` (`world`) or another generator than `identity` (checkpoint step, config hash)."""
  mismatch = camstyle.other_world(path.parent, saved, dataset, target)
  if mismatch is not None:
    raise ReidError(f"{mismatch} ({path.name}); delete {path.parent} to rewrite it")
  differing = [k for k in identity if saved.get(k) != identity[k]]
  if differing:
    fields = "; ".join(f"{k}: {saved.get(k)} there, {identity[k]} now" for k in differing)
    raise ReidError(f"{path.parent} holds fakes of another generator ({path.name}: {fields}); "
                    f"delete {path.parent} to rewrite it")
