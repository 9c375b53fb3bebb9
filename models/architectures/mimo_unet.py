"""MIMO-UNet (models/mimo_unet.py): recognising its weights, serving it,
and how much context a tile needs.

The authors' `MIMO-UNet.pkl`, `MIMO-UNetPlus.pkl` and the RealBlur
MIMO-UNet+ (each a dict whose key "model" holds the state dict) and
SharpFu's own safetensors are recognised by content, whatever the file is
called.
"""
from __future__ import annotations

import re

import torch

from .. import mimo_unet
from ..descriptor import Architecture, Spec
from ..loading import WeightsError

NAME = "mimo-unet"

# (channels, blocks) -> the paper's name for that size
PAPER_SIZES = {(32, 8): "MIMO-UNet", (32, 20): "MIMO-UNet+"}

_NEEDED = ("feat_extract.0.main.0.weight", "feat_extract.5.main.0.weight",
           "SCM1.conv.main.0.weight", "SCM2.conv.main.0.weight", "FAM1.merge.main.0.weight",
           "AFFs.0.conv.0.main.0.weight", "Convs.1.main.0.weight", "ConvsOut.1.main.0.weight")
_BLOCK = re.compile(r"(Encoder|Decoder)\.(\d)\.layers\.(\d+)\.main\.0\.main\.0\.weight$")


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    """{"channels", "blocks"} of MIMO-UNet weights; None for weights of
    another architecture. Weights with MIMO-UNet's names but a layout the
    network cannot take raise WeightsError."""
    if not all(key in state for key in _NEEDED):
        return None
    channels, colours = state["feat_extract.0.main.0.weight"].shape[:2]
    if colours != 3 or channels % 4 or channels < 8:
        raise WeightsError("MIMO-UNet weights for %d input channels and %d features: SharpFu's "
                           "MIMO-UNet takes RGB and a feature count divisible by 4."
                           % (colours, channels))
    counts: dict[str, int] = {}
    for key in state:
        match = _BLOCK.match(key)
        if match:
            stage = match.group(1) + match.group(2)
            counts[stage] = max(counts.get(stage, 0), int(match.group(3)) + 1)
    blocks = set(counts.values())
    if len(counts) != 6 or len(blocks) != 1:
        raise WeightsError("MIMO-UNet weights whose encoder and decoder stages differ in depth "
                           "(%s): not a layout of the paper." % ", ".join(
                               "%s %d" % item for item in sorted(counts.items())))
    return {"channels": int(channels), "blocks": blocks.pop()}


def flavour(channels: int, blocks: int) -> str:
    return PAPER_SIZES.get((channels, blocks),
                           "MIMO-UNet, %d channels x %d blocks" % (channels, blocks))


class Restorer(mimo_unet.MIMOUNet):
    """MIMO-UNet as an image-to-image module for serving: any size in, the
    full-size output out (MIMOUNet.restore, which pads by reflection itself).
    Same weights, same names."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.restore(x)


# -- context for tiling -------------------------------------------------------------

def theoretical_radius(blocks: int) -> int:
    """How far, in input pixels, the inputs that can reach one output pixel
    lie from it at most: every 3x3 at 1/4 size sees 4 pixels further, the
    nearest-neighbour resizes and (transposed) strided convolutions add their
    offsets. 241 for 8 blocks (MIMO-UNet), 577 for 20 (MIMO-UNet+)."""
    # Each feature map: (stride, lo, hi): its pixel i depends on input pixels
    # stride * i + lo ... stride * i + hi.
    def conv(f, k=3):
        s, lo, hi = f
        return (s, lo - s * (k // 2), hi + s * (k // 2))

    def down_conv(f):               # 3x3, stride 2
        s, lo, hi = f
        return (2 * s, lo - s, hi + s)

    def half(f):                    # nearest: pixel 2i
        s, lo, hi = f
        return (2 * s, lo, hi)

    def double(f):                  # nearest: pixel i // 2
        s, lo, hi = f
        return (s // 2, lo - s // 2, hi)

    def up_conv(f):                 # 4x4 transposed, stride 2, padding 1
        s, lo, hi = f
        return (s // 2, lo - s, hi + s // 2)

    def union(*fs):
        return (fs[0][0], min(f[1] for f in fs), max(f[2] for f in fs))

    def stage(f):
        for _ in range(2 * blocks):
            f = conv(f)
        return f

    def scm(f):
        return conv(conv(f))

    x = (1, 0, 0)
    x2, x4 = half(x), half(half(x))
    enc1 = stage(conv(x))
    enc2 = stage(conv(union(down_conv(enc1), scm(x2))))        # FAM: product, then 3x3
    enc3 = stage(conv(union(down_conv(enc2), scm(x4))))
    skip2 = conv(union(half(enc1), enc2, double(enc3)))
    skip1 = conv(union(enc1, double(enc2), double(double(enc3))))
    z = stage(enc3)
    z = stage(union(up_conv(z), skip2))
    z = stage(union(up_conv(z), skip1))
    _, lo, hi = union(conv(z), x)
    return max(-lo, hi)


# The margin the tiler keeps on each side of a tile, in input pixels: how
# far a tile's edge (zeros beyond it, from the convolutions' padding) still
# moves the output by more than the 8-bit rounding, not the full theoretical
# reach, whose outer part contributes far less.
# SharpFu's own small networks: measured with bench/deblur_margin.py on the
# shipped mimo-unet-small (docs/models/mimo-unet.md): beyond 15 px from a tile's edge
# no output moved by more than 1/255, beyond 20 px none by 0.25/255.
MEASURED_MARGIN = 32
# The paper's sizes (the authors' checkpoints users bring): not measured, as
# their weights cannot be had here; networks with fixed random weights say
# nothing about trained ones. Chosen generously (eight times the longest blur
# of the benchmark); the cross-fade between tiles hides what lies beyond.
PAPER_MARGIN = 128


def receptive_radius(channels: int = 32, blocks: int = 8) -> int:
    """The context, in input pixels, that the tiler keeps on each side of a
    tile (see MEASURED_MARGIN and PAPER_MARGIN), never more than the
    theoretical reach."""
    margin = PAPER_MARGIN if channels >= 32 else MEASURED_MARGIN
    return min(margin, theoretical_radius(blocks))


# Working memory per input pixel at `channels` (float32, inference): measured
# peak growth of the process over the weights, for 512x512 to 1024x1024
# inputs on the CPU, rounded up (docs/models/mimo-unet.md).
BYTES_PER_PIXEL_PER_CHANNEL = 110.0


def spec(channels: int, blocks: int) -> Spec:
    # Restorer pads by reflection itself (multiple 1); nearest-neighbour
    # halving takes the even pixels, so only tiles shifted by multiples of 4
    # leave the output unchanged.
    return Spec(task="deblur", scale=1, colours=3,
                receptive_radius=receptive_radius(channels, blocks),
                bytes_per_pixel=BYTES_PER_PIXEL_PER_CHANNEL * channels,
                alignment=mimo_unet.MULTIPLE, flavour=flavour(channels, blocks))


def parameter_count(channels: int, blocks: int) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in mimo_unet.MIMOUNet(channels, blocks).parameters())


ARCHITECTURE = Architecture(
    name=NAME, title="MIMO-UNet (Cho et al., ICCV 2021)",
    licence="GPL-3.0-or-later (SharpFu's implementation; the authors' checkpoints load into it)",
    detect=detect, build=Restorer, spec=spec)

