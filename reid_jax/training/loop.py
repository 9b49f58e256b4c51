"""The epoch/step loop shared by the baseline, HHL and ARN trainers, and the session core
(`Session`) that StarGAN's iteration loop shares with it.

What it guarantees (docs/design.md §3, §5):

- **Resume.** The loop restores the latest checkpoint of `<workdir>/checkpoints/` and continues
  from the exact step. Everything random is a function of (seed, step): the step's key is
  `fold_in(PRNGKey(seed), step)` and the data come from `epoch_batches(epoch, start)`, which must
  be a pure function of the epoch and the position in it (sampler state = (seed, epoch, step)).
  So an interrupted and resumed run ends bit-identical to an uninterrupted one.
- **Checkpoints** every `checkpoint_every` steps and at the end of every epoch (synchronous,
  atomic: see `checkpoint.py`).
- **NaN/Inf guard.** A non-finite loss (or non-finite updated parameters, via the step's
  'param_norm' metric) stops the run with a ReidError naming the step and the loss; nothing after
  the last good checkpoint is saved, so a rerun resumes from it.
- **Progress**: `reid_jax.progress.Bar` on stdout (step, loss, img/s, ETA); the first step
  compiles: it is announced ("compiling the train step ...", then its time) and kept out of the
  img/s figure and the ETA. TensorBoard scalars in `<workdir>/tb/` (every metric of the step,
  averaged over `log_every` steps, and the lr of every group).

`Session` is what any loop of this project repeats around its own step: restore-or-start from
`<workdir>/checkpoints/`, the session clock (train_seconds summed over sessions, kept in every
checkpoint's meta), the NaN guard's message, the checkpoint cadence, TensorBoard in `<workdir>/tb/`
and the bar. `run` is the epoch loop on it; `training/stargan.py` runs its D/G iterations on it.
"""

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping

import jax
import numpy as np
from reid_jax import progress as progress_lib
from reid_jax import xla_options
from reid_jax.errors import ReidError
from reid_jax.training import checkpoint as checkpoint_lib
from reid_jax.training import metrics as metrics_lib
from reid_jax.training import sharding as sharding_lib
from reid_jax.training import state as state_lib
from reid_jax.training import workdir as workdir_lib

