"""The direct-transfer baseline: IDE trained on the source only, evaluated on target and source
(docs/hhl.md §9). A `trainer.Method`: the network without FC-128, cross-entropy on the CE stream.

  results = trainer.train_and_evaluate(baseline.METHOD, config, workdir, data_dir,
                                       src="synth_duke", tgt="synth_market",
                                       config_name="reid_jax/configs/baseline.py:tiny")
"""

from reid_jax.data import streams as streams_lib
from reid_jax.models import heads
from reid_jax.training import optim
from reid_jax.training import steps
from reid_jax.training import trainer


def ce_streams(inputs: trainer.Inputs) -> trainer.Streams:
  """The source CE stream alone (docs/hhl.md §9): `{'ce': {'image', 'label'}}` per step."""
  config = inputs.config
  ce = streams_lib.ce_stream(inputs.source, config.data, config.seed, share=inputs.share)
  return trainer.Streams(streams_lib.combine(ce, inputs.steps_per_epoch, {}),
                         images_per_step=config.data.batch_size)


METHOD = trainer.Method(
    name="baseline",
    build_model=heads.build_reid_net,
    optimiser_rules=lambda config: optim.reid_net_rules(config.optim.embedding_layers),
    loss_fn=lambda model, config: steps.on_stream(
        "ce", steps.baseline_loss_fn(model, config.model.get("bn_groups", 1))),
    streams=ce_streams,
)
