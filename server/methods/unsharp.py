"""Unsharp masking: the classical sharpener used for deblur until a trained
deblurring network is installed."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import ImageMethod

SIGMA = 1.6
AMOUNT = 0.8


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    n, c, h, w = x.shape
    kernel = gaussian_kernel(sigma).to(x.device, x.dtype)
    radius = kernel.numel() // 2
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel[None, None, :, None])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel[None, None, None, :])
    return flat.reshape(n, c, h, w)


class UnsharpMask(ImageMethod):
    name = "unsharp"
    title = "Unsharp mask"
    description = ("Classical sharpening (not AI): boosts edge contrast by %.1f x the detail above "
                   "a Gaussian of sigma %.1f px; cannot undo real blur." % (AMOUNT, SIGMA))
    ops = ("deblur", "sharpen")
    scales = (1,)
    margin = math.ceil(3 * SIGMA) + 1
    bytes_per_pixel = 48.0

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        detail = x - gaussian_blur(x, SIGMA)
        return x + AMOUNT * detail
