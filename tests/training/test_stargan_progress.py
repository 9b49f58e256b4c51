"""StarGAN's bar: each of its two step programs announces its compilation; the bar completes."""

from reid_jax.configs import stargan as stargan_config
from reid_jax.training import stargan


def _micro_config():
  """As tests/training/test_stargan_trainer.py's micro config: 16x8 images, 4 iterations."""
  config = stargan_config.get_config("tiny")
  config.model.update(image_size=16, g_conv_dim=4, g_repeat_num=1, d_conv_dim=4, d_repeat_num=2,
                      conv_impl="xla")
  config.batch_size = 4
  config.optim.update(n_critic=2, num_iters=4, decay_start=2)
  config.update(log_every=1, sample_every=2, checkpoint_every=2, num_sample_images=3)
  return config


def test_training_announces_both_compilations_and_shows_the_bar(data_dir, tmp_path, capsys):
  stargan.train(_micro_config(), tmp_path / "w", "synth_market", data_dir)
  out = capsys.readouterr().out
  for what in ("the D step", "the D+G step", "the sample translator"):
    assert out.count(f"compiling {what} ...") == 1, out
    assert f"compiled {what} in " in out
  assert "stargan synth_market: 100%" in out and "4/4" in out and "img/s=" in out
