"""Public names of `reid_jax.data` (see WORKSPACE.md for the layout); imported on first use."""

from reid_jax import _exports

_NAMES = {
    "load_split": "tfds_builders",
    "split_labels": "tfds_builders",
    "builder": "tfds_builders",
    "get_spec": "datasets",
    "DATASETS": "datasets",
    "train_batches": "pipeline",
    "target_batches": "pipeline",
    "eval_batches": "pipeline",
    "InMemory": "pipeline",
    "shuffled_batches": "samplers",
    "pk_batches": "samplers",
    "train_transform": "transforms",
    "test_transform": "transforms",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = _exports.lazy(__name__, _NAMES)
