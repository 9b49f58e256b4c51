"""StarGAN camera-style transfer of HHL (docs/hhl.md §10), trained once per target dataset.

  python -m experiments.stargan --dataset=market --config=reid_jax/configs/stargan.py:reference_code
  python -m experiments.stargan --dataset=synth_market      # tiny, the default for synthetic data

Writes `<data_dir>/camstyle/<dataset>/<stem>_fake_<j>.jpg` (a synthetic world's set:
`camstyle/<dataset>_<size>_seed<seed>/`) for every training image and camera j = 1..C, then
MANIFEST.json naming the world (docs/design.md §4). Expected output: images of the same person in
each camera's colour/contrast style (the paper shows examples, no number; docs/hhl.md §10.1).

Variants:
  reference_code  the HHL code (default for real data): 256x128, 220k iterations, lr effectively
                  constant (docs/hhl.md §10.5, §12 rows 3-4).
  paper           the paper's text: inputs 128x64, 200 epochs, lr constant for 100 then linear to 0.
  tiny            CPU tests and demos on synthetic data: 32x16, small widths, 4000 iterations and
                  CycleGAN's identity term (lambda_id 5), on the `medium` world, the one the tiny
                  re-ID configs train on. Expected (medium synth_market, 2 cores): 3 minutes of
                  training in benchmarks.stargan_recipe, the demo's whole stage 7.5 minutes;
                  person kept 21.6 %, 59.6 % within its own camera (chance 1.2 %).
"""

import ml_collections

VARIANTS = ("reference_code", "paper", "tiny")


def default_variant(dataset: str) -> str:
  """The variant `python -m experiments.stargan --dataset=D` takes without --config."""
  from reid_jax import cli  # pylint: disable=g-import-not-at-top
  return cli.default_variant(dataset, real="reference_code")


def command_config(dataset: str, value: str | None = None, overrides=()):
  """The config `python -m experiments.stargan --dataset=D [--config=value] [--config.F=V ...]`
  trains, with its command fields: the demo compares its hash with a camera-style set's MANIFEST.

  `overrides`: `[(dotted field, text)]`, as `cli.split_overrides` returns them.
  """
  from reid_jax import cli  # pylint: disable=g-import-not-at-top
  files = cli.ConfigFile("stargan", __name__)
  config, config_name = cli.load_config(files, value, default_variant(dataset), overrides)
  return cli.with_command_fields(config, dataset=dataset, config_name=config_name)


