"""The synthetic re-ID world (docs/design.md §6): `write_dataset` renders synth_market, synth_duke
or synth_msmt into the extracted-archive layout of its real twin.

Modules: `world` (frozen domain, camera and identity parameters), `render` (the numpy renderer),
`writer` (split plans, file names, layouts). This package's own entry point is re-exported here
because `tests/conftest.py` and the TFDS builders call `synthetic.write_dataset`; it imports only
numpy and PIL.
"""

from reid_jax.data.synthetic.writer import MANIFEST, SIZES, is_complete, plan, split_plan, write_dataset

__all__ = ["MANIFEST", "SIZES", "is_complete", "plan", "split_plan", "write_dataset"]
