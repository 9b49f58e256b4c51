"""Split plans, file names and the extracted-archive layouts of the real twins (docs/design.md §6.4, §6.5).

`plan(dataset, size, seed)` decides every image without rendering it: split, identity, camera,
frame and relative path, following the real dataset's protocol (docs/arn_triplet_eval.md §4):

- train and test identities are disjoint; every identity is seen by at least two cameras;
- query: one image per camera per test identity; the other images of that identity in that
  camera go to the gallery (at least one, so that every query has a cross-camera match);
- Market: gallery junk (`-1_c...`, poor detections) and distractors (`0000_...`, people outside
  the annotated identities); Duke: distractor identities seen by one camera, in the gallery only;
  MSMT: per-identity folders, list files with 0-based contiguous pids per list family.

`write_dataset` renders the plan into a temporary folder beside `out_dir`
(`.<name>.partial-<pid>`), writes SYNTHETIC.json last and renames the folder into place, so a tree
that holds SYNTHETIC.json is complete. Writers of one `out_dir` take turns on the lock file
`.<name>.lock` beside it (removed by its holder): a second writer waits and then finds the first
one's tree; under the lock every `.<name>.partial-*` folder is a killed writer's leftover and is
removed. On a complete tree,
`write_dataset` checks every planned file (present, decodes fully as JPEG, nothing foreign) and
re-renders the damaged ones: rendering is deterministic, so the repaired tree holds the same bytes.
Folders and files get the usual permissions (0o777 / 0o666 less the umask).
"""

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import io
import json
import multiprocessing
import os
import shutil
import stat
import sys
import zlib
from pathlib import Path

import numpy as np

from reid_jax.data.synthetic import render, world
from reid_jax.errors import ReidError

GENERATOR_VERSION = 1
MANIFEST = "SYNTHETIC.json"
SIZES = ("tiny", "small", "medium", "full")


@dataclasses.dataclass(frozen=True)
class SplitPlan:
  """How many identities and images each part of a dataset gets."""
  train_ids: int
  train_images: int  # MSMT: list_train + list_val
  test_ids: int
  query_images: int  # = camera appearances of the test identities (one query per camera)
  gallery_regular: int  # gallery images of the test identities
  junk_images: int = 0  # Market: pid -1
  distractor_images: int = 0  # Market: pid 0; Duke: images of the one-camera identities
  distractor_ids: int = 0  # Duke
  val_images: int = 0  # MSMT: list_val, taken from the training images


# The real counts (docs/arn_triplet_eval.md §4.4).
_FULL = {
    "market": SplitPlan(train_ids=751, train_images=12936, test_ids=750, query_images=3368,
                        gallery_regular=19732 - 3819 - 2798, junk_images=3819,
                        distractor_images=2798),
    # Duke gallery = 17 661 images of 702 test + 408 distractor ids; the split of the images
    # between the two is not published: 6 images per distractor id is this world's choice.
    "duke": SplitPlan(train_ids=702, train_images=16522, test_ids=702, query_images=2228,
                      gallery_regular=17661 - 408 * 6, distractor_images=408 * 6,
                      distractor_ids=408),
    "msmt": SplitPlan(train_ids=1041, train_images=32621, test_ids=3060, query_images=11659,
                      gallery_regular=82161, val_images=2373),
}

# (train ids, test ids, train images) of the smaller sizes; the other counts keep the full
# dataset's proportions per identity (images per identity scaled alike, cameras per identity not).
_SMALLER = {"tiny": (16, 16, 120), "small": (100, 100, 1500), "medium": (300, 300, 5000)}


def split_plan(dataset: str, size: str) -> SplitPlan:
  """The per-split counts that `plan` realises exactly."""
  domain = _domain(dataset)
  if size not in SIZES:
    raise ReidError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
  full = _FULL[domain.layout]
  if size == "full":
    return full
  train_ids, test_ids, train_images = _SMALLER[size]
  scale = train_images / (train_ids * full.train_images / full.train_ids)
  per_test_id = test_ids / full.test_ids
  query = int(np.clip(round(full.query_images * per_test_id), 2 * test_ids,
                      domain.num_cameras * test_ids))
  distractor_ids = round(full.distractor_ids * per_test_id)
  return SplitPlan(
      train_ids=train_ids, train_images=train_images, test_ids=test_ids, query_images=query,
      gallery_regular=max(query, round(full.gallery_regular * per_test_id * scale)),
      junk_images=round(full.junk_images * per_test_id * scale),
      distractor_images=max(distractor_ids, round(full.distractor_images * per_test_id * scale)),
      distractor_ids=distractor_ids,
      val_images=round(full.val_images * train_images / full.train_images))


