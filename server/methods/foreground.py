"""Foreground colours for a cut-out: multi-level foreground estimation
(Germer, Uelwer, Conrad and Harmeling, "Fast Multi-Level Foreground
Estimation", ICPR 2020), written for torch.

Where alpha is between 0 and 1 a pixel's colour is a mix of the subject's
and the old background's; a cut-out that keeps the mixed colour shows a
halo of the old background. For every pixel this finds a foreground F and a
background B with alpha F + (1 - alpha) B = I that vary smoothly, except
where alpha changes (the smoothness weight is eps + omega |alpha_i -
alpha_j| between 4-neighbours): each pixel's (F, B) is the least-squares
solution of its compositing equation plus its neighbours' pull, a 2 x 2
system per channel solved in closed form. It starts on a 1 x 1 image and
doubles the size level by level, with many sweeps on the small levels and
a few on the large ones, so colours travel far at little cost.

Deviation: every pixel is updated at once from its neighbours' previous
values (Jacobi), not in place, so the sweep is a handful of tensor ops.

Colours are solved in linear light, where compositing is a true mix.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import pixels

REGULARISATION = 1e-5
GRADIENT_WEIGHT = 1.0
SMALL_SIZE = 32
SMALL_ITERATIONS = 10
BIG_ITERATIONS = 2


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


def _neighbours(x: torch.Tensor) -> list[torch.Tensor]:
    """The four neighbours of every pixel (edges replicated)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return [p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:]]


def _sweep(image, alpha, fg, bg, eps, omega):
    a = alpha
    wsum = torch.zeros_like(a)
    fsum = torch.zeros_like(fg)
    bsum = torch.zeros_like(bg)
    for na, nf, nb in zip(_neighbours(alpha), _neighbours(fg), _neighbours(bg)):
        w = eps + omega * (a - na).abs()
        wsum += w
        fsum += w * nf
        bsum += w * nb
    # [a^2 + W, a(1-a); a(1-a), (1-a)^2 + W] [F; B] = [a I + sum w F_j; (1-a) I + sum w B_j]
    b = 1.0 - a
    a11, a12, a22 = a * a + wsum, a * b, b * b + wsum
    r1, r2 = a * image + fsum, b * image + bsum
    det = a11 * a22 - a12 * a12
    return ((a22 * r1 - a12 * r2) / det).clamp(0, 1), ((a11 * r2 - a12 * r1) / det).clamp(0, 1)


@torch.inference_mode()
def estimate_foreground(image: torch.Tensor, alpha: torch.Tensor,
                        regularisation: float = REGULARISATION,
                        gradient_weight: float = GRADIENT_WEIGHT,
                        linear: bool = True) -> torch.Tensor:
    """image (1, c, h, w) in [0, 1] (sRGB unless linear=False), alpha (1,
    1, h, w) -> the foreground colours, like the image."""
    image = image.float()
    alpha = alpha.float().clamp(0, 1)
    work = srgb_to_linear(image) if linear else image
    height, width = image.shape[-2:]
    levels = max(1, math.ceil(math.log2(max(height, width))))
    fg = work.mean((2, 3), keepdim=True)
    bg = fg.clone()
    for level in range(levels + 1):
        h = max(1, round(height * 2.0 ** (level - levels)))
        w = max(1, round(width * 2.0 ** (level - levels)))
        if (h, w) == (height, width):
            level_image, level_alpha = work, alpha
        else:
            level_image = F.interpolate(work, size=(h, w), mode="area")
            level_alpha = F.interpolate(alpha, size=(h, w), mode="area")
        fg = F.interpolate(fg, size=(h, w), mode="nearest")
        bg = F.interpolate(bg, size=(h, w), mode="nearest")
        sweeps = SMALL_ITERATIONS if max(h, w) <= SMALL_SIZE else BIG_ITERATIONS
        for _ in range(sweeps):
            fg, bg = _sweep(level_image, level_alpha, fg, bg, regularisation, gradient_weight)
    return linear_to_srgb(fg) if linear else fg


BAND_MARGIN = 16   # px of solid colour around the soft band the solver sees


def into_frame(image: np.ndarray, image_format: str, colour_channels: int, alpha: np.ndarray,
               out: np.ndarray, device: torch.device) -> None:
    """The foreground colours of frame `image` given the alpha frame (same
    format), written into `out` (h, w, colour_channels). Only the box around
    the soft band is solved: where alpha is 0 or 1 the colour is the image's
    own."""
    out[...] = image[..., :colour_channels]
    soft = (alpha[..., 0] > 0) & (alpha[..., 0] < pixels.FULL_SCALE[image_format])
    rows, cols = np.flatnonzero(soft.any(1)), np.flatnonzero(soft.any(0))
    if not len(rows):
        return
    height, width = alpha.shape[:2]
    top, bottom = max(rows[0] - BAND_MARGIN, 0), min(rows[-1] + 1 + BAND_MARGIN, height)
    left, right = max(cols[0] - BAND_MARGIN, 0), min(cols[-1] + 1 + BAND_MARGIN, width)
    box = (slice(top, bottom), slice(left, right))
    colour = pixels.to_tensor(image[box], image_format, device)[:, :colour_channels]
    a = pixels.to_tensor(alpha[box], image_format, device)
    fg = estimate_foreground(colour, a)
    # Opaque pixels are their own colour exactly, and transparent ones keep
    # theirs (any colour is right there): only the soft band changes.
    fg = torch.where((a > 0) & (a < 1), fg, colour)
    pixels.store(fg[0].permute(1, 2, 0).cpu().numpy(), out[box], image_format)
