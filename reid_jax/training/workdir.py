"""The workdir contract (docs/design.md §5): config.json, its hash, refusal of a different config
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

# results.json per-dataset eval keys (docs/design.md §5).
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


def has_checkpoint(workdir) -> bool:
  """Whether training has started in `workdir`: its checkpoints/ holds a step folder."""
  directory = Path(workdir) / CHECKPOINT_DIR
  return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def check(workdir, config, ignore: tuple[str, ...] = ()) -> None:
  """Refuses `config` on a workdir whose training started with another one; writes nothing.

  The config is locked only once a checkpoint exists: a run that failed before training (a typo
  in a path, a wrong variant) can be rerun on the same workdir with the corrected config.

  Raises:
    ReidError: the workdir holds a checkpoint and a config.json that differs from `config`; the
      message names every differing field with both values.
  """
  workdir = Path(workdir)
  path = workdir / CONFIG_FILE
  if not path.exists() or not has_checkpoint(workdir):
    return
  try:
    saved = json.loads(path.read_text())
  except json.JSONDecodeError as error:
    raise ReidError(f"{path} is not valid JSON ({error}); delete it or use another --workdir")
  current = config_to_dict(config)
  differences = [d for d in config_differences(saved, current) if d not in ignore]
  if differences:
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    fields = "; ".join(
        f"{name}: {_describe(flat_saved.get(name))} in the workdir, "
        f"{_describe(flat_current.get(name))} now" for name in differences)
    raise ReidError(
        f"workdir {workdir} was trained with a different config; differing fields: {fields}. "
        f"Rerun with --config={path} (the saved config) or choose another --workdir")


def prepare(workdir, config, ignore: tuple[str, ...] = ()) -> Path:
  """`check`, then creates `workdir` and writes config.json (replacing one that no checkpoint
  has locked yet)."""
  check(workdir, config, ignore)
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / CONFIG_FILE
  current = config_to_dict(config)
  if not (path.exists() and has_checkpoint(workdir)):
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
  """Writes `<workdir>/results.json` atomically with the docs/design.md §5 schema; returns it.

  `eval` maps dataset name -> `eval_entry(...)`. `extra` keys are appended after the schema's.
  Merged, not overwritten (`merge_results`): the entries of `eval` replace those of the same
  name, the others already there (e.g. `<dataset>+rerank` added by `experiments.evaluate`) are
  kept, as long as they belong to the same run (same config_sha256 and steps).
  """
  results = {
      "experiment": experiment, "variant": variant, "src": src, "tgt": tgt,
      "config": config_name, "config_sha256": config_sha256(config),
      "epochs": int(epochs), "steps": int(steps), "train_seconds": float(train_seconds),
      "devices": device_names(), "versions": versions(),
      "eval": {name: dict(entry) for name, entry in eval.items()},
  }
  results.update(extra)
  return merge_results(workdir, results, merge_keys=("eval",),
                       same_run_keys=("config_sha256", "steps"))


def _read_existing(path: Path) -> dict | None:
  """The results.json there, or None when absent or not a JSON object (it is then replaced)."""
  try:
    existing = json.loads(path.read_text())
  except FileNotFoundError:
    return None
  except (json.JSONDecodeError, UnicodeDecodeError):
    return None
  return existing if isinstance(existing, dict) else None


def merge_results(workdir, update: Mapping[str, Any], *, merge_keys: tuple[str, ...] = ("eval",),
                  same_run_keys: tuple[str, ...] = ("config_sha256",)) -> dict:
  """Writes `<workdir>/results.json` = the results already there updated with `update`; returns it.

  Top-level keys of `update` replace those already there; the dicts named in `merge_keys` are
  merged one level down (an entry of `update` replaces the entry of the same name, the others are
  kept); keys only in the file are kept. The file's content is dropped instead when it describes
  another run: one of `same_run_keys` present in both has different values (e.g. a workdir
  retrained with another config). Written atomically (temporary file, fsync, rename).
  """
  path = Path(workdir) / RESULTS_FILE
  existing = _read_existing(path)
  if existing is not None and any(
      key in existing and key in update and existing[key] != update[key] for key in same_run_keys):
    existing = None
  results = dict(existing or {})  # keys keep their place; new ones are appended
  for key, value in update.items():
    if key in merge_keys and isinstance(results.get(key), dict) and isinstance(value, Mapping):
      value = {**results[key], **value}
    results[key] = value
  atomic_io.write_json(path, results)
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


def record_eval(workdir, config: Mapping[str, Any], key: str, entry: Mapping[str, Any],
                step: int) -> dict:
  """Sets `eval[key]` of results.json, writing the file from config.json's fields (train_seconds 0)
  when training never wrote one; the other entries are kept. Returns the results."""
  if read_results(workdir) is not None:
    return update_eval(workdir, key, entry, key=key)
  return write_results(
      workdir, experiment=config.get("experiment", "unknown"),
      variant=config.get("variant", "unknown"), src=config.get("src"), tgt=config.get("tgt"),
      config_name=config.get("config_name", ""), config=config,
      epochs=config.get("num_epochs", 0), steps=step, train_seconds=0.0, eval={key: entry})
