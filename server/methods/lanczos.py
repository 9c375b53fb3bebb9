"""Lanczos-3 resampling by an integer factor: the classical upscaler."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import ImageMethod

TAPS = 3


def lanczos(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    pix = math.pi * x
    safe = torch.where(x == 0, torch.ones_like(x), pix)
    value = TAPS * torch.sin(safe) * torch.sin(safe / TAPS) / (safe * safe)
    return torch.where(x == 0, torch.ones_like(x), torch.where(x < TAPS, value, torch.zeros_like(x)))


def phase_kernels(scale: int) -> torch.Tensor:
    """(scale, 2 * TAPS + 1) normalised weights: output pixel s * q + p sits at
    input position q + (p + 0.5) / scale - 0.5 (pixel centres aligned, as
    GIMP and Pillow do), and takes taps q - TAPS .. q + TAPS."""
    offsets = torch.arange(-TAPS, TAPS + 1, dtype=torch.float64)
    kernels = []
    for p in range(scale):
        centre = (p + 0.5) / scale - 0.5
        weights = lanczos(centre - offsets)
        kernels.append(weights / weights.sum())
    return torch.stack(kernels).float()


def upscale_axis(x: torch.Tensor, scale: int, dim: int) -> torch.Tensor:
    """Upscale (n, c, h, w) along h (dim=2) or w (dim=3)."""
    n, c, h, w = x.shape
    kernels = phase_kernels(scale).to(x.device, x.dtype)
    flat = x.reshape(n * c, 1, h, w)
    if dim == 2:
        padded = F.pad(flat, (0, 0, TAPS, TAPS), mode="replicate")
        out = F.conv2d(padded, kernels[:, None, :, None])        # (nc, s, h, w)
        out = out.permute(0, 2, 1, 3).reshape(n, c, h * scale, w)
    else:
        padded = F.pad(flat, (TAPS, TAPS, 0, 0), mode="replicate")
        out = F.conv2d(padded, kernels[:, None, None, :])        # (nc, s, h, w)
        out = out.permute(0, 2, 3, 1).reshape(n, c, h, w * scale)
    return out


def upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    if scale == 1:
        return x
    return upscale_axis(upscale_axis(x, scale, 2), scale, 3)


class Lanczos(ImageMethod):
    name = "lanczos"
    title = "Lanczos-3 resampling"
    description = "Classical interpolation (not AI): smooth and free of blocks, but adds no detail."
    ops = ("upscale", "sharpen")
    scales = (2, 4)
    margin = TAPS + 1
    bytes_per_pixel = 48.0

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return upscale(x, scale)
