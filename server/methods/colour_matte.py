"""Local colour-line matting: the classical matte refiner used until a
trained one is installed.

A band around the coarse mask's edge is treated as unknown; everything
further in is foreground and further out background. Each unknown pixel's
alpha is where its colour falls on the line between the mean foreground and
the mean background colour nearby (the colour-line model that closed-form
matting also rests on, here solved locally rather than globally). It moves a
mask that is a few pixels off onto the image's edges and gives edges a soft,
anti-aliased profile; it cannot recover hair strands.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import MatteMethod

BAND = 8        # pixels either side of the mask's edge that may be wrong
WINDOW = 16     # radius of the neighbourhood whose colours are averaged


def box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, shrunk at the borders; separable, so its
    cost does not grow with the square of the radius."""
    size = 2 * radius + 1
    x = F.avg_pool2d(x, (size, 1), stride=1, padding=(radius, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, size), stride=1, padding=(0, radius), count_include_pad=False)


def colour_line_matte(image: torch.Tensor, mask: torch.Tensor, band: int = BAND,
                      window: int = WINDOW) -> torch.Tensor:
    """image (1, 3, h, w), mask (1, 1, h, w) in [0, 1] -> alpha (1, 1, h, w)."""
    hard = (mask > 0.5).float()
    size = 2 * band + 1
    foreground = -F.max_pool2d(-hard, size, stride=1, padding=band)       # eroded
    background = 1.0 - F.max_pool2d(hard, size, stride=1, padding=band)   # outside the dilation
    fg_weight = box(foreground, window)
    bg_weight = box(background, window)
    fg_colour = box(image * foreground, window) / fg_weight.clamp_min(1e-6)
    bg_colour = box(image * background, window) / bg_weight.clamp_min(1e-6)
    line = fg_colour - bg_colour
    length2 = (line * line).sum(1, keepdim=True)
    projected = ((image - bg_colour) * line).sum(1, keepdim=True) / (length2 + 1e-4)
    # Where one side is missing nearby, or both look alike, colour says
    # nothing: keep the user's mask there.
    usable = (fg_weight > 1e-3) & (bg_weight > 1e-3) & (length2 > 1e-3)
    unknown = (foreground < 0.5) & (background < 0.5)
    return torch.where(unknown & usable, projected.clamp(0.0, 1.0), mask)


class ColourLineMatte(MatteMethod):
    name = "colour-line"
    title = "Local colour-line matting"
    description = ("Classical (not AI): snaps the mask's edge onto the image's edges within %d px "
                   "and softens it by colour; no hair-level detail." % BAND)
    ops = ("matte",)
    margin = BAND + WINDOW + 1
    bytes_per_pixel = 200.0

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return colour_line_matte(image, mask)
