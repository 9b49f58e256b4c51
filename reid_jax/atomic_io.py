"""Writes that never leave a truncated file under a final name (docs/design.md §3, §5).

The data goes to a temporary file beside the target, is fsynced, gets the usual permissions (0666
less the umask; `mkstemp` alone would leave 0600) and is renamed over the target.
"""

import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_bytes(path, data: bytes) -> None:
  """Atomically replaces `path` with `data`, creating its folder if needed."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _json_default(value):
  if hasattr(value, "tolist"):  # numpy and jax arrays and scalars
    return value.tolist()
  if isinstance(value, Path):
    return str(value)
  raise TypeError(f"value {value!r} of type {type(value).__name__} is not JSON data")


def json_text(data, **kwargs) -> str:
  """`json.dumps` that also takes numpy values and paths."""
  return json.dumps(data, default=_json_default, **kwargs)


def write_json(path, data) -> None:
  """Atomically replaces `path` with `data` as indented JSON."""
  write_bytes(path, (json_text(data, indent=2) + "\n").encode("utf-8"))
