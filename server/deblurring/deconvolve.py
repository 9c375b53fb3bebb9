"""Non-blind deconvolution with a learned prior: plug-and-play half-quadratic
splitting, as in DPIR (Zhang, Li, Zuo, Zhang, Van Gool and Timofte,
"Plug-and-Play Image Restoration with Deep Denoiser Prior", TPAMI 2021).

    min over x of  ||M (k * x - y)||^2 / (2 sigma_n^2) + R(x)

is split with an auxiliary z (x = z) whose weight rho grows from one
iteration to the next; each iteration solves a least-squares problem in x
(the data, in the Fourier domain) and a denoising problem in z (the prior:
the denoiser at noise level sigma_i = sqrt(lambda / rho) sigma_n), the
levels falling geometrically from 49/255 to the photo's own noise.

Borders and clipped highlights. The Fourier transform treats the picture as
periodic, and a blurred photo is not: its edges were blurred with picture
that lies outside the frame. So x lives on a larger canvas than y, and the
data term covers only the pixels that were observed (the mask M: 0 in the
margin, and 0 where the sensor clipped, since a clipped pixel does not say
what the blur made of it). The mask breaks the Fourier closed form, so the
data term is split once more, with v = k * x:

    ||M (v - y)||^2 + alpha ||v - k * x||^2

whose v is a per-pixel average and whose x is again a Fourier division
(Almeida and Figueiredo's, and Matakos, Ramani and Fessler's, way of
deconvolving without boundary artefacts). What lies outside the frame is
filled in by the prior and by what the blur says about it, so the borders
do not ring, and nothing is assumed about the picture beyond its frame.

Images are float32 (c, h, w) tensors in [0, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import fourier

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]     # (c, h, w), sigma -> (c, h, w)


@dataclass(frozen=True)
class Settings:
    iterations: int = 8
    sigma_start: float = 49.0 / 255.0   # the first denoising level
    lam: float = 0.23                   # DPIR's trade-off between data and prior
    alpha: float = 1.0                  # weight of v = k * x in the masked data term
    inner: int = 2                      # v, x alternations per iteration
    noise_floor: float = 1.0 / 255.0    # sigma_n is never taken smaller than this
    multiple: int = 8                   # canvas sides divide by it (the denoiser's need)


def canvas_size(length: int, kernel: int, multiple: int) -> int:
    """A side for the canvas: the image, a kernel's reach on each side (so
    that the circular blur of the canvas never mixes opposite borders into an
    observed pixel), a little more, and then fast for the FFT and a multiple
    of `multiple`."""
    n = length + 2 * (kernel // 2) + 2 * multiple
    while True:
        n = fourier.fast_size(n)
        if n % multiple == 0:
            return n
        n += 1


def deconvolve(blurry: torch.Tensor, kernel: torch.Tensor, denoiser: Denoiser,
               noise_sigma: float, valid: torch.Tensor | None = None,
               settings: Settings = Settings(),
               step: Callable[[int, int], None] = lambda done, total: None) -> torch.Tensor:
    """The sharp image behind `blurry`, given its blur `kernel` and the
    standard deviation of its noise (in [0, 1] units). `valid` (h, w) is 0
    where pixels must not count (clipped); `step(i, n)` after each
    iteration (it may raise to cancel)."""
    channels, height, width = blurry.shape
    size = kernel.shape[-1]
    canvas = (canvas_size(height, size, settings.multiple),
              canvas_size(width, size, settings.multiple))
    top = (canvas[0] - height) // 2
    left = (canvas[1] - width) // 2
    place = (left, canvas[1] - width - left, top, canvas[0] - height - top)
    observed = F.pad(blurry.new_ones(1, height, width) if valid is None else
                     valid.to(blurry)[None], place)
    y = F.pad(blurry, place)
    # a starting point that is continuous across the frame: the photo
    # extended by reflection (then replicated, where the margin is wider)
    x = extend(blurry, place)

    k = fourier.otf(kernel.to(blurry), canvas)
    k2 = k.abs() ** 2
    sigma_n = max(noise_sigma, settings.noise_floor)
    sigmas = torch.logspace(math.log10(max(settings.sigma_start, sigma_n)), math.log10(sigma_n),
                            settings.iterations).tolist()
    alpha = settings.alpha
    # Minimising over v leaves alpha / (1 + alpha) of the data term where M is
    # 1: rho is scaled by as much, so that the balance is DPIR's
    # (rho = lambda sigma_n^2 / sigma_i^2).
    share = alpha / (1.0 + alpha)
    my = observed * y
    for i, sigma in enumerate(sigmas):
        rho = settings.lam * sigma_n ** 2 / sigma ** 2 * share
        z = x
        fz = torch.fft.rfft2(z)
        for _ in range(settings.inner):
            kx = torch.fft.irfft2(torch.fft.rfft2(x) * k, s=canvas)
            v = (my + alpha * kx) / (observed + alpha)
            fx = (alpha * torch.conj(k) * torch.fft.rfft2(v) + rho * fz) / (alpha * k2 + rho)
            x = torch.fft.irfft2(fx, s=canvas)
        x = denoiser(x, sigma)
        step(i + 1, len(sigmas))
    return x[:, top:top + height, left:left + width]


def extend(image: torch.Tensor, place: tuple[int, int, int, int]) -> torch.Tensor:
    """(c, h, w) padded by (left, right, top, bottom): reflected as far as
    the image allows, replicated beyond."""
    height, width = image.shape[-2:]
    reach = [min(p, (width if i < 2 else height) - 1) for i, p in enumerate(place)]
    out = F.pad(image[None], tuple(reach), mode="reflect")
    rest = tuple(p - r for p, r in zip(place, reach))
    if any(rest):
        out = F.pad(out, rest, mode="replicate")
    return out[0]
