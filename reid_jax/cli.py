"""The entry-point layer every `experiments/*` command shares (docs/design.md §3).

- `run(main, configs=...)`: parses absl flags (a usage error exits 2), answers `--help` and
  `--helpfull` with exit 0 (the command's usage, its flags, the dataset names, the config variants
  and every config field), passes the `--config.FIELD=VALUE` overrides to `main`, and turns
  expected failures into one line: `ReidError` exits 1, `UsageError` 2, Ctrl-C 130 with
  "interrupted; rerun the same command to resume".
- `load_config(...)`: `--config` as people type it: absent (the dataset-dependent default
  variant), `FILE.py` (same default variant), `FILE.py:VARIANT`, or a workdir's `config.json`
  (rerun exactly what a workdir was made with); overrides apply to whichever was chosen.

absl's own `config_flags` cannot do the first and the last (overrides need `--config`, a JSON file
is not a config file) and raises tracebacks on unknown fields, so the flag is parsed here.
"""

import ast
import dataclasses
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from absl import app
from absl import flags

from reid_jax import console
from reid_jax import runtime
from reid_jax.errors import ReidError
from reid_jax.errors import UsageError

HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")
INTERRUPTED = "interrupted; rerun the same command to resume"
OVERRIDE_PREFIX = "--config."
# Fields a command sets from its own flags; a workdir's config.json carries them too.
COMMAND_FIELDS = ("src", "tgt", "dataset", "config_name")


@dataclasses.dataclass(frozen=True)
class ConfigFile:
  """The config file of one experiment: `reid_jax/configs/<name>.py`, `get_config(variant)`."""
  experiment: str  # the configs' `experiment` field, e.g. "baseline"
  module: str  # e.g. "reid_jax.configs.baseline"

  @property
  def path(self) -> str:
    return self.module.replace(".", "/") + ".py"

  def load_module(self):
    return importlib.import_module(self.module)

  @property
  def variants(self) -> tuple[str, ...]:
    return tuple(self.load_module().VARIANTS)


def define_config_flag(configs: ConfigFile, default_text: str) -> None:
  """Defines `--config` (a string: the file and variant, or a workdir's config.json)."""
  flags.DEFINE_string(
      "config", None,
      f"config: FILE.py[:VARIANT] or a workdir's config.json; default {configs.path} with "
      f"{default_text}; override fields with --config.FIELD=VALUE (--help lists them)")


# ---------------------------------------------------------------------------------------------
# Config resolution.


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """`(argv without the overrides, [(dotted field, text)])` for every `--config.FIELD=VALUE`."""
  rest, overrides = [], []
  for arg in argv:
    if arg.startswith(OVERRIDE_PREFIX):
      field, sep, text = arg[len(OVERRIDE_PREFIX):].partition("=")
      if not sep or not field:
        raise UsageError(f"{arg}: give a value, as --config.{field or 'FIELD'}=VALUE")
      overrides.append((field, text))
    else:
      rest.append(arg)
  return rest, overrides


