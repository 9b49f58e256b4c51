"""What `python -m experiments.demo` runs and what it compares with (issue "The main job").

The demo's rows, the paper's figure for each (in %, on the real twins of the synthetic datasets)
and the measured seconds of each stage on a fresh 2-core machine (glibc malloc), which drive the
demo's ETA. Paper figures: docs/hhl.md §13 (HHL Tables 2 and 4), docs/arn_triplet_eval.md §1.1
(ARN's main table and the seed's ablations). A None is a figure the paper does not report.

  python -m experiments.demo                       # main rows, one seed, synth_duke -> synth_market
  python -m experiments.demo --ablations --seeds=3 # + HHL's Table 2 rows and ARN's four rows
"""

from reid_jax.configs import arn as arn_config
from reid_jax.configs import hhl as hhl_config

METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP")
DEMO_FILE = "demo.json"  # W/demo.json: the index experiments.report reads


def handcrafted_file(dataset: str) -> str:
  """The hand-crafted reference's eval entry on `dataset`, relative to the demo workdir."""
  return f"handcrafted_{dataset}.json"


# The main rows, in the table's order. HHL's Table 2 "Basel." row is the direct-transfer row: HHL's
# --variant=baseline reproduces experiments.baseline bit for bit (tests/training/test_hhl*.py).
MAIN_ROWS = ("handcrafted", "baseline", "supervised", "hhl", "arn")
HHL_ABLATION_ROWS = ("hhl_lt", "hhl_ld", "hhl_lc")
ARN_ABLATION_ROWS = ("arn_rec", "arn_rec_private", "arn_rec_sup")

LABELS = {
    "handcrafted": "hand-crafted reference (stripe colour statistics)",
    "baseline": "direct transfer (IDE baseline)",
    "supervised": "supervised on the target (upper bound)",
    "hhl": "HHL (Basel. + L_CD)",
    "arn": "ARN (full)",
    "hhl_lt": "HHL ablation: Basel. + L_T",
    "hhl_ld": "HHL ablation: Basel. + L_D",
    "hhl_lc": "HHL ablation: Basel. + L_C",
    "arn_rec": "ARN ablation: L_rec only",
    "arn_rec_private": "ARN ablation: L_rec + private encoders",
    "arn_rec_sup": "ARN ablation: L_rec + L_class + L_ctrs",
}


def _five(values):
  return dict(zip(METRICS, values))


_HHL_TABLE2 = "HHL Table 2 (docs/hhl.md §13)"
_HHL_TABLE4 = "HHL Table 4 (docs/hhl.md §13)"
_ARN_MAIN = "ARN main table (docs/arn_triplet_eval.md §1.1)"
_ARN_ABLATION = "ARN ablation, the seed's (docs/arn_triplet_eval.md §1.1)"

