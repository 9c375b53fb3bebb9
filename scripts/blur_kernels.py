"""Blurry photos made from sharp ones: the blur kernels a camera produces,
then what the camera and the file do to the blurred picture.

Training (scripts/train_deblur.py) draws random degradations from
`degrade`; the benchmark (bench/deblur_quality.py) and the validation during
training use the three fixed cases in `FIXED`, and both measure with `psnr`,
so a number in the training log and a number in the benchmark mean the same
thing.

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
shift. Blurring is true convolution (the kernel flipped), as in scipy and
skimage, so the kernels given to Richardson-Lucy and Wiener in the benchmark
are the ones that made the blur.

After the blur come sensor noise (Gaussian, part of it luminance only), the
8-bit rounding every file has, and sometimes a JPEG save. A share of the
samples stays sharp, so that a sharp photo comes back unchanged.
Images are 8-bit RGB numpy arrays (h, w, 3); kernels are float64 (k, k).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage, signal


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


# -- applying them --------------------------------------------------------------

def blur(image: np.ndarray, kernel: np.ndarray, valid: bool = False) -> np.ndarray:
    """Convolve 8-bit (h, w, 3) -> float64 (values 0-255). `valid`: only
    where the kernel lies wholly inside, (h - k + 1, w - k + 1), as a crop of
    a larger blurred scene; otherwise the same size, the image extended by
    symmetric reflection."""
    pixels = image.astype(np.float64)
    if valid:
        return np.stack([signal.fftconvolve(pixels[..., c], kernel, mode="valid")
                         for c in range(pixels.shape[2])], 2)
    # ndimage.convolve is a true convolution; mode "reflect" is d c b a | a b c d
    return np.stack([ndimage.convolve(pixels[..., c], kernel, mode="reflect")
                     for c in range(pixels.shape[2])], 2)


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


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


def degrade(scene: np.ndarray, kernel: np.ndarray, rng: np.random.Generator,
            recipe: Recipe = Recipe()) -> np.ndarray:
    """A blurry 8-bit photo from a sharp 8-bit `scene` that extends
    (k - 1) / 2 pixels beyond it on every side (k: the kernel's side), so the
    blur at its edges comes from real picture, not from padding."""
    blurred = blur(scene, kernel, valid=True)
    if rng.random() < recipe.noise:
        sigma = rng.uniform(*recipe.noise_sigma)
        grey = rng.random() < recipe.grey_noise
        shape = blurred.shape[:2] + ((1,) if grey else (3,))
        blurred = blurred + rng.normal(0.0, sigma, shape)
    pixels = to_8bit(blurred)
    if rng.random() < recipe.jpeg:
        pixels = jpeg(pixels, rng.integers(recipe.jpeg_quality[0], recipe.jpeg_quality[1] + 1))
    return pixels


# -- the fixed cases: validation during training, and the benchmark ----------------

@dataclass(frozen=True)
class Case:
    title: str
    kernel: np.ndarray
    noise_sigma: float          # in 8-bit levels; 0: none

    def apply(self, sharp: np.ndarray, seed: int = 0) -> np.ndarray:
        """The blurry 8-bit photo, the same size as `sharp` (edges extended by
        symmetric reflection). Noise is seeded: every run sees the same."""
        blurred = blur(sharp, self.kernel)
        if self.noise_sigma:
            blurred = blurred + np.random.default_rng(seed).normal(0.0, self.noise_sigma,
                                                                    blurred.shape)
        return to_8bit(blurred)


FIXED = {
    "gaussian-2": Case("Gaussian blur, sigma 2 px", gaussian(2.0), 0.0),
    "motion-15": Case("linear motion blur, 15 px at 30 degrees", linear_motion(15, 30), 0.0),
    "motion-15+noise": Case("the same motion blur, Gaussian noise sigma 2/255, 8-bit rounding",
                            linear_motion(15, 30), 2.0),
}

SHAVE = 8


def psnr(result: np.ndarray, truth: np.ndarray, shave: int = SHAVE) -> float:
    """PSNR in dB over the RGB values (8-bit range), `shave` pixels off each
    border, as the deblurring literature reports it."""
    a = np.asarray(result, np.float64)[shave:-shave, shave:-shave]
    b = np.asarray(truth, np.float64)[shave:-shave, shave:-shave]
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))
