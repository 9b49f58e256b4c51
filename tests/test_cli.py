"""The entry-point contract (docs/design.md §3): expected failures exit 1 in one line, usage errors 2."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    from absl import flags
    from reid_jax import cli
    from reid_jax.errors import ReidError
    flags.DEFINE_integer("n", 0, "test flag")
    def main(argv):
      if flags.FLAGS.n == 1:
        raise ReidError("missing file /x/y.jpg: put it there")
      if flags.FLAGS.n == 2:
        raise ValueError("a bug")
      print("ran")
    if __name__ == "__main__":
      cli.run(main)
""")


@pytest.mark.parametrize("args, status, stderr_part", [
    (["--n=0"], 0, None),
    (["--n=1"], 1, "error: missing file /x/y.jpg: put it there"),
    (["--n=abc"], 2, "usage error"),
    (["--unknown_flag=1"], 2, "usage error"),
    (["--n=2"], 1, "Traceback"),  # a bug keeps its traceback
])
def test_exit_status_and_message(tmp_path, args, status, stderr_part):
  script = tmp_path / "entry.py"
  script.write_text(SCRIPT)
  repo_root = str(pathlib.Path(__file__).resolve().parents[1])
  env = {**os.environ, "PYTHONPATH": repo_root}
  result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          env=env)
  assert result.returncode == status, result.stderr
  if stderr_part:
    assert stderr_part in result.stderr
  if status == 1 and stderr_part.startswith("error:"):
    assert result.stderr.strip().count("\n") == 0  # one line, no traceback
