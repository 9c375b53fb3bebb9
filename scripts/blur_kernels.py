"""Blurry photos made from sharp ones: the blur kernels a camera produces,
then what the camera and the file do to the blurred picture.

Training (scripts/train_deblur.py) draws random degradations from
`degrade`; the benchmark (bench/deblur_quality.py) and the validation during
training use the three fixed cases in `FIXED`, and both measure with `psnr`,
so a number in the training log and a number in the benchmark mean the same
thing.

The kernels and their random recipe live in server/blur_kernels.py (the
server re-blurs the user's images with them when it adapts the deblurrer);
they are re-exported here, so that training and the benchmarks read one
module.

After the blur come sensor noise (Gaussian, part of it luminance only), the
8-bit rounding every file has, and sometimes a JPEG save. A share of the
samples stays sharp, so that a sharp photo comes back unchanged.
Images are 8-bit RGB numpy arrays (h, w, 3); kernels are float64 (k, k).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage, signal

from server.blur_kernels import (Recipe, camera_shake, disc, gaussian, identity,  # noqa: F401
                                 largest_radius, linear_motion, random_kernel)


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
