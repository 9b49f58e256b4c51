"""Lazy public names for the package `__init__`s (PEP 562).

`from reid_jax.models import ResNet50` imports `reid_jax.models.resnet` on first use only, so
importing a light submodule (e.g. `reid_jax.data.synthetic`, which worker processes import) does
not pull in JAX or TFDS through its package.
"""

import importlib


def lazy(package: str, names: dict[str, str]):
  """`(__getattr__, __dir__)` for a package whose public `name` lives in `names[name]`, a
  submodule name relative to `package`."""

  def __getattr__(name):
    if name not in names:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

  def __dir__():
    return sorted(names)

  return __getattr__, __dir__
