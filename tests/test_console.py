"""quiet_third_party: library logging goes to the log file, not to the console; errors stay."""

import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from absl import logging as absl_logging

from reid_jax import console

REPO = Path(__file__).resolve().parents[1]


def test_absl_and_python_library_warnings_go_to_the_file_not_stderr(tmp_path, capfd):
  log = tmp_path / "workdir" / "log.txt"
  restore = console.quiet_third_party(log)
  try:
    absl_logging.warning("CheckpointManagerOptions.read_only=True, setting save_interval_steps=0.")
    absl_logging.info("orbax: Finished saving checkpoint")
    logging.getLogger("jax._src.xla_bridge").warning("An NVIDIA GPU may be present on this machine")
    warnings.warn("a library's UserWarning")
    logging.getLogger("orbax").error("a real failure")
    print("our own line")
  finally:
    restore()
  captured = capfd.readouterr()
  text = log.read_text()
  for line in ("setting save_interval_steps=0", "Finished saving checkpoint",
               "An NVIDIA GPU may be present", "a library's UserWarning", "a real failure"):
    assert line in text
  for line in ("save_interval_steps", "Finished saving", "NVIDIA", "UserWarning"):
    assert line not in captured.err and line not in captured.out
  assert "a real failure" in captured.err  # errors still reach the console
  assert "our own line" in captured.out


def test_without_a_file_warnings_are_dropped_and_errors_kept(capfd):
  restore = console.quiet_third_party()
  try:
    absl_logging.warning("orbax-ish warning")
    logging.getLogger("jax").warning("platform warning")
    logging.getLogger("tensorstore").error("kept error")
  finally:
    restore()
  err = capfd.readouterr().err
  assert "orbax-ish warning" not in err and "platform warning" not in err
  assert "kept error" in err


def test_inside_an_absl_app_orbax_save_and_restore_leave_the_console_clean(tmp_path):
  """The real case: absl's handler (installed by app.run) and orbax's own lines."""
  script = textwrap.dedent(f"""
      import logging
      import numpy as np
      from absl import app
      from reid_jax import console
      from reid_jax.training import checkpoint

      def main(_):
        console.quiet_third_party({str(tmp_path / "log.txt")!r})  # again, now with the file
        with checkpoint.Checkpointer({str(tmp_path / "ck")!r}) as ckpt:
          ckpt.save(1, {{"a": np.ones(3)}}, {{"epoch": 1}})
        with checkpoint.Checkpointer({str(tmp_path / "ck")!r}, read_only=True) as ckpt:
          ckpt.restore({{"a": np.ones(3)}})
        logging.getLogger("orbax").error("boom")
        print("done")

      console.quiet_third_party()  # as early as possible: before app.run adds absl's handler
      app.run(main)
  """)
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "done"
  assert len(result.stderr.splitlines()) == 1 and "boom" in result.stderr, result.stderr
  text = (tmp_path / "log.txt").read_text()
  assert "read_only=True" in text and "Finished" in text  # orbax's WARNING and INFO lines
