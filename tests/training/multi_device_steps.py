"""Child of test_multi_device.py: a few train steps of the baseline, of HHL and of StarGAN on 1 and
on all the (forced) host CPU devices, same global batches; prints one JSON line of the differences.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/training/multi_device_steps.py \
      [baseline] [hhl] [stargan]

Each case `method/bn_groups` reports the largest |difference| (and the largest value, for scale)
of the params, the BatchNorm statistics and the per-step losses between the 1-device and the
N-device run, how many devices held the N-device batch, and how far bn_groups=2 moves the result
from bn_groups=1 (so that the tolerance is known to be able to see a real difference).
"""

import json
import sys

import jax
import numpy as np

from reid_jax.configs import baseline as baseline_config
from reid_jax.configs import hhl as hhl_config
from reid_jax.configs import stargan as stargan_config
from reid_jax.training import baseline
from reid_jax.training import hhl
from reid_jax.training import loop
from reid_jax.training import optim
from reid_jax.training import sharding
from reid_jax.training import stargan
from reid_jax.training import state as state_lib
from reid_jax.training import steps
from reid_jax.training import trainer

STEPS = 2
CLASSES = 8
HEIGHT, WIDTH = 32, 16
CAMERAS = 3  # target batch 8 x (1 + 3) = 32 images


def config_of(method: str, bn_groups: int):
  module = baseline_config if method == "baseline" else hhl_config
  config = module.get_config("tiny")
  config.model.pretrained = ""
  config.model.bn_groups = bn_groups
  config.data.height, config.data.width = HEIGHT, WIDTH
  if method == "hhl":
    config.data.target_batch_size = 8
  return config


def batches(method: str, config) -> list:
  """STEPS global batches, the same on every mesh (a pure function of the step)."""
  out = []
  for step in range(STEPS):
    rng = np.random.default_rng(step)

    def images(n):
      return rng.normal(size=(n, HEIGHT, WIDTH, 3)).astype(np.float32)

    n = config.data.batch_size
    batch = {"ce": {"image": images(n), "label": rng.integers(0, CLASSES, n).astype(np.int32)}}
    if method == "hhl":
      t, k = config.data.triplet_batch_size, config.data.num_instances
      batch["triplet"] = {"image": images(t),
                          "label": np.repeat(rng.permutation(CLASSES)[:t // k], k).astype(np.int32)}
      b = config.data.target_batch_size
      batch["target"] = {"image": images(b * (CAMERAS + 1)),
                         "label": np.tile(1_000_000 + np.arange(b), CAMERAS + 1).astype(np.int32),
                         "is_fake": np.arange(b * (CAMERAS + 1)) >= b}
    out.append(batch)
  return out


def run(method: str, config, mesh):
  """(final params, batch_stats, losses, devices holding the batch) of STEPS steps on `mesh`."""
  description = baseline.METHOD if method == "baseline" else hhl.METHOD
  model = description.build_model(config.model, CLASSES)
  variables = trainer.init_variables(model, config, jax.random.PRNGKey(0), None, description)
  optimiser = optim.build_optimiser(variables["params"], config.optim,
                                    description.optimiser_rules(config), steps_per_epoch=10)
  state = state_lib.create(variables["params"], variables["batch_stats"], optimiser.tx)
  step_fn = loop.jit_step(steps.make_train_step(description.loss_fn(model, config),
                                                optimiser.tx), mesh)
  state = sharding.replicate(state, mesh)
  losses, holders = [], set()
  for step, host in enumerate(batches(method, config)):
    batch = sharding.shard_batch(host, mesh)
    holders.add(len(batch["ce"]["image"].sharding.device_set))
    state, metrics = step_fn(state, batch, loop.step_rng(config.seed, step))
    losses.append(float(metrics["loss"]))
  state = jax.device_get(state)
  return state.params, state.batch_stats, np.asarray(losses), sorted(holders)


def run_stargan(mesh):
  """(final G and D params, every loss term of every step, devices holding the batch) of a D
  step, a D + G step and a D step (docs/hhl.md §10.4-§10.5) of a narrow StarGAN, batch of 8."""
  config = stargan_config.get_config("tiny")
  config.model.update(image_size=16, g_conv_dim=4, g_repeat_num=1, d_conv_dim=4, d_repeat_num=2)
  config.batch_size = 8
  schedule = stargan.make_schedule(config, 64)
  step_fn = stargan.make_train_step(config, CAMERAS, schedule, mesh)
  state = sharding.replicate(stargan.init_state(config, CAMERAS), mesh)
  key = jax.random.PRNGKey(0)
  losses, holders = [], set()
  for step in range(3):
    rng = np.random.default_rng(step)
    images, cameras = sharding.shard_batch(
        (rng.uniform(-1, 1, (8, 16, 8, 3)).astype(np.float32),
         rng.integers(0, CAMERAS, 8).astype(np.int32)), mesh)
    holders.add(len(images.sharding.device_set))
    state, metrics = step_fn(state, images, cameras, key, update_g=step % 2 == 1)
    losses += [float(v) for k, v in sorted(metrics.items()) if not k.startswith("lr/")]
  state = jax.device_get(state)
  return {"g": state.g_params, "d": state.d_params}, np.asarray(losses), sorted(holders)


def without_camera_inputs(params):
  """`params` without G's stem weights on the camera channels (input channels 3 and up)."""
  g = dict(params["g"])
  g["stem_conv"] = {**g["stem_conv"], "kernel": g["stem_conv"]["kernel"][:, :, :3]}
  return {"g": g, "d": params["d"]}


def largest(tree) -> float:
  return max(float(np.max(np.abs(x))) for x in jax.tree.leaves(tree))


def difference(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main(methods):
  devices = jax.devices()
  one, every = sharding.data_mesh(devices[:1]), sharding.data_mesh(devices)
  report = {"devices": len(devices), "cases": {}}
  if "stargan" in methods:
    p1, l1, h1 = run_stargan(one)
    pn, ln, hn = run_stargan(every)
    report["cases"]["stargan/1"] = {
        "params": difference(p1, pn), "params_scale": largest(p1),
        "params_but_camera_inputs": difference(without_camera_inputs(p1), without_camera_inputs(pn)),
        "lr": 3e-4,
        "losses": float(np.max(np.abs(l1 - ln))), "loss_scale": float(np.max(np.abs(l1))),
        "holders_one": h1, "holders_every": hn}
  for method in (m for m in methods if m != "stargan"):
    single = {}
    for groups in (1, 2):
      config = config_of(method, groups)
      p1, s1, l1, h1 = run(method, config, one)
      pn, sn, ln, hn = run(method, config, every)
      single[groups] = (p1, s1)
      report["cases"][f"{method}/{groups}"] = {
          "params": difference(p1, pn), "params_scale": largest(p1),
          "batch_stats": difference(s1, sn), "batch_stats_scale": largest(s1),
          "losses": float(np.max(np.abs(l1 - ln))), "loss_scale": float(np.max(np.abs(l1))),
          "holders_one": h1, "holders_every": hn}
    report["cases"][f"{method}/groups_effect"] = {
        "params": difference(single[1][0], single[2][0]),
        "batch_stats": difference(single[1][1], single[2][1])}
  print(json.dumps(report))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:] or ("baseline", "hhl", "stargan")))
