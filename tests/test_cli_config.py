"""`--config` as people type it (issue 16, item 1 and 3): resolution, overrides, a saved config.json."""

import json

import pytest

from reid_jax import cli
from reid_jax.configs import baseline as baseline_config
from reid_jax.errors import ReidError
from reid_jax.errors import UsageError
from reid_jax.training import workdir as workdir_lib

BASELINE = cli.ConfigFile("baseline", "reid_jax.configs.baseline")
STARGAN = cli.ConfigFile("stargan", "reid_jax.configs.stargan")


def test_overrides_apply_to_the_default_variant_without_config():
  config, name = cli.load_config(BASELINE, None, "tiny", [("num_epochs", "1")])
  assert name == "reid_jax/configs/baseline.py:tiny"
  assert config.num_epochs == 1
  assert config.model.arch == baseline_config.get_config("tiny").model.arch == "resnet_small"


def test_a_file_without_variant_takes_the_dataset_dependent_default():
  config, name = cli.load_config(BASELINE, "reid_jax/configs/baseline.py", "tiny",
                                 [("num_epochs", "1")])
  assert name.endswith(":tiny") and config.variant == "tiny" and config.data.batch_size == 32
  paper, _ = cli.load_config(BASELINE, "reid_jax/configs/baseline.py:paper", "tiny")
  assert paper.variant == "paper" and paper.data.batch_size == 128


def test_override_values_take_the_field_type():
  config, _ = cli.load_config(BASELINE, None, "tiny", [
      ("optim.base_lr", "0.05"), ("data.cache_images", "false"), ("optim.milestones", "(3, 5)"),
      ("model.pretrained", ""), ("optim.lr_mult", "{'trunk': 0.5, 'classifier': 1.0}"),
      ("optim.lr_mult.trunk", "0.25")])
  assert config.optim.base_lr == 0.05 and config.data.cache_images is False
  assert config.optim.milestones == (3, 5) and config.model.pretrained == ""
  assert config.optim.lr_mult.to_dict() == {"trunk": 0.25, "classifier": 1.0}


@pytest.mark.parametrize("field, text, part", [
    ("nonexistent", "1", "nonexistent: unknown config field"),
    ("optim.nonexistent", "1", "optim has base_lr"),
    ("num_epochs", "x", "expected an integer"),
    ("data.cache_images", "maybe", "expected true or false"),
    ("optim.milestones", "(3,", "not a Python literal"),
])
def test_bad_overrides_are_usage_errors_naming_the_field(field, text, part):
  with pytest.raises(UsageError, match=part.replace("(", r"\(")):
    cli.load_config(BASELINE, None, "tiny", [(field, text)])


def test_unknown_variant_missing_file_and_foreign_config_are_named():
  with pytest.raises(UsageError, match="unknown baseline variant 'bogus'"):
    cli.load_config(BASELINE, "reid_jax/configs/baseline.py:bogus", "tiny")
  with pytest.raises(ReidError, match="config file nope.py not found"):
    cli.load_config(BASELINE, "nope.py", "tiny")
  with pytest.raises(ReidError, match="is a baseline config; this command needs a stargan"):
    cli.load_config(STARGAN, "reid_jax/configs/baseline.py:tiny", "tiny")


def test_a_workdirs_config_json_reruns_the_same_config(tmp_path):
  config, name = cli.load_config(BASELINE, None, "tiny", [("seed", "7")])
  config = cli.with_command_fields(config, src="synth_duke", tgt="synth_market", config_name=name)
  workdir_lib.prepare(tmp_path, config)
  again, again_name = cli.load_config(BASELINE, str(tmp_path / "config.json"), "paper")
  again = cli.with_command_fields(again, src="synth_duke", tgt="synth_market",
                                  config_name=again_name)
  assert again_name == name
  assert workdir_lib.config_differences(workdir_lib.config_to_dict(config),
                                        workdir_lib.config_to_dict(again)) == []
  changed, _ = cli.load_config(BASELINE, str(tmp_path / "config.json"), "paper",
                               [("optim.milestones", "(4,)")])
  assert list(changed.optim.milestones) == [4]


def test_config_json_that_is_not_a_config_is_one_error(tmp_path):
  (tmp_path / "config.json").write_text("[1, 2]")
  with pytest.raises(ReidError, match="does not hold a config"):
    cli.load_config(BASELINE, str(tmp_path / "config.json"), "tiny")
  with pytest.raises(ReidError, match="not found"):
    cli.load_config(BASELINE, str(tmp_path / "missing" / "config.json"), "tiny")


def test_split_overrides_keeps_other_flags_and_refuses_a_bare_field():
  argv, overrides = cli.split_overrides(["prog", "--src=a", "--config.seed=3", "--config=x.py"])
  assert argv == ["prog", "--src=a", "--config=x.py"] and overrides == [("seed", "3")]
  with pytest.raises(UsageError, match="give a value"):
    cli.split_overrides(["prog", "--config.seed"])


def test_config_is_locked_only_once_a_checkpoint_exists(tmp_path):
  first, _ = cli.load_config(BASELINE, None, "tiny")
  first = cli.with_command_fields(first, src="synth_duke", tgt="synth_market", config_name="a")
  workdir_lib.prepare(tmp_path, first)
  second, _ = cli.load_config(BASELINE, None, "tiny", [("seed", "3")])
  second = cli.with_command_fields(second, src="synth_duke", tgt="synth_market", config_name="a")
  workdir_lib.prepare(tmp_path, second)  # no checkpoint yet: the new config replaces the old
  assert json.loads((tmp_path / "config.json").read_text())["seed"] == 3
  (tmp_path / "checkpoints" / "12").mkdir(parents=True)
  with pytest.raises(ReidError, match=r"seed: 3 in the workdir, 0 now.*--config=.*config\.json"):
    workdir_lib.prepare(tmp_path, first)


def test_interrupted_save_leaves_no_temporary_checkpoint(tmp_path, monkeypatch):
  import numpy as np
  from reid_jax.training import checkpoint as checkpoint_lib
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "checkpoints")
  ckpt.save(1, {"w": np.zeros(3)})

  def interrupted_save(step, **_):
    (ckpt.directory / f"{step}.orbax-checkpoint-tmp-1234").mkdir()
    raise KeyboardInterrupt  # what Ctrl-C raises in the middle of orbax's write

  monkeypatch.setattr(ckpt._manager, "save", interrupted_save)
  with pytest.raises(KeyboardInterrupt):
    ckpt.save(2, {"w": np.ones(3)})
  assert sorted(p.name for p in ckpt.directory.iterdir()) == ["1"]
  ckpt.close()
