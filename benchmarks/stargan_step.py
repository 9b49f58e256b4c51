r"""StarGAN training iteration time: our jitted JAX step vs the same architecture in PyTorch eager.

  python benchmarks/stargan_step.py            # 256x128 (the reference code's size), batch 4
  python benchmarks/stargan_step.py --quick    # 64x32, batch 2: within a minute on 2 cores

Both sides run, in this process on the CPU, the docs/hhl.md §10.4 iteration: a D update (WGAN-GP with
the double-backward gradient penalty and camera CE) and, every n_critic = 5th iteration, a G update
(adversarial + camera CE + L1 cycle), Adam(0.5, 0.999). Reported: seconds for a D-only iteration, for
a D+G iteration, and the mean iteration (4 D-only + 1 D+G) / 5. Ratio = torch / ours (> 1: we are
faster). The last lines are one JSON object per comparison.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Before torch starts OpenMP: its threads' default spin-wait took CPU from our step (WORKSPACE.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Before the heavy imports: re-executes this command under tcmalloc when the system has it.
from reid_jax import runtime  # noqa: E402
runtime.prefer_tcmalloc(__name__)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import report  # noqa: E402
from reid_jax.configs import stargan as stargan_config  # noqa: E402
from reid_jax.training import stargan  # noqa: E402

NUM_CAMERAS = 6


# --- PyTorch reference (docs/hhl.md §10.2-10.3 tables) -----------------------------------------------------


def _norm(dim):
  return nn.InstanceNorm2d(dim, affine=True, track_running_stats=True)


class _Residual(nn.Module):

  def __init__(self, dim):
    super().__init__()
    self.main = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, bias=False), _norm(dim), nn.ReLU(inplace=True),
                              nn.Conv2d(dim, dim, 3, 1, 1, bias=False), _norm(dim))

  def forward(self, x):
    return x + self.main(x)


class TorchGenerator(nn.Module):

  def __init__(self, c_dim, conv_dim=64, repeat_num=6):
    super().__init__()
    layers = [nn.Conv2d(3 + c_dim, conv_dim, 7, 1, 3, bias=False), _norm(conv_dim), nn.ReLU(inplace=True)]
    d = conv_dim
    for _ in range(2):
      layers += [nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False), _norm(2 * d), nn.ReLU(inplace=True)]
      d *= 2
    layers += [_Residual(d) for _ in range(repeat_num)]
    for _ in range(2):
      layers += [nn.ConvTranspose2d(d, d // 2, 4, 2, 1, bias=False), _norm(d // 2), nn.ReLU(inplace=True)]
      d //= 2
    layers += [nn.Conv2d(d, 3, 7, 1, 3, bias=False), nn.Tanh()]
    self.main = nn.Sequential(*layers)

  def forward(self, x, c):
    c = c[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
    return self.main(torch.cat([x, c], dim=1))


class TorchDiscriminator(nn.Module):

  def __init__(self, image_size, c_dim, conv_dim=64, repeat_num=6):
    super().__init__()
    layers, d, in_d = [], conv_dim, 3
    for _ in range(repeat_num):
      layers += [nn.Conv2d(in_d, d, 4, 2, 1), nn.LeakyReLU(0.01)]
      in_d, d = d, 2 * d
    self.main = nn.Sequential(*layers)
    self.conv1 = nn.Conv2d(in_d, 1, 3, 1, 1, bias=False)
    self.conv2 = nn.Conv2d(in_d, c_dim, (image_size >> repeat_num, image_size >> (repeat_num + 1)), bias=False)

  def forward(self, x):
    h = self.main(x)
    return self.conv1(h), self.conv2(h).flatten(1)


def torch_iteration(g, d, g_opt, d_opt, x, c_org, update_g):
  """One reference iteration (yunjey's solver, softmax CE for cameras)."""
  f = torch.nn.functional
  c_trg = c_org[torch.randperm(c_org.shape[0])]
  oh_org, oh_trg = f.one_hot(c_org, NUM_CAMERAS).float(), f.one_hot(c_trg, NUM_CAMERAS).float()
  src, cls = d(x)
  x_fake = g(x, oh_trg)
  src_fake, _ = d(x_fake.detach())
  alpha = torch.rand(x.shape[0], 1, 1, 1)
  x_hat = (alpha * x + (1 - alpha) * x_fake.detach()).requires_grad_(True)
  out, _ = d(x_hat)
  grad = torch.autograd.grad(out, x_hat, torch.ones_like(out), create_graph=True)[0]
  gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
  d_loss = -src.mean() + src_fake.mean() + f.cross_entropy(cls, c_org) + 10 * gp
  d_opt.zero_grad()
  d_loss.backward()
  d_opt.step()
  if update_g:
    x_fake = g(x, oh_trg)
    src_fake, cls_fake = d(x_fake)
    x_rec = g(x_fake, oh_org)
    g_loss = -src_fake.mean() + 10 * (x - x_rec).abs().mean() + f.cross_entropy(cls_fake, c_trg)
    g_opt.zero_grad()
    g_loss.backward()
    g_opt.step()


# --- timing -----------------------------------------------------------------------------------------


def _time(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="64x32, batch 2, 1 repeat")
  parser.add_argument("--image_size", type=int, default=256)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--conv_impl", default="auto", help="reid_jax.models.conv impl")
  args = parser.parse_args()
  if args.quick:
    args.image_size, args.batch, args.repeats = 64, 2, 1
  h, w = args.image_size, args.image_size // 2
  repeat_num = 6 if h >= 128 else 4  # D: 6 stride-2 convs need >= 128 px of height
  config = stargan_config.get_config("reference_code")
  config.model.image_size = h
  config.model.d_repeat_num = repeat_num
  config.model.conv_impl = args.conv_impl
  config.batch_size = args.batch
  setting = f"stargan G64x6res D64x{repeat_num} {h}x{w} b{args.batch} f32"
  print(f"{setting}; jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)")

  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (args.batch, h, w, 3)).astype(np.float32)
  cameras = (np.arange(args.batch) % NUM_CAMERAS).astype(np.int32)

  schedule = stargan.Schedule(220_000, 110_000, 808, "code_effective", 1000)
  step = stargan.make_train_step(config, NUM_CAMERAS, schedule)
  state = {"s": stargan.init_state(config, NUM_CAMERAS)}
  key = jax.random.PRNGKey(0)

  def ours(update_g):
    state["s"], metrics = step(state["s"], images, cameras, key, update_g=update_g)
    jax.block_until_ready((state["s"], metrics))

  start = time.perf_counter()
  ours(False)
  ours(True)
  print(f"jax compile + first runs: {time.perf_counter() - start:.1f} s")

  torch.manual_seed(0)
  g, d = TorchGenerator(NUM_CAMERAS), TorchDiscriminator(h, NUM_CAMERAS, repeat_num=repeat_num)
  g_opt = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.5, 0.999))
  d_opt = torch.optim.Adam(d.parameters(), 1e-4, betas=(0.5, 0.999))
  x_t = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
  c_t = torch.from_numpy(cameras).long()
  reference = lambda update_g: torch_iteration(g, d, g_opt, d_opt, x_t, c_t, update_g)
  reference(True)  # warm-up

  rows = []
  for name, update_g in (("d_iteration_s", False), ("dg_iteration_s", True)):
    t_ours = _time(lambda: ours(update_g), args.repeats)
    t_ref = _time(lambda: reference(update_g), args.repeats)
    rows.append((name, t_ours, t_ref))
  mean_ours = (4 * rows[0][1] + rows[1][1]) / 5
  mean_ref = (4 * rows[0][2] + rows[1][2]) / 5
  rows.append(("mean_iteration_s", mean_ours, mean_ref))
  print(f"{'metric':<18}{'jax (s)':>10}{'torch (s)':>11}{'ratio':>8}")
  for name, t_ours, t_ref in rows:
    print(f"{name:<18}{t_ours:>10.3f}{t_ref:>11.3f}{t_ref / t_ours:>8.2f}")
  for name, t_ours, t_ref in rows:
    print(report.comparison(f"stargan_{name}", t_ours, "torch_eager_nchw", t_ref,
                            f"{setting} conv_impl={args.conv_impl}", lower_is_better=True))


if __name__ == "__main__":
  main()
