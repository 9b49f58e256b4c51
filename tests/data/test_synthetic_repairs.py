"""Synthetic data repairs (issue 16, items 7, 5 and 9): advice to regenerate, a corrupt tree
repaired by rerunning the writer, a killed writer's `.partial-*` folder removed, concurrent writers
safe, the usual permissions, and TFDS's own console lines kept off the console."""

import io
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid_jax import paths
from reid_jax.data import synthetic, tfds_builders
from reid_jax.data.synthetic import writer
from reid_jax.errors import ReidError

REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
  return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
          if p.is_file()}


def _cli(*args, **kwargs) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "data_prep.synthetic", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120, **kwargs)


def _copy_tree(data_dir, tmp_path, name="synth_market") -> Path:
  """A private copy of the session's tiny tree (no re-rendering)."""
  root = paths.raw_dir(tmp_path, name)
  shutil.copytree(paths.raw_dir(data_dir, name), root)
  return root


def _damage(root: Path, how: str) -> Path:
  victim = sorted((root / "bounding_box_test").glob("*.jpg"))[5]
  if how == "truncated":
    victim.write_bytes(victim.read_bytes()[:200])
  elif how == "garbage":
    victim.write_bytes(b"not a jpeg at all" * 20)
  else:
    victim.unlink()
  return victim


def _partials(parent: Path, name: str) -> list[str]:
  return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}.partial-"))


# --- item 7a: a corrupt synthetic image: the advice is the command that repairs it -------------


@pytest.mark.parametrize("how", ["truncated", "garbage", "missing"])
def test_damaged_synthetic_image_advice_names_the_command_that_repairs_it(data_dir, tmp_path, how):
  root = _copy_tree(data_dir, tmp_path)
  reference = _files(root)
  victim = _damage(root, how)
  with pytest.raises(ReidError) as info:
    tfds_builders.load_split("synth_market", "train", tmp_path)
  message = str(info.value)
  assert "\n" not in message and "archive" not in message, message
  if how == "missing":  # the counts check finds it first and names both counts
    assert "synth_market gallery: found" in message, message
  else:
    assert f"corrupt image {victim}" in message, message
  command = (f"python -m data_prep.synthetic --dataset=synth_market --size=tiny --seed=0 "
             f"--out_dir={root}")
  assert f"`{command}`" in message, message
  assert not tfds_builders.builder("synth_market", tmp_path, prepare=False).is_prepared()

  # The advice works as written: it restores the same bytes, and the build then succeeds.
  argv = shlex.split(command)
  result = _cli(*argv[3:])
  assert result.returncode == 0, result.stderr
  assert f"repaired 1 missing or corrupt file(s) in {root}" in result.stdout
  assert _files(root) == reference
  assert len(tfds_builders.load_split("synth_market", "train", tmp_path)) > 0


def test_real_dataset_advice_still_names_the_archive(tmp_path):
  spec = tfds_builders.get_spec("market")
  assert "original archive" in tfds_builders.fix_advice(spec, tmp_path)


# --- item 7b: rerunning the writer on a corrupt tree repairs it ----------------------------------


def test_rerun_on_a_corrupt_tree_repairs_it_byte_for_byte(data_dir, tmp_path):
  out = tmp_path / "synth_market"
  shutil.copytree(paths.raw_dir(data_dir, "synth_market"), out)
  reference = _files(out)
  images = sorted(p for p in out.rglob("*.jpg"))
  images[3].write_bytes(images[3].read_bytes()[:-300])  # truncated
  images[40].write_bytes(b"\xff\xd8garbage")  # JPEG marker, garbage after it
  Image.open(io.BytesIO(reference[images[41].relative_to(out).as_posix()])).save(
      images[41], format="PNG")  # decodable, but not a JPEG
  images[200].unlink()
  start = time.perf_counter()
  result = _cli("--dataset=synth_market", "--size=tiny", f"--out_dir={out}")
  seconds = time.perf_counter() - start
  assert result.returncode == 0, result.stderr
  assert "repaired 4 missing or corrupt file(s)" in result.stdout, result.stdout
  assert _files(out) == reference
  assert seconds < 30
  # An intact tree: nothing rewritten, nothing said about repairs.
  before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
  result = _cli("--dataset=synth_market", "--size=tiny", f"--out_dir={out}")
  assert result.returncode == 0 and "repaired" not in result.stdout
  assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*")}


