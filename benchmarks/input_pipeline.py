"""Input pipeline throughput: decoded + augmented 256x128 training images per second.

  python -m benchmarks.input_pipeline [--quick] [--size tiny|small] [--threads N]

Writes synthetic synth_duke and synth_market trees into a temporary data_dir, prepares them with
the TFDS builders, then for each dataset times `pipeline.train_batches` (thread pool, prefetch)
against a naive single-threaded loop (read record, decode, `train_transform`, stack) over the same
index batches, in the same process. It also times `benchmarks.resnet_step`'s ResNet-50 training step
(forward, backward, SGD update; 256x128, batch 32; not with --quick unless --step)
to show how many images per second training consumes: the pipeline should deliver at least 3x
that. Ends with one JSON line per comparison.
"""

# Before any other import: re-executes `python -m ...` under tcmalloc when the system has it.
from reid_jax import runtime
runtime.prefer_tcmalloc(__name__)

import json
import os
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from reid_jax.data import pipeline
from reid_jax.data import samplers
from reid_jax.data import tfds_builders
from reid_jax.data import transforms

_QUICK = flags.DEFINE_bool("quick", False, "320 images per run; no train step unless --step.")
_SIZE = flags.DEFINE_string("size", "tiny", "Synthetic size to generate.")
_THREADS = flags.DEFINE_integer("threads", 0, "Decode threads (0: 2 x CPU count, at most 8).")
_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_IMAGES = flags.DEFINE_integer("images", 1600, "Images per timed run (quick: 320).")
_STEP = flags.DEFINE_bool("step", None, "Time the ResNet-50 train step (default: on unless --quick; "
                         "compiling it takes about a minute on 2 cores).")

HEIGHT, WIDTH = 256, 128


def _index_batches(n_items, batch, n_images):
  out, epoch = [], 0
  while len(out) * batch < n_images:
    out.extend(samplers.shuffled_batches(n_items, batch, seed=0, epoch=epoch))
    epoch += 1
  return np.stack(out[: max(1, n_images // batch)])


def _naive(source, index_batches):
  for step, idx in enumerate(index_batches):
    images = [transforms.train_transform(source[int(i)]["image"],
                                         pipeline.image_rng(0, 0, step, k), HEIGHT, WIDTH)
              for k, i in enumerate(idx)]
    yield np.stack(images)


def _rate(iterator, n_images):
  start = time.perf_counter()
  for _ in iterator:
    pass
  return n_images / (time.perf_counter() - start)


def _train_step_rate(batch, repeats):
  """Images/s of `benchmarks.resnet_step`'s ResNet-50 re-ID training step (the library's step)."""
  import jax
  from benchmarks import resnet_step

  step, state, data = resnet_step.jax_train_step("resnet50", batch, HEIGHT, WIDTH, "auto")
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, metrics = step(state, data, jax.random.PRNGKey(3))
    jax.block_until_ready(metrics["loss"])
    times.append(time.perf_counter() - t0)
  return batch / min(times)


def main(argv):
  del argv
  runtime.retain_freed_memory()  # as the training entry points do (cli.run), before JAX starts
  quick = _QUICK.value
  n_images = 320 if quick else _IMAGES.value
  threads = _THREADS.value or min(8, 2 * (os.cpu_count() or 1))
  batch = _BATCH.value
  results = []
  with tempfile.TemporaryDirectory() as data_dir:
    rates = {}
    for dataset in ("synth_duke", "synth_market"):
      source = tfds_builders.load_split(dataset, "train", data_dir, size=_SIZE.value)
      index_batches = _index_batches(len(source), batch, n_images)
      n = index_batches.size
      # Warm-up (file cache, thread start) outside the timings.
      next(iter(pipeline.train_batches(source, index_batches[:1], seed=0, epoch=0)))
      naive = _rate(_naive(source, index_batches), n)
      ours = _rate(pipeline.train_batches(source, index_batches, seed=0, epoch=0, height=HEIGHT,
                                          width=WIDTH, num_threads=threads, prefetch=3), n)
      rates[dataset] = ours
      print(f"{dataset} ({_SIZE.value}, {n} images, batch {batch}, {HEIGHT}x{WIDTH}): "
            f"pipeline {ours:.0f} img/s with {threads} threads, naive single-threaded "
            f"{naive:.0f} img/s, ratio {ours / naive:.2f}")
      results.append({"metric": "train_pipeline_img_per_s", "ours": round(ours, 1),
                      "reference": "naive_single_thread_loop", "reference_value": round(naive, 1),
                      "ratio": round(ours / naive, 3), "device": "cpu",
                      "config": f"{dataset} {_SIZE.value} {HEIGHT}x{WIDTH} b{batch} "
                                f"threads={threads} cpus={os.cpu_count()}"})
  if _STEP.value is None and quick:
    print("--quick: ResNet-50 train step not timed (pass --step to time it)")
  elif _STEP.value is not False:
    step_rate = _train_step_rate(batch, 1 if quick else 3)
    slowest = min(rates.values())
    print(f"ResNet-50 train step (256x128, b{batch}): {step_rate:.1f} img/s; slowest pipeline "
          f"delivers {slowest / step_rate:.1f}x that (goal >= 3x)")
    results.append({"metric": "pipeline_over_train_step", "ours": round(slowest, 1),
                    "reference": "resnet50_train_step_img_per_s",
                    "reference_value": round(step_rate, 2),
                    "ratio": round(slowest / step_rate, 2), "device": "cpu",
                    "config": f"resnet50 {HEIGHT}x{WIDTH} b{batch} f32; pipeline "
                              f"threads={threads}"})
  for r in results:
    print(json.dumps(r))


if __name__ == "__main__":
  app.run(main)
