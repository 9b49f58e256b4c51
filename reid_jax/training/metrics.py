"""TensorBoard event files in `<workdir>/tb/` via tensorboardX (no TensorFlow needed).

  writer = MetricWriter(workdir / "tb")
  writer.scalars(step, {"loss/cross_entropy": 2.3, "lr/trunk": 0.01})
  writer.images(step, {"stargan/samples": grid})      # grid: [H, W, 3] uint8 or float in [0, 1]
  writer.close()
"""

from pathlib import Path
from typing import Mapping

import numpy as np
from tensorboardX import SummaryWriter


def _to_hwc_uint8(image) -> np.ndarray:
  """[H, W, C] or [H, W] image, uint8 or float in [0, 1] -> uint8 [H, W, C]."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if image.dtype != np.uint8:
    image = np.clip(np.rint(image.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
  return image


def read_events(logdir) -> list:
  """All `Event` protos of the event files in `logdir` (TFRecord framing: length, crc, payload,
  crc), parsed with tensorboardX's protos; for tests and scripts without TensorBoard installed."""
  import struct

  from tensorboardX.proto import event_pb2
  events = []
  for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
    data, offset = path.read_bytes(), 0
    while offset + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event()
      event.ParseFromString(data[offset + 12:offset + 12 + length])
      events.append(event)
      offset += 12 + length + 4
  return events


def read_scalars(logdir) -> dict[tuple[int, str], float]:
  """{(step, tag): value} of every scalar in `logdir`."""
  return {(e.step, v.tag): v.simple_value for e in read_events(logdir) for v in e.summary.value
          if v.WhichOneof("value") == "simple_value"}


class _Silent:
  """A SummaryWriter that writes nothing."""

  def __getattr__(self, name):
    return lambda *args, **kwargs: None


class MetricWriter:
  """Scalars and images for TensorBoard; every call is keyed by the global training step.
  `enabled=False` (a multi-process run's other processes) writes nothing."""

  def __init__(self, logdir, enabled: bool = True):
    self.logdir = Path(logdir)
    self._writer = _Silent()
    if enabled:
      self.logdir.mkdir(parents=True, exist_ok=True)
      self._writer = SummaryWriter(logdir=str(self.logdir))

  def scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    for name, value in scalars.items():
      self._writer.add_scalar(name, float(value), global_step=int(step))

  def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Each image is [H, W, C] (or [H, W]), uint8 or float in [0, 1]."""
    for name, image in images.items():
      self._writer.add_image(name, _to_hwc_uint8(image), global_step=int(step), dataformats="HWC")

  def text(self, step: int, name: str, text: str) -> None:
    self._writer.add_text(name, text, global_step=int(step))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