def test_foreign_image_in_the_tree_stops_with_one_line(data_dir, tmp_path):
  out = tmp_path / "synth_market"
  shutil.copytree(paths.raw_dir(data_dir, "synth_market"), out)
  stray = out / "query" / "0001_c1s1_000001_01.jpg"
  assert not stray.exists()
  shutil.copy(next((out / "query").glob("*.jpg")), stray)
  result = _cli("--dataset=synth_market", "--size=tiny", f"--out_dir={out}")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
  assert lines[0].startswith(f"error: {stray}: not part of the generated synth_market tree")
  assert f"delete {out} to regenerate" in lines[0]
  assert stray.exists()  # nothing of the user's is deleted


# --- item 7c: a killed generation's .partial-* folder is removed by the next run ----------------


def test_killed_generation_leftover_is_removed_by_the_next_run(data_dir, tmp_path):
  out = tmp_path / "raw" / "synth_market"
  out.parent.mkdir()
  proc = subprocess.Popen([sys.executable, "-m", "data_prep.synthetic", "--dataset=synth_market",
                           "--size=tiny", f"--out_dir={out}"], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 60
  while not any(any((out.parent / name).rglob("*.jpg"))
                for name in _partials(out.parent, "synth_market")):
    assert proc.poll() is None and time.monotonic() < deadline, "no image written before the end"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert _partials(out.parent, "synth_market") == [f".synth_market.partial-{proc.pid}"]
  assert not out.exists()
  legacy = out.parent / ".synth_market.partial-k2j4_x9a"  # tempfile.mkdtemp name, older versions
  (legacy / "query").mkdir(parents=True)
  other = out.parent / ".synth_duke.partial-1"  # another tree's: not ours to touch
  other.mkdir()

  synthetic.write_dataset("synth_market", out, size="tiny", seed=0)
  assert _partials(out.parent, "synth_market") == []
  assert sorted(p.name for p in out.parent.iterdir()) == [".synth_duke.partial-1", "synth_market"]
  assert _files(out) == _files(paths.raw_dir(data_dir, "synth_market"))


# --- item 5: two concurrent generations of the same tree both succeed ----------------------------


def test_concurrent_writers_of_one_tree_both_succeed(data_dir, tmp_path):
  out = tmp_path / "raw" / "synth_market"
  args = [sys.executable, "-m", "data_prep.synthetic", "--dataset=synth_market", "--size=tiny",
          f"--out_dir={out}"]
  procs = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for _ in range(2)]
  results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
  for rc, stdout, stderr in results:
    assert rc == 0, stderr
    assert "synth_market (tiny, seed 0) in" in stdout and "Traceback" not in stderr
  assert any("is writing" in stderr and "waiting for it to finish" in stderr
             for _, _, stderr in results)  # they did overlap
  assert _files(out) == _files(paths.raw_dir(data_dir, "synth_market"))
  assert sorted(p.name for p in out.parent.iterdir()) == ["synth_market"]  # no lock, no partial


# --- item 7d: the usual permissions --------------------------------------------------------------


def _fast_render(monkeypatch):
  """Every image one small valid JPEG: the permissions do not depend on the pixels."""
  buf = io.BytesIO()
  Image.fromarray(np.zeros((16, 8, 3), np.uint8)).save(buf, format="JPEG")
  monkeypatch.setattr(writer, "render_item", lambda *args: buf.getvalue())


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_tree_gets_the_usual_permissions(tmp_path, monkeypatch, umask):
  _fast_render(monkeypatch)
  out = tmp_path / "synth_duke"
  old = os.umask(umask)
  try:
    synthetic.write_dataset("synth_duke", out, size="tiny")
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")] if p.is_dir()}
    file_modes = {stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert modes == {0o777 & ~umask}
    assert file_modes == {0o666 & ~umask}
    # A tree written by an older version (drwx------) gets them back on the next run.
    out.chmod(0o700)
    assert synthetic.write_dataset("synth_duke", out, size="tiny") == []
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
  finally:
    os.umask(old)


# --- item 9 (TFDS part): no "Downloading and preparing", no "Shuffling ...incomplete..." ---------


def test_tfds_build_keeps_its_own_lines_off_the_console(data_dir, tmp_path, capfd):
  from tensorflow_datasets.core.utils import tqdm_utils
  _copy_tree(data_dir, tmp_path, "synth_duke")
  bars_before = tqdm_utils._active  # pylint: disable=protected-access
  capfd.readouterr()
  source = tfds_builders.load_split("synth_duke", "query", tmp_path)
  out, err = capfd.readouterr()
  assert len(source) > 0
  console = out + err
  for noise in ("Downloading and preparing", "downloaded and prepared", "Shuffling",
                "incomplete", "Generating"):
    assert noise not in console, console
  assert "synth_duke tiny_seed0: storing images" in out  # our one bar stays, on stdout
  assert tqdm_utils._active == bars_before  # pylint: disable=protected-access
