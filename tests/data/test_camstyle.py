"""A camera-style set belongs to one world (docs/design.md §4): keyed, checked on read and on write."""

import json
import shlex

import pytest

from reid_jax import cli
from reid_jax import paths
from reid_jax.configs import baseline as baseline_config
from reid_jax.configs import stargan as stargan_config
from reid_jax.data import camstyle
from reid_jax.data import tfds_builders
from reid_jax.data.synthetic import writer as synthetic_writer
from reid_jax.errors import ReidError
from reid_jax.training import preflight
from reid_jax.training import stargan

STEMS = ["0001_c1s1_000001_00", "0002_c4s2_000040_01"]
TINY = camstyle.world_of("synth_market", "tiny")
MEDIUM = camstyle.world_of("synth_market", "medium")


def _complete_set(folder, world, stems=STEMS, num_cameras=6):
  folder.mkdir(parents=True)
  for name in camstyle.expected_names(stems, num_cameras):
    (folder / name).write_bytes(b"")
  camstyle.write_manifest(folder, dataset=world["dataset"], num_cameras=num_cameras,
                          num_images=len(stems), checkpoint_step=5, config_sha256="x", world=world)


def test_world_records():
  assert camstyle.world_of("market", "medium") == {"dataset": "market", "kind": "real"}
  assert MEDIUM == {"dataset": "synth_market", "kind": "synthetic", "size": "medium", "seed": 0,
                    "generator_version": synthetic_writer.GENERATOR_VERSION}
  assert camstyle.describe_world(MEDIUM) == (
      f"synth_market medium seed 0 (synthetic generator v{synthetic_writer.GENERATOR_VERSION})")
  with pytest.raises(ReidError, match="data.synthetic_size='huge'"):
    camstyle.world_of("synth_market", "huge")
  # Two worlds of one dataset never share a folder; a real dataset keeps camstyle/<dataset>.
  assert camstyle.set_dir("/d", TINY).name == "synth_market_tiny_seed0"
  assert camstyle.set_dir("/d", MEDIUM).name == "synth_market_medium_seed0"
  assert camstyle.set_dir("/d", camstyle.world_of("duke", None)) == paths.camstyle_dir("/d", "duke")


def test_a_set_of_the_tiny_world_is_refused_for_the_medium_world(tmp_path):
  _complete_set(camstyle.set_dir(tmp_path, TINY), TINY)
  command = camstyle.stargan_command(tmp_path, "synth_market", "medium")
  with pytest.raises(ReidError) as error:
    camstyle.find_camstyle_set(tmp_path, "synth_market", STEMS, 6, world=MEDIUM)
  line = str(error.value)
  assert "\n" not in line and line.endswith(command)
  assert camstyle.describe_world(TINY) in line and camstyle.describe_world(MEDIUM) in line
  # The same set moved into the medium world's folder (same file names) is refused too.
  camstyle.set_dir(tmp_path, TINY).rename(camstyle.set_dir(tmp_path, MEDIUM))
  with pytest.raises(ReidError) as error:
    camstyle.find_camstyle_set(tmp_path, "synth_market", STEMS, 6, world=MEDIUM)
  line = str(error.value)
  assert (f"holds fakes made for {camstyle.describe_world(TINY)}, not for "
          f"{camstyle.describe_world(MEDIUM)}") in line
  assert f"delete {camstyle.set_dir(tmp_path, MEDIUM)}" in line and line.endswith(command)


def test_a_set_of_an_older_generator_or_without_a_world_is_refused(tmp_path):
  old = dict(MEDIUM, generator_version=MEDIUM["generator_version"] - 1)
  _complete_set(camstyle.set_dir(tmp_path, MEDIUM), old)
  with pytest.raises(ReidError, match=r"synthetic generator v\d+\), not for"):
    camstyle.find_camstyle_set(tmp_path, "synth_market", STEMS, 6, world=MEDIUM)
  manifest = camstyle.set_dir(tmp_path, MEDIUM) / camstyle.MANIFEST
  record = json.loads(manifest.read_text())
  del record["world"]  # as written before sets had a world
  manifest.write_text(json.dumps(record))
  with pytest.raises(ReidError, match="made for an unrecorded world"):
    camstyle.find_camstyle_set(tmp_path, "synth_market", STEMS, 6, world=MEDIUM)
  with pytest.raises(ValueError, match="needs its world"):
    camstyle.find_camstyle_set(tmp_path, "synth_market", STEMS, 6)


