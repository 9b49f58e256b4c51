"""The one progress bar of the project: tqdm on stdout, with compilation kept out of the ETA.

  bar = progress.Bar(total_steps, "train", unit="step", initial=step)
  for batch in batches:
    state, metrics = bar.first_call("the train step", train_step, state, batch)
    bar.update(1)
  bar.close()

Why stdout and always on: Colab's stdout is not a TTY and stderr is where third-party logging
goes (WORKSPACE.md, "tqdm writes to stdout"). The bar refreshes at most once a second by default.

Compilation: the first call of a jitted function compiles it, which can take far longer than a
step (a minute for the ResNet-50 step on 2 cores). `compile_call` (and `first_call`, which calls it
only the first time a name is seen) prints "compiling <what> ...", runs the call to completion,
prints "compiled <what> in 12.3 s (first run included)" and keeps that time and that unit of work
out of the rate and the ETA:

- when nothing has been counted yet (the usual first step), the bar's clock restarts after the
  call, so the start-up before it (data loading, the first batch) is left out as well;
- later (e.g. StarGAN's generator step, first run at iteration `n_critic`), the call's duration is
  cut out of the clock.

The unit of work done by the compiling call (1 by default) is shown in the count but not used for
the rate. Announcements are printed only when the bar is enabled.
"""

import contextlib
import sys
import time
from typing import Any, Callable

from tqdm import tqdm


PERCENT_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"


def _block(result):
  """Waits for jax arrays in `result` (a no-op for anything else; jax is not imported here)."""
  jax = sys.modules.get("jax")
  return result if jax is None else jax.block_until_ready(result)


class Bar:
  """A tqdm bar on stdout with compile-aware timing (see the module docstring).

  Args:
    total: the units to do (None: unknown, no ETA).
    desc: the bar's label.
    unit: what is counted ("step", "img", "query", ...).
    initial: units already done (a resumed run).
    enabled: False makes the bar and its announcements silent (tests, nested use).
    mininterval: seconds between refreshes.
    file: the stream (default: the current sys.stdout).
    leave: keep the finished bar on screen.
    bar_format: tqdm's format string (e.g. `PERCENT_FORMAT` for a bar of abstract work units).
  """

  def __init__(self, total: int | None, desc: str, *, unit: str = "it", initial: int = 0,
               enabled: bool = True, mininterval: float = 1.0, file=None, leave: bool = True,
               bar_format: str | None = None):
    self.enabled = bool(enabled)
    self._file = sys.stdout if file is None else file
    self._tqdm = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=self._file,
                      disable=not self.enabled, dynamic_ncols=True, mininterval=mininterval,
                      leave=leave, bar_format=bar_format)
    self._n = int(initial)
    self._uncounted = 0  # units done by compiling calls, not yet passed to update()
    self._seen: set[str] = set()
    self.compile_seconds: dict[str, float] = {}

  # --- counting --------------------------------------------------------------------------------

  @property
  def n(self) -> int:
    return self._n

  @property
  def total(self):
    return self._tqdm.total

  def update(self, n: int = 1) -> None:
    """Counts `n` units; those of a compiling call are counted without entering the rate."""
    self._n += n
    if self._uncounted and n > 0:
      skipped = min(self._uncounted, n)
      self._uncounted -= skipped
      n -= skipped
      if self.enabled:
        bar = self._tqdm
        bar.n += skipped
        bar.last_print_n += skipped
        bar.initial += skipped  # the average rate is (n - initial) / elapsed
        if not n:
          bar.refresh()
    if n:
      self._tqdm.update(n)

  def update_warmup(self, n: int) -> None:
    """Counts `n` units done while warming up (an unannounced compile, start-up): shown, kept out
    of the rate; when they are the first, the clock starts after them."""
    self._exclude(self._now(), n)
    self.update(n)

  def update_to(self, n: int) -> None:
    """Counts up to `n` units in all."""
    self.update(n - self.n)

  def set_postfix(self, *args, **kwargs) -> None:
    """tqdm's `set_postfix`, drawn at the next refresh."""
    kwargs.setdefault("refresh", False)
    self._tqdm.set_postfix(*args, **kwargs)

  def set_description(self, desc: str) -> None:
    self._tqdm.set_description(desc, refresh=False)

  def write(self, line: str) -> None:
    """Prints a line above the bar (when enabled)."""
    if self.enabled:
      self._tqdm.write(line, file=self._file)

  @property
  def rate(self) -> float | None:
    """Units per second as the bar shows it (compilation excluded); None before any is known."""
    if not self.enabled:
      return None
    info = self._tqdm.format_dict
    if info["rate"]:
      return float(info["rate"])
    done = info["n"] - info["initial"]
    return done / info["elapsed"] if done > 0 and info["elapsed"] > 0 else None

  @property
  def eta_seconds(self) -> float | None:
    """Seconds left at the current rate (None without a total or a rate)."""
    rate = self.rate
    if not rate or self.total is None:
      return None
    return (self.total - self.n) / rate

  # --- compilation -----------------------------------------------------------------------------

  def compile_call(self, what: str, fn: Callable, *args, units: int = 1, **kwargs) -> Any:
    """`fn(*args, **kwargs)` run to completion as a compiling call: announced, timed, and kept
    out of the rate; `units` is how much work the call does (counted at the next `update`)."""
    with self.compiling(what, units=units):
      return _block(fn(*args, **kwargs))

  def first_call(self, what: str, fn: Callable, *args, units: int = 1, **kwargs) -> Any:
    """`compile_call` the first time `what` is called through this bar, a plain call after."""
    if what in self._seen:
      return fn(*args, **kwargs)
    self._seen.add(what)
    return self.compile_call(what, fn, *args, units=units, **kwargs)

  @contextlib.contextmanager
  def compiling(self, what: str, units: int = 1):
    """The block compiles `what` (and does `units` of work, synchronously): see `compile_call`."""
    self.write(f"compiling {what} ...")
    start = time.perf_counter()
    clock_start = self._now()
    yield
    seconds = time.perf_counter() - start
    self.compile_seconds[what] = self.compile_seconds.get(what, 0.0) + seconds
    self.write(f"compiled {what} in {seconds:.1f} s (first run included)")
    self._exclude(clock_start, units)

  def _now(self) -> float:
    """tqdm's clock (the one its rate and elapsed time use)."""
    return self._tqdm._time() if self.enabled else 0.0  # pylint: disable=protected-access

  def _exclude(self, clock_start: float, units: int) -> None:
    self._uncounted += max(0, int(units))
    if not self.enabled:
      return
    bar = self._tqdm
    now = self._now()
    if bar.n == bar.initial:
      # Nothing measured yet: the clock starts now (start-up and compilation left out).
      bar.start_t = bar.last_print_t = now
      bar._ema_dn = type(bar._ema_dn)(bar.smoothing)  # pylint: disable=protected-access
      bar._ema_dt = type(bar._ema_dt)(bar.smoothing)  # pylint: disable=protected-access
    else:
      cut = now - clock_start
      bar.start_t += cut
      bar.last_print_t = min(bar.last_print_t + cut, now)

  # --- lifetime --------------------------------------------------------------------------------

  def close(self) -> None:
    self._tqdm.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False
