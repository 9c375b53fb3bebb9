"""SPAN (models/span.py): SharpFu's lightweight super-resolution network."""
from __future__ import annotations

import re

import torch

from .. import span
from ..descriptor import Architecture, Spec
from ..loading import WeightsError


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    needed = ("head.weight", "tail.weight", "fuse.weight", "upsample.weight")
    if not all(key in state for key in needed):
        return None
    channels, colours = state["head.weight"].shape[:2]
    blocks = 1 + max(int(m.group(1)) for key in state
                     for m in [re.match(r"body\.(\d+)\.c1\.weight$", key)] if m)
    outputs = state["upsample.weight"].shape[0]
    scale = round((outputs / colours) ** 0.5)
    if scale * scale * colours != outputs:
        raise WeightsError("SPAN weights with %d output channels for %d colours: not a square "
                           "scale." % (outputs, colours))
    return {"scale": scale, "channels": int(channels), "blocks": blocks, "colours": int(colours)}


def spec(scale: int, channels: int, blocks: int, colours: int = 3) -> Spec:
    # Working memory is dominated by about a dozen feature maps alive at once
    # (float32 on the CPU), stated per output pixel plus the output itself.
    return Spec(task="upscale", scale=scale, colours=colours,
                receptive_radius=span.receptive_radius(blocks),
                bytes_per_pixel=12 * channels * 4 / scale ** 2 + 64.0,
                flavour="%d channels x %d blocks" % (channels, blocks))


ARCHITECTURE = Architecture(
    name="span", title="SPAN (Swift Parameter-free Attention Network, Wan et al. 2024)",
    licence="GPL-3.0-or-later (SharpFu's implementation)",
    detect=detect, build=span.SPAN, spec=spec)
