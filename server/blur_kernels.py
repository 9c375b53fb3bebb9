"""Blur kernels a camera produces, drawn at random: what the deblurrer is
trained on (scripts/train_deblur.py through scripts/blur_kernels.py, which
applies them) and what its adaptation to the user's images re-blurs them
with (server/internal_pairs.py). Here, not in scripts/, because the server
needs them and scripts/ is not installed with it; numpy only.

The kernels:

* camera shake: a random camera trajectory, after Boracchi and Foi
  ("Modeling the performance of image restoration from motion blur", IEEE
  TIP 2012): a path with inertia, a random pull (the hand's "anxiety") and
  occasional sudden jerks, drawn onto the pixel grid with sub-pixel
  (bilinear) weights; some are straight lines, as from a steady pan;
* defocus: a uniform disc (an aperture out of focus), antialiased;
* Gaussian blur, round or elongated: soft lenses, atmosphere, and the blur
  every resampler adds.

Every kernel sums to one and has its centre of mass on its centre pixel, so
blurring does not move the picture and the network learns to sharpen, not to
shift. Kernels are float64 (k, k), k odd.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


# -- kernels ------------------------------------------------------------------

def _splat(points: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Points (n, 2) as (x, y) in pixels, drawn with bilinear weights onto the
    smallest odd square grid that holds them around their centre of mass,
    which lands on the centre pixel."""
    weights = np.ones(len(points)) if weights is None else weights
    points = points - (points * weights[:, None]).sum(0) / weights.sum()
    radius = int(math.ceil(np.abs(points).max())) + 1
    size = 2 * radius + 1
    kernel = np.zeros((size, size))
    x, y = points[:, 0] + radius, points[:, 1] + radius
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                      (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), w * weights)
    return _trim(kernel / kernel.sum())


def _trim(kernel: np.ndarray) -> np.ndarray:
    """Drop all-zero outer rings, keeping the kernel square, odd and centred."""
    while kernel.shape[0] > 1 and not (kernel[0].any() or kernel[-1].any()
                                       or kernel[:, 0].any() or kernel[:, -1].any()):
        kernel = kernel[1:-1, 1:-1]
    return kernel


def linear_motion(length: float, angle_degrees: float) -> np.ndarray:
    """A straight motion of `length` pixels, `angle_degrees` anticlockwise
    from the horizontal as seen on screen (image rows grow downwards):
    a line segment, centred, sampled 16 times per pixel."""
    t = np.linspace(-0.5, 0.5, max(2, int(math.ceil(length * 16)) + 1))
    angle = math.radians(angle_degrees)
    points = np.stack([t * length * math.cos(angle), -t * length * math.sin(angle)], 1)
    return _splat(points)


def camera_shake(rng: np.random.Generator, length: float, steps: int = 256) -> np.ndarray:
    """A random camera trajectory whose path is `length` pixels long.

    The camera moves at a steady speed; its direction changes by a random
    pull, a pull back towards where the exposure started (the hand steadies
    itself) and, now and then, a sudden jerk. The path is then scaled to the
    wanted length; where it curls up on itself it leaves more light."""
    anxiety = rng.uniform(0.005, 0.1)
    jerk_chance = rng.uniform(0.0, 0.05)
    centripetal = rng.uniform(0.0, 0.3)
    velocity = np.exp(1j * rng.uniform(0, 2 * math.pi))
    position = 0j
    path = [position]
    for _ in range(steps - 1):
        pull = anxiety * (rng.normal() + 1j * rng.normal())
        if rng.random() < jerk_chance:
            pull += 2 * velocity * np.exp(1j * rng.uniform(-math.pi, math.pi)) * rng.uniform(0.5, 1)
        velocity = velocity + pull - centripetal * position / steps
        velocity /= max(abs(velocity), 1e-6)
        position = position + velocity / steps
        path.append(position)
    path = np.array(path)
    travelled = np.abs(np.diff(path)).sum()
    path *= length / max(travelled, 1e-9)
    # 16 samples per pixel of path: the splat is then smooth, not dotted
    index = np.linspace(0, len(path) - 1, max(steps, int(length * 16)))
    x = np.interp(index, np.arange(len(path)), path.real)
    y = np.interp(index, np.arange(len(path)), path.imag)
    return _splat(np.stack([x, y], 1))


