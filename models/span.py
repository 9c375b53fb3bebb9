"""SPAN: Swift Parameter-free Attention Network (Wan et al., "Swift
Parameter-free Attention Network for Efficient Super-Resolution", CVPR
workshops 2024; first in the NTIRE 2024 efficient super-resolution challenge).

Why this one, among the efficient-SR networks of its class (IMDN, RLFN,
SAFMN, SPAN):

* It is purely local. Every layer is a stride-1 3x3 or 1x1 convolution, and
  its attention is "parameter-free": each block weights its own features by
  sigmoid(features) - 0.5, with no pooling. IMDN's contrast-aware channel
  attention takes each channel's mean and deviation over the whole image,
  SAFMN pools features to a grid fixed by the image size and RLFN's ESA
  block max-pools with a stride: their output depends on where a tile's edge
  falls, so tiled and untiled results differ. SPAN's output at a pixel
  depends only on the pixels within its receptive field, so tiling with that
  margin is exact.
* It is the fastest of the four per pixel for its quality: plain convolutions
  and elementwise maths, which every backend (cuDNN, oneDNN, Metal) runs
  well, in fp16 as in fp32 (sigmoid and SiLU cannot overflow; there is no
  exponent of an unbounded sum, no variance, no division).

Deviations from the paper, both for training on a CPU in about an hour:

* SPAN trains each 3x3 convolution as a re-parameterisable "Conv3XC" (a 3x3
  in parallel with a 1x1-3x3-1x1 stack, folded into one 3x3 for inference).
  Here each is a plain 3x3 convolution from the start: the inference network
  is the same shape, and training costs about a third.
* The output adds the input repeated to the output size (nearest neighbour,
  the "anchor" of Du et al.'s plain mobile SR network, CVPR-W 2021), so the
  network only learns the correction. This converges in far fewer steps and
  costs nothing at inference.

Sizes are set by `channels` and `blocks` (the paper's SPAN uses 48 and 6);
SharpFu ships a smaller one, named by models/registry.py.

Receptive field: each output pixel depends on the input pixels within
`receptive_radius(blocks)` = 3 * blocks + 3 low-resolution pixels of it
(head 3x3, three 3x3 per block, the 3x3 after the last block, the
upsampler's 3x3; the 1x1 fusion adds nothing).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def receptive_radius(blocks: int) -> int:
    return 3 * blocks + 3


class AttentionBlock(nn.Module):
    """Three 3x3 convolutions; their output, plus the block's input, is
    weighted by sigmoid(output) - 0.5: near zero where the block has little to
    say, signed where it has."""

    def __init__(self, channels: int):
        super().__init__()
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c3 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = F.silu(self.c1(x))
        out = self.c3(F.silu(self.c2(first)))
        attention = torch.sigmoid(out) - 0.5
        return (out + x) * attention, first


class SPAN(nn.Module):
    def __init__(self, scale: int, channels: int = 48, blocks: int = 6, colours: int = 3):
        super().__init__()
        if blocks < 2:
            raise ValueError("SPAN needs at least two blocks (it fuses the first and last)")
        self.scale = scale
        self.head = nn.Conv2d(colours, channels, 3, padding=1)
        self.body = nn.ModuleList(AttentionBlock(channels) for _ in range(blocks))
        self.tail = nn.Conv2d(channels, channels, 3, padding=1)
        # Shallow features, the first block's output, the last block's first
        # activation and the last output, fused: SPAN's multi-level skip.
        self.fuse = nn.Conv2d(channels * 4, channels, 1)
        self.upsample = nn.Conv2d(channels, colours * scale * scale, 3, padding=1)
        # The correction starts at zero, so an untrained network is the
        # nearest-neighbour anchor rather than noise.
        nn.init.zeros_(self.upsample.weight)
        nn.init.zeros_(self.upsample.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, colours, h, w) in [0, 1] -> (n, colours, h * scale, w * scale)."""
        shallow = self.head(x - 0.5)
        out, _ = self.body[0](shallow)
        first_block = out
        for block in self.body[1:-1]:
            out, _ = block(out)
        out, last_activation = self.body[-1](out)
        out = self.tail(out)
        fused = self.fuse(torch.cat([shallow, out, first_block, last_activation], 1))
        correction = F.pixel_shuffle(self.upsample(fused), self.scale)
        anchor = x.repeat_interleave(self.scale, 2).repeat_interleave(self.scale, 3)
        return anchor + correction
