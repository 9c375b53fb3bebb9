"""How noisy a photo is: the standard deviation of its sensor noise.

Immerkaer's estimator ("Fast noise variance estimation", CVIU 1996): the
difference of two Laplacians,

    [ 1 -2  1]
    [-2  4 -2]
    [ 1 -2  1]

cancels every local plane and most of what a smooth picture holds, and
leaves white noise of standard deviation sigma with 6 sigma. Edges leave
large responses too, so the statistic is robust: the mean magnitude of the
smallest three quarters of the responses, which for Gaussian noise is a
known fraction of its deviation. Unlike a median of 8-bit values, this does
not jump in steps of a quantisation level. Per colour channel, the median of
the channels; clipped pixels (black or white) are left out, since they carry
no noise.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KEPT = 0.75                      # the share of responses that count
_Z = 1.1503494                   # the standard normal's 87.5th percentile: |r| below it is 75%
# E[|r| ; |r| < z sigma] / P(|r| < z sigma), in units of sigma
_TRUNCATED_MEAN = 2 * (1 - math.exp(-_Z * _Z / 2)) / math.sqrt(2 * math.pi) / KEPT
_MASK = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def noise_sigma(image: torch.Tensor) -> float:
    """`image`: (c, h, w) in [0, 1]; the noise's standard deviation in the
    same units (0 for images too small to tell)."""
    channels, height, width = image.shape
    if height < 8 or width < 8:
        return 0.0
    mask = _MASK.to(image)[None, None]
    response = F.conv2d(image[:, None], mask)[:, 0]
    clipped = ((image <= 0.002) | (image >= 0.998)).float()
    near_clipped = F.max_pool2d(clipped[:, None], 3, stride=1)[:, 0] > 0
    sigmas = []
    for channel in range(channels):
        values = response[channel][~near_clipped[channel]].abs()
        if values.numel() < 256:
            continue
        if values.numel() > 1 << 20:      # a sample is plenty, and sorting is not free
            step = values.numel() // (1 << 20) + 1
            values = values[::step]
        kept = torch.sort(values).values[:int(values.numel() * KEPT)]
        sigmas.append(float(kept.mean()) / _TRUNCATED_MEAN / 6.0)
    if not sigmas:
        return 0.0
    return sorted(sigmas)[len(sigmas) // 2]
