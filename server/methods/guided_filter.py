"""The guided filter (He, Sun and Tang, "Guided Image Filtering", PAMI 2013)
of the coarse mask, with the image as guide: within every window the mask
is fitted by an affine function of colour, and each pixel takes the mean of
its windows' fits. Edges of the mask that are a few pixels off snap to the
image's edges and get a soft, colour-following profile; nothing farther off
moves. A fast classical matte, and the benchmark's simplest peer.
"""
from __future__ import annotations

import torch

from . import MatteMethod
from .laplacian_matte import colour_model

RADIUS = 8
EPSILON = 1e-3


def guided_filter(image: torch.Tensor, mask: torch.Tensor, radius: int = RADIUS,
                  eps: float = EPSILON) -> torch.Tensor:
    """image (1, 3, h, w), mask (1, 1, h, w) -> the filtered mask in [0, 1]."""
    a, b = colour_model(image, mask, eps, radius)
    return ((a * image).sum(1, keepdim=True) + b).clamp(0, 1)


class GuidedFilterMatte(MatteMethod):
    name = "guided-filter"
    title = "Guided filter"
    description = ("Classical (not AI): the mask fitted to the image's colours in %d px windows; "
                   "snaps an edge that is a few pixels off, no hair-level detail." % (2 * RADIUS + 1))
    ops = ("matte",)
    margin = 2 * RADIUS + 1
    bytes_per_pixel = 400.0

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return guided_filter(image, mask)
