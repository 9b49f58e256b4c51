r"""HHL: IDE + one batch-hard triplet loss over source and target with camera-style positives
(docs/hhl.md §2-§7, §12, §14).

  python -m experiments.stargan --dataset=market            # the camera-style set, once
  python -m experiments.hhl --src=duke --tgt=market \
      --config.model.pretrained=/path/resnet50.pth [--variant=hhl|lc|ld|lt|baseline]

Expected with the paper variant (docs/hhl.md §13 Table 2, rank-1 / mAP): HHL Duke -> Market
62.2 / 31.4, Market -> Duke 46.9 / 27.2; +L_C 60.6 / 28.5, 42.5 / 22.1; +L_D 49.8 / 23.8,
36.8 / 21.1; +L_T 48.6 / 23.5, 35.1 / 20.5; baseline 44.6 / 20.6, 32.9 / 16.9 (single runs vary
by 1-2 points, docs/hhl.md §14).

Variants:
  paper: the reference `HHL.py` recipe (the default for real datasets).
  tiny:  the synthetic testbed's CPU recipe (the default for synth_* datasets): the tiny
         baseline's network, trunk, world, epochs and learning rates (configs/baseline.py:tiny,
         docs/testbed.md), with the paper's batch ratio 128 / 64 / 16 scaled by 1/4:
         CE 32, triplet 16 = 4 identities x 4, target 4 images x (C + 1).

Expected with the tiny variant (`python -m benchmarks.hhl_testbed --seeds=1`, seed 0, docs/testbed.md
"HHL on the testbed"; target rank-1 / mAP in %): synth_duke -> synth_market baseline 4.6 / 4.1,
lt 4.5 / 3.9, ld 6.5 / 5.3, lc 4.2 / 4.5, hhl 3.9 / 3.7; synth_market -> synth_duke 5.3 / 4.3,
3.9 / 4.2, 5.7 / 4.6, 5.4 / 4.1, 6.3 / 4.7 (with the tiny StarGAN's fakes, which lose the person on
synth_market). About 4-7 minutes of training per run on 2 cores.

Method variants (`--variant`, config field `hhl.variant`; docs/hhl.md §4 table, Table 2 rows):
  baseline  Basel. (S): cross-entropy only, no FC-128, the baseline's optimiser groups (§9)
  lt        Basel.+L_T: + beta x L_T(source triplet batch)
  ld        Basel.+L_D: + beta x L_T(source triplet batch + target reals, no fakes)
  lc        Basel.+L_C: + beta x L_T(target reals + their fakes) (`hhl.lc_source_triplet`)
  hhl       Basel.+L_CD: + beta x L_T(source triplet batch + target reals + fakes), the method
"""

import ml_collections

from reid_jax.configs import baseline as baseline_config

VARIANTS = ("paper", "tiny")
METHOD_VARIANTS = ("baseline", "lt", "ld", "lc", "hhl")

# docs/hhl.md §13, Table 2 (rank-1, mAP in %): what each method variant reaches on the real data.
PAPER_TABLE2 = {
    ("duke", "market"): {"baseline": (44.6, 20.6), "lt": (48.6, 23.5), "ld": (49.8, 23.8),
                         "lc": (60.6, 28.5), "hhl": (62.2, 31.4)},
    ("market", "duke"): {"baseline": (32.9, 16.9), "lt": (35.1, 20.5), "ld": (36.8, 21.1),
                         "lc": (42.5, 22.1), "hhl": (46.9, 27.2)},
}


def get_config(arg=None):
  variant = arg or "paper"
  if variant not in VARIANTS:
    raise ValueError(f"unknown hhl variant {variant!r}; choose one of {', '.join(VARIANTS)}")
  # The network, data transforms, optimiser and evaluation are the baseline's (docs/hhl.md §3,
  # §6-§8); what HHL changes is set below.
  config = baseline_config.get_config(variant)
  config.experiment = "hhl"
  config.model.triplet_features = 128  # docs/hhl.md §3: FC-128
  config.optim.embedding_layers = "reference_code"  # docs/hhl.md §6, §12 row 1: FC/BN/FC-128 frozen

  config.data.triplet_batch_size = 64  # docs/hhl.md §5: 8 identities x 8
  config.data.num_instances = 8  # docs/hhl.md §5, §12 row 12
  config.data.target_batch_size = 16  # docs/hhl.md §5: n_t = 16 (Fig. 6)

  config.hhl = ml_collections.ConfigDict()
  config.hhl.variant = "hhl"  # docs/hhl.md §4 table: baseline | lt | ld | lc | hhl
  config.hhl.beta = 0.5  # docs/hhl.md §4: L_HHL = L_cross + beta L_CD
  config.hhl.margin = 0.3  # docs/hhl.md §4
  config.hhl.triplet_reduction = "mean"  # docs/hhl.md §12 row 6: code mean; paper 'sum'
  config.hhl.target_labels = "unique"  # docs/hhl.md §12 row 7: 'unique' | 'code_random'
  config.hhl.bn_passes = "separate"  # docs/hhl.md §14: CE -> triplet -> target; 'joint'
  config.hhl.target_sampling = "random"  # docs/hhl.md §5, Fig. 3: 'random' | 'oracle'
  config.hhl.lc_source_triplet = False  # docs/hhl.md §4 table: +L_C with the source term too?

  if variant == "tiny":
    # docs/hhl.md §5's 128 / 64 / 16 ratio at the tiny CE batch of 32 (configs/baseline.py:tiny).
    config.data.triplet_batch_size = 16
    config.data.num_instances = 4
    config.data.target_batch_size = 4
  return config


def apply_method_variant(config, method_variant: str):
  """Sets `hhl.variant`; `baseline` also takes the baseline's network and optimiser groups
  (docs/hhl.md §4 table: no FC-128, `baseline.py`'s embedding_layers, §9)."""
  if method_variant not in METHOD_VARIANTS:
    from reid_jax.errors import UsageError  # pylint: disable=g-import-not-at-top
    raise UsageError(f"config field hhl.variant={method_variant!r}: choose one of "
                     f"{', '.join(METHOD_VARIANTS)} (docs/hhl.md §4)")
  config.hhl.variant = method_variant
  if method_variant == "baseline":
    config.model.triplet_features = 0
    config.optim.embedding_layers = "baseline"
  return config
