r"""ARN: shared and private encoders over a ResNet-50 trunk, a shared decoder and a source classifier
(docs/arn_triplet_eval.md §1; the seed description's reading, §1.2, with the defaults of §1.4).

  python -m experiments.arn --src=market --tgt=duke \
      --config.model.pretrained=/path/resnet50.pth [--variant=rec|rec_private|rec_sup|arn]

Expected with the paper variant (docs/arn_triplet_eval.md §1.1, rank-1 / mAP): Duke -> Market
70.3 / 39.4, Market -> Duke 60.2 / 33.4; the ablation rows (`--variant`) Duke -> Market rec
44.5 / 20.3, rec_private 52.2 / 23.7, rec_sup 60.5 / 28.7; Market -> Duke 31.2 / 18.4,
36.7 / 19.6, 48.4 / 26.8. The paper's training details are partly unreported (§1.1 [U]); these are
its figures, not ones this recipe was checked against.

Variants:
  paper:        224x224 crops of 256x256 resizes, E_I's 7x7 map, 7x7 conv6 (the default for real
                datasets; §1.2 "Geometry").
  reid_256x128: the usual re-ID input 256x128 (flip only), 8x4 map, full-map (8, 4) conv6 kernel.
  tiny:         the synthetic testbed's CPU recipe (the default for synth_* datasets): the
                reid_256x128 layout at 64x32 on the testbed's attribute-pretrained resnet_small
                (512 channels, 2x1 map), encoders as wide as the trunk (512, as 2048 = ResNet-50's
                channels in the paper), the `medium` world; the paper's learning rates, batches
                and loss weights.

Expected with the tiny variant (`python -m benchmarks.arn_testbed --seeds=1`, seed 0,
docs/testbed.md "ARN on the testbed"; target rank-1 / mAP in %): synth_market -> synth_duke rec
10.8 / 6.5, rec_private 11.1 / 6.5, rec_sup 11.9 / 7.7, arn 11.4 / 7.8; synth_duke -> synth_market
15.6 / 7.6, 15.1 / 7.6, 15.4 / 7.8, 16.0 / 7.9. About 4-6 minutes of training per run on 2 cores.

Method variants (`--variant`, config field `arn.variant`; §1.1 ablation table):
  rec          L_rec only: E_C and D_C trained, E_I fixed, no private encoders, no classifier
  rec_private  + private encoders E_S, E_T and L_diff (no labels)
  rec_sup      + C_S with L_class and L_ctrs (no private encoders)
  arn          all modules and L_total = L_class + 0.01 L_ctrs + 2.0 L_rec + 1500 L_diff
"""

import ml_collections

VARIANTS = ("paper", "reid_256x128", "tiny")
METHOD_VARIANTS = ("rec", "rec_private", "rec_sup", "arn")

# docs/arn_triplet_eval.md §1.1, ablation table (rank-1, mAP in %).
PAPER_ABLATIONS = {
    ("duke", "market"): {"rec": (44.5, 20.3), "rec_private": (52.2, 23.7),
                         "rec_sup": (60.5, 28.7), "arn": (70.3, 39.4)},
    ("market", "duke"): {"rec": (31.2, 18.4), "rec_private": (36.7, 19.6),
                         "rec_sup": (48.4, 26.8), "arn": (60.2, 33.4)},
}

# Which modules and loss terms each method variant has (§1.1 ablation table, §1.4).
VARIANT_MODULES = {  # (private encoders E_S/E_T, classifier C_S)
    "rec": (False, False), "rec_private": (True, False), "rec_sup": (False, True),
    "arn": (True, True)}
VARIANT_TERMS = {
    "rec": ("reconstruction",), "rec_private": ("reconstruction", "difference"),
    "rec_sup": ("cross_entropy", "contrastive", "reconstruction"),
    "arn": ("cross_entropy", "contrastive", "reconstruction", "difference")}


