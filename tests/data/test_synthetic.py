"""The synthetic world (docs/design.md §6): layouts, names, protocol structure, sizes, determinism
and the measured effects (camera style, identity, domain gap)."""

import collections
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid_jax import paths
from reid_jax.data import datasets, synthetic
from reid_jax.data.synthetic import render, world, writer
from reid_jax.errors import ReidError

# The real datasets' file-name rules (docs/arn_triplet_eval.md §4.1-§4.3), written out independently.
MARKET_RE = re.compile(r"^(-1|\d{4})_c([1-6])s(\d+)_(\d{6})_(\d{2})\.jpg$")
DUKE_RE = re.compile(r"^(\d{4})_c([1-8])_f(\d{7})\.jpg$")
MSMT_RE = re.compile(r"^(\d{4})_(\d{3})_(\d{2})_(0113|0114|0302|0303)(morning|noon|afternoon)"
                     r"_(\d{4})_(\d)\.jpg$")
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def msmt_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("msmt") / "synth_msmt"
  synthetic.write_dataset("synth_msmt", out, size="tiny", seed=0)
  return out


@pytest.fixture(scope="module")
def trees(data_dir, msmt_dir):
  return {"synth_market": paths.raw_dir(data_dir, "synth_market"),
          "synth_duke": paths.raw_dir(data_dir, "synth_duke"), "synth_msmt": msmt_dir}


def _records(root: Path, dataset: str):
  """{split: [(pid, camera 1-based, path)]} read from the tree with the real rules only."""
  out = collections.defaultdict(list)
  layout = datasets.get_spec(dataset).layout
  if layout in ("market", "duke"):
    rule = MARKET_RE if layout == "market" else DUKE_RE
    for split, folder in SPLIT_FOLDERS.items():
      for path in sorted((root / folder).iterdir()):
        m = rule.match(path.name)
        assert m, path.name
        out[split].append((int(m[1]), int(m[2]), path))
  else:
    for split, folder, lists in (("train", "train", ("list_train", "list_val")),
                                 ("query", "test", ("list_query",)),
                                 ("gallery", "test", ("list_gallery",))):
      for name in lists:
        for line in (root / f"{name}.txt").read_text().splitlines():
          rel, label = line.split(" ")
          m = MSMT_RE.match(rel.split("/")[1])
          assert m, rel
          out[split].append((int(label), int(m[3]), root / folder / rel))
  return out


@pytest.mark.parametrize("dataset", ["synth_market", "synth_duke", "synth_msmt"])
def test_names_follow_the_real_rules(trees, dataset):
  root = trees[dataset]
  layout = datasets.get_spec(dataset).layout
  files = [p for p in root.rglob("*") if p.is_file() and p.name != synthetic.MANIFEST
           and not p.name.startswith("list_")]
  assert files
  rule = {"market": MARKET_RE, "duke": DUKE_RE, "msmt": MSMT_RE}[layout]
  bad = [p.name for p in files if not rule.match(p.name)]
  assert not bad, bad[:5]
  assert len({p.name for p in files}) == len(files)
  if layout == "msmt":  # train/PPPP/PPPP_....jpg: the folder is the file's pid
    assert all(p.parent.name == p.name[:4] for p in files)
    assert {p.relative_to(root).parts[0] for p in files} == {"train", "test"}
  else:
    assert {p.parent.name for p in files} == set(SPLIT_FOLDERS.values())
  cameras = {int(rule.match(p.name)[3 if layout == "msmt" else 2]) for p in files}
  assert cameras == set(range(1, datasets.get_spec(dataset).num_cameras + 1))


@pytest.mark.parametrize("dataset", ["synth_market", "synth_duke", "synth_msmt"])
def test_counts_follow_the_size(trees, dataset):
  records = _records(trees[dataset], dataset)
  sp = synthetic.split_plan(dataset, "tiny")
  manifest = json.loads((trees[dataset] / synthetic.MANIFEST).read_text())
  assert (manifest["dataset"], manifest["size"], manifest["seed"]) == (dataset, "tiny", 0)
  for split, recs in records.items():
    assert manifest["counts"][split] == {"ids": len({r[0] for r in recs}), "images": len(recs)}
  assert len(records["train"]) == sp.train_images
  assert len({r[0] for r in records["train"]}) == sp.train_ids
  assert len(records["query"]) == sp.query_images
  assert len({r[0] for r in records["query"]}) == sp.test_ids
  assert len(records["gallery"]) == (sp.gallery_regular + sp.junk_images + sp.distractor_images)
  total = sum(len(v) for v in records.values())
  assert 200 <= total <= 600  # "a few hundred images per dataset"


