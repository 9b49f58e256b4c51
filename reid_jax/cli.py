"""Shared plumbing for the absl entry points in `experiments/` (design README §3)."""

import sys

from absl import app
from absl import flags

from reid_jax import runtime
from reid_jax.errors import ReidError


def run(main):
  """`absl.app.run(main)`, with expected failures printed as one line and exit status 1.

  Usage errors (bad flags) exit with status 2. On glibc, freed memory is kept in the process
  (`runtime.retain_freed_memory`), before JAX starts its backend.
  """
  runtime.retain_freed_memory()

  def guarded_main(argv):
    try:
      return main(argv)
    except ReidError as error:
      print(f"error: {error}", file=sys.stderr)
      sys.exit(1)

  app.run(guarded_main, flags_parser=_parse_flags_or_exit_2)


def _parse_flags_or_exit_2(argv):
  """absl's flag parsing, but a usage error exits with status 2 (design README §3), not 1."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    print(f"usage error: {error}\nPass --helpfull to see the flags.", file=sys.stderr)
    sys.exit(2)