def _import_file(path: Path):
  spec = importlib.util.spec_from_file_location(f"_reid_jax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as error:
    raise ReidError(f"config file {path} does not parse: {error}") from None
  return module


def _config_module(configs: ConfigFile, file: str):
  """The module of `file`: the package's own config, or a user's file on disk."""
  path = Path(file)
  if path.is_file():
    if path.resolve() == Path(configs.path).resolve():
      return configs.load_module()
    return _import_file(path)
  if file in (configs.path, configs.module):  # run from outside the repository root
    return configs.load_module()
  raise ReidError(f"config file {file} not found; the {configs.experiment} configs are "
                  f"{configs.path}:{{{','.join(configs.variants)}}}")


def _from_json(path: Path, configs: ConfigFile):
  import ml_collections  # pylint: disable=g-import-not-at-top
  if not path.is_file():
    raise ReidError(f"config file {path} not found (a workdir's config.json was expected)")
  try:
    saved = json.loads(path.read_text())
  except json.JSONDecodeError as error:
    raise ReidError(f"{path} is not valid JSON ({error}); give a workdir's config.json") from None
  if not isinstance(saved, dict):
    raise ReidError(f"{path} does not hold a config (a JSON object was expected)")
  name = saved.get("config_name") or str(path)
  fields = {k: v for k, v in saved.items() if k not in COMMAND_FIELDS}
  return ml_collections.ConfigDict(fields), name


def load_config(configs: ConfigFile, value: str | None, default_variant: str,
                overrides=()):
  """`(config, config_name)` for `--config=value` (None: the default), overrides applied.

  Raises:
    ReidError: the file is missing, is not a config of this experiment, or cannot be read.
    UsageError: an unknown variant, an unknown field or a value of the wrong type.
  """
  if value and value.endswith(".json"):
    config, name = _from_json(Path(value), configs)
  else:
    file, _, variant = (value or configs.path).partition(":")
    variant = variant or default_variant
    module = _config_module(configs, file)
    get_config = getattr(module, "get_config", None)
    if get_config is None:
      raise ReidError(f"{file} has no get_config(variant): not a reid_jax config file")
    try:
      config = get_config(variant)
    except ValueError as error:
      raise UsageError(f"--config={file}:{variant}: {error}") from None
    name = f"{file}:{variant}"
  experiment = config.get("experiment")
  if experiment != configs.experiment:
    raise ReidError(
        f"--config={value} is a {experiment or 'foreign'} config; this command needs a "
        f"{configs.experiment} config, e.g. {configs.path}:{configs.variants[0]}")
  config.lock()
  apply_overrides(config, overrides)
  return config, name


def with_command_fields(config, **fields):
  """`config` with the command's own fields (`src`, `tgt`, `dataset`, `config_name`) set."""
  config.unlock()
  for key, value in fields.items():
    config[key] = value
  config.lock()
  return config


def _parse(field: str, current, text: str):
  """`text` as a value of `current`'s type (bool, int, float, str, tuple, list, dict)."""
  def literal():
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise UsageError(f"--config.{field}={text}: not a Python literal") from None

  if isinstance(current, bool):
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
    raise UsageError(f"--config.{field}={text}: expected true or false")
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      raise UsageError(f"--config.{field}={text}: expected an integer") from None
  if isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      raise UsageError(f"--config.{field}={text}: expected a number") from None
  if isinstance(current, str):
    return text
  if isinstance(current, (tuple, list)):
    value = literal()
    value = value if isinstance(value, (tuple, list)) else (value,)
    return type(current)(value)
  if current is None:
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text
  value = literal()
  if not isinstance(value, dict):
    raise UsageError(f"--config.{field}={text}: expected a dict, e.g. {{'a': 1}}")
  return value


def apply_overrides(config, overrides) -> None:
  """Sets every `(dotted field, text)`; an unknown field is a usage error naming it."""
  for field, text in overrides:
    *parents, key = field.split(".")
    node = config
    for depth, name in enumerate(parents + [key]):
      if not hasattr(node, "keys") or name not in node.keys():
        where = ".".join(parents[:depth]) or "the config"
        known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none"
        raise UsageError(f"--config.{field}: unknown config field ({where} has {known})")
      if depth < len(parents):
        node = node[name]
    try:
      node[key] = _parse(field, node[key], text)
    except TypeError as error:
      raise UsageError(f"--config.{field}={text}: {error}") from None


def flat_fields(config, prefix: str = "") -> dict:
  """`{dotted name: value}` of every leaf field."""
  out = {}
  for key in sorted(config.keys()):
    value = config[key]
    if hasattr(value, "keys") and not isinstance(value, dict):
      out.update(flat_fields(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value.to_dict() if hasattr(value, "to_dict") else value
  return out


# ---------------------------------------------------------------------------------------------
# Help.


def help_text(configs: ConfigFile | None, full: bool) -> str:
  from reid_jax.data import datasets  # pylint: disable=g-import-not-at-top
  main_module = sys.modules["__main__"]
  parts = [(main_module.__doc__ or "").strip()]
  if full:
    parts.append("flags:\n" + flags.FLAGS.get_help())
  else:
    parts.append("flags:\n" + flags.FLAGS.main_module_help() + "\n" +
                 flags.FLAGS.module_help(__name__))
  real = [n for n, s in datasets.DATASETS.items() if not s.synthetic]
  synthetic = [n for n, s in datasets.DATASETS.items() if s.synthetic]
  parts.append(f"datasets: {', '.join(real)} (real: extract them under <data_dir>/raw/<name>/, "
               f"never downloaded); {', '.join(synthetic)} (generated on first use); your own as "
               f"{datasets.USER_FORMS} (rows path,pid,camid,split; splits train, query, gallery)")
  if configs is not None:
    variants = configs.variants
    lines = [f"config variants: {', '.join(f'{configs.path}:{v}' for v in variants)}",
             "config fields (override as --config.FIELD=VALUE):"]
    module = configs.load_module()
    first = flat_fields(module.get_config(variants[0]))
    lines += [f"  {name} = {value!r}" for name, value in first.items()]
    for variant in variants[1:]:
      other = flat_fields(module.get_config(variant))
      changed = [f"  {name} = {value!r}" for name, value in other.items()
                 if first.get(name, object()) != value]
      lines.append(f"variant {variant} changes:" + ("" if changed else " nothing"))
      lines += changed
    parts.append("\n".join(lines))
  return "\n\n".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------
# Running a command.


def run(main, configs: ConfigFile | None = None):
  """Runs `main(overrides)` as an absl app with the failure contract of docs/design.md §3.

  `overrides` is the list of `(dotted field, text)` of `--config.FIELD=VALUE`; a command
  without `configs` refuses them. On glibc, freed memory is kept in the process
  (`runtime.retain_freed_memory`), before JAX starts its backend.
  """
  runtime.retain_freed_memory()
  try:
    argv, overrides = split_overrides(sys.argv)
    if overrides and configs is None:
      raise UsageError(f"{OVERRIDE_PREFIX}{overrides[0][0]}: this command takes no config")
  except UsageError as error:
    _exit_usage(error)
  wants_help = [a for a in argv[1:] if a.split("=")[0] in HELP_FLAGS]
  if wants_help:
    flags.FLAGS.mark_as_parsed()
    print(help_text(configs, full=wants_help[0].startswith("--helpfull")))
    sys.exit(0)

  def guarded_main(_):
    try:
      _quiet_tfds()
      return main(overrides)
    except UsageError as error:
      _exit_usage(error)
    except ReidError as error:
      print(f"error: {error}", file=sys.stderr)
      sys.exit(1)
    except KeyboardInterrupt:
      _exit_interrupted()

  sys.argv = argv
  console.quiet_third_party()  # library logging below ERROR off the console (`log_to` adds a file)
  try:
    app.run(guarded_main, flags_parser=_parse_flags_or_exit_2)
  except KeyboardInterrupt:  # before main started (e.g. while importing or parsing)
    _exit_interrupted()


def _exit_interrupted() -> None:
  """Ctrl-C: one line, exit 130, at once. `os._exit` so that a library thread left waiting (an
  interrupted orbax save) cannot keep the process alive; every file we write is atomic."""
  print(f"\n{INTERRUPTED}", file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(130)


def default_variant(*names: str, real: str = "paper") -> str:
  """`tiny` when every dataset is synthetic, else `real` (docs/design.md §3)."""
  from reid_jax.data import datasets  # pylint: disable=g-import-not-at-top
  return "tiny" if all(datasets.get_spec(n).synthetic for n in names) else real


def log_to(workdir) -> Path:
  """Library log lines (orbax, absl, jax, TFDS) of this run go to `<workdir>/log.txt`."""
  path = Path(workdir) / "log.txt"
  console.quiet_third_party(path)
  return path


def _quiet_tfds() -> None:
  """TFDS's own bars ("Generating splits", "Shuffling ...incomplete...") describe our one-time
  preparation in its internal terms; the project prints its own lines instead."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()


def _exit_usage(error) -> None:
  print(f"usage error: {error} (--help lists the flags and config fields)", file=sys.stderr)
  sys.exit(2)


def _parse_flags_or_exit_2(argv):
  """absl's flag parsing, but a usage error exits with status 2 (docs/design.md §3), not 1."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    _exit_usage(error)
