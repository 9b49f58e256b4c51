"""Public names of `reid_jax.evaluation` (see WORKSPACE.md for the layout); imported on first use."""

from reid_jax import _exports

_NAMES = {
    "evaluate": "ranking",
    "evaluate_rank": "ranking",
    "compute_distance_matrix": "distances",
    "l2_normalize": "distances",
    "re_ranking": "rerank",
    "extract": "features",
    "pool5_descriptor": "features",
    "save_rank_lists": "figures",
    "stripe_colour_descriptor": "handcrafted",
    "camera_gap_ratio": "diagnostics",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = _exports.lazy(__name__, _NAMES)
