"""Per-layer CPU timings of ResNet-50's and StarGAN's convolutions: XLA vs our formulations.

  python -m benchmarks.conv_layers [--quick] [--batch 32 --height 256 --width 128 --base_width 64]

For each distinct layer shape, times the three products a training step needs (forward, input
gradient, weight gradient) with `lax.conv_general_dilated` (and JAX's transposes of it), with
`reid_jax.models.conv`'s matmul formulations and, for 3x3 stride-1 layers, its Winograd
F(4x4, 3x3) formulation, alternating them, and prints medians (ms) and the ratios xla / matmul and
xla / winograd (> 1: ours faster). `conv._auto_plan` is the choice these figures justify.
`--base_width 16 --height 64 --width 32` gives the tiny configs' ResNet. Ends with one JSON line
per layer, product and formulation.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import json
import statistics
import time

from absl import app
from absl import flags
import jax

from reid_jax import xla_options
from reid_jax.models import conv

_QUICK = flags.DEFINE_bool("quick", False, "A few layers, 3 repetitions.")
_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_HEIGHT = flags.DEFINE_integer("height", 256, "Input height (ResNet-50).")
_WIDTH = flags.DEFINE_integer("width", 128, "Input width (ResNet-50).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per formulation.")
_ONLY = flags.DEFINE_string("only", "", "Substring filter on the layer names.")
_BASE_WIDTH = flags.DEFINE_integer("base_width", 64,
                                   "layer1 width (64: ResNet-50; 16: resnet_small).")


def resnet50_layers(height, width, base_width=64):
  """(name, H, W, Cin, Cout, k, stride, padding) of every distinct ResNet-50 convolution."""
  layers = [("stem 7x7/2", height, width, 3, base_width, 7, 2, 3)]
  h, w, cin = height // 4, width // 4, base_width
  widths = [base_width * 2**s for s in range(4)]
  for stage, (mid, stride) in enumerate(zip(widths, (1, 2, 2, 2)), start=1):
    out = 4 * mid
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    layers += [
        (f"layer{stage}.0 1x1 {cin}->{mid}", h, w, cin, mid, 1, 1, 0),
        (f"layer{stage}.0 3x3/{stride} {mid}", h, w, mid, mid, 3, stride, 1),
        (f"layer{stage} 1x1 {mid}->{out}", ho, wo, mid, out, 1, 1, 0),
        (f"layer{stage}.0 down 1x1/{stride} {cin}->{out}", h, w, cin, out, 1, stride, 0),
        (f"layer{stage} 1x1 {out}->{mid}", ho, wo, out, mid, 1, 1, 0),
    ]
    if stride != 1:
      layers.append((f"layer{stage} 3x3 {mid}", ho, wo, mid, mid, 3, 1, 1))
    h, w, cin = ho, wo, out
  return layers


def stargan_layers():
  """StarGAN generator convolutions at 128x64 input (docs/hhl.md §10.2), batch-independent names."""
  return [("G down 4x4/2 64->128", 128, 64, 64, 128, 4, 2, 1),
          ("G res 3x3 256", 32, 16, 256, 256, 3, 1, 1)]


def stargan_transposed():
  """(name, H, W, Cin, Cout, k, stride, padding) of the generator's transposed convolutions."""
  return [("G up T4x4/2 256->128", 32, 16, 256, 128, 4, 2, 1),
          ("G up T4x4/2 128->64", 64, 32, 128, 64, 4, 2, 1)]


def _timed(fn, args):
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def _products(geo, transposed):
  """{product: {impl: jitted fn}}; every fn takes (x, kernel, g)."""
  fns = {}
  winograd = not transposed and conv.winograd_applies(geo, "float32")
  for impl in ("xla", "matmul", "winograd") if winograd else ("xla", "matmul"):
    products = _product_fns(conv._FORWARD[impl], conv._INPUT_GRAD[impl], conv._WEIGHT_GRAD[impl],
                            geo, transposed)
    for product, fn in products.items():
      fns.setdefault(product, {})[impl] = xla_options.jit(fn)
  return fns


