"""Shared plumbing for the absl entry points in `experiments/` (design README §3)."""

import sys

from absl import app

from reid_jax.errors import ReidError


def run(main):
  """`absl.app.run(main)`, with expected failures printed as one line and exit status 1.

  Usage errors (bad flags) keep absl's exit status 2.
  """

  def guarded_main(argv):
    try:
      return main(argv)
    except ReidError as error:
      print(f"error: {error}", file=sys.stderr)
      sys.exit(1)

  app.run(guarded_main)
