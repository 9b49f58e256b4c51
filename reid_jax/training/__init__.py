"""Public names of `reid_jax.training` (see WORKSPACE.md for the layout); imported on first use."""

from reid_jax import _exports

_NAMES = {
    "run": "loop",
    "LoopConfig": "loop",
    "build_optimiser": "optim",
    "reid_net_rules": "optim",
    "TrainState": "state",
    "Checkpointer": "checkpoint",
    "make_train_step": "steps",
    "forward": "steps",
    "evaluate_dataset": "evaluate",
    "evaluate_handcrafted": "evaluate",
    "restore_variables": "evaluate",
    "train_and_evaluate": "trainer",
    "Method": "trainer",
    "method_of": "trainer",
    "ensure_trunk": "pretrain",
    "train_trunk": "pretrain",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = _exports.lazy(__name__, _NAMES)
