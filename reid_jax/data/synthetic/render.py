"""Numpy renderer of pedestrian-like crops (docs/design.md §6.1, §6.2).

A crop is painted in three stages:

1. the camera's background family (procedural, fixed per camera, shifted per image);
2. the person, as anti-aliased signed-distance shapes in the person's own frame (unit height), in
   painter's order, with the view deciding what is visible (a backpack from behind, a logo and
   straps from the front, one arm and a handbag on the near side from the side);
3. the camera pipeline: illumination, white balance error, colour cast, saturation, contrast,
   gamma, blur, sensor noise; the writer then encodes JPEG at the camera's quality.

All randomness comes from the generators passed in, so a crop is a pure function of its inputs.
"""

import dataclasses
import io

import numpy as np
from PIL import Image

from reid_jax.data.synthetic import world


@dataclasses.dataclass(frozen=True)
class View:
  """How one image shows its person (docs/design.md §6.1). Lengths in units of the crop height."""
  view: str  # 'front' | 'back' | 'side'
  facing: int  # side view: 1 walks to the right, -1 to the left
  offset_x: float  # bounding-box misalignment
  offset_y: float
  scale: float  # person height / crop height
  lean: float  # horizontal shift of the head relative to the feet
  phase: float  # walking phase, radians
  background_shift: float  # where along the walkway the person stands
  occluder: str | None  # None | 'pole' | 'low' | 'passer'
  occluder_pos: float
  occluder_colour: tuple
  light: tuple  # (brightness, colour temperature, contrast) of the scene light


@dataclasses.dataclass(frozen=True)
class Track:
  """What the images of one person in one camera share (consecutive frames of one walk)."""
  view: str
  facing: int
  offset_x: float
  offset_y: float
  scale: float
  log_height: float  # variable-size domains: this walk's crop size
  background_shift: float


def sample_track(camera: world.Camera, rng: np.random.Generator) -> Track:
  return Track(
      view=world.VIEWS[rng.choice(3, p=np.asarray(camera.views))],
      facing=int(rng.choice((-1, 1))),
      offset_x=float(rng.normal(0.0, 0.03)),
      offset_y=float(rng.normal(0.0, 0.02)),
      scale=float(np.clip(rng.normal(0.90, 0.04), 0.78, 1.02)),
      log_height=float(rng.normal(0.0, 1.0)),
      background_shift=float(rng.uniform(-3.0, 3.0)))


def sample_view(camera: world.Camera, track: Track, light: tuple, rng: np.random.Generator,
                junk: bool = False) -> View:
  """One image of a walk: the track's view most of the time, small pose and box changes."""
  view, facing = track.view, track.facing
  if rng.random() < 0.15:  # the person turns between frames
    view = world.VIEWS[rng.choice(3, p=np.asarray(camera.views))]
    facing = int(rng.choice((-1, 1)))
  offset_x = track.offset_x + rng.normal(0.0, 0.025)
  offset_y = track.offset_y + rng.normal(0.0, 0.015)
  scale = track.scale * float(np.exp(rng.normal(0.0, 0.03)))
  if junk:  # a poor detection: the box covers the person too little (docs/arn_triplet_eval.md §4.1)
    kind = rng.integers(3)
    if kind == 0:
      offset_x = float(rng.choice((-1, 1)) * rng.uniform(0.22, 0.40))
    elif kind == 1:
      scale = float(rng.uniform(1.6, 2.4))
      offset_y = float(rng.uniform(-0.3, 0.5))
    else:
      scale = float(rng.uniform(0.3, 0.5))
      offset_y = float(rng.uniform(-0.3, 0.3))
  occluder = None
  if rng.random() < camera.occlusion:
    occluder = ("pole", "low", "passer")[rng.integers(3)]
  return View(
      view=view, facing=facing, offset_x=float(offset_x), offset_y=float(offset_y),
      scale=float(scale), lean=float(rng.normal(0.0, 0.025)),
      phase=float(rng.uniform(0.0, 2 * np.pi)),
      background_shift=track.background_shift + float(rng.normal(0.0, 0.05)),
      occluder=occluder, occluder_pos=float(rng.uniform(-0.3, 0.3)),
      occluder_colour=tuple(float(v) for v in rng.uniform(0.05, 0.9, 3)), light=tuple(light))


