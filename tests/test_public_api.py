"""The public names the issues give import from the packages, and stay lazy."""

import importlib
import subprocess
import sys

import pytest

PACKAGES = ("reid_jax.models", "reid_jax.losses", "reid_jax.evaluation", "reid_jax.data",
            "reid_jax.training")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_its_submodules_object(package):
  module = importlib.import_module(package)
  assert module.__all__
  for name in module.__all__:
    owner = importlib.import_module(f"{package}.{module._NAMES[name]}")
    assert getattr(module, name) is getattr(owner, name), name
  with pytest.raises(AttributeError):
    getattr(module, "no_such_name")


def test_issue_names_import():
  from reid_jax.evaluation import evaluate_rank  # noqa: F401
  from reid_jax.models import ResNet50
  assert ResNet50().stage_sizes == (3, 4, 6, 3)


def test_synthetic_writer_does_not_pull_jax_through_its_package():
  code = ("import sys, reid_jax.data.synthetic; "
          "print('jax' in sys.modules, 'tensorflow_datasets' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.split() == ["False", "False"]