def test_market_gallery_has_junk_and_distractors(trees):
  records = _records(trees["synth_market"], "synth_market")
  sp = synthetic.split_plan("synth_market", "tiny")
  gallery_pids = collections.Counter(r[0] for r in records["gallery"])
  assert gallery_pids[-1] == sp.junk_images > 0
  assert gallery_pids[0] == sp.distractor_images > 0
  for split in ("train", "query"):
    assert not {-1, 0} & {r[0] for r in records[split]}
  # Ids: the test ids plus -1 and 0, as the real raw folder (docs/arn_triplet_eval.md §4.4).
  assert len(gallery_pids) == sp.test_ids + 2


def test_duke_distractor_ids_only_in_the_gallery(trees):
  records = _records(trees["synth_duke"], "synth_duke")
  query_ids = {r[0] for r in records["query"]}
  distractors = {r[0] for r in records["gallery"]} - query_ids
  assert len(distractors) == synthetic.split_plan("synth_duke", "tiny").distractor_ids > 0
  assert not distractors & {r[0] for r in records["train"]}
  for pid in distractors:  # seen by one camera only
    assert len({r[1] for r in records["gallery"] if r[0] == pid}) == 1


def test_msmt_lists_match_the_folders(msmt_dir):
  listed = {}
  for name, folder in (("list_train", "train"), ("list_val", "train"), ("list_query", "test"),
                       ("list_gallery", "test")):
    for line in (msmt_dir / f"{name}.txt").read_text().splitlines():
      rel, label = line.split(" ")
      assert rel.split("/")[0] == f"{int(label):04d}"
      key = f"{folder}/{rel}"
      assert key not in listed, key
      listed[key] = (name, int(label))
  on_disk = {p.relative_to(msmt_dir).as_posix() for p in msmt_dir.rglob("*.jpg")}
  assert set(listed) == on_disk
  # 0-based contiguous pids per list family; list_val's people are training people.
  train_ids = {v[1] for v in listed.values() if v[0] == "list_train"}
  val_ids = {v[1] for v in listed.values() if v[0] == "list_val"}
  test_ids = {v[1] for v in listed.values() if v[0] in ("list_query", "list_gallery")}
  assert train_ids == set(range(len(train_ids))) and val_ids <= train_ids and val_ids
  assert test_ids == set(range(len(test_ids)))
  assert {v[1] for v in listed.values() if v[0] == "list_query"} == test_ids


@pytest.mark.parametrize("dataset", ["synth_market", "synth_duke", "synth_msmt"])
def test_protocol_structure(trees, dataset):
  records = _records(trees[dataset], dataset)
  train_keys = {p.person for p in synthetic.plan(dataset, "tiny", 0) if p.split in ("train", "val")}
  test_keys = {p.person for p in synthetic.plan(dataset, "tiny", 0) if p.split == "query"}
  assert not train_keys & test_keys  # disjoint people (MSMT's pid numbers overlap by design)
  if dataset != "synth_msmt":
    assert not {r[0] for r in records["train"]} & {r[0] for r in records["query"]}
  gallery = collections.defaultdict(set)
  gallery_pairs = collections.Counter()
  for pid, cam, _ in records["gallery"]:
    gallery[pid].add(cam)
    gallery_pairs[pid, cam] += 1
  query_pairs = collections.Counter((pid, cam) for pid, cam, _ in records["query"])
  assert max(query_pairs.values()) == 1  # one query per camera per test identity ...
  for pid in {r[0] for r in records["query"]}:
    # ... for every camera where that identity has gallery images too (the rest of its walk),
    assert {cam for p, cam in query_pairs if p == pid} == gallery[pid]
    assert len(gallery[pid]) >= 2  # so every query has a cross-camera match
  train_cams = collections.defaultdict(set)
  for pid, cam, _ in records["train"]:
    train_cams[pid].add(cam)
  assert min(len(c) for c in train_cams.values()) >= 2


@pytest.mark.parametrize("dataset,real", [("synth_market", "market"), ("synth_duke", "duke"),
                                          ("synth_msmt", "msmt")])
def test_full_plan_has_the_real_counts(dataset, real):
  items = synthetic.plan(dataset, "full", seed=0)
  counts = writer.planned_counts(items, datasets.get_spec(dataset).layout)
  for split, expected in datasets.get_spec(real).expected.items():
    assert counts[split] == {"ids": expected.ids, "images": expected.images}, split
  if real == "market":
    pids = collections.Counter(i.pid for i in items if i.split == "gallery")
    assert (pids[-1], pids[0]) == (3819, 2798)  # docs/arn_triplet_eval.md §4.4
    assert max(i.pid for i in items) == 1501
  if real == "duke":
    assert counts["gallery"]["ids"] - counts["query"]["ids"] == 408
  if real == "msmt":
    assert counts["list_train"]["ids"] == 1041
    assert counts["list_train"]["images"] + counts["list_val"]["images"] == 32621
  assert len({i.path for i in items}) == len(items)


