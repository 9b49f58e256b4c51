r"""Direct-transfer baseline (IDE on the source only, evaluated on the target): docs/hhl.md §9.

  python -m experiments.baseline --src=duke --tgt=market \
      --config=reid_jax/configs/baseline.py:paper --config.model.pretrained=/path/resnet50.pth

Expected with the paper variant (docs/hhl.md §9, rank-1 / mAP): Duke -> Market 44.6 / 20.6,
Market -> Duke 32.9 / 16.9 (within about ±2 points).

Variants:
  paper: the reference `baseline.py` recipe (the default for real datasets).
  tiny:  CPU sizes for the synthetic world (the default for synth_* datasets): resnet_small
         pretrained on the synthetic attribute pool (experiments.pretrain, built on first use),
         64x32 input, batch 32, the `medium` synthetic world, 12 epochs (1,872 steps).

Expected with the tiny variant (`python -m benchmarks.testbed --seeds=3`, docs/testbed.md; rank-1
/ mAP in %, mean ± std over seeds 0-2): synth_duke -> synth_market 5.1 ± 1.0 / 4.3 ± 0.6, its
synth_duke test 25.5 ± 0.2 / 23.7 ± 0.4; synth_market -> synth_duke 5.7 ± 0.6 / 4.5 ± 0.3, its
synth_market test 67.3 ± 1.7 / 55.6 ± 0.9; about 2 minutes of training on 2 cores.
"""

import ml_collections

VARIANTS = ("paper", "tiny")


def get_config(arg=None):
  variant = arg or "paper"
  if variant not in VARIANTS:
    raise ValueError(f"unknown baseline variant {variant!r}; choose one of {', '.join(VARIANTS)}")
  config = ml_collections.ConfigDict()
  config.experiment = "baseline"
  config.variant = variant
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.arch = "resnet50"  # docs/hhl.md §3
  config.model.num_features = 1024  # docs/hhl.md §3: FC-1024
  config.model.triplet_features = 0  # docs/hhl.md §9: no FC-128 in the baseline
  config.model.dropout_rate = 0.5  # docs/hhl.md §3
  config.model.last_stride = 2  # docs/hhl.md §3
  # Path of torchvision's ImageNet ResNet-50 (V1) weights, .pth or .safetensors (docs/hhl.md §3);
  # empty: train from scratch (a warning is printed).
  config.model.pretrained = ""
  config.model.dtype = "float32"  # 'bfloat16': compute dtype; params, BN statistics, losses float32
  # BatchNorm statistics per group of bn_groups contiguous slices of every forward pass, whatever
  # the device count: 2 emulates the reference runs' two-GPU nn.DataParallel (docs/hhl.md §12 row
  # 14, §14; docs/design.md §10); 1 normalises over the whole pass (the global batch).
  config.model.bn_groups = 1

  config.data = ml_collections.ConfigDict()
  config.data.height = 256  # docs/hhl.md §7
  config.data.width = 128  # docs/hhl.md §7
  config.data.batch_size = 128  # docs/hhl.md §9
  config.data.erasing_probability = 0.0  # docs/hhl.md §7: --re 0
  config.data.eval_batch_size = 128  # docs/hhl.md §7 (irrelevant to the result)
  config.data.synthetic_size = "tiny"  # docs/design.md §6 (synth_* datasets only)
  config.data.num_workers = 8  # docs/hhl.md §5
  config.data.cache_images = False  # decode the training split once, keep it in memory

  config.optim = ml_collections.ConfigDict()
  config.optim.base_lr = 0.1  # docs/hhl.md §6
  # docs/hhl.md §9: trunk 0.01; FC-1024, BN-1024 and classifier 0.1 (embedding_layers 'baseline').
  config.optim.lr_mult = {"trunk": 0.1, "classifier": 1.0}  # docs/hhl.md §6, §9
  config.optim.embedding_layers = "baseline"  # docs/hhl.md §9, docs/design.md §10
  config.optim.momentum = 0.9  # docs/hhl.md §6
  config.optim.nesterov = True  # docs/hhl.md §6
  config.optim.weight_decay = 5e-4  # docs/hhl.md §6
  config.optim.milestones = (40,)  # docs/hhl.md §6: x0.1 at the start of epoch 40
  config.optim.gamma = 0.1  # docs/hhl.md §6
  config.num_epochs = 60  # docs/hhl.md §6, §9

  config.checkpoint_every_steps = 500
  config.log_every_steps = 20

  config.eval = ml_collections.ConfigDict()
  config.eval.distance = "sqeuclidean"  # docs/hhl.md §8
  config.eval.ap = "trapezoid"  # docs/hhl.md §8
  config.eval.rerank = False  # docs/hhl.md §8
  config.eval.flip = False  # docs/hhl.md §7: no flip-averaging
  config.eval.figure_queries = 8  # rank-list figure: queries shown
  config.eval.figure_topk = 10  # rank-list figure: gallery entries per query

  if variant == "tiny":
    # The CPU recipe of the synthetic testbed (docs/testbed.md): resnet_small pretrained on the
    # synthetic attribute pool (the stand-in for ImageNet, experiments.pretrain), 64x32 input,
    # batch 32, the `medium` world (300 train ids, 5,000 images), 12 epochs, the trunk at 0.1 of
    # the base lr as for an ImageNet trunk (docs/hhl.md §9). Expected figures and the command
    # that measures them: docs/testbed.md (python -m benchmarks.testbed --seeds=3).
    config.model.arch = "resnet_small"
    config.model.num_features = 128
    config.model.pretrained = "synth_pretrain:tiny"
    config.data.synthetic_size = "medium"
    config.data.height = 64
    config.data.width = 32
    config.data.batch_size = 32
    config.data.eval_batch_size = 64
    config.data.num_workers = 2
    config.data.cache_images = True
    config.num_epochs = 12
    config.optim.milestones = (9,)
    config.checkpoint_every_steps = 500
    config.log_every_steps = 20
    config.eval.figure_queries = 4
  return config
