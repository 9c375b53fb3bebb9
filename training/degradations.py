"""What photos suffer, in one place: the degradations SharpFu's networks are
trained to undo, the fixed cases its benchmarks measure them on, and the
pairs adaptation cuts from the user's own images (server/adaptation/).

Two families:

* Thumbnails (the upscaler): a photo reduced by an antialiased resize
  (bicubic, area or Lanczos, as image editors and web sites do), sometimes
  after a mild blur, then sometimes noise and a JPEG save, and now and then
  all of it twice ("second order", after Real-ESRGAN, Wang et al. ICCVW
  2021: a thumbnail has usually been resized and re-saved more than once).
  Milder than Real-ESRGAN's, because the default upscaler is held to
  fidelity: a share of the samples stays clean so clean inputs are not
  smoothed.
* Blur (the deblurrer): a blur kernel a camera produces, then sensor noise
  (part of it luminance only), the 8-bit rounding every file has, and
  sometimes JPEG. The kernels:
  - camera shake: a random camera trajectory, after Boracchi and Foi
    ("Modeling the performance of image restoration from motion blur", IEEE
    TIP 2012): a path with inertia, a random pull (the hand's "anxiety") and
    occasional sudden jerks, drawn with sub-pixel (bilinear) weights; some
    are straight lines, as from a steady pan;
  - defocus: a uniform disc (an aperture out of focus), antialiased;
  - Gaussian blur, round or elongated: soft lenses, atmosphere, and the blur
    every resampler adds.
  Every kernel sums to one and has its centre of mass on its centre pixel,
  so blurring does not move the picture. Kernels are float64 (k, k), k odd.

The server imports this module (adaptation re-degrades the user's images
the way the network's training photos were), so it needs nothing beyond
the server's own packages: numpy, Pillow and torch. Images are 8-bit RGB
numpy arrays (h, w, 3) or PIL images, as the files themselves are.
"""
from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter


# -- what every file goes through ----------------------------------------------------

def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """A JPEG round trip at `quality`."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def add_noise(pixels: np.ndarray, sigma: float, grey: bool,
              rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of `sigma` 8-bit levels on float pixels (h, w, 3):
    the same in every channel (luminance only) when `grey`."""
    shape = pixels.shape[:2] + ((1,) if grey else (3,))
    return pixels + rng.normal(0.0, sigma, shape)


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def _from_record(recipe_class, record: dict | None, recipe: dict | None):
    """A recipe from the dict a weights record holds (unknown fields are
    ignored, lists become the tuples the fields are)."""
    recipe = recipe if isinstance(recipe, dict) else {}
    fields = {f.name for f in dataclasses.fields(recipe_class)}
    return recipe_class(**{key: tuple(value) if isinstance(value, list) else value
                           for key, value in recipe.items() if key in fields})


def _training_data(record: dict | None) -> dict:
    return ((record or {}).get("training") or {}).get("data") or {}


# -- thumbnails --------------------------------------------------------------------------

RESIZE_KERNELS = {"bicubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX,
                  "lanczos": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class ThumbnailRecipe:
    """Probabilities and ranges of the random thumbnail degradations."""
    blur: float = 0.25              # chance of a Gaussian blur before a resize
    blur_sigma: tuple[float, float] = (0.3, 1.2)     # in pixels of the image blurred
    noise: float = 0.2
    noise_sigma: tuple[float, float] = (1.0, 8.0)     # in 8-bit levels
    grey_noise: float = 0.4         # share of noise that is luminance only
    jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (30, 95)
    second_order: float = 0.2       # chance of a second round (resize, noise, JPEG)

    def describe(self) -> dict:
        return {"kernels": sorted(RESIZE_KERNELS), **self.__dict__}

    @classmethod
    def of(cls, record: dict | None) -> "ThumbnailRecipe":
        """The recipe an upscaler was trained with last, from its weights
        record (the final entry of its recipe changes, else its recipe);
        the default for weights without one."""
        data = _training_data(record)
        changes = data.get("recipe_changes") or []
        return _from_record(cls, record, changes[-1].get("recipe") if changes
                            else data.get("recipe"))


def _thumbnail_round(image: Image.Image, size: tuple[int, int], recipe: ThumbnailRecipe,
                     rng: np.random.Generator) -> Image.Image:
    if rng.random() < recipe.blur:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*recipe.blur_sigma)))
    image = image.resize(size, RESIZE_KERNELS[rng.choice(sorted(RESIZE_KERNELS))])
    if rng.random() < recipe.noise:
        sigma = rng.uniform(*recipe.noise_sigma)
        grey = rng.random() < recipe.grey_noise
        image = Image.fromarray(to_8bit(add_noise(np.asarray(image, np.float64), sigma, grey,
                                                  rng)))
    if rng.random() < recipe.jpeg:
        image = jpeg(image, rng.integers(recipe.jpeg_quality[0], recipe.jpeg_quality[1] + 1))
    return image


