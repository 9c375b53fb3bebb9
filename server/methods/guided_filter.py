"""The colour guided filter (He, Sun and Tang, ECCV 2010) applied to a coarse
mask: the classical matte refiner used until a trained one is installed. It
snaps the mask's edges to the image's edges within a small radius; it cannot
recover hair strands."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import MatteMethod

RADIUS = 8
EPSILON = 1e-4


def box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, shrunk at the borders."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_filter(guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """guide (1, 3, h, w), source (1, 1, h, w) -> filtered (1, 1, h, w)."""
    mean_i = box(guide, radius)
    mean_p = box(source, radius)
    cov_ip = box(guide * source, radius) - mean_i * mean_p
    products = torch.stack([guide[:, a] * guide[:, b] for a, b in
                            ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))], 1)
    var = box(products, radius)
    mean_pairs = torch.stack([mean_i[:, a] * mean_i[:, b] for a, b in
                              ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))], 1)
    rr, rg, rb, gg, gb, bb = (var - mean_pairs).unbind(1)
    rr, gg, bb = rr + eps, gg + eps, bb + eps
    # Inverse of the symmetric 3x3 covariance by cofactors, per pixel.
    i_rr = gg * bb - gb * gb
    i_rg = gb * rb - rg * bb
    i_rb = rg * gb - gg * rb
    i_gg = rr * bb - rb * rb
    i_gb = rb * rg - rr * gb
    i_bb = rr * gg - rg * rg
    det = rr * i_rr + rg * i_rg + rb * i_rb
    c_r, c_g, c_b = cov_ip.unbind(1)
    a_r = (i_rr * c_r + i_rg * c_g + i_rb * c_b) / det
    a_g = (i_rg * c_r + i_gg * c_g + i_gb * c_b) / det
    a_b = (i_rb * c_r + i_gb * c_g + i_bb * c_b) / det
    a = torch.stack([a_r, a_g, a_b], 1)
    b = mean_p - (a * mean_i).sum(1, keepdim=True)
    return (box(a, radius) * guide).sum(1, keepdim=True) + box(b, radius)


class GuidedFilterMatte(MatteMethod):
    name = "guided-filter"
    title = "Guided filter"
    description = ("Classical edge-aware smoothing of the coarse mask (not AI): aligns its edges "
                   "with the image within %d px; no hair-level detail." % RADIUS)
    ops = ("matte",)
    margin = 2 * RADIUS + 1
    bytes_per_pixel = 160.0

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return guided_filter(image, mask, RADIUS, EPSILON).clamp_(0.0, 1.0)
