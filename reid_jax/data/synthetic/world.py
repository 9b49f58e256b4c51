"""The frozen parameters of the synthetic world: domains, cameras, identities (docs/design.md §6).

Everything here is fixed from the descriptions of docs/design.md §6 and the real datasets
(docs/arn_triplet_eval.md §4) and then left alone: no parameter is chosen by how a method scores.

- A `Domain` holds what differs between synth_market, synth_duke and synth_msmt (docs/design.md §6.3):
  camera count, crop sizes, season (clothing palettes, shorts, coats), hair and skin tones,
  background families, illumination.
- `cameras(domain)` gives each camera its own rendering style (docs/design.md §6.2). Camera styles depend
  on the dataset only, not on the seed: the cameras are part of the world, the people are drawn.
- `person(domain, rng)` draws one identity's fixed attributes (docs/design.md §6.1).

Colours are RGB floats in [0, 1], linear-ish "scene" values before the camera pipeline.
"""

import dataclasses
import zlib

import numpy as np

# Named colours shared by the palettes, RGB in [0, 1].
COLOURS = {
    "white": (0.92, 0.92, 0.90), "cream": (0.93, 0.88, 0.74), "light_grey": (0.72, 0.72, 0.72),
    "grey": (0.48, 0.48, 0.50), "dark_grey": (0.25, 0.25, 0.27), "black": (0.08, 0.08, 0.09),
    "light_blue": (0.55, 0.72, 0.90), "sky": (0.40, 0.62, 0.92), "blue": (0.15, 0.30, 0.75),
    "navy": (0.08, 0.12, 0.32), "denim": (0.25, 0.35, 0.55), "light_denim": (0.45, 0.55, 0.72),
    "red": (0.80, 0.12, 0.12), "burgundy": (0.40, 0.06, 0.12), "pink": (0.95, 0.60, 0.70),
    "orange": (0.95, 0.55, 0.15), "yellow": (0.95, 0.85, 0.25), "light_green": (0.60, 0.85, 0.55),
    "green": (0.15, 0.50, 0.25), "olive": (0.35, 0.38, 0.18), "dark_green": (0.10, 0.25, 0.15),
    "khaki": (0.72, 0.65, 0.45), "beige": (0.82, 0.75, 0.60), "brown": (0.40, 0.26, 0.14),
    "dark_brown": (0.22, 0.14, 0.08), "purple": (0.45, 0.20, 0.55), "camel": (0.70, 0.52, 0.30),
}

SKIN_TONES = {
    "light": (0.93, 0.78, 0.66), "fair": (0.88, 0.70, 0.56), "medium": (0.78, 0.58, 0.42),
    "tan": (0.65, 0.46, 0.32), "brown": (0.48, 0.32, 0.22), "dark": (0.32, 0.21, 0.14),
}
HAIR_TONES = {
    "black": (0.05, 0.04, 0.04), "dark_brown": (0.18, 0.11, 0.07), "brown": (0.35, 0.22, 0.12),
    "blond": (0.80, 0.66, 0.40), "red": (0.55, 0.22, 0.10), "grey": (0.60, 0.60, 0.60),
}

VIEWS = ("front", "back", "side")
PATTERNS = ("plain", "stripes", "logo")
TIMES_OF_DAY = ("morning", "noon", "afternoon")  # MSMT17 file names (docs/arn_triplet_eval.md §4.3)
MSMT_DATES = ("0113", "0114", "0302", "0303")  # MSMT17 capture dates: two winter, two spring days


@dataclasses.dataclass(frozen=True)
class Season:
  """Clothing distribution of a scene: palettes as {colour name: weight}, garment probabilities."""
  upper: dict
  lower: dict
  shorts: float  # probability of shorts (or a short skirt): lower legs show skin
  short_sleeves: float
  coat: float  # long coat reaching the thighs (worn over the upper garment)
  patterns: tuple  # probabilities of plain, stripes, logo


