"""Shared fixtures: tiny synthetic datasets generated once per test session into a temp folder."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


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
