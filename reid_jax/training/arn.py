"""ARN as a `trainer.Method` (docs/arn_triplet_eval.md §1): per step a P x K source batch and a
batch of unlabelled target images, each through its own forward pass, and

  L_total = L_class + alpha L_ctrs + beta L_rec + gamma L_diff          (§1.1 (5))

with the terms of the method variant (`arn.variant`: rec, rec_private, rec_sup, arn). BatchNorm
keeps running statistics per domain (§1.4 item 5): the train state's `batch_stats` is
`{'source': tree, 'target': tree}`, the source pass reads and updates the first, the target pass
the second (`arn.shared_bn_stats`: one tree, threaded source -> target), and the test-time
descriptor, E_C's code e_c, uses the target's for the target (§1.4 item 7).

  results = trainer.train_and_evaluate(arn.METHOD, config, workdir, data_dir, src, tgt, name)
"""

import jax
import jax.numpy as jnp

from reid_jax.configs import arn as arn_config
from reid_jax.data import pipeline
from reid_jax.data import streams as streams_lib
from reid_jax.errors import ReidError
from reid_jax.losses import arn as arn_losses
from reid_jax.losses import classification
from reid_jax.models import arn as arn_model
from reid_jax.models import torchvision_import
from reid_jax.training import evaluate as evaluate_lib
from reid_jax.training import steps
from reid_jax.training import trainer

SWITCHES = ("variant", "alpha", "beta", "gamma", "margin", "normalize_contrastive",
            "contrastive_reduction", "difference", "shared_bn_stats")
DOMAINS = ("source", "target")
# Top-level modules -> optimiser groups (§1.1 training details: E_I; E_C, E_S, E_T, D_C; C_S).
OPTIMISER_RULES = {"backbone": "trunk", "E_C": "encoders", "E_S": "encoders", "E_T": "encoders",
                   "D_C": "encoders", "C_S": "classifier"}


def build_model(model_config, num_classes: int):
  """The ARN network of a config's `model` block (`num_classes` ignored without C_S)."""
  return arn_model.ARN(
      num_classes=num_classes if model_config["classifier"] else 0, arch=model_config["arch"],
      map_size=tuple(model_config["map_size"]), width=int(model_config["width"]),
      dropout_rate=float(model_config["dropout_rate"]), conv8_bn=bool(model_config["conv8_bn"]),
      conv8_relu=bool(model_config["conv8_relu"]),
      private_encoders=bool(model_config["private_encoders"]),
      dtype=None if model_config["dtype"] == "float32" else model_config["dtype"])


def check_config(config) -> None:
  """Refuses a config whose switches name nothing or whose geometry cannot work, before any data
  is read."""
  a, model, data = config.arn, config.model, config.data
  if a.variant not in arn_config.METHOD_VARIANTS:
    raise ReidError(f"config field arn.variant={a.variant!r}: choose one of "
                    f"{', '.join(arn_config.METHOD_VARIANTS)} (docs/arn_triplet_eval.md §1.1)")
  if (bool(model.private_encoders), bool(model.classifier)) != arn_config.VARIANT_MODULES[a.variant]:
    raise ReidError(f"arn.variant={a.variant!r} with config model.private_encoders="
                    f"{model.private_encoders}, model.classifier={model.classifier}: use --variant "
                    "rather than --config.arn.variant")
  if a.difference not in ("dsn", "raw"):
    raise ReidError(f"config field arn.difference={a.difference!r}: choose 'dsn' or 'raw' "
                    "(docs/arn_triplet_eval.md §1.4 item 2)")
  if a.contrastive_reduction not in ("sum", "mean"):
    raise ReidError(f"config field arn.contrastive_reduction={a.contrastive_reduction!r}: choose "
                    "'sum' or 'mean' (docs/arn_triplet_eval.md §1.4 item 1)")
  expected = arn_model.map_size_for(data.height, data.width)
  if tuple(model.map_size) != expected:
    raise ReidError(f"config field model.map_size={tuple(model.map_size)} does not match the "
                    f"{data.height}x{data.width} input: E_I's map is {expected[0]}x{expected[1]} "
                    f"(docs/arn_triplet_eval.md §1.2 'Geometry'); set --config.model.map_size="
                    f"'{expected}'")
  if data.batch_size % data.num_instances or data.batch_size // data.num_instances < 2:
    raise ReidError(f"config field data.batch_size={data.batch_size} must be P x K with "
                    f"K = data.num_instances={data.num_instances} and P >= 2, so that L_ctrs has "
                    "positive and negative pairs (docs/arn_triplet_eval.md §1.4 item 1)")
  if data.target_batch_size < 2:
    raise ReidError(f"config field data.target_batch_size={data.target_batch_size}: L_diff "
                    "needs at least 2 target images (docs/arn_triplet_eval.md §1.4 item 2)")


