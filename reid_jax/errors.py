"""The one exception type for failures a user can cause (docs/design.md §3).

Raised with a message that names the file or field and says what to do. Entry points turn it into
one line on stderr and exit status 1 (`reid_jax.cli.run`); anything else is a bug and keeps its
traceback.
"""


class ReidError(Exception):
  """A user-caused failure: missing data, wrong layout, corrupt image, config mismatch, NaN loss."""


class UsageError(ReidError):
  """A command used wrongly: an unknown config variant or field, a value of the wrong type, a
  flag that needs another. Entry points print it on one line and exit with status 2."""
