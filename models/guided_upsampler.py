"""Guided upsampling of an alpha matte to full resolution, after FeatSharp
(Ranzinger et al., "FeatSharp: Your Vision Model Features, Sharper", arXiv
2502.16025).

FeatSharp brings a low-resolution model output to high resolution in two
parts, mixed by a learned attention: a joint-bilateral upsampling stack
(FeatUp's JBU), which follows the full-resolution image's edges but cannot
invent detail finer than its input, and tiles of the full-resolution input,
which hold that detail. Here the low-resolution output is the refiner's alpha
at its working resolution (about a megapixel), and:

* the JBU step: each full-resolution pixel's alpha is a weighted mean of the
  (2 WINDOW + 1)^2 working-resolution alphas around it, weighted by spatial
  distance (a Gaussian of learned width) times colour likeness (a learned
  pointwise embedding of the full-resolution pixel against that of each
  working-resolution pixel, with a learned temperature), normalised. Any
  scale factor, not only powers of two;
* the detail step: a small convolutional network on full-resolution tiles,
  seeing the image and the JBU alpha, proposes a sharper alpha and a gate
  (FeatSharp's attention between the two) saying where to take it. It is
  confined to the uncertain band (within RADIUS px of a JBU alpha strictly
  between 0 and 1), so all-foreground and all-background tiles cost nothing.

Every layer is unpadded: a full-resolution tile computed with RADIUS px of
context (replicated at the image's edges, as for the whole image) equals the
same pixels of the untiled result, so the server's tiler cuts it without
seams (server/methods/mask_refiner.py).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

WINDOW = 1          # working-resolution neighbours each side (3 x 3: at 5x, +-7 px)
SNAP = 1.0 / 512    # working alphas this close to 0 or 1 count as exactly 0 or 1


class GuidedUpsampler(nn.Module):
    RADIUS = 4      # full-resolution context of the detail step (four unpadded 3x3)

    def __init__(self, guide: int = 8, channels: int = 16):
        super().__init__()
        self.guide = nn.Sequential(nn.Conv2d(3, 16, 1), nn.LeakyReLU(0.1), nn.Conv2d(16, guide, 1))
        self.log_sigma = nn.Parameter(torch.tensor(math.log(0.8)))
        self.log_range = nn.Parameter(torch.tensor(0.0))
        self.detail = nn.Sequential(
            nn.Conv2d(3 + 2, channels, 3), nn.LeakyReLU(0.1),
            nn.Conv2d(channels, channels, 3), nn.LeakyReLU(0.1),
            nn.Conv2d(channels, channels, 3), nn.LeakyReLU(0.1),
            nn.Conv2d(channels, 2, 3))
        nn.init.zeros_(self.detail[-1].weight)
        nn.init.zeros_(self.detail[-1].bias)

    def jbu(self, image: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, size: tuple,
            alpha_lo: torch.Tensor, guide_lo: torch.Tensor) -> torch.Tensor:
        """Alpha at full-resolution pixels rows x cols (their coordinates in
        an image of `size`), whose colours are `image` (n, 3, len(rows),
        len(cols))."""
        height, width = size
        low_h, low_w = alpha_lo.shape[-2:]
        # pixel centres in working-resolution coordinates
        uy = (rows.float() + 0.5) * (low_h / height) - 0.5
        ux = (cols.float() + 0.5) * (low_w / width) - 0.5
        ny, nx = torch.round(uy).long(), torch.round(ux).long()
        guide_hi = self.guide(image - 0.5)
        inv_two_sigma2 = 0.5 * torch.exp(-2 * self.log_sigma)
        temperature = torch.exp(self.log_range)
        logits, values = [], []
        for oy in range(-WINDOW, WINDOW + 1):
            iy = (ny + oy).clamp(0, low_h - 1)
            dy2 = ((iy.float() - uy) ** 2)[:, None]
            g_rows, a_rows = guide_lo[:, :, iy], alpha_lo[:, :, iy]
            for ox in range(-WINDOW, WINDOW + 1):
                ix = (nx + ox).clamp(0, low_w - 1)
                dx2 = ((ix.float() - ux) ** 2)[None, :]
                difference = guide_hi - g_rows[:, :, :, ix]
                logits.append(-(dy2 + dx2) * inv_two_sigma2
                              - temperature * (difference * difference).sum(1))
                values.append(a_rows[:, 0, :, ix])
        weights = torch.softmax(torch.stack(logits, 1), 1)
        return (weights * torch.stack(values, 1)).sum(1, keepdim=True)

    def low_guide(self, image_lo: torch.Tensor) -> torch.Tensor:
        """The guide features of the working-resolution image, computed once
        for all tiles."""
        return self.guide(image_lo - 0.5)

    def forward(self, image: torch.Tensor, alpha_lo: torch.Tensor, guide_lo: torch.Tensor,
                origin: tuple = (0, 0), size: tuple | None = None) -> torch.Tensor:
        """image (n, 3, h + 2R, w + 2R): full-resolution pixels of the region
        at `origin` (top, left) with R = RADIUS px of context each side
        (replicated beyond the image's edges); alpha_lo (n, 1, hl, wl): the
        working-resolution alpha, whole; guide_lo: low_guide() of the
        working-resolution image; size: the full image's (height, width),
        default the region's. -> alpha (n, 1, h, w)."""
        r = self.RADIUS
        h, w = image.shape[-2] - 2 * r, image.shape[-1] - 2 * r
        size = size or (h, w)
        rows = (torch.arange(-r, h + r, device=image.device) + origin[0]).clamp(0, size[0] - 1)
        cols = (torch.arange(-r, w + r, device=image.device) + origin[1]).clamp(0, size[1] - 1)
        alpha_lo = snap(alpha_lo)
        smooth = self.jbu(image, rows, cols, size, alpha_lo, guide_lo)
        uncertain = ((smooth > SNAP) & (smooth < 1 - SNAP)).float()
        band = F.max_pool2d(uncertain, 2 * r + 1, stride=1)
        proposal, gate = self.detail(torch.cat([image - 0.5, smooth - 0.5,
                                                uncertain - 0.5], 1)).split(1, 1)
        smooth = smooth[..., r:-r, r:-r]
        sharp = torch.sigmoid(torch.logit(smooth.clamp(1e-4, 1 - 1e-4)) + proposal)
        return (smooth + band * torch.sigmoid(gate) * (sharp - smooth)).clamp(0.0, 1.0)


def snap(alpha: torch.Tensor, level: float = SNAP) -> torch.Tensor:
    """Working alphas within `level` of 0 or 1 become exactly that, so regions
    wholly inside or outside the subject are exact and can be skipped."""
    return torch.where(alpha < level, torch.zeros_like(alpha),
                       torch.where(alpha > 1 - level, torch.ones_like(alpha), alpha))


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