EpochBatches = Callable[[int, int], Iterable[Mapping[str, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """num_epochs x steps_per_epoch optimiser steps; images_per_step feeds the img/s figure."""

  num_epochs: int
  steps_per_epoch: int
  seed: int
  images_per_step: int
  checkpoint_every: int = 0  # 0: only at epoch ends
  log_every: int = 10
  max_to_keep: int = 2
  description: str = "train"


@dataclasses.dataclass
class LoopResult:
  state: state_lib.TrainState
  steps: int
  epochs: int
  train_seconds: float  # summed over all sessions of this workdir
  resumed_from: int | None


def step_rng(seed: int, step: int) -> jax.Array:
  """The step's key: fold_in(PRNGKey(seed), step), independent of where a run was resumed."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), step)


def jit_step(train_step, mesh):
  """Compiles `train_step(state, batch, rng)` with the state donated and replicated and the batch
  split over the mesh's 'data' axis."""
  replicated = sharding_lib.replicated(mesh)
  return xla_options.jit(
      train_step,
      in_shardings=(replicated, sharding_lib.batch_sharding(mesh), replicated),
      out_shardings=(replicated, replicated),
      donate_argnums=(0,),
  )


def restore_tree(workdir, template, step: int | None = None):
  """`(tree, meta)` of `workdir`'s checkpoint (latest by default) onto the pytree `template`,
  read only (evaluation, generation)."""
  with checkpoint_lib.Checkpointer(Path(workdir) / workdir_lib.CHECKPOINT_DIR,
                                   read_only=True) as ckpt:
    return ckpt.restore(template, step=step)


def restore_state(workdir, template: state_lib.TrainState, step: int | None = None):
  """The checkpointed state of `workdir` (latest by default) and its meta, onto `template`."""
  tree, meta = restore_tree(workdir, state_lib.to_tree(template), step)
  return state_lib.from_tree(template, tree), meta


class Session:
  """One training session on a workdir: what every loop repeats around its own step.

    session = Session(workdir, checkpoint_every=500)
    tree, meta = session.restore(template_tree)      # (None, {}) on a fresh workdir
    bar = session.begin(total, "train", initial=step)
    ... session.guard({"loss": loss}, f"step {step}", "lower the lr") ...
    ... session.writer.scalars(step, scalars) ...
    if session.due(step): session.save(step, tree, epoch=...)
    session.close()

  Args:
    workdir: the run's workdir (`checkpoints/` and `tb/` are created in it).
    checkpoint_every: `due(step)` every that many steps (0: never; callers add their own, e.g.
      epoch ends).
    max_to_keep: checkpoints kept.
  """

  def __init__(self, workdir, *, checkpoint_every: int = 0, max_to_keep: int = 2):
    self.workdir = Path(workdir)
    self.checkpoint_every = int(checkpoint_every)
    self.ckpt = checkpoint_lib.Checkpointer(self.workdir / workdir_lib.CHECKPOINT_DIR,
                                            max_to_keep=max_to_keep)
    self.resumed_from = self.ckpt.latest_step()
    self.train_seconds = 0.0  # of the earlier sessions, from the checkpoint
    self.writer = None
    self.progress = None
    self._started = None

  def restore(self, template, describe: Callable[[dict], str] | None = None):
    """`(tree, meta)` of the latest checkpoint onto the pytree `template`, or `(None, {})` when
    the workdir has none; prints where it resumes from (`describe(meta)` in brackets)."""
    if self.resumed_from is None:
      return None, {}
    tree, meta = self.ckpt.restore(template)
    self.train_seconds = float(meta.get("train_seconds", 0.0))
    detail = f" ({describe(meta)})" if describe is not None else ""
    print(f"resuming from the checkpoint of step {self.resumed_from} in {self.ckpt.directory}"
          f"{detail}")
    return tree, meta

  def begin(self, total: int, description: str, *, initial: int, unit: str = "step",
            enabled: bool = True) -> progress_lib.Bar:
    """Opens TensorBoard and the bar and starts the session clock; returns the bar. Only the main
    process writes TensorBoard and shows the bar."""
    main = sharding_lib.is_main_process()
    self.writer = metrics_lib.MetricWriter(self.workdir / workdir_lib.TB_DIR, enabled=main)
    self.progress = progress_lib.Bar(total, description, unit=unit, initial=initial,
                                     enabled=enabled and main)
    self._started = time.perf_counter()
    return self.progress

  def seconds(self) -> float:
    """Training seconds of the workdir so far: earlier sessions plus this one."""
    now = 0.0 if self._started is None else time.perf_counter() - self._started
    return self.train_seconds + now

  def guard(self, values: Mapping[str, float], where: str, advice: str,
            describe: Callable[[Mapping[str, float]], str] | None = None) -> None:
    """The NaN/Inf guard: raises ReidError unless every value is finite, naming `where`, the
    values (`describe(values)`, by default all of them) and the last good checkpoint; nothing is
    saved after it, so a rerun resumes from that checkpoint."""
    if all(math.isfinite(v) for v in values.values()):
      return
    what = (describe(values) if describe is not None else
            "non-finite metrics (" + ", ".join(f"{k} {v}" for k, v in values.items()) + ")")
    kept = self.ckpt.latest_step()
    raise ReidError(
        f"{what} at {where}; stopped without saving. Last good checkpoint: "
        f"{'step ' + str(kept) if kept is not None else 'none'} in {self.ckpt.directory}. "
        f"{advice}")

  def due(self, step: int) -> bool:
    """Whether the cadence asks for a checkpoint after `step` steps."""
    return bool(self.checkpoint_every) and step % self.checkpoint_every == 0

  def save(self, step: int, tree, /, **meta) -> None:
    """Checkpoint `step`: the host pytree `tree`, `meta` plus the training seconds so far."""
    self.ckpt.save(step, tree, {**meta, "train_seconds": self.seconds()})

  def close(self) -> None:
    if self.progress is not None:
      self.progress.close()
    if self.writer is not None:
      self.writer.close()
    self.ckpt.close()


def _sampler_meta(seed, epoch, step_in_epoch):
  return {"epoch": epoch, "step_in_epoch": step_in_epoch,
          "sampler": {"seed": seed, "epoch": epoch, "step": step_in_epoch}}


def _non_finite(values) -> str:
  loss, param_norm = values["loss"], values["param_norm"]
  if not math.isfinite(loss):
    return f"non-finite loss {loss}"
  return f"non-finite parameters after the update (norm {param_norm}, loss {loss})"


def run(config: LoopConfig, *, workdir, state: state_lib.TrainState, train_step,
        epoch_batches: EpochBatches, mesh=None,
        learning_rates: Callable[[int], Mapping[str, float]] | None = None,
        on_step: Callable[[int, dict], None] | None = None) -> LoopResult:
  """Trains `state` for `config.num_epochs` epochs, resuming from `<workdir>/checkpoints/`.

  Args:
    config: loop sizes and intervals.
    workdir: the run's workdir (checkpoints/ and tb/ are created in it).
    state: the freshly initialised state; also the template a checkpoint is restored onto.
    train_step: `train_step(state, batch, rng) -> (state, metrics)`, not yet jitted.
    epoch_batches: `(epoch, start) -> iterable of host batches`, the epoch's batches from
      position `start` on; a pure function of its arguments (and the seed it closes over).
      It must yield `config.steps_per_epoch - start` batches.
    mesh: the data mesh (default: all devices).
    learning_rates: step -> {group: lr}, logged to TensorBoard as `lr/<group>`.
    on_step: called with (step, host metrics) after each step (tests use it as a hook).
  """
  mesh = sharding_lib.data_mesh() if mesh is None else mesh
  total_steps = config.num_epochs * config.steps_per_epoch
  session = Session(workdir, checkpoint_every=config.checkpoint_every,
                    max_to_keep=config.max_to_keep)
  try:
    start_epoch, start_in_epoch = 0, 0
    tree, meta = session.restore(
        state_lib.to_tree(state),
        lambda meta: f"epoch {meta['epoch']}, step {meta['step_in_epoch']} of the epoch")
    if tree is not None:
      state = state_lib.from_tree(state, tree)
      start_epoch, start_in_epoch = int(meta["epoch"]), int(meta["step_in_epoch"])
    state = sharding_lib.replicate(state, mesh)
    step = int(jax.device_get(state.step))
    if step != start_epoch * config.steps_per_epoch + start_in_epoch:
      raise ReidError(f"checkpoint {session.ckpt.directory} is inconsistent (state step {step}, "
                      f"meta epoch {start_epoch} step {start_in_epoch}); delete the workdir's "
                      "checkpoints/")

    compiled_step = jit_step(train_step, mesh)
    initial_step = step
    progress = session.begin(total_steps, config.description, initial=step)
    # img/s over the window, leaving out the step that compiled (and the start-up before it).
    window, window_steps, timed_steps, timed_seconds = {}, 0, 0, 0.0
    last_end = time.perf_counter()
    for epoch in range(start_epoch, config.num_epochs):
      begin = start_in_epoch if epoch == start_epoch else 0
      position = begin
      for batch in epoch_batches(epoch, begin):
        if position >= config.steps_per_epoch:
          break
        batch = sharding_lib.shard_batch(batch, mesh)
        compiles = step == initial_step
        rng = sharding_lib.replicate(step_rng(config.seed, step), mesh)
        if compiles:
          state, metrics = progress.compile_call("the train step", compiled_step, state, batch, rng)
        else:
          state, metrics = compiled_step(state, batch, rng)
        host = {k: float(v) for k, v in jax.device_get(metrics).items()}
        now = time.perf_counter()
        if not compiles:  # wall time since the previous step: data, step and checkpoints
          timed_steps += 1
          timed_seconds += now - last_end
        last_end = now
        loss = host["loss"]
        session.guard({"loss": loss, "param_norm": host.get("param_norm", 0.0)},
                      f"step {step} (epoch {epoch})",
                      "Lower the learning rate (config optim.base_lr) or check the data",
                      describe=_non_finite)
        step += 1
        position += 1
        window_steps += 1
        for k, v in host.items():
          window[k] = window.get(k, 0.0) + v
        if on_step is not None:
          on_step(step, host)
        images_per_second = (timed_steps * config.images_per_step / timed_seconds
                             if timed_seconds > 0 else None)
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.4f}", img_s=("?" if images_per_second is None
                                                         else f"{images_per_second:.1f}"))
        if step % config.log_every == 0 or position == config.steps_per_epoch:
          scalars = {f"train/{k}": v / window_steps for k, v in window.items()}
          if images_per_second is not None:
            scalars["train/images_per_second"] = images_per_second
          scalars["train/epoch"] = epoch
          if learning_rates is not None:
            scalars.update({f"lr/{g}": lr for g, lr in learning_rates(step - 1).items()})
          session.writer.scalars(step, scalars)
          window, window_steps, timed_steps, timed_seconds = {}, 0, 0, 0.0
        end_of_epoch = position == config.steps_per_epoch
        if end_of_epoch or session.due(step):
          meta = (_sampler_meta(config.seed, epoch + 1, 0) if end_of_epoch else
                  _sampler_meta(config.seed, epoch, position))
          session.save(step, state_lib.to_tree(jax.device_get(state)), **meta)
      if position != config.steps_per_epoch:
        raise ReidError(f"epoch {epoch} yielded {position} batches, expected "
                        f"{config.steps_per_epoch}: the training set is too small for the batch size")
    train_seconds = session.seconds()
  finally:
    session.close()
  return LoopResult(state=state, steps=step, epochs=config.num_epochs,
                    train_seconds=train_seconds, resumed_from=session.resumed_from)