SUMMER = Season(  # Market-1501: Tsinghua campus in summer (docs/design.md §6.3)
    upper={"white": 4, "light_blue": 2, "sky": 1, "yellow": 1, "pink": 1.5, "red": 1.5,
           "light_green": 1, "light_grey": 1.5, "orange": 1, "black": 2, "navy": 1, "cream": 1,
           "purple": 0.5, "green": 0.5},
    lower={"denim": 3, "light_denim": 2, "black": 3, "khaki": 2, "beige": 1.5, "white": 1,
           "grey": 1.5, "navy": 1},
    shorts=0.40, short_sleeves=0.80, coat=0.0, patterns=(0.55, 0.25, 0.20))

WINTER = Season(  # DukeMTMC: Duke campus in winter (docs/design.md §6.3)
    upper={"black": 5, "navy": 3, "dark_grey": 3, "grey": 1.5, "dark_brown": 1.5, "camel": 1,
           "dark_green": 1.5, "burgundy": 1.5, "olive": 1, "red": 0.6, "white": 0.6, "blue": 0.8,
           "purple": 0.4},
    lower={"black": 4, "denim": 3, "navy": 2, "dark_grey": 2, "dark_brown": 1, "khaki": 0.7,
           "grey": 1},
    shorts=0.03, short_sleeves=0.03, coat=0.55, patterns=(0.70, 0.20, 0.10))

CHILLY = Season(  # MSMT17 January days: down jackets, brighter than Duke's coats
    upper={"black": 4, "white": 2, "red": 1.5, "pink": 1, "navy": 2, "dark_grey": 2, "blue": 1,
           "camel": 1, "dark_green": 1, "yellow": 0.5, "purple": 0.5, "grey": 1},
    lower={"black": 5, "denim": 2.5, "navy": 1.5, "dark_grey": 2, "grey": 1, "khaki": 0.5},
    shorts=0.01, short_sleeves=0.02, coat=0.45, patterns=(0.65, 0.20, 0.15))

SPRING = Season(  # MSMT17 March days: light jackets and sweaters
    upper={"white": 2.5, "black": 3, "grey": 2, "light_blue": 1.5, "pink": 1.2, "red": 1,
           "navy": 1.5, "green": 1, "yellow": 0.8, "khaki": 1, "cream": 1, "orange": 0.5},
    lower={"black": 4, "denim": 3, "light_denim": 1.5, "grey": 1.5, "khaki": 1.5, "beige": 1,
           "navy": 1},
    shorts=0.06, short_sleeves=0.15, coat=0.15, patterns=(0.55, 0.25, 0.20))


@dataclasses.dataclass(frozen=True)
class Domain:
  """What one synthetic dataset's world looks like (docs/design.md §6.3)."""
  name: str
  layout: str
  num_cameras: int
  crop: tuple  # (height, width) fixed, or None for variable crops drawn per image
  crop_height: tuple  # variable crops: (median height, log-sd, min, max) in pixels
  crop_aspect: tuple  # variable crops: (mean width/height, sd)
  seasons: tuple  # one Season, or one per MSMT date
  skin: dict  # {tone name: weight}
  hair: dict
  backpack: float
  handbag: float
  hat: float  # winter hats / caps: the head's top is the hat's colour
  backgrounds: tuple  # background families, assigned to cameras in turn
  indoor_cameras: tuple  # 1-based camera numbers lit by artificial light
  illumination: tuple  # (brightness, colour temperature) of the daylight; temperature > 0 warm
  occlusion: float  # base probability that an image is partly occluded


MARKET = Domain(
    name="synth_market", layout="market", num_cameras=6, crop=(128, 64),
    crop_height=(128, 0.0, 128, 128), crop_aspect=(0.5, 0.0), seasons=(SUMMER,),
    skin={"light": 3, "fair": 4, "medium": 2, "tan": 1},
    hair={"black": 8, "dark_brown": 3, "brown": 1},
    backpack=0.40, handbag=0.20, hat=0.05,
    backgrounds=("pavement", "foliage", "storefront", "pavement", "foliage", "storefront"),
    indoor_cameras=(), illumination=(1.08, 0.25), occlusion=0.12)

