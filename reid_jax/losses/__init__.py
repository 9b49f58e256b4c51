"""Public names of `reid_jax.losses` (see WORKSPACE.md for the layout); imported on first use."""

from reid_jax import _exports

_NAMES = {
    "cross_entropy": "classification",
    "batch_hard_triplet_loss": "triplet",
    "batch_all_triplet_loss": "triplet",
    "pairwise_distance": "triplet",
    "triplet_metrics": "triplet",
    "discriminator_loss": "gan",
    "generator_loss": "gan",
    "gradient_penalty": "gan",
    "camera_cross_entropy": "gan",
    "contrastive_loss": "arn",
    "contrastive_loss_draft": "arn",
    "reconstruction_loss": "arn",
    "difference_loss": "arn",
    "mmd_loss": "arn",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = _exports.lazy(__name__, _NAMES)