def get_config(arg=None):
  variant = arg or "paper"
  if variant not in VARIANTS:
    raise ValueError(f"unknown arn variant {variant!r}; choose one of {', '.join(VARIANTS)}")
  config = ml_collections.ConfigDict()
  config.experiment = "arn"
  config.variant = variant
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.arch = "resnet50"  # §1.2: E_I = ImageNet ResNet-50, stem..layer4
  config.model.map_size = (7, 7)  # §1.2 "Geometry": E_I's map at 224x224, conv6's kernel
  config.model.width = 2048  # §1.1: conv6..conv8 -> 2048
  config.model.dropout_rate = 0.5  # §1.1: dropout 0.5 after conv6 and conv7; C_S's dropout
  config.model.conv8_bn = True  # §1.2: BN/ReLU after conv8 "to be verified"; on
  config.model.conv8_relu = True
  config.model.private_encoders = True  # set by the method variant (VARIANT_MODULES)
  config.model.classifier = True  # set by the method variant (VARIANT_MODULES)
  # torchvision's ImageNet ResNet-50 (V1) weights, .pth or .safetensors (§1.2); empty: from
  # scratch (a warning is printed).
  config.model.pretrained = ""
  # §1.4 item 4 (c), "source_pretrain": a baseline (or HHL) workdir whose trained trunk E_I starts
  # from, after model.pretrained; e.g. --config.model.init_from_workdir=workdirs/baseline/market_to_duke
  # --config.optim.frozen_epochs='{}' (its E_I is already trained).
  config.model.init_from_workdir = ""
  config.model.dtype = "float32"

  config.data = ml_collections.ConfigDict()
  config.data.height = 224  # §1.2: 256x256 resize, random 224x224 crop; test resize to 224x224
  config.data.width = 224
  config.data.train_transform = "resize_crop"  # §1.2 variant `paper` (HHL's is 'rect_crop')
  config.data.resize_height = 256
  config.data.resize_width = 256
  config.data.batch_size = 32  # §1.4 item 1: source PK batches, P = 8 identities x K = 4
  config.data.num_instances = 4  # §1.4 item 1: K
  config.data.target_batch_size = 32  # §1.4 item 1: 32 uniform target images
  config.data.erasing_probability = 0.0
  config.data.eval_batch_size = 128
  config.data.synthetic_size = "tiny"  # docs/design.md §6 (synth_* datasets only)
  config.data.num_workers = 8
  config.data.cache_images = False

  config.optim = ml_collections.ConfigDict()
  # §1.1 training details: E_I 1e-7; E_C, E_S, E_T, D_C 1e-3; C_S 2e-3 (base 1e-3 x multiplier).
  config.optim.base_lr = 1e-3
  config.optim.lr_mult = {"trunk": 1e-4, "encoders": 1.0, "classifier": 2.0}
  config.optim.frozen_epochs = {"trunk": 5}  # §1.4 item 4 (b): E_I held still for 5 epochs
  config.optim.momentum = 0.9  # §1.2: SGD, momentum 0.9 (from the draft code)
  config.optim.nesterov = False
  config.optim.weight_decay = 5e-4  # §1.2 (from the draft code)
  # §1.4 item 8: 60 epochs (passes of the source PK sampler) at constant rates, x0.1 for 10 more.
  config.optim.milestones = (60,)
  config.optim.gamma = 0.1
  config.num_epochs = 70

  config.arn = ml_collections.ConfigDict()
  config.arn.variant = "arn"  # §1.1 ablation rows: rec | rec_private | rec_sup | arn
  config.arn.alpha = 0.01  # §1.1 (5): L_ctrs weight
  config.arn.beta = 2.0  # §1.1 (5): L_rec weight
  config.arn.gamma = 1500.0  # §1.1 (5): L_diff weight
  config.arn.margin = 1.0  # §1.4 item 1 (on L2-normalised codes, < sqrt(2))
  config.arn.normalize_contrastive = True  # §1.4 item 1
  config.arn.contrastive_reduction = "sum"  # §1.4 item 1: summed as written; 'mean'
  config.arn.difference = "dsn"  # §1.4 item 2: DSN-normalised; 'raw' (gamma must be retuned)
  config.arn.shared_bn_stats = False  # §1.4 item 5: per-domain running statistics of E_C, D_C

  config.checkpoint_every_steps = 500
  config.log_every_steps = 20

  config.eval = ml_collections.ConfigDict()
  config.eval.distance = "euclidean"  # §1.4 item 7
  config.eval.ap = "trapezoid"  # docs/hhl.md §8, as every method here
  config.eval.rerank = False
  config.eval.flip = False  # §1.4 item 7: flip averaging off by default
  config.eval.figure_queries = 8
  config.eval.figure_topk = 10

  if variant == "reid_256x128":
    # §1.2: input 256x128 with a random flip, X 8x4, full-map conv6 kernel and last ConvT.
    config.model.map_size = (8, 4)
    config.data.height, config.data.width = 256, 128
    config.data.resize_height, config.data.resize_width = 256, 128
  elif variant == "tiny":
    # The testbed's CPU recipe (docs/testbed.md): the reid_256x128 layout at 64x32 on the
    # attribute-pretrained resnet_small, the medium world, encoders as wide as the trunk.
    config.model.arch = "resnet_small"
    config.model.pretrained = "synth_pretrain:tiny"
    config.model.map_size = (2, 1)
    config.model.width = 512
    config.data.height, config.data.width = 64, 32
    config.data.resize_height, config.data.resize_width = 64, 32
    config.data.synthetic_size = "medium"
    config.data.eval_batch_size = 64
    config.data.num_workers = 2
    config.data.cache_images = True
    # 12 epochs as the tiny baseline; the paper's 60 + 10 and 5-epoch warm-up scaled to 12.
    config.num_epochs = 12
    config.optim.milestones = (10,)
    config.optim.frozen_epochs = {"trunk": 1}
    config.eval.figure_queries = 4
  return config


def apply_method_variant(config, method_variant: str):
  """Sets `arn.variant` and the modules it has (VARIANT_MODULES); `rec` also fixes E_I (§1.1:
  "E_I fixed, only E_C trained")."""
  if method_variant not in METHOD_VARIANTS:
    from reid_jax.errors import UsageError  # pylint: disable=g-import-not-at-top
    raise UsageError(f"config field arn.variant={method_variant!r}: choose one of "
                     f"{', '.join(METHOD_VARIANTS)} (docs/arn_triplet_eval.md §1.1)")
  config.arn.variant = method_variant
  config.model.private_encoders, config.model.classifier = VARIANT_MODULES[method_variant]
  if method_variant == "rec":
    config.optim.lr_mult = {**config.optim.lr_mult, "trunk": "frozen"}
  return config
