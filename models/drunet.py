"""A small DRUNet: the noise-level-conditioned denoiser of DPIR (Zhang, Li,
Zuo, Zhang, Van Gool and Timofte, "Plug-and-Play Image Restoration with Deep
Denoiser Prior", IEEE TPAMI 2021), sized for a CPU.

Non-blind deconvolution by half-quadratic splitting (server/deblurring/)
alternates a step that fits the blurry photo in the Fourier domain with a
denoising step at a noise level that falls from one iteration to the next.
One network serves every level because it is told the level: a constant
map of the noise's standard deviation (in the image's [0, 1] units) enters
as an extra input channel.

The layout is DRUNet's, smaller:

    image + sigma map ─ head 3x3 ─ E1 ─────────────────────────── + ─ D1 ─ tail 3x3 ─ (image -) → out
                                   │ 2x2 stride 2                 ↑ 2x2 transposed
                                   E2 ─────────────────── + ─ D2 ─┘
                                   │                      ↑
                                   E3 ─────────── + ─ D3 ─┘
                                   │              ↑
                                   └─── body ─────┘

* Each E and D is `blocks[i]` residual blocks (3x3, ReLU, 3x3, plus the
  input) at `channels[i]`; each level down halves the sides with a 2x2
  stride-2 convolution and doubles the channels, each level up undoes that
  with a 2x2 transposed convolution; skips are added, not concatenated.
* No biases and no normalisation, as in DRUNet: with no biases the network
  maps a scaled input (image and sigma) to a scaled output, which suits a
  prior whose input brightness is arbitrary.
* Unlike DRUNet, the tail predicts the noise and the output is the input
  minus it (residual learning, as in DnCNN): a small network trained for a
  few hours on a CPU converges faster that way.

Sides must be multiples of 2 ** (levels - 1) (8 for four levels); callers
pad by reflection and crop back (server/deblurring/denoiser.py).
"""
from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


def stage(channels: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(channels) for _ in range(blocks)))


class DRUNet(nn.Module):
    def __init__(self, colours: int = 3, channels: tuple[int, ...] = (16, 32, 64, 128),
                 blocks: tuple[int, ...] = (1, 1, 2, 2)):
        super().__init__()
        if len(channels) != len(blocks) or len(channels) < 2:
            raise ValueError("one block count per level, two levels at least")
        self.colours = colours
        self.multiple = 2 ** (len(channels) - 1)
        self.head = nn.Conv2d(colours + 1, channels[0], 3, padding=1, bias=False)
        self.encoders = nn.ModuleList(stage(c, b) for c, b in zip(channels[:-1], blocks[:-1]))
        self.downs = nn.ModuleList(nn.Conv2d(c, c2, 2, stride=2, bias=False)
                                   for c, c2 in zip(channels[:-1], channels[1:]))
        self.body = stage(channels[-1], blocks[-1])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(c2, c, 2, stride=2, bias=False)
                                 for c, c2 in zip(channels[:-1], channels[1:]))
        self.decoders = nn.ModuleList(stage(c, b) for c, b in zip(channels[:-1], blocks[:-1]))
        self.tail = nn.Conv2d(channels[0], colours, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x: (n, colours, h, w); sigma: the noise's standard deviation per
        image, (n,) or (n, 1, 1, 1), in the units of x. Returns the denoised
        (n, colours, h, w)."""
        level = sigma.reshape(-1, 1, 1, 1).to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])
        features = self.head(torch.cat([x, level], 1))
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            features = encoder(features)
            skips.append(features)
            features = down(features)
        features = self.body(features)
        for up, decoder, skip in zip(reversed(self.ups), reversed(self.decoders), reversed(skips)):
            features = decoder(up(features) + skip)
        return x - self.tail(features)


def receptive_radius(channels: tuple[int, ...], blocks: tuple[int, ...], **_) -> int:
    """Input pixels on each side that an output pixel can depend on: each
    3x3 convolution at level l reaches 2**l pixels further, each 2x2 step
    down or up 2**l more."""
    radius = 2                                     # head and tail
    for level, count in enumerate(blocks):
        step = 2 ** level
        convolutions = 2 * count * (1 if level == len(blocks) - 1 else 2)
        radius += convolutions * step
        if level < len(blocks) - 1:
            radius += 2 * step                     # down and up
    return radius
