"""What real thumbnails suffer, and how a restoration of them is measured.

Training (scripts/train_sr.py) draws random degradations from `degrade`; the
benchmark (bench/sr_quality.py) and the validation during training use the
two fixed ones in `FIXED`, and both judge the result with `y_psnr` and
`ssim`, so a number in the training log and a number in the benchmark mean
the same thing.

The random pipeline follows Real-ESRGAN's idea (Wang et al., ICCVW 2021) of
a "second-order" degradation, a first round of blur, resize, noise and JPEG
followed, sometimes, by a second, because a thumbnail has usually been
resized and re-saved more than once. It is milder than Real-ESRGAN's: SharpFu's
default flavour is held to fidelity (PSNR), and thumbnails are small and
compressed rather than badly blurred, so most samples get one antialiased
downscale (bicubic, area or Lanczos, as image editors and web sites do) and a
JPEG save, some get mild blur and noise, and a share are left clean so that
clean inputs are not smoothed.

Everything works on 8-bit RGB numpy arrays (h, w, 3) or PIL images, as the
files themselves are.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

KERNELS = {"bicubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX,
           "lanczos": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class Recipe:
    """Probabilities and ranges of the random degradations."""
    blur: float = 0.25              # chance of a Gaussian blur before a resize
    blur_sigma: tuple[float, float] = (0.3, 1.2)     # in pixels of the image blurred
    noise: float = 0.2
    noise_sigma: tuple[float, float] = (1.0, 8.0)     # in 8-bit levels
    grey_noise: float = 0.4         # share of noise that is luminance only
    jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (30, 95)
    second_order: float = 0.2       # chance of a second round (resize, noise, JPEG)

    def describe(self) -> dict:
        return {"kernels": sorted(KERNELS), **self.__dict__}


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def add_noise(image: Image.Image, sigma: float, grey: bool,
              rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, np.float32)
    shape = pixels.shape[:2] + ((1,) if grey else (3,))
    pixels = pixels + rng.normal(0.0, sigma, shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def _round(image: Image.Image, size: tuple[int, int], recipe: Recipe,
           rng: np.random.Generator) -> Image.Image:
    if rng.random() < recipe.blur:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*recipe.blur_sigma)))
    kernel = KERNELS[rng.choice(sorted(KERNELS))]
    image = image.resize(size, kernel)
    if rng.random() < recipe.noise:
        image = add_noise(image, rng.uniform(*recipe.noise_sigma), rng.random() < recipe.grey_noise,
                          rng)
    if rng.random() < recipe.jpeg:
        image = jpeg(image, rng.integers(recipe.jpeg_quality[0], recipe.jpeg_quality[1] + 1))
    return image


def degrade(hr: Image.Image, scale: int, rng: np.random.Generator,
            recipe: Recipe = Recipe()) -> Image.Image:
    """A random low-resolution version of `hr` (whose sides are multiples of
    `scale`), exactly 1/scale of its size and aligned with it pixel centre
    to pixel centre, as Pillow's resize keeps the image extents."""
    size = (hr.width // scale, hr.height // scale)
    if rng.random() < recipe.second_order:
        # First round to a random size between the two, then down to the target.
        factor = rng.uniform(1.0, float(scale))
        middle = (max(size[0], round(hr.width / factor)), max(size[1], round(hr.height / factor)))
        hr = _round(hr, middle, recipe, rng)
    return _round(hr, size, recipe, rng)


# -- the benchmark's two fixed degradations ---------------------------------------

def bicubic(hr: Image.Image, scale: int) -> Image.Image:
    return hr.resize((hr.width // scale, hr.height // scale), Image.Resampling.BICUBIC)


def lanczos_jpeg75(hr: Image.Image, scale: int) -> Image.Image:
    return jpeg(hr.resize((hr.width // scale, hr.height // scale), Image.Resampling.LANCZOS), 75)


FIXED = {"bicubic": bicubic, "lanczos+jpeg75": lanczos_jpeg75}
FIXED_TITLES = {"bicubic": "Pillow BICUBIC downscale",
                "lanczos+jpeg75": "Pillow LANCZOS downscale, then JPEG quality 75"}


def crop_to_multiple(image: Image.Image, scale: int) -> Image.Image:
    width, height = image.width - image.width % scale, image.height - image.height % scale
    return image.crop((0, 0, width, height))


# -- measures ---------------------------------------------------------------------

SHAVE = 2


def luma(pixels: np.ndarray) -> np.ndarray:
    """BT.601 luma of 8-bit RGB in [16, 235], as the SR literature measures it
    (MATLAB's rgb2ycbcr)."""
    rgb = pixels.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _shaved_luma(pixels: np.ndarray) -> np.ndarray:
    y = luma(np.asarray(pixels))
    return y[SHAVE:-SHAVE, SHAVE:-SHAVE]


def y_psnr(result, truth) -> float:
    """PSNR in dB of the BT.601 luma, `SHAVE` pixels shaved off each border."""
    a, b = _shaved_luma(result), _shaved_luma(truth)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(result, truth) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window of sigma 1.5, K1 0.01,
    K2 0.03) of the shaved BT.601 luma, over the valid part of the image."""
    a = torch.from_numpy(_shaved_luma(result))[None, None]
    b = torch.from_numpy(_shaved_luma(truth))[None, None]
    window = _gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a ** 2
    var_b = F.conv2d(b * b, window) - mu_b ** 2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
             / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    return float(value.mean())
