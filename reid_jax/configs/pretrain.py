r"""Pretraining of the CPU trunk on the synthetic attribute pool: the testbed's ImageNet
(docs/testbed.md).

  python -m experiments.pretrain                # the `tiny` trunk every tiny config imports

The `paper` configs import torchvision's ImageNet ResNet-50 instead; this file has one variant.
The trunk lands in `<data_dir>/pretrained/synth_pretrain_tiny_<config hash>.safetensors` (the
torchvision key layout, imported strictly), the run's checkpoints beside it in `.run/`, so an
interrupted pretraining resumes exactly. A tiny config names it as
`model.pretrained = "synth_pretrain:tiny"`; a command that needs it and finds none builds it.

Expected (2 cores, glibc malloc): rendering the pool about 1.5 min, training about 5 min; the
held-out attribute accuracy is printed at the end (WORKSPACE.md, "Testbed", has the measured run).
"""

import ml_collections

VARIANTS = ("tiny",)


def get_config(arg=None):
  variant = arg or "tiny"
  if variant not in VARIANTS:
    raise ValueError(f"unknown pretrain variant {variant!r}; the only one is tiny")
  config = ml_collections.ConfigDict()
  config.experiment = "pretrain"
  config.variant = variant
  config.seed = 0

  config.pool = ml_collections.ConfigDict()
  config.pool.size = 24000  # images, every one a different person (reid_jax/data/synthetic/pool.py)
  config.pool.val_size = 1000  # the last images, held out for the accuracy figure
  config.pool.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.arch = "resnet_small"  # the trunk of every tiny config
  config.model.dropout_rate = 0.0

  config.data = ml_collections.ConfigDict()
  config.data.height = 64  # the tiny configs' input size
  config.data.width = 32
  config.data.batch_size = 64
  config.data.erasing_probability = 0.0
  config.data.num_workers = 2

  config.optim = ml_collections.ConfigDict()
  config.optim.base_lr = 0.1
  config.optim.lr_mult = {"trunk": 1.0, "heads": 1.0}
  config.optim.momentum = 0.9
  config.optim.nesterov = True
  config.optim.weight_decay = 5e-4
  config.optim.milestones = (8,)
  config.optim.gamma = 0.1
  config.num_epochs = 10

  config.checkpoint_every_steps = 200
  config.log_every_steps = 20
  return config
