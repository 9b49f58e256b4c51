"""Keeping third-party logging off the console.

  restore = console.quiet_third_party(workdir / "log.txt")   # or quiet_third_party() without a file

Our own messages are `print`s (stdout, with the progress bars) and one-line errors; everything that
goes through Python's `logging` comes from libraries: orbax's INFO and WARNING lines on every
checkpoint save and restore ("CheckpointManagerOptions.read_only=True, setting ..."), absl WARNING
lines, jax's backend notices ("An NVIDIA GPU may be present on this machine...", "Unable to
initialize backend 'tpu'"), TFDS. `quiet_third_party` sends those records to a log file when one is
given (INFO and above) and keeps only ERROR and above on the console; Python `warnings` raised by
libraries are routed through logging as well (`logging.captureWarnings`), so they land in the same
place.

It works before or after `absl.app.run` installs its handler (the absl handler is gated itself, so
the gate holds when app.run adds it to the root logger later) and can be called again, e.g. once
without a file at start-up and once with the workdir's log file when the workdir is known: the
previous file is closed. Log lines written by C++ code (XLA, TensorStore) do not pass through Python
and are not affected.
"""

import logging
import sys
from pathlib import Path
from typing import Callable

CONSOLE_LEVEL = logging.ERROR
FILE_LEVEL = logging.INFO
FORMAT = "%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s"

_state: dict = {"file_handler": None, "console_handler": None}


class _StderrHandler(logging.Handler):
  """ERROR and above to the current sys.stderr (looked up at each record, unlike StreamHandler);
  silent once absl's handler is on the root logger (app.run adds it), which then prints them."""

  def emit(self, record):
    absl_handler = _absl_handler()
    if absl_handler is not None and absl_handler in logging.getLogger().handlers:
      return
    try:
      sys.stderr.write(self.format(record) + "\n")
      sys.stderr.flush()
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


def _absl_handler():
  try:
    from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  except ImportError:  # pragma: no cover
    return None
  return absl_logging.get_absl_handler()


def _is_console(handler) -> bool:
  if handler is _absl_handler():
    return True
  if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
    return isinstance(handler, _StderrHandler)
  return getattr(handler, "stream", None) in (sys.stderr, sys.stdout, sys.__stderr__,
                                              sys.__stdout__)


def _console_handlers():
  """Every handler that writes to the console: the absl handler (attached or not yet) and the
  stream handlers on stderr/stdout of the root logger and of any logger that has its own."""
  found = []
  absl_handler = _absl_handler()
  if absl_handler is not None:
    found.append(absl_handler)
  loggers = [logging.getLogger()] + [
      logger for logger in logging.Logger.manager.loggerDict.values()
      if isinstance(logger, logging.Logger)]
  for logger in loggers:
    for handler in logger.handlers:
      if _is_console(handler) and handler not in found:
        found.append(handler)
  return found


def quiet_third_party(log_file=None) -> Callable[[], None]:
  """Third-party logging off the console: to `log_file` (appended, INFO and above) if given,
  dropped below ERROR otherwise; ERROR and above stay on stderr. Returns a function that undoes it
  (tests use it)."""
  root = logging.getLogger()
  saved_levels = {}
  for handler in _console_handlers():
    saved_levels[handler] = handler.level
    handler.setLevel(max(handler.level, CONSOLE_LEVEL))
  absl_logger = logging.getLogger("absl")
  saved_root_level, saved_absl_level = root.level, absl_logger.level
  added = []

  # Without any handler in the hierarchy, Python's last-resort handler prints WARNING to stderr.
  if not any(_is_console(h) for h in root.handlers) and _state["console_handler"] is None:
    console = _StderrHandler(CONSOLE_LEVEL)
    console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(console)
    _state["console_handler"] = console
    added.append(console)

  previous_file = _state["file_handler"]
  if previous_file is not None:
    root.removeHandler(previous_file)
    previous_file.close()
    _state["file_handler"] = None
  if log_file is not None:
    path = Path(log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(path, mode="a", encoding="utf-8", delay=True)
    file_handler.setLevel(FILE_LEVEL)
    file_handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(file_handler)
    _state["file_handler"] = file_handler
    added.append(file_handler)
    if root.level == logging.NOTSET or root.level > FILE_LEVEL:
      root.setLevel(FILE_LEVEL)
    if absl_logger.level > FILE_LEVEL:  # set by absl's verbosity before its handler was attached
      absl_logger.setLevel(logging.NOTSET)
  logging.captureWarnings(True)

  def restore():
    logging.captureWarnings(False)
    for handler in added:
      root.removeHandler(handler)
      handler.close()
      for key, value in _state.items():
        if value is handler:
          _state[key] = None
    for handler, level in saved_levels.items():
      handler.setLevel(level)
    root.setLevel(saved_root_level)
    absl_logger.setLevel(saved_absl_level)

  return restore
