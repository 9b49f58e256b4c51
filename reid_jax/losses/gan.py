"""StarGAN losses: WGAN-GP adversarial terms, camera classification, cycle reconstruction (docs/hhl.md §10.4).

`discriminator` below is any function `x [B, H, W, 3] -> (src [B, ...] patch map, cls [B, C] logits)`
with no coupling between samples (the StarGAN D has no normalisation layers), e.g.
`functools.partial(Discriminator(...).apply, d_variables)`.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

DiscriminatorFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def camera_cross_entropy(logits, cameras):
  """Softmax cross-entropy over the C cameras, mean over the batch (docs/hhl.md §10.4; not CelebA's BCE).

  logits `[B, C]`, cameras int `[B]` (0-based) -> scalar.
  """
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, cameras))


def gradient_penalty(discriminator: DiscriminatorFn, x_hat):
  """mean_i (||d sum(D_src(x_hat)_i) / d x_hat_i||_2 - 1)^2 over the flattened image (docs/hhl.md §10.4).

  Since D treats samples independently, the gradient of the batch sum of the patch outputs gives
  each sample's own gradient. The result is differentiable again (second-order gradients) for the
  discriminator update. x_hat `[B, H, W, 3]` -> scalar.
  """
  grads = jax.grad(lambda x: jnp.sum(discriminator(x)[0]))(x_hat)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1))
  return jnp.mean(jnp.square(norms - 1.0))


def interpolate(x_real, x_fake, alpha):
  """x_hat = alpha * x_real + (1 - alpha) * x_fake with alpha `[B]` ~ U(0, 1) per sample."""
  alpha = alpha.reshape((-1,) + (1,) * (x_real.ndim - 1))
  return alpha * x_real + (1.0 - alpha) * x_fake


def discriminator_loss(discriminator: DiscriminatorFn, x_real, x_fake, cameras_org, alpha, *,
                       lambda_cls: float = 1.0, lambda_gp: float = 10.0):
  """L_D = -mean D_src(x) + mean D_src(x_f) + lambda_cls CE(D_cls(x), c_org) + lambda_gp GP.

  x_real, x_fake `[B, H, W, 3]` (x_fake is treated as a constant), cameras_org int `[B]`, alpha `[B]`.
  Returns (loss, metrics dict of the four terms).
  """
  x_fake = jax.lax.stop_gradient(x_fake)
  src_real, cls_real = discriminator(x_real)
  src_fake, _ = discriminator(x_fake)
  loss_real = -jnp.mean(src_real)
  loss_fake = jnp.mean(src_fake)
  loss_cls = camera_cross_entropy(cls_real, cameras_org)
  loss_gp = gradient_penalty(discriminator, interpolate(x_real, x_fake, alpha))
  loss = loss_real + loss_fake + lambda_cls * loss_cls + lambda_gp * loss_gp
  return loss, {"D/loss": loss, "D/loss_real": loss_real, "D/loss_fake": loss_fake,
                "D/loss_cls": loss_cls, "D/loss_gp": loss_gp}


def generator_loss(discriminator: DiscriminatorFn, x_real, x_fake, x_rec, cameras_trg, *,
                   lambda_cls: float = 1.0, lambda_rec: float = 10.0, x_id=None,
                   lambda_id: float = 0.0):
  """L_G = -mean D_src(x_f) + lambda_rec mean|x - x_rec| + lambda_cls CE(D_cls(x_f), c_trg)
  [+ lambda_id mean|x - x_id|].

  x_fake = G(x, c_trg), x_rec = G(x_fake, c_org), all `[B, H, W, 3]`; the L1 mean runs over every
  pixel and channel. The last term is not StarGAN's: CycleGAN's identity loss on x_id = G(x, c_org)
  (a translation to the image's own camera should change nothing), added only when lambda_id > 0.
  Returns (loss, metrics dict).
  """
  src_fake, cls_fake = discriminator(x_fake)
  loss_fake = -jnp.mean(src_fake)
  loss_rec = jnp.mean(jnp.abs(x_real - x_rec))
  loss_cls = camera_cross_entropy(cls_fake, cameras_trg)
  loss = loss_fake + lambda_rec * loss_rec + lambda_cls * loss_cls
  metrics = {"G/loss_fake": loss_fake, "G/loss_rec": loss_rec, "G/loss_cls": loss_cls}
  if lambda_id > 0:
    loss_id = jnp.mean(jnp.abs(x_real - x_id))
    loss = loss + lambda_id * loss_id
    metrics["G/loss_id"] = loss_id
  return loss, {"G/loss": loss, **metrics}