@dataclasses.dataclass(frozen=True)
class Item:
  """One planned image."""
  path: str  # relative to out_dir
  split: str  # 'train' | 'val' (MSMT list_val) | 'query' | 'gallery'
  pid: int  # the pid written in the file name (-1 junk, 0 Market distractor)
  label: int  # MSMT: the pid of the list file; otherwise = pid
  camera: int  # 1-based
  person: int  # identity key for the renderer
  season: int
  time_of_day: str | None
  junk: bool = False


def _domain(dataset: str) -> world.Domain:
  try:
    return world.DOMAINS[dataset]
  except KeyError:
    raise ReidError(f"unknown synthetic dataset {dataset!r}; choose one of "
                    f"{', '.join(world.DOMAINS)}") from None


def _code(dataset: str) -> int:
  return zlib.crc32(dataset.encode())


def _partition(rng, total: int, n: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
  """n integers in [lo, hi] summing to total, spread unevenly (gamma weights)."""
  if n == 0:
    return np.zeros(0, int)
  hi = total if hi is None else hi
  if not lo * n <= total <= hi * n:
    raise ValueError(f"cannot split {total} into {n} parts in [{lo}, {hi}]")
  out = np.full(n, lo, int)
  weights = rng.gamma(2.0, 1.0, n) + 1e-3
  rest = total - lo * n
  while rest > 0:
    free = out < hi
    p = np.where(free, weights, 0.0)
    out += rng.multinomial(rest, p / p.sum())
    rest = int(np.maximum(out - hi, 0).sum())
    out = np.minimum(out, hi)
  return out


def _cameras_for(rng, n_ids: int, total: int, num_cameras: int) -> list[np.ndarray]:
  """For each identity, the sorted 1-based cameras that see it; sum of counts = total."""
  counts = 2 + _partition(rng, total - 2 * n_ids, n_ids, 0, num_cameras - 2)
  return [np.sort(rng.choice(num_cameras, c, replace=False)) + 1 for c in counts]


class _Namer:
  """File names of one layout (docs/arn_triplet_eval.md §4.1-§4.3), unique within the dataset."""

  def __init__(self, layout: str, rng):
    self.layout, self.rng, self.used = layout, rng, set()
    self.msmt_index = {}

  def track(self, folder: str, pid: int, camera: int, n: int, date: str = "",
            time_of_day: str = "") -> list[str]:
    """Names of n consecutive frames of one walk of `pid` in `camera`."""
    rng = self.rng
    names = []
    if self.layout == "market":
      sequence = int(rng.integers(1, 7))
      frame = int(rng.integers(0, 150000))
      for _ in range(n):
        frame += int(rng.integers(5, 40))
        box = 1
        while True:
          stem = f"{'-1' if pid < 0 else f'{pid:04d}'}_c{camera}s{sequence}_{frame:06d}_{box:02d}"
          if stem not in self.used:
            break
          box += 1
        names.append(stem)
    elif self.layout == "duke":
      frame = int(rng.integers(0, 300000))
      for _ in range(n):
        frame += 120  # the dataset's boxes are cropped every 120 frames (§4.2)
        while f"{pid:04d}_c{camera}_f{frame:07d}" in self.used:
          frame += 1
        names.append(f"{pid:04d}_c{camera}_f{frame:07d}")
    else:
      frame = int(rng.integers(0, 8000))
      for _ in range(n):
        frame = (frame + int(rng.integers(5, 40))) % 10000
        index = self.msmt_index.get((folder, pid), 0)
        self.msmt_index[(folder, pid)] = index + 1
        tail = int(rng.choice(3, p=(0.6, 0.3, 0.1)))
        names.append(f"{pid:04d}_{index:03d}_{camera:02d}_{date}{time_of_day}_{frame:04d}_{tail}")
    self.used.update(names)
    return [name + ".jpg" for name in names]


def plan(dataset: str, size: str = "tiny", seed: int = 0) -> list[Item]:
  """Every image of the dataset, in writing order (docs/design.md §6.4). Pure function of its inputs."""
  domain = _domain(dataset)
  sp = split_plan(dataset, size)
  rng = np.random.default_rng([seed, _code(dataset), 0])
  namer = _Namer(domain.layout, rng)
  num_cameras = domain.num_cameras
  mean_cameras = sp.query_images / sp.test_ids
  items = []

  # Identities: pids as the real files spell them, and a renderer key per person.
  n_ids = sp.train_ids + sp.test_ids + sp.distractor_ids
  if domain.layout == "market":  # pids 1..1501, train and test interleaved (§4.1)
    pids = rng.permutation(np.arange(1, n_ids + 1))
  elif domain.layout == "duke":  # non-contiguous pids up to 7140 (§4.2)
    pids = rng.choice(np.arange(1, int(round(n_ids * 7140 / 1812)) + 1), n_ids, replace=False)
  else:  # 0-based folders per list family (§4.3)
    pids = np.concatenate([np.arange(sp.train_ids), np.arange(sp.test_ids),
                           np.zeros(sp.distractor_ids, int)])
  train_pids = np.sort(pids[:sp.train_ids])
  test_pids = np.sort(pids[sp.train_ids:sp.train_ids + sp.test_ids])
  distractor_pids = np.sort(pids[sp.train_ids + sp.test_ids:])

  def person_key(family: str, pid: int) -> int:
    return {"train": 0, "test": 1, "distractor": 2, "junk": 3}[family] * 1_000_000 + int(pid)

  def when(rng_):
    """MSMT: capture date (season) and time of day of one identity; None elsewhere."""
    if domain.layout != "msmt":
      return 0, "", None
    date = int(rng_.integers(len(world.MSMT_DATES)))
    return date, world.MSMT_DATES[date], world.TIMES_OF_DAY[rng_.integers(3)]

  def folder_of(split):
    if domain.layout == "market" or domain.layout == "duke":
      return {"train": "bounding_box_train", "val": "bounding_box_train",
              "query": "query", "gallery": "bounding_box_test"}[split]
    return "train" if split in ("train", "val") else "test"

  def add(split, pid, camera, key, season, tod, name, junk=False):
    folder = folder_of(split)
    path = f"{folder}/{pid:04d}/{name}" if domain.layout == "msmt" else f"{folder}/{name}"
    items.append(Item(path=path, split=split, pid=int(pid), label=int(pid), camera=int(camera),
                      person=key, season=season, time_of_day=tod, junk=junk))

  # Training identities.
  images_per_id = _partition(rng, sp.train_images, sp.train_ids, 2)
  val_per_id = np.zeros(sp.train_ids, int)
  if sp.val_images:  # list_val: some images of the training identities, at least one left
    val_per_id = _partition(rng, sp.val_images, sp.train_ids, 0, None)
    val_per_id = np.minimum(val_per_id, images_per_id - 1)
    deficit = sp.val_images - val_per_id.sum()
    for i in rng.permutation(sp.train_ids):
      if deficit <= 0:
        break
      extra = min(deficit, images_per_id[i] - 1 - val_per_id[i])
      val_per_id[i] += extra
      deficit -= extra
  cams_total = int(np.clip(round(sp.train_ids * mean_cameras), 2 * sp.train_ids,
                           num_cameras * sp.train_ids))
  for i, (pid, cams) in enumerate(zip(train_pids, _cameras_for(rng, sp.train_ids, cams_total,
                                                               num_cameras))):
    cams = cams[:images_per_id[i]]
    season, date, tod = when(rng)
    per_cam = _partition(rng, int(images_per_id[i]), len(cams), 1)
    names = []
    for cam, n in zip(cams, per_cam):
      names += [(cam, name) for name in namer.track("train", pid, cam, int(n), date, tod or "")]
    val = set(rng.choice(len(names), val_per_id[i], replace=False).tolist())
    for j, (cam, name) in enumerate(names):
      add("val" if j in val else "train", pid, cam, person_key("train", pid), season, tod, name)

  # Test identities: one query per camera, the rest of that camera's walk to the gallery.
  test_cams = _cameras_for(rng, sp.test_ids, sp.query_images, num_cameras)
  gallery_per_pair = _partition(rng, sp.gallery_regular, sp.query_images, 1)
  pair = 0
  for pid, cams in zip(test_pids, test_cams):
    season, date, tod = when(rng)
    for cam in cams:
      n = 1 + int(gallery_per_pair[pair])
      pair += 1
      names = namer.track("test", pid, cam, n, date, tod or "")
      q = int(rng.integers(n))
      for j, name in enumerate(names):
        add("query" if j == q else "gallery", pid, cam, person_key("test", pid), season, tod, name)

  # Duke: identities seen by one camera only, in the gallery only (§4.2).
  per_distractor = _partition(rng, sp.distractor_images, sp.distractor_ids, 1)
  for pid, n in zip(distractor_pids, per_distractor):
    cam = int(rng.integers(1, num_cameras + 1))
    for name in namer.track("distractor", pid, cam, int(n)):
      add("gallery", pid, cam, person_key("distractor", pid), 0, None, name)

  if domain.layout == "market":
    # Distractors (pid 0000): people outside the annotated identities, short walks of 1-3 frames.
    left, k = sp.distractor_images, 0
    while left > 0:
      n = min(left, int(rng.integers(1, 4)))
      cam = int(rng.integers(1, num_cameras + 1))
      for name in namer.track("0", 0, cam, n):
        add("gallery", 0, cam, person_key("distractor", k), 0, None, name)
      left -= n
      k += 1
    # Junk (pid -1): boxes that cover a person too little (§4.1).
    for k in range(sp.junk_images):
      cam = int(rng.integers(1, num_cameras + 1))
      add("gallery", -1, cam, person_key("junk", k), 0, None, namer.track("-1", -1, cam, 1)[0],
          junk=True)
  return items


def planned_counts(items: list[Item], layout: str) -> dict:
  """{split: {'ids', 'images'}} as docs/arn_triplet_eval.md §4.4 counts them (MSMT train = list_train
  + list_val; Market gallery ids include -1 and 0), plus MSMT's list_train / list_val."""
  groups = {"train": [], "query": [], "gallery": []}
  for item in items:
    groups["train" if item.split == "val" else item.split].append(item.pid)
  counts = {k: {"ids": len(set(v)), "images": len(v)} for k, v in groups.items()}
  if layout == "msmt":
    for split in ("train", "val"):
      pids = [item.pid for item in items if item.split == split]
      counts[f"list_{split}"] = {"ids": len(set(pids)), "images": len(pids)}
  return counts


def render_item(domain: world.Domain, cams, item: Item, index: int, seed: int) -> bytes:
  """The JPEG bytes of one planned image: a pure function of (dataset, item, index, seed)."""
  code = _code(domain.name)
  camera = cams[item.camera - 1]
  person = world.person(domain, np.random.default_rng([seed, code, 1, item.person]), item.season)
  track = render.sample_track(camera, np.random.default_rng([seed, code, 2, item.person,
                                                             item.camera]))
  rng = np.random.default_rng([seed, code, 3, index])
  light = render.scene_light(domain, camera, item.time_of_day)
  view = render.sample_view(camera, track, light, rng, junk=item.junk)
  size = render.crop_size(domain, camera, track, rng)
  image = render.render(domain, camera, person, view, size, rng)
  return render.encode_jpeg(image, camera.jpeg_quality)


def _list_lines(items: list[Item], split: str) -> str:
  lines = []
  for item in items:
    if item.split == split:
      lines.append(f"{item.path.split('/', 1)[1]} {item.label}\n")
  return "".join(sorted(lines))


def _manifest(dataset, size, seed, items, domain) -> dict:
  return {"dataset": dataset, "size": size, "seed": seed, "generator_version": GENERATOR_VERSION,
          "layout": domain.layout, "num_cameras": domain.num_cameras,
          "counts": planned_counts(items, domain.layout)}


def is_complete(out_dir, dataset: str, size: str, seed: int) -> bool:
  """Whether out_dir holds a finished tree written with these arguments."""
  manifest = Path(out_dir) / MANIFEST
  if not manifest.is_file():
    return False
  try:
    info = json.loads(manifest.read_text())
  except (OSError, ValueError):
    return False
  return (info.get("dataset"), info.get("size"), info.get("seed"),
          info.get("generator_version")) == (dataset, size, seed, GENERATOR_VERSION)


def _write_chunk(dataset: str, seed: int, tmp: str, chunk: list[tuple[int, Item]],
                 atomic: bool = False) -> int:
  domain = world.DOMAINS[dataset]
  cams = world.cameras(domain)
  for index, item in chunk:
    path = Path(tmp) / item.path
    data = render_item(domain, cams, item, index, seed)
    if atomic:  # repairs: readers never see a half-written file
      part = path.with_name(f".{path.name}{_REPAIR_SUFFIX}")
      part.write_bytes(data)
      os.replace(part, path)
    else:
      path.write_bytes(data)
  return len(chunk)


_REPAIR_SUFFIX = ".repair"
_CHUNK = 200


def _render(dataset: str, seed: int, root: Path, indexed: list[tuple[int, Item]], workers: int,
            desc: str | None, atomic: bool = False) -> None:
  """Renders the (index, item) pairs into root, in `workers` processes when > 1."""
  bar = None
  if desc is not None:
    from reid_jax import progress  # tqdm on stdout, the project's one bar
    bar = progress.Bar(len(indexed), desc, unit="img")
  chunks = [indexed[i:i + _CHUNK] for i in range(0, len(indexed), _CHUNK)]
  if workers > 1 and len(chunks) > 1:
    context = multiprocessing.get_context("spawn")  # callers may hold threads (JAX, TFDS)
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(chunks)),
                                                mp_context=context) as pool:
      futures = [pool.submit(_write_chunk, dataset, seed, str(root), c, atomic) for c in chunks]
      for future in concurrent.futures.as_completed(futures):
        done = future.result()
        if bar is not None:
          bar.update(done)
  else:
    for chunk in chunks:
      done = _write_chunk(dataset, seed, str(root), chunk, atomic)
      if bar is not None:
        bar.update(done)
  if bar is not None:
    bar.close()