def test_writer_preflight_refuses_a_folder_of_another_world(tmp_path):
  _complete_set(camstyle.set_dir(tmp_path, MEDIUM), TINY)
  identity = {"checkpoint_step": 5, "config_sha256": "x"}  # the same generator
  with pytest.raises(ReidError, match="not for synth_market medium.*delete .*to rewrite it"):
    preflight.camstyle_destination(tmp_path, "synth_market", identity, MEDIUM)
  preflight.camstyle_destination(tmp_path, "synth_market", identity, TINY)  # its folder is empty


def _private_data_dir(data_dir, tmp_path):
  """A data_dir sharing the session's prepared tiny datasets; camera-style sets stay private."""
  private = tmp_path / "data"
  private.mkdir()
  tfds_builders.split_labels("synth_market", "train", data_dir, size="tiny")  # prepared first
  paths.tfds_dir(private).symlink_to(paths.tfds_dir(data_dir), target_is_directory=True)
  return private


def test_preflight_names_the_command_then_finds_the_complete_set(data_dir, tmp_path):
  private = _private_data_dir(data_dir, tmp_path)
  command = camstyle.stargan_command(private, "synth_market", "tiny")
  assert command == (f"python -m experiments.stargan --dataset=synth_market --data_dir={private} "
                     "--config.data.synthetic_size=tiny")  # tiny is not the tiny config's world
  with pytest.raises(ReidError) as error:
    preflight.camstyle_set(private, "synth_market", "tiny")
  line = str(error.value)
  assert line.startswith("no camera-style set for synth_market tiny seed 0")
  assert line.endswith(command)
  labels = tfds_builders.split_labels("synth_market", "train", data_dir, size="tiny")
  stems = [camstyle.stem_of(f) for f in labels["filename"]]
  folder = camstyle.set_dir(private, TINY)
  _complete_set(folder, TINY, stems)
  assert preflight.camstyle_set(private, "synth_market", "tiny") == folder
  (folder / camstyle.fake_name(stems[-1], 6)).unlink()
  with pytest.raises(ReidError, match=f"lacks 1 of {6 * len(stems)} .*_fake_6.jpg"):
    preflight.camstyle_set(private, "synth_market", "tiny")


@pytest.mark.parametrize("dataset,size", [("synth_market", "tiny"), ("synth_market", "small"),
                                          ("synth_market", "medium"), ("synth_duke", "full"),
                                          ("market", "medium")])
def test_the_command_writes_the_set_of_the_world_it_is_for(dataset, size):
  """stargan_command's flags, resolved as experiments.stargan resolves them, give that world."""
  argv = shlex.split(camstyle.stargan_command("/d", dataset, size))
  _, overrides = cli.split_overrides(argv)
  config, _ = cli.load_config(cli.ConfigFile("stargan", "reid_jax.configs.stargan"), None,
                              stargan_config.default_variant(dataset), overrides)
  world = camstyle.world_of(dataset, size)
  assert stargan.world(config, dataset) == world
  assert len(overrides) == (0 if dataset == "market" or size == "medium" else 1)


def test_the_tiny_stargan_config_makes_the_tiny_reid_configs_world():
  """experiments.stargan --dataset=synth_* (the tiny config) trains on and writes for the medium
  world, the one the tiny re-ID configs train on."""
  config = stargan_config.get_config(stargan_config.default_variant("synth_market"))
  assert config.variant == "tiny" and config.data.synthetic_size == "medium"
  assert baseline_config.get_config("tiny").data.synthetic_size == config.data.synthetic_size
  assert camstyle.set_dir("/d", stargan.world(config, "synth_market")) == (
      paths.camstyle_dir("/d", "synth_market", "medium", 0))
