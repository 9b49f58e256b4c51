"""Atomic writes: the final name holds the old content or the new, never a partial file."""

import json
import os
import stat

import numpy as np
import pytest

from reid_jax import atomic_io


def test_write_json_replaces_whole_file_with_usual_permissions(tmp_path):
  path = tmp_path / "sub" / "results.json"
  atomic_io.write_json(path, {"a": np.float32(0.5), "b": np.arange(3), "p": tmp_path})
  assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2], "p": str(tmp_path)}
  mask = os.umask(0)
  os.umask(mask)
  assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
  assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]  # no temp left


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
  path = tmp_path / "config.json"
  atomic_io.write_json(path, {"old": 1})
  with pytest.raises(TypeError):
    atomic_io.write_json(path, {"new": object()})  # not JSON data: fails before the rename
  assert json.loads(path.read_text()) == {"old": 1}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