def _product_fns(fwd, dx, dw, geo, transposed):
  """The three products of one formulation as `(x, kernel, g)` functions."""
  if not transposed:
    return {"forward": lambda x, k, g: fwd(x, k, geo),
            "input_grad": lambda x, k, g: dx(g, k, geo, x.shape),
            "weight_grad": lambda x, k, g: dw(x, g, geo, k.shape)}
  # x: the transposed conv's input = the conv's output space; g: the conv's input space
  return {"forward": lambda x, k, g: dx(x, k, geo, g.shape),
          "input_grad": lambda x, k, g: fwd(g, k, geo),
          "weight_grad": lambda x, k, g: dw(g, x, geo, k.shape)}


def main(argv):
  del argv
  batch, repeats = _BATCH.value, (3 if _QUICK.value else _REPEATS.value)
  layers = [(n, *s, False)
            for n, *s in resnet50_layers(_HEIGHT.value, _WIDTH.value, _BASE_WIDTH.value)]
  layers += [(n, *s, False) for n, *s in stargan_layers()]
  layers += [(n, *s, True) for n, *s in stargan_transposed()]
  if _QUICK.value:
    layers = [layers[i] for i in (0, 1, 2, 3)] + [layers[-2]]
  if _ONLY.value:
    layers = [l for l in layers if _ONLY.value in l[0]]
  key = jax.random.PRNGKey(0)
  records = []
  print(f"batch {batch}, medians of {repeats} alternating runs (ms); x = xla / matmul, "
        "xw = xla / winograd")
  columns = "".join(f" | {p + ' xla':>8s} {'mm':>7s} {'x':>5s} {'wg':>7s} {'xw':>5s}"
                    for p in ("fwd", "dx", "dw"))
  print(f"{'layer':34s} {'GFLOP':>6s}" + columns)
  for name, h, w, cin, cout, k, stride, pad, transposed in layers:
    geo = conv.Geometry((k, k), (stride, stride), (pad, pad), (1, 1))
    if transposed:  # the conv whose input gradient is this transposed conv: cout-space -> cin-space
      out_hw = ((h - 1) * stride - 2 * pad + k, (w - 1) * stride - 2 * pad + k)
      x = jax.random.normal(key, (batch, h, w, cin))
      g = jax.random.normal(key, (batch, *out_hw, cout))
      kernel = jax.random.normal(key, (k, k, cout, cin)) * 0.05
      flops = 2 * batch * h * w * cin * cout * k * k
    else:
      ho, wo = geo.out_size((h, w))
      x = jax.random.normal(key, (batch, h, w, cin))
      g = jax.random.normal(key, (batch, ho, wo, cout))
      kernel = jax.random.normal(key, (k, k, cin, cout)) * 0.05
      flops = 2 * batch * ho * wo * cin * cout * k * k
    row = f"{name:34s} {flops / 1e9:6.2f}"
    for product, fns in _products(geo, transposed).items():
      times = {impl: [] for impl in fns}
      for impl in times:
        _timed(fns[impl], (x, kernel, g))  # compile
      for _ in range(repeats):  # alternate: the CPU is shared, load drifts
        for impl in times:
          times[impl].append(_timed(fns[impl], (x, kernel, g)))
      med = {impl: statistics.median(t) * 1e3 for impl, t in times.items()}
      row += f" | {med['xla']:8.1f} {med['matmul']:7.1f} {med['xla'] / med['matmul']:5.2f}"
      row += (f" {med['winograd']:7.1f} {med['xla'] / med['winograd']:5.2f}" if "winograd" in med
              else f" {'-':>7s} {'-':>5s}")
      for impl in med.keys() - {"xla"}:
        records.append({"metric": f"conv_{product}_ms", "formulation": impl,
                        "ours": round(med[impl], 2), "reference": "xla_conv_general_dilated",
                        "reference_value": round(med["xla"], 2),
                        "ratio": round(med["xla"] / med[impl], 3),
                        "device": "cpu", "config": f"{name} in {h}x{w} b{batch} f32"})
    print(row, flush=True)
  for record in records:
    print(json.dumps(record))


if __name__ == "__main__":
  app.run(main)