# {(real source, real target): {row: (paper's label, source, {metric: %})}}.
PAPER = {
    ("duke", "market"): {
        # Our reference is per-stripe colour statistics; LOMO (stripe colour and texture
        # histograms) is the paper's nearest hand-crafted row.
        "handcrafted": ("LOMO", _HHL_TABLE4, _five((27.2, 41.6, 49.1, None, 8.0))),
        "baseline": ("Basel. (S)", _HHL_TABLE2, _five((44.6, 62.5, 69.6, 76.5, 20.6))),
        "supervised": ("Basel. (T)", _HHL_TABLE2, _five((83.8, 93.3, 95.6, 97.1, 66.3))),
        "hhl": ("Basel.+L_CD (HHL)", _HHL_TABLE2, _five((62.2, 78.8, 84.0, 88.3, 31.4))),
        "arn": ("ARN", _ARN_MAIN, _five((70.3, 80.4, 86.3, None, 39.4))),
        "hhl_lt": ("Basel.+L_T", _HHL_TABLE2, _five((48.6, 66.4, 73.3, 78.9, 23.5))),
        "hhl_ld": ("Basel.+L_D", _HHL_TABLE2, _five((49.8, 67.8, 74.5, 80.5, 23.8))),
        "hhl_lc": ("Basel.+L_C", _HHL_TABLE2, _five((60.6, 77.1, 83.0, 87.6, 28.5))),
    },
    ("market", "duke"): {
        "handcrafted": ("LOMO", _HHL_TABLE4, _five((12.3, 21.3, 26.6, None, 4.8))),
        "baseline": ("Basel. (S)", _HHL_TABLE2, _five((32.9, 49.5, 54.8, 61.7, 16.9))),
        "supervised": ("Basel. (T)", _HHL_TABLE2, _five((72.3, 84.1, 88.1, 90.9, 53.5))),
        "hhl": ("Basel.+L_CD (HHL)", _HHL_TABLE2, _five((46.9, 61.0, 66.7, 71.9, 27.2))),
        "arn": ("ARN", _ARN_MAIN, _five((60.2, 73.9, 79.5, None, 33.4))),
        "hhl_lt": ("Basel.+L_T", _HHL_TABLE2, _five((35.1, 50.7, 57.6, 64.0, 20.5))),
        "hhl_ld": ("Basel.+L_D", _HHL_TABLE2, _five((36.8, 52.3, 59.1, 64.9, 21.1))),
        "hhl_lc": ("Basel.+L_C", _HHL_TABLE2, _five((42.5, 56.8, 62.9, 67.9, 22.1))),
    },
}
for _pair, _rows in arn_config.PAPER_ABLATIONS.items():  # rank-1 and mAP only
  for _variant in ("rec", "rec_private", "rec_sup"):
    _rank1, _map = _rows[_variant]
    PAPER[_pair][f"arn_{_variant}"] = (
        {"rec": "L_rec only", "rec_private": "L_rec + E_S/E_T", "rec_sup": "L_rec + sup."}[
            _variant], _ARN_ABLATION, dict(_five((None,) * 5), rank1=_rank1, mAP=_map))
# The HHL rows above are Table 2's; the config's copy (rank-1, mAP) must agree.
for _pair, _rows in hhl_config.PAPER_TABLE2.items():
  for _variant, (_rank1, _map) in _rows.items():
    _key = "baseline" if _variant == "baseline" else (
        "hhl" if _variant == "hhl" else f"hhl_{_variant}")
    assert PAPER[_pair][_key][2]["rank1"] == _rank1 and PAPER[_pair][_key][2]["mAP"] == _map

# Seconds per stage on a 2-core machine, glibc malloc, medium world, one seed (the ETA's prior;
# the demo rescales it by this machine's pace). Measured 2026-12-03 on commit be9e9fc, `python -m
# experiments.demo` on a fresh clone and an empty data dir: 30 min 32 s in all, 6 min 41 s of it
# the trunk (WORKSPACE.md, "Demo and report").
EXPECTED_SECONDS = {
    "pretrain": 401, "datasets": 84, "handcrafted": 16, "baseline": 159, "supervised": 143,
    "stargan": 445, "hhl": 463, "arn": 359, "table1": 7, "report": 5,
}

# --quick: the tiny world, 2 epochs, no pretrained trunk, a micro StarGAN (tests: mechanics only).
QUICK_TRAIN = ("--config.data.synthetic_size=tiny", "--config.num_epochs=2",
               "--config.model.pretrained=", "--config.optim.milestones=(1,)")
QUICK_ARN = ("--config.model.width=32",)  # encoders as narrow as the quick trunk allows
QUICK_STARGAN = ("--config.data.synthetic_size=tiny", "--config.model.image_size=16",
                 "--config.model.g_conv_dim=4", "--config.model.g_repeat_num=1",
                 "--config.model.d_conv_dim=4", "--config.model.d_repeat_num=2",
                 "--config.batch_size=8", "--config.optim.num_iters=3",
                 "--config.optim.decay_start=1", "--config.sample_every=3",
                 "--config.checkpoint_every=3")
TABLE1_MAX_IMAGES = 500
QUICK_TABLE1_MAX_IMAGES = 20
