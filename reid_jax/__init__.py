"""reid_jax: unsupervised domain-adaptive person re-identification (HHL, ARN) in JAX/Flax."""

__version__ = "0.1.0"
