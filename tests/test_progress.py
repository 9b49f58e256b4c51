"""The shared progress bar: compilation announced and kept out of the rate and the ETA."""

import io
import re
import time

from reid_jax import progress


def _fake_step():
  calls = []

  def step(x):
    time.sleep(1.0 if not calls else 0.01)
    calls.append(x)
    return x + 1

  return step


def test_compile_time_is_announced_and_kept_out_of_rate_and_eta():
  out = io.StringIO()
  bar = progress.Bar(100, "train", unit="step", mininterval=0, file=out)
  step = _fake_step()
  time.sleep(0.3)  # start-up before the first step (data loading) is not a step either
  for i in range(6):  # few steps: tqdm's moving average still remembers the first one
    bar.first_call("the train step", step, i)
    bar.update(1)
  rate, eta = bar.rate, bar.eta_seconds
  bar.close()
  text = out.getvalue()
  assert "compiling the train step ..." in text
  assert re.search(r"compiled the train step in 1\.\d s", text), text
  assert text.count("compiling") == 1
  # 10 ms steps: about 100 steps/s (sleep overshoots; with the 1.3 s counted it would be < 10).
  assert rate is not None and rate > 40, rate
  assert eta is not None and eta < 94 / 40, eta
  assert "6/100" in text


def test_later_compilation_is_cut_out_of_the_clock():
  out = io.StringIO()
  bar = progress.Bar(100, "stargan", unit="step", mininterval=0, file=out)
  plain = lambda: time.sleep(0.01)  # pylint: disable=unnecessary-lambda-assignment
  for i in range(10):
    if i == 5:
      bar.compile_call("the D+G step", time.sleep, 1.0)
    else:
      bar.first_call("the D step", plain)
    bar.update(1)
  rate = bar.rate
  bar.close()
  assert rate is not None and rate > 40, rate
  assert "compiling the D+G step ..." in out.getvalue()
  assert "compiled the D step" in out.getvalue()


def test_disabled_bar_prints_nothing_and_counts():
  out = io.StringIO()
  bar = progress.Bar(3, "quiet", enabled=False, file=out)
  assert bar.first_call("f", lambda: 7) == 7
  bar.update(2)
  bar.update_to(3)
  bar.close()
  assert bar.n == 3
  assert out.getvalue() == ""