def crop_size(domain: world.Domain, camera: world.Camera, track: Track,
              rng: np.random.Generator) -> tuple[int, int]:
  """(height, width) of one crop: Market's fixed 128x64, or a variable size (docs/design.md §6.3)."""
  if domain.crop is not None:
    return domain.crop
  median, log_sd, lo, hi = domain.crop_height
  height = median * camera.size * np.exp(log_sd * track.log_height + rng.normal(0.0, 0.04))
  height = int(np.clip(round(height), lo, hi))
  aspect = np.clip(domain.crop_aspect[0] + domain.crop_aspect[1] * rng.normal(), 0.28, 0.6)
  return height, max(24, int(round(height * aspect)))


# ---------------------------------------------------------------------------------------------
# Signed distances (negative inside) in the person frame.


def _alpha(d, px):
  return np.clip(0.5 - d / px, 0.0, 1.0)


def _ellipse(x, y, cx, cy, a, b):
  return (np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2) - 1.0) * min(a, b)


def _box(x, y, cx, cy, hx, hy):
  qx, qy = np.abs(x - cx) - hx, np.abs(y - cy) - hy
  outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
  return outside + np.minimum(np.maximum(qx, qy), 0)


def _capsule(x, y, ax, ay, bx, by, r):
  px, py, dx, dy = x - ax, y - ay, bx - ax, by - ay
  t = np.clip((px * dx + py * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
  return np.sqrt((px - t * dx) ** 2 + (py - t * dy) ** 2) - r


def _trapezoid(x, y, cx, top, bottom, half_top, half_bottom):
  t = np.clip((y - top) / (bottom - top), 0.0, 1.0)
  half = half_top + t * (half_bottom - half_top)
  return np.maximum(np.abs(x - cx) - half, np.abs(y - 0.5 * (top + bottom)) - 0.5 * (bottom - top))


def _paint(canvas, alpha, colour):
  """canvas <- (1 - alpha) canvas + alpha colour, only inside the rows/columns alpha touches."""
  alpha = np.broadcast_to(alpha, canvas.shape[:2])
  nonzero = alpha > 0
  rows, cols = np.flatnonzero(nonzero.any(1)), np.flatnonzero(nonzero.any(0))
  if rows.size == 0:
    return
  window = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
  colour = np.asarray(colour, np.float32)
  if colour.ndim == 3:
    colour = colour[window]
  region = canvas[window]
  region += alpha[window][..., None] * (colour - region)


# ---------------------------------------------------------------------------------------------
# Backgrounds.


def _frac(v):
  return v - np.floor(v)


def _background(camera: world.Camera, view: View, h: int, w: int, rng) -> np.ndarray:
  far, near, detail = (np.asarray(c, np.float32) for c in camera.background_colours)
  p = camera.background_phase
  yy = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
  xx = (np.arange(w, dtype=np.float32)[None, :] + 0.5 - w / 2) / h + view.background_shift
  xx = np.broadcast_to(xx, (h, w))
  yy = np.broadcast_to(yy, (h, w))
  horizon = camera.horizon + 0.03 * np.sin(view.background_shift + p[0])
  ground = (yy > horizon).astype(np.float32)
  family = camera.background
  d = np.zeros((h, w), np.float32)  # where the detail colour shows, in [0, 1]
  if family == "pavement":
    d = ((_frac(xx * 3 + p[1]) < 0.35) & (_frac(yy * 5 + p[2]) < 0.45)) * 0.8
    d = np.where(ground > 0, (_frac(xx * 5 + yy * 2 + p[3]) < 0.06) * 0.6, d)
  elif family == "foliage":
    blobs = np.sin(xx * 11 + p[1]) * np.sin(yy * 13 + p[2]) + 0.5 * np.sin(xx * 23 + yy * 17 + p[3])
    d = np.where(ground > 0, 0.0, (blobs > 0.2) * 0.9)
  elif family == "storefront":
    d = np.where(ground > 0, 0.0, (_frac(xx * 1.5 + p[1]) < 0.45) * 0.9)
  elif family == "snow":
    trunks = _frac(xx * 2.2 + p[1]) < 0.05
    d = np.where(ground > 0, 0.0, trunks * 1.0)
  elif family == "brick":
    row = np.floor(yy * 18 + p[1])
    mortar = (_frac(yy * 18 + p[1]) < 0.15) | (_frac(xx * 7 + 0.5 * (row % 2) + p[2]) < 0.08)
    d = np.where(ground > 0, (_frac(xx * 4 + p[3]) < 0.04) * 0.5, mortar * 0.9)
  elif family == "campus":
    d = np.where(ground > 0, 0.0, (_frac(yy * 6 + p[1]) < 0.3) * 0.7)
  elif family == "lawn":
    d = np.where(ground > 0, (_frac(xx * 6 + p[2]) < 0.05) * 0.5,
                 (np.sin(xx * 9 + p[1]) * np.sin(yy * 15 + p[3]) > 0.3) * 0.8)
  elif family == "road":
    d = np.where(ground > 0, (np.abs(yy - horizon - 0.15) < 0.012) * 1.0, 0.0)
  elif family == "indoor":
    lights = (yy < 0.08) & (_frac(xx * 2 + p[1]) < 0.5)
    tiles = (_frac(xx * 6 + p[2]) < 0.05) | (_frac(yy * 10 + p[3]) < 0.05)
    d = np.where(ground > 0, tiles * 0.4, lights * 1.0)
  base = far[None, None] * (1 - ground[..., None]) + near[None, None] * ground[..., None]
  image = base * (1 - d[..., None]) + detail[None, None] * d[..., None]
  # Low-frequency shading and fine texture, new for every image.
  ph = rng.uniform(0, 2 * np.pi, 2)
  shade = 1.0 + 0.05 * np.sin(xx * 4.0 + ph[0]) * np.cos(yy * 3.0 + ph[1])
  texture = 0.015 * rng.standard_normal((h, w, 1), dtype=np.float32)
  return (image * shade[..., None].astype(np.float32) + texture).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The person.


def _draw_person(canvas, person: world.Person, view: View, rng, colour_jitter: float = 0.03):
  h, w, _ = canvas.shape
  s = view.scale
  top = (1.0 - s) / 2 + view.offset_y
  y = ((np.arange(h, dtype=np.float32)[:, None] + 0.5) / h - top) / s
  x = ((np.arange(w, dtype=np.float32)[None, :] + 0.5 - w / 2) / h - view.offset_x) / s
  x, y = np.broadcast_arrays(x, y)
  x = x - view.lean * (1.0 - y)
  px = 1.0 / (h * s)  # one pixel in person units
  side = view.view == "side"
  if side and view.facing < 0:
    x = -x  # draw every side view facing right
  stride = np.sin(view.phase)

  # Lighting varies between frames: small per-image changes of every garment colour.
  def c(rgb):
    return np.clip(np.asarray(rgb, np.float32) * (1 + rng.normal(0, colour_jitter)), 0, 1)

  upper, lower, skin = c(person.upper), c(person.lower), c(person.skin)
  hair, shoes = c(person.hair), c(person.shoes)
  shoulder = person.shoulder * (0.55 if side else 1.0)
  hip = person.hip * (0.75 if side else 1.0)
  waist = person.waist_y
  neck_y = 0.16
  foot_y = 0.97
  knee_y = waist + 0.5 * (foot_y - waist)

  # Backpack seen from the side sits behind the torso (left of it when facing right).
  if person.backpack is not None and side:
    _paint(canvas, _alpha(_box(x, y, -shoulder - 0.045, 0.32, 0.05, 0.12), px), c(person.backpack))

  # Legs: two capsules from the hips to the feet; the stride swings them apart.
  if side:
    legs = [(0.0, 0.14 * stride), (0.0, -0.14 * stride)]
  else:
    legs = [(-hip * 0.5, -hip * 0.5 - 0.01 * stride), (hip * 0.5, hip * 0.5 + 0.01 * stride)]
  for hx, fx in legs:
    d = _capsule(x, y, hx, waist - 0.02, fx, foot_y - 0.02, 0.042)
    a = _alpha(d, px)
    if person.shorts:
      _paint(canvas, a * (y > knee_y), skin)
      _paint(canvas, a * (y <= knee_y), lower)
    else:
      _paint(canvas, a, lower)
    _paint(canvas, _alpha(_ellipse(x, y, fx + (0.02 if side else 0.0), foot_y, 0.05, 0.022), px),
           shoes)

  # Torso (and the coat that extends it over the thighs).
  torso_bottom = waist + (0.17 if person.coat else 0.0)
  torso = _trapezoid(x, y, 0.0, neck_y + 0.01, torso_bottom, shoulder,
                     hip * (1.25 if person.coat else 1.0))
  a = _alpha(torso, px)
  garment = np.broadcast_to(upper, canvas.shape).copy()
  if person.pattern == "stripes":
    stripe = (_frac(y / person.stripe_period) < 0.45)[..., None]
    garment = np.where(stripe, c(person.upper_secondary), garment)
  # Cylinder shading across the torso.
  garment *= (1.0 - 0.25 * np.clip(np.abs(x) / max(shoulder, 1e-3), 0, 1) ** 2)[..., None]
  _paint(canvas, a, garment)
  if person.pattern == "logo" and view.view == "front":
    _paint(canvas, _alpha(_ellipse(x, y, 0.0, 0.29, 0.045, 0.045), px), c(person.upper_secondary))

  # Arms: capsules from the shoulders, swinging against the legs; sleeves and hands.
  if side:
    arms = [(0.0, -0.10 * stride)]
  else:
    arms = [(-shoulder - 0.02, -0.015 * stride), (shoulder + 0.02, 0.015 * stride)]
  for sx, swing in arms:
    hand_x = sx + swing + (0.02 * np.sign(sx) if sx else 0.0)
    hand_y = waist + 0.04
    d = _capsule(x, y, sx, neck_y + 0.04, hand_x, hand_y, 0.032)
    a = _alpha(d, px)
    elbow_y = neck_y + 0.04 + 0.45 * (hand_y - neck_y - 0.04)
    if person.short_sleeves:
      _paint(canvas, a * (y <= elbow_y), upper)
      _paint(canvas, a * (y > elbow_y), skin)
    else:
      _paint(canvas, a, upper)
    _paint(canvas, _alpha(_ellipse(x, y, hand_x, hand_y + 0.03, 0.025, 0.03), px), skin)

  # Head: face, hair (all of it from behind), hat.
  head_y = 0.085
  r = person.head
  _paint(canvas, _alpha(_box(x, y, 0.0, neck_y - 0.01, 0.022, 0.03), px), skin)
  head = _ellipse(x, y, 0.01 if side else 0.0, head_y, r * 0.85, r)
  if view.view == "back":
    _paint(canvas, _alpha(head, px), hair)
  else:
    _paint(canvas, _alpha(head, px), skin)
    hair_line = head_y - 0.35 * r if view.view == "front" else head_y + 0.1 * r
    hair_mask = (y < hair_line) | ((x < -0.2 * r) if side else False)
    _paint(canvas, _alpha(head, px) * hair_mask, hair)
  if person.hair_long:
    _paint(canvas, _alpha(_box(x, y, -0.01 if side else 0.0, head_y + r, r * 0.9, r * 0.7), px)
           * (y > head_y) * (1.0 if view.view == "back" else 0.5 if side else 0.0), hair)
  if person.hat is not None:
    _paint(canvas, _alpha(head, px) * (y < head_y - 0.2 * r), c(person.hat))

  # Carried objects, as the view shows them.
  if person.backpack is not None:
    if view.view == "back":
      _paint(canvas, _alpha(_box(x, y, 0.0, 0.32, shoulder * 0.75, 0.12), px), c(person.backpack))
    elif view.view == "front":
      for sx in (-0.6 * shoulder, 0.6 * shoulder):
        _paint(canvas, _alpha(_box(x, y, sx, 0.24, 0.012, 0.07), px), c(person.backpack))
  if person.handbag is not None:
    near_side = view.view != "side" or person.handbag_side > 0
    if near_side:
      bx = 0.02 if side else person.handbag_side * (shoulder + 0.05)
      if view.view == "back":
        bx = -bx
      _paint(canvas, _alpha(_box(x, y, bx, waist + 0.01, 0.045, 0.05), px), c(person.handbag))


def _draw_occluder(canvas, view: View, camera: world.Camera):
  h, w, _ = canvas.shape
  colour = np.asarray(view.occluder_colour, np.float32)
  yy = (np.arange(h)[:, None] + 0.5) / h
  xx = (np.arange(w)[None, :] + 0.5 - w / 2) / h
  if view.occluder == "pole":
    a = (np.abs(xx - view.occluder_pos * 0.5) < 0.035) * np.ones_like(yy)
    colour = np.asarray(camera.background_colours[2], np.float32) * 0.8
  elif view.occluder == "low":  # a car, bench or bicycle in front of the legs
    a = (yy > 0.72 + 0.12 * view.occluder_pos) * np.ones_like(xx)
  else:  # another pedestrian passing at one side
    edge = 0.5 * w / h
    a = (xx * np.sign(view.occluder_pos + 1e-6) > edge * 0.45) * (yy > 0.15)
  _paint(canvas, a.astype(np.float32), colour)


# ---------------------------------------------------------------------------------------------
# The camera.


def _gaussian_blur(image, sigma):
  if sigma < 0.3:
    return image
  radius = int(np.ceil(2.5 * sigma))
  k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  k = (k / k.sum()).astype(np.float32)
  h, w, _ = image.shape
  padded = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="edge")
  image = sum(weight * padded[i:i + h] for i, weight in enumerate(k))
  padded = np.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="edge")
  return sum(weight * padded[:, i:i + w] for i, weight in enumerate(k))


