"""The learned prior: models/drunet.py with SharpFu's trained weights,
called the way the splitting needs it.

Colour images go through as they are; a grey one is repeated into three
channels and averaged back, since the network was trained on colour. Sides
are padded by reflection to the network's multiple and cropped back.
Large canvases are denoised in overlapping tiles so that memory stays
bounded (a DRUNet's reach is some 100 pixels: 50 px of margin each side, and
the ramp across the rest of the overlap, leave no seam above 8-bit rounding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from server import tiling

TILE = 1024          # canvas side above which the network runs in tiles
MARGIN = 48


class Denoiser:
    def __init__(self, network: torch.nn.Module, dtype: torch.dtype = torch.float32):
        self.network = network
        self.dtype = dtype
        self.multiple = network.multiple

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """(c, h, w) with Gaussian noise of `sigma` (in [0, 1] units) ->
        the denoised (c, h, w)."""
        channels, height, width = x.shape
        rows = tiling.plan_axis(height, TILE, tiling.overlap_for(MARGIN))
        columns = tiling.plan_axis(width, TILE, tiling.overlap_for(MARGIN))
        if rows.count == 1 and columns.count == 1:
            return self._whole(x, sigma)
        out = torch.zeros_like(x)
        for i, top in enumerate(rows.starts):
            row_weight = torch.from_numpy(tiling.axis_weights(rows, i, 1, MARGIN)).to(x)
            for j, left in enumerate(columns.starts):
                column_weight = torch.from_numpy(tiling.axis_weights(columns, j, 1, MARGIN)).to(x)
                block = self._whole(x[:, top:top + rows.size, left:left + columns.size], sigma)
                out[:, top:top + rows.size, left:left + columns.size] += \
                    block * row_weight[:, None] * column_weight[None, :]
        return out

    def _whole(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        channels, height, width = x.shape
        colour = x if channels == 3 else x.mean(0, keepdim=True).expand(3, -1, -1)
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            colour = F.pad(colour[None], (0, pad_w, 0, pad_h), mode=mode)[0]
        level = torch.tensor([sigma], device=x.device, dtype=self.dtype)
        out = self.network(colour[None].to(self.dtype), level)[0].float()[:, :height, :width]
        return out if channels == 3 else out.mean(0, keepdim=True).expand(channels, -1, -1)