def thumbnail(hr: Image.Image, scale: int, rng: np.random.Generator,
              recipe: ThumbnailRecipe = ThumbnailRecipe()) -> Image.Image:
    """A random thumbnail of `hr` (whose sides are multiples of `scale`),
    exactly 1/scale of its size and aligned with it pixel centre to pixel
    centre, as Pillow's resize keeps the image extents."""
    size = (hr.width // scale, hr.height // scale)
    if rng.random() < recipe.second_order:
        # First round to a random size between the two, then down to the target.
        factor = rng.uniform(1.0, float(scale))
        middle = (max(size[0], round(hr.width / factor)), max(size[1], round(hr.height / factor)))
        hr = _thumbnail_round(hr, middle, recipe, rng)
    return _thumbnail_round(hr, size, recipe, rng)


def bicubic(hr: Image.Image, scale: int) -> Image.Image:
    return hr.resize((hr.width // scale, hr.height // scale), Image.Resampling.BICUBIC)


def lanczos_jpeg75(hr: Image.Image, scale: int) -> Image.Image:
    return jpeg(hr.resize((hr.width // scale, hr.height // scale), Image.Resampling.LANCZOS), 75)


# The two fixed thumbnails of the upscaler's validation and benchmark.
THUMBNAIL_CASES = {"bicubic": bicubic, "lanczos+jpeg75": lanczos_jpeg75}
THUMBNAIL_TITLES = {"bicubic": "Pillow BICUBIC downscale",
                    "lanczos+jpeg75": "Pillow LANCZOS downscale, then JPEG quality 75"}


def crop_to_multiple(image: Image.Image, scale: int) -> Image.Image:
    width, height = image.width - image.width % scale, image.height - image.height % scale
    return image.crop((0, 0, width, height))


# -- blur kernels ------------------------------------------------------------------------

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
class BlurRecipe:
    """Probabilities and ranges of the random blur degradations (kernel
    shares are relative weights)."""
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

    @classmethod
    def of(cls, record: dict | None) -> "BlurRecipe":
        """The recipe a deblurrer was trained with (its weights record's);
        the default for a checkpoint without a record."""
        return _from_record(cls, record, _training_data(record).get("recipe"))


def random_kernel(rng: np.random.Generator,
                  recipe: BlurRecipe = BlurRecipe()) -> tuple[np.ndarray, str]:
    """A kernel and a short description of it."""
    kinds = ("shake", "linear", "defocus", "gaussian", "sharp")
    shares = np.array([getattr(recipe, k) for k in kinds], np.float64)
    kind = kinds[rng.choice(len(kinds), p=shares / shares.sum())]
    if kind == "shake":
        length = rng.uniform(*recipe.motion_length)
        kernel = camera_shake(rng, length)
        while kernel.shape[0] // 2 > largest_radius(recipe):   # a rare lopsided path
            kernel = camera_shake(rng, length)
        return kernel, "shake %.1f px" % length
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


def largest_radius(recipe: BlurRecipe) -> int:
    """(k - 1) / 2 at most for any kernel `random_kernel` draws with
    `recipe`: how much picture beyond a crop its blur reads."""
    motion = math.ceil(recipe.motion_length[1] / 2) + 2
    defocus = math.ceil(recipe.defocus_radius[1]) + 1
    blur = math.ceil(3.5 * recipe.gaussian_sigma[1])
    return int(max(motion, defocus, blur))


# -- blurring a photo --------------------------------------------------------------------

def blur(image: np.ndarray, kernel: np.ndarray, valid: bool = False) -> np.ndarray:
    """Convolve (h, w, c) 8-bit or float pixels with `kernel` -> float64
    (values in the input's range). `valid`: only where the kernel lies wholly
    inside, (h - k + 1, w - k + 1), as a crop of a larger blurred scene;
    otherwise the same size, the image extended by symmetric reflection
    (d c b a | a b c d). A true convolution, through the FFT in float64."""
    radius = kernel.shape[0] // 2
    pixels = np.asarray(image, np.float64)
    if not valid:
        pixels = np.pad(pixels, ((radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
    height, width = x.shape[-2:]
    k = kernel.shape[0]
    size = (height + k - 1, width + k - 1)
    spectrum = torch.fft.rfft2(x, s=size) * torch.fft.rfft2(torch.from_numpy(kernel), s=size)
    full = torch.fft.irfft2(spectrum, s=size)
    return full[:, k - 1:height, k - 1:width].permute(1, 2, 0).numpy()


def blurred_photo(scene: np.ndarray, kernel: np.ndarray, rng: np.random.Generator,
                  recipe: BlurRecipe = BlurRecipe()) -> np.ndarray:
    """A blurry 8-bit photo from a sharp 8-bit `scene` that extends
    (k - 1) / 2 pixels beyond it on every side (k: the kernel's side), so the
    blur at its edges comes from real picture, not from padding."""
    blurred = blur(scene, kernel, valid=True)
    if rng.random() < recipe.noise:
        sigma = rng.uniform(*recipe.noise_sigma)
        blurred = add_noise(blurred, sigma, rng.random() < recipe.grey_noise, rng)
    pixels = to_8bit(blurred)
    if rng.random() < recipe.jpeg:
        quality = rng.integers(recipe.jpeg_quality[0], recipe.jpeg_quality[1] + 1)
        pixels = np.asarray(jpeg(Image.fromarray(pixels), quality))
    return pixels


@dataclass(frozen=True)
class BlurCase:
    """A fixed blur of the deblurrer's validation and benchmark."""
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


BLUR_CASES = {
    "gaussian-2": BlurCase("Gaussian blur, sigma 2 px", gaussian(2.0), 0.0),
    "motion-15": BlurCase("linear motion blur, 15 px at 30 degrees", linear_motion(15, 30), 0.0),
    "motion-15+noise": BlurCase("the same motion blur, Gaussian noise sigma 2/255, 8-bit "
                                "rounding", linear_motion(15, 30), 2.0),
}

# Non-linear camera shake for the deblurring benchmark (issue 17): a random
# trajectory per photo (camera_shake: inertia, pull, jerks, after Boracchi
# and Foi), its kernel's support 21 to 31 px, then Gaussian noise of sigma
# 1/255 and 8-bit rounding. Its seeds are used by nothing else: no training
# draws from them, and the blind estimation was tuned on other kernels and
# photos.
SHAKE_SUPPORT = (21, 31)
SHAKE_NOISE = 1.0
SHAKE_SEED = 20_170_517


def shake_case(index: int) -> BlurCase:
    """The benchmark's camera shake for its `index`-th photo; apply it with
    seed SHAKE_SEED + index."""
    rng = np.random.default_rng(SHAKE_SEED + index)
    while True:
        kernel = camera_shake(rng, rng.uniform(25.0, 45.0))
        if SHAKE_SUPPORT[0] <= kernel.shape[0] <= SHAKE_SUPPORT[1]:
            return BlurCase("non-linear camera shake, %d px support, Gaussian noise sigma "
                            "1/255, 8-bit rounding" % kernel.shape[0], kernel, SHAKE_NOISE)


# The deblurring benchmark's cases (bench/deblur_quality.py): the fixed
# three, then camera shake.
DEBLUR_BENCHMARK_CASES = tuple(BLUR_CASES) + ("camera-shake",)
