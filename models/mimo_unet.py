"""MIMO-UNet: multi-input multi-output U-Net for single-image deblurring
(Cho, Ji, Hong, Jung and Ko, "Rethinking Coarse-to-Fine Approach in Single
Image Deblurring", ICCV 2021).

One U-Net does the work of a coarse-to-fine cascade:

* multi-input: the blurry image at full, 1/2 and 1/4 size enters the encoder
  at its three levels; the two smaller ones through a shallow convolutional
  module (SCM), merged into the encoder's features by a feature attention
  module (FAM);
* asymmetric feature fusion (AFF): each decoder level receives the encoder
  features of all three levels, resized and fused;
* multi-output: the decoder emits a sharp image at 1/4, 1/2 and full size,
  each a residual added to the blurry input of that size, so all three can
  be supervised (the paper's multi-scale loss).

    full ── conv ─ E1 ──────────────────────── AFF1 ──────────────┐
                   │ stride-2 conv                                 cat─1x1─D3─conv─(+full)→ out
    1/2 ─ SCM2 ─ FAM2 ─ E2 ─────────────────── AFF2 ─────┐        ↑ transposed conv
                        │ stride-2 conv                  cat─1x1─D2─┬─conv─(+1/2)→ out/2
    1/4 ─ SCM1 ─ FAM1 ─ E3 ─ D1 ─┬─ conv ─(+1/4)→ out/4   ↑          │
                                 └── transposed conv ─────┘──────────┘

Sizes: `channels` at full size (doubling at each level down) and `blocks`
residual blocks per encoder and decoder stage. The paper's MIMO-UNet is 32
channels with 8 blocks (6,807,171 parameters), MIMO-UNet+ 32 with 20
(16,107,651), which also drops out 10% of the fused skip features' channels
in training. Any other size keeps the same layout and names.

Attribute names (Encoder, feat_extract, Decoder, Convs, ConvsOut, AFFs,
FAM1, SCM1, FAM2, SCM2, and `main`, `layers`, `merge`, `conv` inside) are
those of the authors' release, so its checkpoints load strictly.

The resizing is nearest-neighbour, as in the authors' code, and their
weights were trained with it: the 1/2 input takes the even rows and columns.
The network is therefore unchanged by shifts of multiples of 4 pixels only,
and needs sides that are multiples of 4 (`restore` pads for it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MULTIPLE = 4


class Conv(nn.Module):
    """A convolution (or a 2x transposed convolution), optionally followed
    by a ReLU, kept in a Sequential named `main` as in the release."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int, stride: int = 1,
                 relu: bool = True, transpose: bool = False):
        super().__init__()
        if transpose:
            # kernel 4, stride 2, padding 1: exactly doubles each side
            layer = nn.ConvTranspose2d(channels_in, channels_out, kernel_size, stride=stride,
                                       padding=kernel_size // 2 - 1)
        else:
            layer = nn.Conv2d(channels_in, channels_out, kernel_size, stride=stride,
                              padding=kernel_size // 2)
        layers = [layer] + ([nn.ReLU(inplace=True)] if relu else [])
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class ResBlock(nn.Module):
    """3x3, ReLU, 3x3, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.main = nn.Sequential(Conv(channels, channels, 3), Conv(channels, channels, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


class Stage(nn.Module):
    """`blocks` residual blocks: one encoder (EBlock) or decoder (DBlock) level."""

    def __init__(self, channels: int, blocks: int):
        super().__init__()
        self.layers = nn.Sequential(*(ResBlock(channels) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SCM(nn.Module):
    """Shallow convolutional module: features of a downscaled input, made to
    match the encoder's at that level. The image itself is kept as three of
    the output channels before the final 1x1 mixes them."""

    def __init__(self, channels: int):
        super().__init__()
        self.main = nn.Sequential(
            Conv(3, channels // 4, 3),
            Conv(channels // 4, channels // 2, 1),
            Conv(channels // 2, channels // 2, 3),
            Conv(channels // 2, channels - 3, 1))
        self.conv = Conv(channels, channels, 1, relu=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([image, self.main(image)], 1))


class FAM(nn.Module):
    """Feature attention module: the SCM features gate the encoder's
    (elementwise product), and a 3x3 of that product is added to them, so
    the encoder keeps what it had and takes from the small image only what
    the gate lets through."""

    def __init__(self, channels: int):
        super().__init__()
        self.merge = Conv(channels, channels, 3, relu=False)

    def forward(self, encoder: torch.Tensor, scm: torch.Tensor) -> torch.Tensor:
        return encoder + self.merge(encoder * scm)


class AFF(nn.Module):
    """Asymmetric feature fusion: the encoder features of all three levels,
    resized to one level and concatenated, fused by 1x1 then 3x3."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.conv = nn.Sequential(Conv(channels_in, channels_out, 1),
                                  Conv(channels_out, channels_out, 3, relu=False))

    def forward(self, level1: torch.Tensor, level2: torch.Tensor,
                level3: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([level1, level2, level3], 1))


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="nearest")