DUKE = Domain(
    name="synth_duke", layout="duke", num_cameras=8, crop=None,
    crop_height=(230, 0.22, 120, 420), crop_aspect=(0.40, 0.05), seasons=(WINTER,),
    skin={"light": 4, "fair": 3, "medium": 2, "tan": 1.5, "brown": 1.5, "dark": 1.5},
    hair={"black": 3, "dark_brown": 3, "brown": 3, "blond": 2, "red": 0.5, "grey": 0.7},
    backpack=0.50, handbag=0.15, hat=0.30,
    backgrounds=("snow", "brick", "snow", "brick", "snow", "brick", "snow", "brick"),
    indoor_cameras=(), illumination=(0.86, -0.30), occlusion=0.22)

MSMT = Domain(
    name="synth_msmt", layout="msmt", num_cameras=15, crop=None,
    crop_height=(190, 0.30, 80, 420), crop_aspect=(0.38, 0.05),
    seasons=(CHILLY, CHILLY, SPRING, SPRING),  # aligned with MSMT_DATES
    skin={"light": 3, "fair": 4, "medium": 2, "tan": 1},
    hair={"black": 8, "dark_brown": 3, "brown": 1},
    backpack=0.55, handbag=0.15, hat=0.10,
    backgrounds=("campus", "lawn", "road", "campus", "lawn", "road", "campus", "lawn", "road",
                 "campus", "lawn", "road", "indoor", "indoor", "indoor"),
    indoor_cameras=(13, 14, 15),  # 12 outdoor + 3 indoor (docs/arn_triplet_eval.md §4.3)
    illumination=(1.0, 0.0), occlusion=0.18)

DOMAINS = {d.name: d for d in (MARKET, DUKE, MSMT)}

# The pretraining pool's season (the testbed's stand-in for ImageNet): every colour equally likely
# and every garment common, so that no target scene's clothing statistics are favoured.
ALL_SEASONS = Season(
    upper={name: 1.0 for name in COLOURS}, lower={name: 1.0 for name in COLOURS},
    shorts=0.25, short_sleeves=0.40, coat=0.25, patterns=(0.50, 0.25, 0.25))

# A domain of its own for pretraining (not a re-ID dataset: no tree, no splits, never in DOMAINS):
# 12 cameras over every background family, all skin and hair tones, neutral daylight.
PRETRAIN = Domain(
    name="synth_pretrain", layout="pool", num_cameras=12, crop=(128, 64),
    crop_height=(128, 0.0, 128, 128), crop_aspect=(0.5, 0.0), seasons=(ALL_SEASONS,),
    skin={name: 1.0 for name in SKIN_TONES}, hair={name: 1.0 for name in HAIR_TONES},
    backpack=0.40, handbag=0.25, hat=0.20,
    backgrounds=("pavement", "foliage", "storefront", "snow", "brick", "campus", "lawn", "road",
                 "indoor", "pavement", "lawn", "brick"),
    indoor_cameras=(9,), illumination=(1.0, 0.0), occlusion=0.15)

# MSMT17 time-of-day light on outdoor cameras: (brightness, colour temperature, contrast).
DAYLIGHT = {"morning": (0.82, -0.35, 0.90), "noon": (1.15, 0.05, 1.18),
            "afternoon": (0.95, 0.45, 1.00)}
INDOOR_LIGHT = (0.92, -0.15, 0.95)  # fluorescent: cool, flat, independent of the hour