def loss_fn(model, config) -> steps.LossFn:
  """L_total of the variant's terms on `{'source', 'target'}` batches (§1.1 (1)-(5), §1.4)."""
  a = config.arn
  terms = arn_config.VARIANT_TERMS[a.variant]

  def arn_loss(params, batch_stats, batch, rng):
    source, target = batch["source"], batch["target"]
    out_s, stats_s = steps.forward(model, params, batch_stats["source"], source["image"],
                                   steps.forward_rng(rng, 0), domain="source")
    out_t, stats_t = steps.forward(model, params,
                                   stats_s if a.shared_bn_stats else batch_stats["target"],
                                   target["image"], steps.forward_rng(rng, 1), domain="target")
    new_stats = {"source": stats_t if a.shared_bn_stats else stats_s, "target": stats_t}
    metrics = {}
    reconstruction = (arn_losses.reconstruction_loss(out_s["X"], out_s["X_hat"])
                      + arn_losses.reconstruction_loss(out_t["X"], out_t["X_hat"]))
    metrics["reconstruction"] = reconstruction
    loss = a.beta * reconstruction
    if "difference" in terms:
      difference = (arn_losses.difference_loss(out_s["e_c"], out_s["e_p"], a.difference)
                    + arn_losses.difference_loss(out_t["e_c"], out_t["e_p"], a.difference))
      metrics["difference"] = difference
      loss = loss + a.gamma * difference
    if "cross_entropy" in terms:
      logits, labels = out_s["logits"], source["label"]
      cross_entropy = classification.cross_entropy(logits, labels)
      metrics.update(cross_entropy=cross_entropy, **steps.classification_metrics(logits, labels))
      loss = loss + cross_entropy
    if "contrastive" in terms:
      contrastive = arn_losses.contrastive_loss(
          out_s["e_c"], source["label"], margin=a.margin, normalize=a.normalize_contrastive,
          reduction=a.contrastive_reduction)
      metrics["contrastive"] = contrastive
      loss = loss + a.alpha * contrastive
    return loss, (new_stats, metrics)

  return arn_loss


def arn_streams(inputs: trainer.Inputs) -> trainer.Streams:
  """The source P x K stream and the uniform target stream (§1.4 item 1). An epoch is as many
  steps as the source holds batches (one pass of the usual re-ID PK sampler, §1.4 item 8); both
  streams restart whenever either runs out and at every epoch (docs/hhl.md §5's rule)."""
  config = inputs.config
  data = config.data
  source = streams_lib.pk_stream(inputs.source, data, config.seed, batch_size=data.batch_size,
                                 salt=streams_lib.ARN_SOURCE_STREAM, share=inputs.share)
  target_split = streams_lib.load_split(inputs.tgt, "train", inputs.data_dir, config)
  if data.get("cache_images", False):
    target_split = pipeline.InMemory(target_split, data.num_workers)
  target = streams_lib.target_stream(target_split, None, 0, data, config.seed,
                                      share=inputs.share)
  restarting = {"source": source, "target": target}
  period = streams_lib.restart_period(restarting)
  summary = (f"arn variant {config.arn.variant}: each step reads source {data.batch_size} "
             f"({data.batch_size // data.num_instances} ids x {data.num_instances}) and target "
             f"{data.target_batch_size}; both streams restart every {period} steps and at every "
             "epoch")
  return trainer.Streams(streams_lib.combine(None, inputs.steps_per_epoch, restarting),
                         images_per_step=data.batch_size + data.target_batch_size,
                         summary=summary,
                         batch_sizes={"data.target_batch_size": data.target_batch_size})


def source_pretrained_trunk(workdir) -> dict:
  """`{'params', 'batch_stats'}` of the trunk in the latest checkpoint of a baseline or HHL
  workdir (§1.4 item 4 (c), `model.init_from_workdir`)."""
  trained, step = evaluate_lib.restore_variables(workdir)
  if "backbone" not in trained["params"] or "backbone" not in trained.get("batch_stats", {}):
    raise ReidError(f"config field model.init_from_workdir={str(workdir)!r}: its checkpoint holds "
                    "no trunk (params/backbone and batch_stats/backbone); give a baseline or HHL "
                    "workdir")
  print(f"E_I initialised from the trunk of {workdir} (checkpoint step {step})")
  return {c: trained[c]["backbone"] for c in ("params", "batch_stats")}


def per_domain_statistics(config, variables) -> dict:
  """`batch_stats` as `{'source': tree, 'target': tree}`, both starting from the initial (and
  pretrained) statistics (§1.4 item 5); E_I first taken from a source-trained workdir when
  `model.init_from_workdir` names one (§1.4 item 4 (c))."""
  if config.model.get("init_from_workdir", ""):
    variables = torchvision_import.merge_backbone(
        variables, source_pretrained_trunk(config.model.init_from_workdir))
  stats = variables.get("batch_stats", {})
  # Copies: the train step donates its state, and one buffer cannot be donated twice.
  return {"params": variables["params"],
          "batch_stats": {d: jax.tree.map(lambda x: jnp.array(x, copy=True), stats)
                          for d in DOMAINS}}


def domain_variables(variables, domain: str) -> dict:
  """The params with `domain`'s BatchNorm statistics, for eval-mode `apply` (§1.4 item 7)."""
  return {"params": variables["params"], "batch_stats": variables["batch_stats"][domain]}


def shared_code_descriptor(model):
  """`(variables, images) -> e_c [B, width]` in eval mode (§1.4 item 7), L2-normalised by the
  extractor."""

  def descriptor(variables, images):
    return model.apply(variables, images, method="shared_code")

  return descriptor


def num_classes(params) -> int:
  """C_S's outputs (0 without it)."""
  classifier = params.get("C_S")
  return int(classifier["fc"]["kernel"].shape[-1]) if classifier else 0


def results_fields(config) -> dict:
  """The variant and every switch, for results.json (§1.4)."""
  return {"arn": {k: config.arn[k] for k in SWITCHES},
          "frozen_epochs": dict(config.optim.get("frozen_epochs", {}) or {})}


METHOD = trainer.Method(
    name="arn",
    build_model=build_model,
    optimiser_rules=lambda config: OPTIMISER_RULES,
    loss_fn=loss_fn,
    streams=arn_streams,
    descriptor=shared_code_descriptor,
    results_fields=results_fields,
    init_model=lambda model, rng, images: model.init(rng, images, method="initialize"),
    arrange_variables=per_domain_statistics,
    eval_variables=domain_variables,
    num_classes=num_classes,
)
