"""Orbax checkpoints of a training run in `<workdir>/checkpoints/` (docs/design.md §5).

One checkpoint per saved step holds two items:

- `state`: the array pytree (params, batch_stats, opt_state, step, ...), saved with
  `ocp.args.StandardSave` and restored onto the shapes, dtypes and shardings of a template;
- `meta`: a JSON dict (sampler state `{seed, epoch, step}`, epoch, anything plain), saved with
  `ocp.args.JsonSave`.

Saving is synchronous: orbax writes into a temporary folder and renames it when complete, so a
run killed mid-save leaves the previous checkpoint as the latest one (atomic).

Usage:

  ckpt = Checkpointer(workdir / "checkpoints")
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state)     # `state` is the freshly initialised template
  ckpt.save(step, state, {"epoch": 3, "sampler": {...}})
  ckpt.close()
"""

import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from reid_jax.errors import ReidError

_STATE = "state"
_META = "meta"


def _abstract(tree):
  """Shape/dtype/sharding skeleton of `tree` for `StandardRestore`."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
  """An orbax `CheckpointManager` over `directory` keeping the last `max_to_keep` steps."""

  def __init__(self, directory, max_to_keep: int = 2, read_only: bool = False):
    self.directory = Path(directory).absolute()
    self._interrupted = False  # a save was interrupted (Ctrl-C, crash): `close` must not wait
    if read_only and not self.directory.is_dir():
      raise ReidError(f"no checkpoints in {self.directory}: train first (the workdir holds none)")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=not read_only,
        read_only=read_only,
        enable_async_checkpointing=False,
        cleanup_tmp_directories=not read_only,
    )
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=(_STATE, _META))

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None when there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state, meta: dict[str, Any] | None = None) -> None:
    """Writes `state` (arrays) and `meta` (JSON-able) as checkpoint `step`; a no-op if it exists."""
    if step in self._manager.all_steps():
      return
    try:
      self._manager.save(
          int(step),
          args=ocp.args.Composite(**{
              _STATE: ocp.args.StandardSave(state),
              _META: ocp.args.JsonSave(dict(meta or {})),
          }),
          force=True,
      )
      self._manager.wait_until_finished()
    except BaseException:  # Ctrl-C or a crash mid-save: no temporary folder is left behind
      self.remove_temporary()
      self._interrupted = True
      raise

  def remove_temporary(self) -> None:
    """Deletes orbax's unfinished `*.orbax-checkpoint-tmp*` folders (never a complete step)."""
    for path in self.directory.glob("*.orbax-checkpoint-tmp*"):
      shutil.rmtree(path, ignore_errors=True)

  def restore(self, template=None, step: int | None = None):
    """Returns `(state, meta)` of checkpoint `step` (default: the latest).

    Args:
      template: a pytree with the saved structure (e.g. the freshly initialised train state);
        arrays come back with its shapes, dtypes and shardings. None returns the saved tree as
        nested dicts of arrays.
      step: which checkpoint; None for the latest.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise ReidError(f"no checkpoint in {self.directory}: train first (the workdir holds none)")
    state_args = ocp.args.StandardRestore(None if template is None else _abstract(template))
    restored = self._manager.restore(
        int(step),
        args=ocp.args.Composite(**{_STATE: state_args, _META: ocp.args.JsonRestore()}))
    return restored[_STATE], dict(restored[_META] or {})

  def close(self) -> None:
    # After an interrupted save orbax may still wait on that save's threads: closing would hang
    # the Ctrl-C path; the step was never completed, so there is nothing left to finish.
    if not self._interrupted:
      self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
