"""HHL as a `trainer.Method` (docs/hhl.md §2-§7, §14): the IDE network with FC-128, and per step

  L_HHL = L_cross(CE batch) + beta x L_T(source triplet batch ∪ target reals ∪ their fakes)

with the three forward passes CE -> triplet -> target threading the BatchNorm statistics
(`hhl.bn_passes`, `model.bn_groups`), the §4 variants (`hhl.variant`: baseline, lt, ld, lc, hhl),
and the input streams of §5 (`data.streams.combine`: the triplet and target streams restart every
epoch and whenever either runs out).

  results = trainer.train_and_evaluate(hhl.METHOD, config, workdir, data_dir, src, tgt, name)
"""

from reid_jax.data import datasets
from reid_jax.data import pipeline
from reid_jax.data import streams as streams_lib
from reid_jax.errors import ReidError
from reid_jax.losses import classification
from reid_jax.losses import hhl as hhl_losses
from reid_jax.models import heads
from reid_jax.training import optim
from reid_jax.training import preflight
from reid_jax.training import steps
from reid_jax.training import trainer

LABEL_MODES = {"unique": "index", "code_random": "code_random"}  # docs/hhl.md §12 row 7
SWITCHES = ("variant", "beta", "margin", "triplet_reduction", "target_labels", "bn_passes",
            "target_sampling", "lc_source_triplet")


def uses(config) -> tuple[bool, bool, bool]:
  """(source triplet stream, target stream, camera-style fakes) the config's variant reads."""
  return hhl_losses.variant_inputs(config.hhl.variant, config.hhl.lc_source_triplet)


def check_config(config) -> None:
  """Refuses a config whose switches name nothing, before any data is read."""
  h = config.hhl
  uses(config)
  if h.target_labels not in LABEL_MODES:
    raise ReidError(f"config field hhl.target_labels={h.target_labels!r}: choose 'unique' or "
                    "'code_random' (docs/hhl.md §12 row 7)")
  if h.bn_passes not in ("separate", "joint"):
    raise ReidError(f"config field hhl.bn_passes={h.bn_passes!r}: choose 'separate' or 'joint' "
                    "(docs/hhl.md §14)")
  if h.triplet_reduction not in ("mean", "sum"):
    raise ReidError(f"config field hhl.triplet_reduction={h.triplet_reduction!r}: choose 'mean' "
                    "or 'sum' (docs/hhl.md §12 row 6)")
  if h.target_sampling not in ("random", "oracle"):
    raise ReidError(f"config field hhl.target_sampling={h.target_sampling!r}: choose 'random' or "
                    "'oracle' (docs/hhl.md §5; 'kmeans' is not built)")
  if (h.variant == "baseline") != (config.model.triplet_features == 0):
    raise ReidError(f"hhl.variant={h.variant!r} with config model.triplet_features="
                    f"{config.model.triplet_features}: the baseline has no FC-128 and every other "
                    "variant needs it; use --variant rather than --config.hhl.variant")


def loss_fn(model, config) -> steps.LossFn:
  """`L_cross + beta x L_T(...)` on `{'ce', 'triplet'?, 'target'?}` batches (docs/hhl.md §4)."""
  h = config.hhl
  use_source, use_target, _ = uses(config)

  def hhl_loss(params, batch_stats, batch, rng):
    images = [batch["ce"]["image"]]
    if use_source:
      images.append(batch["triplet"]["image"])
    if use_target:
      images.append(batch["target"]["image"])
    outputs, batch_stats = steps.forward_passes(model, params, batch_stats, images, rng,
                                                h.bn_passes, config.model.bn_groups)
    logits, labels = outputs[0]["logits"], batch["ce"]["label"]
    cross_entropy = classification.cross_entropy(logits, labels)
    metrics = {"cross_entropy": cross_entropy, **steps.classification_metrics(logits, labels)}
    if not (use_source or use_target):
      return cross_entropy, (batch_stats, metrics)
    source = (outputs[1]["embedding"], batch["triplet"]["label"]) if use_source else None
    target = None
    if use_target:
      t = batch["target"]
      target = (outputs[-1]["embedding"], t["label"], t["is_fake"])
    triplet, triplet_metrics = hhl_losses.triplet_term(
        h.variant, source, target, margin=h.margin, reduction=h.triplet_reduction,
        lc_source_triplet=h.lc_source_triplet)
    metrics.update(triplet_metrics)
    return cross_entropy + h.beta * triplet, (batch_stats, metrics)

  return hhl_loss


def camstyle_folder(config, data_dir, tgt: str):
  """The target's complete camera-style set for the config's world, or None when the variant
  reads no fakes (docs/hhl.md §10.7)."""
  if not uses(config)[2]:
    return None
  return preflight.camstyle_set(data_dir, tgt, config.data.synthetic_size)


def hhl_streams(inputs: trainer.Inputs) -> trainer.Streams:
  """CE stream + (source triplet stream) + (target stream with fakes), docs/hhl.md §5."""
  config = inputs.config
  data, h = config.data, config.hhl
  use_source, use_target, use_fakes = uses(config)
  ce = streams_lib.ce_stream(inputs.source, data, config.seed, share=inputs.share)
  restarting, parts = {}, [f"CE {data.batch_size}"]
  if use_source:
    restarting["triplet"] = streams_lib.pk_stream(inputs.source, data, config.seed,
                                                  share=inputs.share)
    parts.append(f"triplet {data.triplet_batch_size} ({data.triplet_batch_size // data.num_instances}"
                 f" ids x {data.num_instances})")
  images = data.batch_size + (data.triplet_batch_size if use_source else 0)
  sizes = {"data.triplet_batch_size": data.triplet_batch_size} if use_source else {}
  if use_target:
    target = streams_lib.load_split(inputs.tgt, "train", inputs.data_dir, config)
    if data.get("cache_images", False):
      target = pipeline.InMemory(target, data.num_workers)
    cameras = datasets.get_spec(inputs.tgt).num_cameras if use_fakes else 0
    folder = camstyle_folder(config, inputs.data_dir, inputs.tgt)
    restarting["target"] = streams_lib.target_stream(
        target, folder, cameras, data, config.seed, label_mode=LABEL_MODES[h.target_labels],
        sampling=h.target_sampling, share=inputs.share)
    images += data.target_batch_size * (cameras + 1)
    sizes[f"data.target_batch_size x (1 + {cameras} camera styles)"] = (
        data.target_batch_size * (cameras + 1))
    parts.append(f"target {data.target_batch_size} x (1 + {cameras} camera styles)"
                 + (f" from {folder}" if folder else ""))
  summary = f"hhl variant {h.variant}: each step reads " + ", ".join(parts)
  if restarting:
    period = streams_lib.restart_period(restarting)
    summary += (f"; the {' and '.join(restarting)} stream{'s' if len(restarting) > 1 else ''} "
                f"restart every {period} steps and at every epoch (docs/hhl.md §5)")
  return trainer.Streams(streams_lib.combine(ce, inputs.steps_per_epoch, restarting),
                         images_per_step=images, summary=summary, batch_sizes=sizes)


def results_fields(config) -> dict:
  """The variant and every switch, for results.json (docs/hhl.md §12)."""
  return {"hhl": {**{k: config.hhl[k] for k in SWITCHES}, "bn_groups": config.model.bn_groups},
          "embedding_layers": config.optim.embedding_layers}


METHOD = trainer.Method(
    name="hhl",
    build_model=heads.build_reid_net,
    optimiser_rules=lambda config: optim.reid_net_rules(config.optim.embedding_layers),
    loss_fn=loss_fn,
    streams=hhl_streams,
    results_fields=results_fields,
)