@pytest.mark.parametrize("size", ["small", "medium"])
@pytest.mark.parametrize("dataset", ["synth_market", "synth_duke", "synth_msmt"])
def test_every_size_plan_is_realised_exactly(dataset, size):
  sp = synthetic.split_plan(dataset, size)
  items = synthetic.plan(dataset, size, seed=0)
  counts = writer.planned_counts(items, datasets.get_spec(dataset).layout)
  assert counts["train"] == {"ids": sp.train_ids, "images": sp.train_images}
  assert counts["query"] == {"ids": sp.test_ids, "images": sp.query_images}
  assert counts["gallery"]["images"] == (sp.gallery_regular + sp.junk_images
                                         + sp.distractor_images)
  assert sum(i.split == "val" for i in items) == sp.val_images
  assert len({i.path for i in items}) == len(items)
  tiny = synthetic.split_plan(dataset, "tiny")
  assert tiny.train_images < sp.train_images and tiny.test_ids < sp.test_ids


def test_cli_in_two_processes_writes_the_same_bytes_as_the_library(trees, tmp_path):
  out = tmp_path / "synth_market"
  subprocess.run([sys.executable, "-m", "data_prep.synthetic", "--dataset=synth_market",
                  "--size=tiny", f"--out_dir={out}", "--seed=0", "--workers=2"], cwd=REPO, check=True,
                 capture_output=True)
  ref = trees["synth_market"]
  files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
  assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
  assert all((ref / f).read_bytes() == (out / f).read_bytes() for f in files)
  # A different seed draws other people and views.
  other = synthetic.plan("synth_market", "tiny", seed=1)
  domain, cams = world.MARKET, world.cameras(world.MARKET)
  same = [writer.render_item(domain, cams, item, i, 1) == (ref / item.path).read_bytes()
          for i, item in enumerate(other[:20]) if (ref / item.path).exists()]
  names0 = {i.path for i in synthetic.plan("synth_market", "tiny", seed=0)}
  assert names0 != {i.path for i in other} and not any(same)


def test_interrupted_write_leaves_nothing_complete(tmp_path, monkeypatch):
  calls = []

  def failing(*args):
    calls.append(1)
    if len(calls) > 5:
      raise KeyboardInterrupt
    return b"x"

  monkeypatch.setattr(writer, "render_item", failing)
  out = tmp_path / "raw" / "synth_duke"
  with pytest.raises(KeyboardInterrupt):
    synthetic.write_dataset("synth_duke", out, size="tiny")
  assert not out.exists() and list(out.parent.iterdir()) == []


def test_foreign_folder_is_refused_and_complete_tree_kept(trees, tmp_path):
  (tmp_path / "x").mkdir()
  (tmp_path / "x" / "keep.txt").write_text("mine")
  with pytest.raises(ReidError, match="remove it or choose another"):
    synthetic.write_dataset("synth_market", tmp_path / "x", size="tiny")
  manifest = trees["synth_market"] / synthetic.MANIFEST
  before = manifest.stat().st_mtime_ns
  synthetic.write_dataset("synth_market", trees["synth_market"], size="tiny", seed=0)  # no-op
  assert manifest.stat().st_mtime_ns == before
  with pytest.raises(ReidError):
    synthetic.write_dataset("synth_market", trees["synth_market"], size="tiny", seed=1)


# ---------------------------------------------------------------------------------------------
# Measured effects, under a fixed embedding: colour histograms (4x4x4 RGB bins) of the upper and
# lower body, square-rooted (Hellinger), compared by Euclidean distance.


def _embed(path):
  image = np.asarray(Image.open(path).convert("RGB").resize((32, 64), Image.BILINEAR))
  q = image.astype(int) // 64
  bins = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
  parts = [np.bincount(bins[a:b].ravel(), minlength=64) for a, b in ((8, 32), (32, 58))]
  return np.concatenate([np.sqrt(p / p.sum()) for p in parts])


def _test_embeddings(records):
  recs = [r for r in records["query"] + records["gallery"] if r[0] > 0]
  pid = np.array([r[0] for r in recs])
  cam = np.array([r[1] for r in recs])
  x = np.stack([_embed(r[2]) for r in recs])
  dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
  return pid, cam, dist