def _double(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class MIMOUNet(nn.Module):
    def __init__(self, channels: int = 32, blocks: int = 8, dropout: float = 0.0):
        super().__init__()
        if channels % 4 or channels < 8:
            raise ValueError("MIMO-UNet needs a channel count divisible by 4, at least 8 "
                             "(the SCMs split it in quarters)")
        c1, c2, c3 = channels, channels * 2, channels * 4
        self.channels, self.blocks = channels, blocks
        self.Encoder = nn.ModuleList([Stage(c1, blocks), Stage(c2, blocks), Stage(c3, blocks)])
        self.feat_extract = nn.ModuleList([
            Conv(3, c1, 3),                                  # full-size image in
            Conv(c1, c2, 3, stride=2),                       # down to 1/2
            Conv(c2, c3, 3, stride=2),                       # down to 1/4
            Conv(c3, c2, 4, stride=2, transpose=True),       # up to 1/2
            Conv(c2, c1, 4, stride=2, transpose=True),       # up to full size
            Conv(c1, 3, 3, relu=False),                      # full-size residual out
        ])
        self.Decoder = nn.ModuleList([Stage(c3, blocks), Stage(c2, blocks), Stage(c1, blocks)])
        # 1x1s that bring "decoder features + fused skip" back to the level's width
        self.Convs = nn.ModuleList([Conv(c3, c2, 1), Conv(c2, c1, 1)])
        # the 1/4 and 1/2 residual outputs
        self.ConvsOut = nn.ModuleList([Conv(c3, 3, 3, relu=False), Conv(c2, 3, 3, relu=False)])
        self.AFFs = nn.ModuleList([AFF(c1 + c2 + c3, c1), AFF(c1 + c2 + c3, c2)])
        self.FAM1 = FAM(c3)
        self.SCM1 = SCM(c3)
        self.FAM2 = FAM(c2)
        self.SCM2 = SCM(c2)
        # MIMO-UNet+ only, in training; nn.Dropout2d has no weights, so the
        # checkpoints of both flavours hold the same names.
        self.drop1 = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.drop2 = nn.Dropout2d(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(n, 3, h, w), h and w multiples of 4 -> the sharp image at 1/4,
        1/2 and full size (same value range as the input; not clamped)."""
        if x.shape[-2] % MULTIPLE or x.shape[-1] % MULTIPLE:
            raise ValueError("MIMO-UNet needs sides that are multiples of %d, not %dx%d; "
                             "restore() pads for it" % (MULTIPLE, x.shape[-1], x.shape[-2]))
        x2 = _half(x)
        x4 = _half(x2)
        scm2 = self.SCM2(x2)
        scm4 = self.SCM1(x4)

        enc1 = self.Encoder[0](self.feat_extract[0](x))
        enc2 = self.Encoder[1](self.FAM2(self.feat_extract[1](enc1), scm2))
        enc3 = self.Encoder[2](self.FAM1(self.feat_extract[2](enc2), scm4))

        enc3_at_2 = _double(enc3)
        skip2 = self.AFFs[1](_half(enc1), enc2, enc3_at_2)
        skip1 = self.AFFs[0](enc1, _double(enc2), _double(enc3_at_2))
        skip2, skip1 = self.drop2(skip2), self.drop1(skip1)

        z = self.Decoder[0](enc3)
        out4 = x4 + self.ConvsOut[0](z)
        z = self.Convs[0](torch.cat([self.feat_extract[3](z), skip2], 1))
        z = self.Decoder[1](z)
        out2 = x2 + self.ConvsOut[1](z)
        z = self.Convs[1](torch.cat([self.feat_extract[4](z), skip1], 1))
        z = self.Decoder[2](z)
        out = x + self.feat_extract[5](z)
        return [out4, out2, out]

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """Any size in, the full-size sharp image out: the input is padded to
        multiples of 4 by reflection (a mirrored edge looks like more of the
        photo; replicated pixels would look like a flat band the network
        never saw) and the result cropped back. Inputs too small to mirror
        are padded by replication."""
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % MULTIPLE, -width % MULTIPLE
        if pad_h or pad_w:
            mode = "reflect" if height > pad_h and width > pad_w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        # MIMOUNet.forward by name: a serving subclass may make forward
        # this very method
        return MIMOUNet.forward(self, x)[-1][..., :height, :width]