def apply_camera(image, camera: world.Camera, light: tuple, domain: world.Domain, rng):
  """The camera pipeline on a float `[H, W, 3]` scene in [0, 1] (docs/design.md §6.2) -> uint8."""
  h = image.shape[0]
  brightness, light_temperature, light_contrast = light
  temperature = light_temperature + camera.temperature
  gains = np.array([1 + 0.20 * temperature, 1 + 0.08 * camera.tint, 1 - 0.20 * temperature],
                   np.float32)
  image = image * gains * (brightness * camera.brightness) + np.asarray(camera.cast, np.float32)
  grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
  saturation = camera.saturation * (0.85 if domain.name == "synth_duke" else 1.0)
  image = grey[..., None] + saturation * (image - grey[..., None])
  image = 0.5 + camera.contrast * light_contrast * (image - 0.5)
  image = np.clip(image, 0.0, 1.0) ** camera.gamma
  image = _gaussian_blur(image, camera.blur * h / 128)
  image = image + np.float32(camera.noise) * rng.standard_normal(image.shape, dtype=np.float32)
  return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def scene_light(domain: world.Domain, camera: world.Camera, time_of_day: str | None) -> tuple:
  """(brightness, colour temperature, contrast) of the light falling on one crop."""
  if camera.indoor:
    return world.INDOOR_LIGHT
  if time_of_day is not None:
    b, t, k = world.DAYLIGHT[time_of_day]
    return (b * domain.illumination[0], t + domain.illumination[1], k)
  return (domain.illumination[0], domain.illumination[1], 1.0)


def render_scene(camera: world.Camera, person: world.Person | None, view: View,
                 size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
  """The scene before the camera pipeline, float32 `[H, W, 3]`; `person=None`: background only."""
  h, w = size
  canvas = _background(camera, view, h, w, rng)
  if person is not None:
    _draw_person(canvas, person, view, rng)
  if view.occluder is not None:
    _draw_occluder(canvas, view, camera)
  return canvas


def render(domain: world.Domain, camera: world.Camera, person: world.Person | None, view: View,
           size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
  """One crop, uint8 `[H, W, 3]`: the scene seen through the camera."""
  canvas = render_scene(camera, person, view, size, rng)
  return apply_camera(canvas, camera, view.light, domain, rng)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
  return buffer.getvalue()
