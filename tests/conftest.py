"""Shared fixtures: tiny synthetic datasets generated once per test session into a temp folder."""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's persistent compilation cache, for this test session only: many tests compile the same
# programs (the tiny baseline and HHL steps in their subprocess runs), and compiling is most of
# the suite's time. Created by the first process that imports this (pytest-xdist's controller;
# its workers and every subprocess inherit the variable), deleted at the end of the session.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="reid_jax_test_xla_cache_")

import pytest  # noqa: E402


def pytest_sessionfinish(session):
  if _OWN_CACHE:  # this process made it (the xdist controller; its workers inherit the variable)
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A data_dir (docs/design.md §4) whose raw/ holds tiny synth_market and synth_duke trees."""
  from reid_jax import paths
  from reid_jax.data import synthetic

  root = tmp_path_factory.mktemp("reid_jax_data")
  for name in ("synth_market", "synth_duke"):
    synthetic.write_dataset(name, paths.raw_dir(root, name), size="tiny", seed=0)
  return root


@pytest.fixture(scope="session")
def spy_on_render():
  """`install(monkeypatch) -> set`: records the domain names `render.render` draws in (same
  output), for tests that prove which worlds a piece of code renders."""
  from reid_jax.data.synthetic import render

  def install(monkeypatch):
    domains = set()
    original = render.render

    def spy(domain, *args, **kwargs):
      domains.add(domain.name)
      return original(domain, *args, **kwargs)

    monkeypatch.setattr(render, "render", spy)
    return domains

  return install


@pytest.fixture
def rendered_domains(monkeypatch, spy_on_render):
  return spy_on_render(monkeypatch)