def disc(radius: float) -> np.ndarray:
    """Defocus: a uniform disc of `radius` pixels, its edge antialiased by
    8x8 supersampling."""
    half = int(math.ceil(radius)) + 1
    fine = (np.arange(-half * 8, (half + 1) * 8) + 0.5) / 8 - 0.5
    x, y = np.meshgrid(fine, fine)
    inside = (x * x + y * y <= radius * radius).astype(np.float64)
    size = 2 * half + 1
    kernel = inside[:size * 8, :size * 8].reshape(size, 8, size, 8).sum((1, 3))
    return _trim(kernel / kernel.sum())


def gaussian(sigma: float, sigma_across: float | None = None,
             angle_degrees: float = 0.0) -> np.ndarray:
    """A Gaussian of standard deviation `sigma` (along `angle_degrees`) and
    `sigma_across` (perpendicular; default: round), out to 3.5 sigma."""
    across = sigma if sigma_across is None else sigma_across
    radius = max(1, int(math.ceil(3.5 * max(sigma, across))))
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1].astype(np.float64)
    angle = math.radians(angle_degrees)
    along = x * math.cos(angle) - y * math.sin(angle)
    perpendicular = x * math.sin(angle) + y * math.cos(angle)
    kernel = np.exp(-0.5 * ((along / sigma) ** 2 + (perpendicular / across) ** 2))
    return kernel / kernel.sum()


def identity() -> np.ndarray:
    return np.ones((1, 1))


@dataclass(frozen=True)
class Recipe:
    """Probabilities and ranges of the random degradations (kernel shares
    are relative weights)."""
    shake: float = 0.40                 # random camera trajectories
    linear: float = 0.15                # straight motion
    motion_length: tuple[float, float] = (3.0, 31.0)     # pixels of path
    defocus: float = 0.15
    defocus_radius: tuple[float, float] = (1.0, 6.0)
    gaussian: float = 0.20
    gaussian_sigma: tuple[float, float] = (0.5, 3.5)
    sharp: float = 0.10                 # no blur at all
    noise: float = 0.6
    noise_sigma: tuple[float, float] = (0.5, 6.0)       # in 8-bit levels
    grey_noise: float = 0.3             # share of the noise that is luminance only
    jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (60, 95)

    def describe(self) -> dict:
        return dict(self.__dict__)


def random_kernel(rng: np.random.Generator, recipe: Recipe = Recipe()) -> tuple[np.ndarray, str]:
    """A kernel and a short description of it."""
    kinds = ("shake", "linear", "defocus", "gaussian", "sharp")
    shares = np.array([getattr(recipe, k) for k in kinds], np.float64)
    kind = kinds[rng.choice(len(kinds), p=shares / shares.sum())]
    if kind == "shake":
        length = rng.uniform(*recipe.motion_length)
        return camera_shake(rng, length), "shake %.1f px" % length
    if kind == "linear":
        length, angle = rng.uniform(*recipe.motion_length), rng.uniform(0, 180)
        return linear_motion(length, angle), "linear %.1f px at %.0f deg" % (length, angle)
    if kind == "defocus":
        radius = rng.uniform(*recipe.defocus_radius)
        return disc(radius), "disc r %.2f px" % radius
    if kind == "gaussian":
        sigma = rng.uniform(*recipe.gaussian_sigma)
        # a third elongated (astigmatism, slight motion), the rest round
        across = sigma * rng.uniform(0.3, 1.0) if rng.random() < 1 / 3 else sigma
        angle = rng.uniform(0, 180)
        return gaussian(sigma, across, angle), "gaussian %.2f/%.2f px" % (sigma, across)
    return identity(), "sharp"


def largest_radius(recipe: Recipe) -> int:
    """An upper bound on (k - 1) / 2 for any kernel `random_kernel` draws
    with `recipe`: how much picture beyond a crop its blur reads."""
    motion = math.ceil(recipe.motion_length[1] / 2) + 2
    defocus = math.ceil(recipe.defocus_radius[1]) + 1
    blur = math.ceil(3.5 * recipe.gaussian_sigma[1])
    return int(max(motion, defocus, blur))