def _umask() -> int:
  try:  # Linux: read it without changing it (os.umask is process-wide, and threads may run)
    for line in Path("/proc/self/status").read_text().splitlines():
      if line.startswith("Umask:"):
        return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _say(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _writer_lock(out_dir: Path, progress: bool):
  """Holds `.<name>.lock` beside out_dir: one writer of a tree at a time.

  The kernel releases the lock when its holder dies; the holder removes the file on its way out
  (a killed one leaves it, harmless). The inode check makes removal safe: a process that locked a
  file already unlinked by the previous holder tries again on the new one.
  """
  lock = out_dir.parent / f".{out_dir.name}.lock"
  said = False
  while True:
    try:
      fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
      raise ReidError(f"cannot create {lock}: {e.strerror}; the synthetic writer needs "
                      f"{out_dir.parent} to be writable") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      if progress and not said:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        _say(f"another process (pid {holder}) is writing {out_dir}; waiting for it to finish")
        said = True
      fcntl.flock(fd, fcntl.LOCK_EX)
    try:
      same = os.fstat(fd).st_ino == os.stat(lock).st_ino
    except FileNotFoundError:
      same = False
    if same:
      break
    os.close(fd)
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(lock)
    os.close(fd)


def _partial_prefix(out_dir: Path) -> str:
  return f".{out_dir.name}.partial-"


def _remove_stale_partials(out_dir: Path, progress: bool) -> None:
  """Removes the temporary folders of killed writers (call with the writer lock held: no live
  writer of out_dir has one then)."""
  prefix = _partial_prefix(out_dir)
  for path in sorted(out_dir.parent.iterdir()):
    if path.name.startswith(prefix) and path.is_dir() and not path.is_symlink():
      if progress:
        _say(f"removing {path}, left by an interrupted run")
      shutil.rmtree(path, ignore_errors=True)


def _intact(path: Path) -> bool:
  """The file exists and decodes fully as a JPEG (what the TFDS builders check)."""
  from PIL import Image
  try:
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
      if img.format != "JPEG":
        return False
      img.load()
  except Exception:  # pylint: disable=broad-except  (PIL raises several unrelated types)
    return False
  return True


def _expected_extras(items: list[Item], domain) -> dict[str, str]:
  """The non-image files of the tree but SYNTHETIC.json (MSMT's list files) and their text."""
  extras = {}
  if domain.layout == "msmt":
    for split, name in _LIST_FILES:
      extras[name] = _list_lines(items, split)
  return extras


_LIST_FILES = (("train", "list_train.txt"), ("val", "list_val.txt"), ("query", "list_query.txt"),
               ("gallery", "list_gallery.txt"))


def _repair(dataset: str, out_dir: Path, size: str, seed: int, progress: bool,
            workers: int) -> list[str]:
  """Checks a complete tree against its plan and re-renders what is missing or corrupt.

  Returns the relative paths rewritten. A `.jpg` the plan does not hold is a ReidError (it would
  change the builders' counts; it may be the user's): nothing is deleted.
  """
  domain = _domain(dataset)
  items = plan(dataset, size, seed)
  planned = {item.path for item in items}
  texts = _expected_extras(items, domain)
  texts[MANIFEST] = json.dumps(_manifest(dataset, size, seed, items, domain), indent=2) + "\n"

  # Foreign images first: they cannot be repaired.
  foreign = []
  for path in out_dir.rglob("*"):
    rel = path.relative_to(out_dir).as_posix()
    if path.name.startswith(".") and path.name.endswith(_REPAIR_SUFFIX):
      path.unlink(missing_ok=True)  # an interrupted repair's temporary file
    elif path.name.endswith(".jpg") and rel not in planned and path.is_file():
      foreign.append(rel)
  if foreign:
    foreign.sort()
    more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
    raise ReidError(f"{out_dir / foreign[0]}{more}: not part of the generated {dataset} tree "
                    f"(size={size}, seed={seed}); remove it, or delete {out_dir} to regenerate "
                    "the tree")

  threads = min(16, 2 * (os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    ok = list(pool.map(lambda item: _intact(out_dir / item.path), items, chunksize=64))
  damaged = [(index, item) for index, (item, good) in enumerate(zip(items, ok)) if not good]
  repaired = [item.path for _, item in damaged]
  if damaged:
    for folder in sorted({str(Path(item.path).parent) for _, item in damaged}):
      (out_dir / folder).mkdir(parents=True, exist_ok=True)
    _render(dataset, seed, out_dir, damaged, workers,
            f"{dataset} ({size}): repairing" if progress else None, atomic=True)
  # The list files, then the manifest (the completeness marker) last.
  for name in sorted(texts, key=lambda n: n == MANIFEST):
    path = out_dir / name
    try:
      same = path.read_text() == texts[name]
    except (OSError, UnicodeDecodeError):
      same = False
    if not same:
      part = path.with_name(f".{name}{_REPAIR_SUFFIX}")
      part.write_text(texts[name])
      os.replace(part, path)
      repaired.append(name)
  # Trees written before the permissions fix were created 0o700 (tempfile.mkdtemp).
  mode = 0o777 & ~_umask()
  if stat.S_IMODE(out_dir.stat().st_mode) == 0o700 and mode != 0o700:
    out_dir.chmod(mode)
  return repaired


def write_dataset(dataset: str, out_dir, size: str = "tiny", seed: int = 0,
                  progress: bool = False, workers: int = 1, verify: bool = True) -> list[str]:
  """Write the synthetic dataset's extracted-archive tree under out_dir (docs/design.md §6).

  When out_dir already holds the same tree (SYNTHETIC.json with the same dataset, size, seed and
  generator version), checks it (`verify`: every planned file present and a valid JPEG, nothing
  foreign) and re-renders the damaged files; with `verify=False` that case is a no-op. Refuses to
  touch a non-empty out_dir holding anything else. Every image is a pure function of (dataset,
  size, seed, its index), so `workers` > 1 (processes) and repairs write the same bytes.
  Concurrent calls for one out_dir are safe: they take turns, and the later ones find the tree.

  Returns:
    the relative paths a repair rewrote (empty when the tree was written now or was intact).
  """
  _domain(dataset)
  split_plan(dataset, size)  # validates size
  out_dir = Path(out_dir)
  if not verify and is_complete(out_dir, dataset, size, seed):
    return []
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  with _writer_lock(out_dir, progress):
    _remove_stale_partials(out_dir, progress)
    if is_complete(out_dir, dataset, size, seed):
      return _repair(dataset, out_dir, size, seed, progress, workers) if verify else []
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
      raise ReidError(f"{out_dir} exists and does not hold a complete {dataset} (size={size}, "
                      f"seed={seed}) written by this generator; remove it or choose another "
                      f"out_dir")
    _write_new(dataset, out_dir, size, seed, progress, workers)
  return []


def _write_new(dataset: str, out_dir: Path, size: str, seed: int, progress: bool,
               workers: int) -> None:
  """Renders the tree into `.<name>.partial-<pid>` and renames it to out_dir (lock held)."""
  domain = _domain(dataset)
  items = plan(dataset, size, seed)
  tmp = out_dir.parent / f"{_partial_prefix(out_dir)}{os.getpid()}"
  try:
    tmp.mkdir()  # mode 0o777 less the umask, like every folder below it
    for folder in sorted({str(Path(item.path).parent) for item in items}):
      (tmp / folder).mkdir(parents=True, exist_ok=True)
    _render(dataset, seed, tmp, list(enumerate(items)), workers,
            f"{dataset} ({size})" if progress else None)
    for name, text in _expected_extras(items, domain).items():
      (tmp / name).write_text(text)
    # Last: its presence means the tree is complete.
    (tmp / MANIFEST).write_text(json.dumps(_manifest(dataset, size, seed, items, domain),
                                           indent=2) + "\n")
    if out_dir.exists():
      out_dir.rmdir()  # empty, checked by the caller under the lock
    os.rename(tmp, out_dir)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)