def get_config(arg=None):
  variant = arg or "reference_code"
  if variant not in VARIANTS:
    raise ValueError(f"unknown stargan variant {variant!r}; choose one of {', '.join(VARIANTS)}")
  config = ml_collections.ConfigDict()
  config.experiment = "stargan"
  config.variant = variant
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.image_size = 256  # docs/hhl.md §10.1/§12 row 3: code trains and generates at 256x128
  config.model.g_conv_dim = 64  # docs/hhl.md §10.2
  config.model.g_repeat_num = 6  # docs/hhl.md §10.2: six residual blocks
  config.model.d_conv_dim = 64  # docs/hhl.md §10.3
  config.model.d_repeat_num = 6  # docs/hhl.md §10.3: six stride-2 convs
  # docs/hhl.md §10.2: PyTorch 0.4 defaults (IN scale U(0, 1)); 'torch_1.x' for scale 1.
  config.model.init_scheme = "torch_0.4"
  config.model.conv_impl = "auto"  # reid_jax.models.conv: 'auto' | 'xla' | 'matmul'

  config.data = ml_collections.ConfigDict()
  config.data.flip = True  # docs/hhl.md §10.6: RandomHorizontalFlip p 0.5
  config.data.resize_ratio = 9 / 8  # docs/hhl.md §10.6: resize to 288x144, random crop 256x128
  config.data.num_workers = 4  # threads decoding / augmenting the next batch
  # The synthetic world trained on and written for (docs/design.md §6; synth_* datasets only): the
  # camera-style set is keyed by it and the re-ID trainer refuses a set of another world.
  config.data.synthetic_size = "tiny"

  config.loss = ml_collections.ConfigDict()
  config.loss.lambda_cls = 1.0  # docs/hhl.md §10.4
  config.loss.lambda_rec = 10.0  # docs/hhl.md §10.4
  config.loss.lambda_gp = 10.0  # docs/hhl.md §10.4
  # CycleGAN's identity term lambda_id |G(x, c_x) - x|: not in StarGAN's or HHL's loss (0 keeps it
  # out); the tiny recipe needs it to keep the person (docs/testbed.md, "The tiny StarGAN recipe").
  config.loss.lambda_id = 0.0

  config.optim = ml_collections.ConfigDict()
  config.optim.g_lr = 1e-4  # docs/hhl.md §10.5
  config.optim.d_lr = 1e-4  # docs/hhl.md §10.5
  config.optim.beta1 = 0.5  # docs/hhl.md §10.5
  config.optim.beta2 = 0.999  # docs/hhl.md §10.5
  config.optim.eps = 1e-8  # docs/hhl.md §10.5 (Adam default)
  config.optim.n_critic = 5  # docs/hhl.md §10.5: D every iteration, G every 5th
  config.batch_size = 16  # docs/hhl.md §10.5 (drop_last, shuffle)
  # Length: iterations, or epochs when num_epochs > 0 (then num_iters / decay_start are derived
  # from the training-set size: epochs x floor(N / batch_size)).
  config.optim.num_iters = 220_000  # docs/hhl.md §10.5 (--num_iters)
  config.optim.decay_start = 110_000  # docs/hhl.md §10.5 (--num_iters_decay 110000)
  config.optim.num_epochs = 0
  config.optim.decay_start_epoch = 0
  # 'code_effective': every lr_update_step iterations after decay_start, lr -= base / (num_iters -
  # decay_start), i.e. 9.99e-5 at the end (docs/hhl.md §10.5); 'linear_to_zero': the paper's decay.
  config.optim.lr_decay = "code_effective"  # docs/hhl.md §12 row 4
  config.optim.lr_update_step = 1000  # docs/hhl.md §10.5

  config.log_every = 10  # docs/hhl.md §10.5
  config.sample_every = 1000  # docs/hhl.md §10.5
  config.checkpoint_every = 10_000  # docs/hhl.md §10.5
  config.num_sample_images = 8  # rows of the sample grid

  config.generate = ml_collections.ConfigDict()
  config.generate.batch_size = 16  # docs/hhl.md §10.7
  config.generate.jpeg_quality = 75  # docs/hhl.md §10.7: PIL default quality
  # docs/hhl.md §10.7: torchvision 0.2.x save_image truncated (x * 255 -> byte); 'round' for newer ones.
  config.generate.quantize = "truncate"

  if variant == "paper":
    config.model.image_size = 128  # docs/hhl.md §12 row 3: paper resizes to 128x64
    config.optim.num_epochs = 200  # docs/hhl.md §10.5: 200 epochs
    config.optim.decay_start_epoch = 100  # docs/hhl.md §10.5: constant 100 epochs, then linear to 0
    config.optim.lr_decay = "linear_to_zero"  # docs/hhl.md §12 row 4
    config.checkpoint_every = 5000
  elif variant == "tiny":
    # Chosen by StarGAN's own figures only, never by HHL's (docs/testbed.md, "The tiny StarGAN
    # recipe"): with StarGAN's loss alone every short recipe tried loses the person (fakes at
    # chance); the identity term keeps it, and 4,000 iterations is the length the demo affords.
    config.model.image_size = 32  # 32x16
    config.data.synthetic_size = "medium"  # the world of configs/baseline.py:tiny (and hhl.py:tiny)
    config.model.g_conv_dim = 16
    config.model.g_repeat_num = 2
    config.model.d_conv_dim = 16
    config.model.d_repeat_num = 3  # 32x16 -> 4x2 map, cls kernel (4, 2) as at 256x128
    config.optim.g_lr = 3e-4
    config.optim.d_lr = 3e-4
    config.loss.lambda_id = 5.0
    config.optim.num_iters = 4000
    config.optim.decay_start = 2000
    config.optim.lr_decay = "linear_to_zero"
    config.sample_every = 1000
    config.checkpoint_every = 500
  return config
