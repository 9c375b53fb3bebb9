"""The learned prior: models/drunet.py with SharpFu's trained weights,
called the way the splitting needs it.

Colour images go through as they are; a grey one is repeated into three
channels and averaged back, since the network was trained on colour. Sides
are padded by reflection to the network's multiple and cropped back. The
canvas is whatever the engine's tile makes it (server/tiling.py sizes tiles
for this method's working memory, the network's features included), so
nothing is tiled here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class Denoiser:
    def __init__(self, network: torch.nn.Module):
        self.network = network
        self.multiple = network.multiple

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """(c, h, w) with Gaussian noise of `sigma` (in [0, 1] units) ->
        the denoised (c, h, w)."""
        channels, height, width = x.shape
        colour = x if channels == 3 else x.mean(0, keepdim=True).expand(3, -1, -1)
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            colour = F.pad(colour[None], (0, pad_w, 0, pad_h), mode=mode)[0]
        level = torch.tensor([sigma], device=x.device, dtype=torch.float32)
        out = self.network(colour[None].float(), level)[0][:, :height, :width]
        return out if channels == 3 else out.mean(0, keepdim=True).expand(channels, -1, -1)