@dataclasses.dataclass(frozen=True)
class Camera:
  """One camera's rendering style (docs/design.md §6.2)."""
  index: int  # 1-based, as in the file names
  temperature: float  # white balance error, -1 (blue) .. 1 (orange)
  tint: float  # green-magenta error, -1 .. 1
  cast: tuple  # additive RGB offset
  brightness: float
  gamma: float
  contrast: float
  saturation: float
  blur: float  # Gaussian sigma in pixels at 128-pixel crop height
  noise: float  # sensor noise standard deviation, [0, 1] units
  jpeg_quality: int
  background: str
  background_colours: tuple  # three RGB triples that the background family paints with
  background_phase: tuple  # fixed offsets of the background's procedural pattern
  horizon: float  # where the ground starts, fraction of the crop height
  views: tuple  # probabilities of front, back, side views: the camera's typical viewpoint
  size: float  # crop-height multiplier (distance of the camera to the walkway)
  occlusion: float
  indoor: bool


_BACKGROUND_BASES = {  # three base colours per family: far (upper), near (ground), detail
    "pavement": ((0.80, 0.76, 0.68), (0.66, 0.64, 0.60), (0.55, 0.50, 0.45)),
    "foliage": ((0.30, 0.52, 0.24), (0.62, 0.60, 0.55), (0.18, 0.35, 0.15)),
    "storefront": ((0.85, 0.82, 0.78), (0.60, 0.58, 0.56), (0.70, 0.30, 0.25)),
    "snow": ((0.70, 0.72, 0.76), (0.93, 0.94, 0.96), (0.22, 0.18, 0.16)),
    "brick": ((0.55, 0.26, 0.18), (0.52, 0.52, 0.54), (0.75, 0.72, 0.66)),
    "campus": ((0.70, 0.68, 0.64), (0.55, 0.55, 0.55), (0.40, 0.42, 0.48)),
    "lawn": ((0.42, 0.55, 0.30), (0.50, 0.48, 0.44), (0.28, 0.40, 0.20)),
    "road": ((0.62, 0.62, 0.60), (0.36, 0.36, 0.38), (0.90, 0.88, 0.40)),
    "indoor": ((0.86, 0.82, 0.72), (0.70, 0.68, 0.64), (0.95, 0.95, 0.92)),
}


def _world_rng(domain: Domain, *keys) -> np.random.Generator:
  """A generator fixed by the dataset name alone: the world does not change with the seed."""
  return np.random.default_rng([zlib.crc32(domain.name.encode()), *keys])


def cameras(domain: Domain) -> tuple[Camera, ...]:
  """The domain's cameras, 1-based, with styles spread so that no two cameras look alike."""
  rng = _world_rng(domain, 0)
  n = domain.num_cameras
  # Stratified white balance: colour temperatures cover [-1, 1] evenly, in shuffled order.
  temperatures = rng.permutation(np.linspace(-1.0, 1.0, n)) + rng.uniform(-0.1, 0.1, n)
  tints = rng.permutation(np.linspace(-1.0, 1.0, n))
  result = []
  for i in range(n):
    family = domain.backgrounds[i]
    bases = np.array(_BACKGROUND_BASES[family])
    colours = np.clip(bases + rng.normal(0.0, 0.06, bases.shape), 0.02, 0.98)
    dominant = rng.integers(3)
    views = np.full(3, 0.15)
    views[dominant] = 0.70
    views = rng.dirichlet(views * 20.0)
    indoor = (i + 1) in domain.indoor_cameras
    result.append(Camera(
        index=i + 1,
        temperature=float(np.clip(temperatures[i], -1.0, 1.0)),
        tint=float(tints[i]),
        cast=tuple(float(v) for v in rng.normal(0.0, 0.03, 3)),
        brightness=float(rng.uniform(0.80, 1.18)),
        gamma=float(rng.uniform(0.75, 1.35)),
        contrast=float(rng.uniform(0.70, 1.30)),
        saturation=float(rng.uniform(0.50, 1.40)),
        blur=float(rng.uniform(0.0, 1.3)),
        noise=float(rng.uniform(0.005, 0.035)),
        jpeg_quality=int(rng.integers(55, 96)),
        background=family,
        background_colours=tuple(tuple(float(v) for v in c) for c in colours),
        background_phase=tuple(float(v) for v in rng.uniform(0.0, 2 * np.pi, 6)),
        horizon=float(rng.uniform(0.45, 0.75)),
        views=tuple(float(v) for v in views),
        size=float(np.exp(rng.normal(0.0, 0.15))) if domain.crop is None else 1.0,
        occlusion=float(np.clip(domain.occlusion * rng.uniform(0.5, 1.6), 0.0, 0.6)),
        indoor=indoor))
  return tuple(result)


