"""Write a synthetic dataset in its real twin's extracted-archive layout (docs/design.md §6).

  python -m data_prep.synthetic --dataset=synth_market --size=tiny --out_dir=DIR [--seed=0]

DIR receives the tree (e.g. bounding_box_train/, bounding_box_test/, query/) and, last,
SYNTHETIC.json; without --out_dir it goes to `<data_dir>/raw/<dataset>`, where the builders read it.
--workers=N renders in N processes (same bytes).

Rerunning it on a finished tree checks every image (present, a valid JPEG) and re-renders the
missing or corrupt ones, which come out byte-identical; a run killed half-way leaves a hidden
`.<name>.partial-<pid>` folder that the next run removes; two runs on the same DIR take turns.
"""

import json
import time
from pathlib import Path

from absl import flags

from reid_jax import cli, paths
from reid_jax.data import synthetic
from reid_jax.data.synthetic import world

_DATASET = flags.DEFINE_enum("dataset", None, list(world.DOMAINS), "Synthetic dataset to write.")
_SIZE = flags.DEFINE_enum("size", "tiny", list(synthetic.SIZES), "Dataset size.")
_OUT_DIR = flags.DEFINE_string("out_dir", None,
                               "Where to write the tree; default <data_dir>/raw/<dataset>.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data dir; default $REID_JAX_DATA or "
                                "~/reid_jax_data. Used when --out_dir is not given.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the identities and views (cameras are fixed).")
_WORKERS = flags.DEFINE_integer("workers", 1, "Processes rendering images (same bytes for any "
                                "number); worth it for --size=medium or full.")
flags.mark_flag_as_required("dataset")


def main(argv):
  del argv
  data_dir = _DATA_DIR.value or paths.default_data_dir()
  out_dir = Path(_OUT_DIR.value) if _OUT_DIR.value else paths.raw_dir(data_dir, _DATASET.value)
  start = time.perf_counter()
  repaired = synthetic.write_dataset(_DATASET.value, out_dir, size=_SIZE.value, seed=_SEED.value,
                                     progress=True, workers=_WORKERS.value)
  if repaired:
    more = f" and {len(repaired) - 1} more" if len(repaired) > 1 else ""
    print(f"repaired {len(repaired)} missing or corrupt file(s) in {out_dir}: {repaired[0]}{more}")
  info = json.loads((out_dir / synthetic.MANIFEST).read_text())
  counts = ", ".join(f"{k} {v['ids']} ids / {v['images']} images" for k, v in info["counts"].items())
  print(f"{_DATASET.value} ({_SIZE.value}, seed {_SEED.value}) in {out_dir}: {counts} "
        f"[{time.perf_counter() - start:.1f} s]")


if __name__ == "__main__":
  cli.run(main)
