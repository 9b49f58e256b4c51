"""`trainer.check_pass_sizes`: every array a step reads splits over the devices and into
`model.bn_groups` BatchNorm groups, refused before the model is built, naming the field."""

import jax
import pytest

from reid_jax.configs import hhl as hhl_config
from reid_jax.errors import ReidError
from reid_jax.training import sharding
from reid_jax.training import trainer


def _streams(**sizes):
  return trainer.Streams(epoch_batches=lambda epoch, start: iter(()), images_per_step=0,
                         batch_sizes=sizes)


class _FakeMesh:
  """A mesh of `n` devices as far as `check_batch_size` looks (its 'data' axis size)."""

  def __init__(self, n):
    self.shape = {sharding.DATA_AXIS: n}


def test_sizes_that_split_pass():
  config = hhl_config.get_config("tiny")
  config.model.bn_groups = 2
  trainer.check_pass_sizes(config, _streams(**{"data.triplet_batch_size": 16}), _FakeMesh(4))


def test_a_stream_that_does_not_split_into_bn_groups_names_its_field():
  config = hhl_config.get_config("tiny")  # CE 32, target 4 x (1 + 6) = 28
  config.model.bn_groups = 8
  with pytest.raises(ReidError, match=r"data.target_batch_size x \(1 \+ 6 camera styles\)=28 "
                                      r"does not split into model.bn_groups=8"):
    trainer.check_pass_sizes(config, _streams(**{"data.target_batch_size x (1 + 6 camera styles)":
                                                 28}), sharding.data_mesh(jax.devices()[:1]))


def test_a_stream_that_does_not_split_over_the_devices_names_its_field():
  config = hhl_config.get_config("tiny")
  with pytest.raises(ReidError, match=r"data.triplet_batch_size=12 is not divisible by the 8 "
                                      r"devices"):
    trainer.check_pass_sizes(config, _streams(**{"data.triplet_batch_size": 12}), _FakeMesh(8))


@pytest.mark.parametrize("groups", [0, -1])
def test_bn_groups_must_be_a_positive_integer(groups):
  config = hhl_config.get_config("tiny")
  config.model.bn_groups = groups
  with pytest.raises(ReidError, match="model.bn_groups"):
    trainer.check_pass_sizes(config, _streams(), sharding.data_mesh(jax.devices()[:1]))