@dataclasses.dataclass(frozen=True)
class Person:
  """One identity's fixed attributes (docs/design.md §6.1). Sizes in units of the person's height."""
  upper: tuple  # RGB
  upper_secondary: tuple  # stripes / logo colour
  pattern: str
  stripe_period: float
  lower: tuple
  shorts: bool
  short_sleeves: bool
  coat: bool
  skin: tuple
  hair: tuple
  hair_long: bool
  hat: tuple | None
  shoes: tuple
  shoulder: float  # half-width of the shoulders
  hip: float  # half-width of the hips
  waist_y: float  # where the torso ends
  head: float  # head radius
  backpack: tuple | None
  handbag: tuple | None
  handbag_side: int  # -1 left, 1 right (in the front view)


def _pick(rng, table: dict):
  names = list(table)
  weights = np.array([table[k] for k in names], float)
  return names[rng.choice(len(names), p=weights / weights.sum())]


def _jitter(rng, rgb, sd=0.05):
  return tuple(float(v) for v in np.clip(np.asarray(rgb) + rng.normal(0.0, sd, 3), 0.02, 0.98))


def person(domain: Domain, rng: np.random.Generator, season: int = 0) -> Person:
  """Draw one identity from the domain's attribute distribution (season indexes MSMT dates)."""
  s = domain.seasons[season % len(domain.seasons)]
  upper_name = _pick(rng, s.upper)
  upper = _jitter(rng, COLOURS[upper_name])
  secondary_name = upper_name
  while secondary_name == upper_name:
    secondary_name = _pick(rng, s.upper)
  pattern = PATTERNS[rng.choice(3, p=np.array(s.patterns) / sum(s.patterns))]
  coat = bool(rng.random() < s.coat)
  bag_colours = {"black": 5, "dark_grey": 2, "navy": 2, "red": 1, "blue": 1, "brown": 1.5,
                 "khaki": 1, "pink": 0.5, "green": 0.5, "white": 0.5}
  return Person(
      upper=upper,
      upper_secondary=_jitter(rng, COLOURS[secondary_name]),
      pattern=pattern,
      stripe_period=float(rng.uniform(0.035, 0.07)),
      lower=_jitter(rng, COLOURS[_pick(rng, s.lower)]),
      shorts=bool(rng.random() < s.shorts),
      short_sleeves=bool(rng.random() < s.short_sleeves) and not coat,
      coat=coat,
      skin=_jitter(rng, SKIN_TONES[_pick(rng, domain.skin)], 0.02),
      hair=_jitter(rng, HAIR_TONES[_pick(rng, domain.hair)], 0.02),
      hair_long=bool(rng.random() < 0.35),
      hat=_jitter(rng, COLOURS[_pick(rng, s.upper)]) if rng.random() < domain.hat else None,
      shoes=_jitter(rng, COLOURS[_pick(rng, {"black": 5, "white": 2, "brown": 1.5, "grey": 1})],
                    0.03),
      shoulder=float(rng.uniform(0.095, 0.135)),
      hip=float(rng.uniform(0.075, 0.105)),
      waist_y=float(rng.uniform(0.48, 0.54)),
      head=float(rng.uniform(0.058, 0.07)),
      backpack=_jitter(rng, COLOURS[_pick(rng, bag_colours)]) if rng.random() < domain.backpack
      else None,
      handbag=_jitter(rng, COLOURS[_pick(rng, bag_colours)]) if rng.random() < domain.handbag
      else None,
      handbag_side=int(rng.choice((-1, 1))))
