"""The workdir contract (design README §5): config.json, its hash, refusal of a different config
on an existing workdir, and the atomically written results.json.

  config = workdir_lib.prepare(workdir, config)      # writes config.json or checks it matches
  ...
  workdir_lib.write_results(workdir, experiment="baseline", variant="baseline", src=..., tgt=...,
                            config_name="reid_jax/configs/baseline.py:tiny", config=config,
                            epochs=..., steps=..., train_seconds=..., eval={"synth_market": {...}})
  workdir_lib.update_eval(workdir, "synth_market", scores)   # used by experiments.evaluate
"""

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import jax

from reid_jax import atomic_io
from reid_jax.errors import ReidError

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoints"
TB_DIR = "tb"
FIGURES_DIR = "figures"

# results.json per-dataset eval keys (design README §5).
EVAL_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "ap", "distance", "rerank",
             "n_query", "n_gallery")
RESULTS_KEYS = ("experiment", "variant", "src", "tgt", "config", "config_sha256", "epochs",
                "steps", "train_seconds", "devices", "versions", "eval")


def config_to_dict(config) -> dict:
  """A ConfigDict (or mapping) as plain JSON data: tuples become lists, keys stay sorted."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  return json.loads(atomic_io.json_text(config, sort_keys=True))


def config_sha256(config) -> str:
  """sha256 of the canonical JSON (sorted keys, no spaces) of the resolved config."""
  canonical = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _flatten(tree, prefix=""):
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    if not tree and prefix:
      out[prefix[:-1]] = {}
    return out
  return {prefix[:-1]: tree}


def config_differences(saved, current) -> list[str]:
  """Dotted field names whose values differ (or exist in only one of the two configs)."""
  flat_saved = _flatten(config_to_dict(saved))
  flat_current = _flatten(config_to_dict(current))
  missing = object()
  return [name for name in sorted(set(flat_saved) | set(flat_current))
          if flat_saved.get(name, missing) != flat_current.get(name, missing)]


def _describe(value) -> str:
  return json.dumps(value) if value is not None else "absent"


def prepare(workdir, config, ignore: tuple[str, ...] = ()) -> Path:
  """Creates `workdir` and writes config.json, or checks that the saved one equals `config`.

  `ignore`: dotted field names left out of the comparison (e.g. how the config file was named).

  Raises:
    ReidError: the workdir holds a config.json that differs from `config`; the message names
      every differing field with both values.
  """
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / CONFIG_FILE
  current = config_to_dict(config)
  if path.exists():
    try:
      saved = json.loads(path.read_text())
    except json.JSONDecodeError as error:
      raise ReidError(f"{path} is not valid JSON ({error}); delete it or use another --workdir")
    differences = [d for d in config_differences(saved, current) if d not in ignore]
    if differences:
      flat_saved, flat_current = _flatten(saved), _flatten(current)
      fields = "; ".join(
          f"{name}: {_describe(flat_saved.get(name))} in the workdir, "
          f"{_describe(flat_current.get(name))} now" for name in differences)
      raise ReidError(
          f"workdir {workdir} was made with a different config ({CONFIG_FILE}); differing fields: "
          f"{fields}. Rerun with the saved config or choose another --workdir")
    return workdir
  atomic_io.write_json(path, current)
  return workdir


def load_config(workdir) -> dict:
  """The saved config.json of `workdir` as a dict."""
  path = Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise ReidError(f"{path} not found: {workdir} is not a training workdir (train first)")
  return json.loads(path.read_text())


def versions() -> dict[str, str]:
  import flax
  import optax

  import reid_jax
  return {"reid_jax": reid_jax.__version__, "jax": jax.__version__, "flax": flax.__version__,
          "optax": optax.__version__}


def device_names() -> list[str]:
  """e.g. ["cpu:0"] or ["gpu:0", "gpu:1"]."""
  return [f"{d.platform}:{d.id}" for d in jax.devices()]


def eval_entry(scores: Mapping[str, Any], *, ap: str, distance: str, rerank: bool,
               n_query: int, n_gallery: int) -> dict:
  """One dataset's entry of results.json's `eval` (scores are fractions in [0, 1])."""
  entry = {key: float(scores[key]) for key in ("rank1", "rank5", "rank10", "rank20", "mAP")}
  entry.update(ap=str(ap), distance=str(distance), rerank=bool(rerank), n_query=int(n_query),
               n_gallery=int(n_gallery))
  return entry


def write_results(workdir, *, experiment: str, variant: str, src: str, tgt: str | None,
                  config_name: str, config, epochs: int, steps: int, train_seconds: float,
                  eval: Mapping[str, Mapping[str, Any]], **extra) -> dict:
  """Writes `<workdir>/results.json` atomically with the design README §5 schema; returns it.

  `eval` maps dataset name -> `eval_entry(...)`. `extra` keys are appended after the schema's.
  """
  results = {
      "experiment": experiment, "variant": variant, "src": src, "tgt": tgt,
      "config": config_name, "config_sha256": config_sha256(config),
      "epochs": int(epochs), "steps": int(steps), "train_seconds": float(train_seconds),
      "devices": device_names(), "versions": versions(),
      "eval": {name: dict(entry) for name, entry in eval.items()},
  }
  results.update(extra)
  atomic_io.write_json(Path(workdir) / RESULTS_FILE, results)
  return results


def read_results(workdir) -> dict | None:
  path = Path(workdir) / RESULTS_FILE
  return json.loads(path.read_text()) if path.exists() else None


def update_eval(workdir, dataset: str, entry: Mapping[str, Any], key: str | None = None) -> dict:
  """Sets `eval[key or dataset]` of an existing results.json (atomically) and returns it."""
  results = read_results(workdir)
  if results is None:
    raise ReidError(f"{Path(workdir) / RESULTS_FILE} not found: the training run has not finished")
  results.setdefault("eval", {})[key or dataset] = dict(entry)
  atomic_io.write_json(Path(workdir) / RESULTS_FILE, results)
  return results