@pytest.mark.parametrize("dataset", ["synth_market", "synth_duke", "synth_msmt"])
def test_camera_style_and_identity_are_measurable(trees, dataset):
  pid, cam, dist = _test_embeddings(_records(trees[dataset], dataset))
  same_cam = cam[:, None] == cam[None]
  off_diag = ~np.eye(len(pid), dtype=bool)
  ratios = []
  for p in np.unique(pid):
    m = pid == p
    d, c, o = dist[np.ix_(m, m)], same_cam[np.ix_(m, m)], off_diag[np.ix_(m, m)]
    if (c & o).any() and (~c).any():
      ratios.append(d[~c].mean() / d[c & o].mean())
  ratio = float(np.mean(ratios))
  # Identity: the nearest other image in the same camera is usually the same person.
  hits, chance = [], []
  for i in range(len(pid)):
    candidates = same_cam[i] & off_diag[i]
    matches = candidates & (pid == pid[i])
    if matches.any():
      j = np.flatnonzero(candidates)[np.argmin(dist[i, candidates])]
      hits.append(pid[j] == pid[i])
      chance.append(matches.sum() / candidates.sum())
  accuracy, chance = float(np.mean(hits)), float(np.mean(chance))
  print(f"{dataset}: cross/same-camera distance ratio {ratio:.2f}; same-camera 1-NN identity "
        f"accuracy {accuracy:.2f} (chance {chance:.2f})")
  assert ratio > 1.3
  assert accuracy > 0.6 and accuracy > 3 * chance


def test_domain_statistics_differ(trees):
  stats = {}
  for dataset in ("synth_market", "synth_duke"):
    records = _records(trees[dataset], dataset)
    images = [np.asarray(Image.open(r[2]).convert("RGB")) for r in records["train"]]
    mean_rgb = np.mean([im.reshape(-1, 3).mean(0) for im in images], 0)
    stats[dataset] = dict(
        rgb=mean_rgb, brightness=float(mean_rgb @ [0.299, 0.587, 0.114]),
        chroma=float(np.mean([np.ptp(im.astype(int), axis=-1).mean() for im in images])),
        heights={im.shape[0] for im in images}, widths={im.shape[1] for im in images},
        cameras={r[1] for v in records.values() for r in v})
  market, duke = stats["synth_market"], stats["synth_duke"]
  print({k: {n: (v if not isinstance(v, set) else (min(v), max(v))) for n, v in s.items()}
         for k, s in stats.items()})
  assert market["heights"] == {128} and market["widths"] == {64}
  assert min(duke["heights"]) > 100 and len(duke["heights"]) > 10
  assert np.mean(sorted(duke["heights"])) > 160
  assert len(market["cameras"]) == 6 and len(duke["cameras"]) == 8
  assert market["brightness"] - duke["brightness"] > 10  # summer sun vs winter overcast
  assert market["chroma"] > 1.3 * duke["chroma"]  # light summer clothes vs dark coats
  assert np.abs(market["rgb"] - duke["rgb"]).max() > 15


def test_viewpoint_decides_what_is_visible():
  """A backpack shows from behind (a patch) more than from the front (straps); a logo only from
  the front. Measured on the scene before the camera, with colours no other part uses."""
  camera = world.cameras(world.MARKET)[0]
  magenta, cyan = (1.0, 0.0, 1.0), (0.0, 1.0, 1.0)
  base = world.person(world.MARKET, np.random.default_rng(0))
  person = dataclasses.replace(base, backpack=magenta, pattern="logo", upper_secondary=cyan,
                               handbag=None)
  track = render.sample_track(camera, np.random.default_rng(0))

  def count(view_name, colour):
    view = dataclasses.replace(render.sample_view(camera, track, (1, 0, 1),
                                                  np.random.default_rng(1)),
                               view=view_name, occluder=None)
    scene = render.render_scene(camera, person, view, (128, 64), np.random.default_rng(2))
    return int((np.abs(scene - np.asarray(colour)).max(-1) < 0.1).sum())

  assert count("back", magenta) > 3 * count("front", magenta) > 0
  assert count("front", cyan) > 20 and count("back", cyan) == 0 and count("side", cyan) == 0


def test_msmt_light_follows_time_of_day_outdoors_only(msmt_dir):
  """Outdoor crops are brighter at noon than in the morning; the 3 indoor cameras (13-15) are lit
  alike at every hour (docs/design.md §6.3)."""
  brightness = collections.defaultdict(list)
  for path in msmt_dir.rglob("*.jpg"):
    m = MSMT_RE.match(path.name)
    place = "indoor" if int(m[3]) >= 13 else "outdoor"
    luma = np.asarray(Image.open(path).convert("L"), np.float32).mean()
    brightness[place, m[5]].append(luma)
  mean = {k: float(np.mean(v)) for k, v in brightness.items()}
  print({k: round(v, 1) for k, v in sorted(mean.items())})
  assert mean["outdoor", "noon"] - mean["outdoor", "morning"] > 15
  indoor = [v for k, v in mean.items() if k[0] == "indoor"]
  assert len(indoor) >= 2
  assert max(indoor) - min(indoor) < 0.5 * (mean["outdoor", "noon"] - mean["outdoor", "morning"])
