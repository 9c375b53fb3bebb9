"""The authors' SPAN in its inference form (models/span_official.py): the
official weights the catalogue converts, and SharpFu's fine-tunes of them.

Weights in the authors' training layout (each Conv3XC with its `sk` and
`conv` branches beside `eval_conv`, as in their .pth releases and in
community SPAN models) are left to spandrel, which folds the branches
itself; here only the folded layout is recognised.
"""
from __future__ import annotations

import torch

from .. import span_official
from ..descriptor import Architecture, Spec
from ..loading import WeightsError

NAME = "span-official"
_NEEDED = ("conv_1.eval_conv.weight", "block_1.c1_r.eval_conv.weight", "conv_cat.weight",
           "conv_2.eval_conv.weight", "upsampler.0.weight")


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    if not all(key in state for key in _NEEDED) or "conv_1.sk.weight" in state:
        return None
    blocks = sum(1 for key in state if key.endswith(".c1_r.eval_conv.weight"))
    if blocks != span_official.BLOCKS:
        raise WeightsError("SPAN weights with %d blocks: the authors' SPAN has %d."
                           % (blocks, span_official.BLOCKS))
    channels, colours = state["conv_1.eval_conv.weight"].shape[:2]
    outputs = state["upsampler.0.weight"].shape[0]
    scale = round((outputs / colours) ** 0.5)
    if scale * scale * colours != outputs or colours != 3:
        raise WeightsError("SPAN weights with %d output channels for %d colours: not an RGB "
                           "upscaler." % (outputs, colours))
    return {"scale": scale, "channels": int(channels)}


def spec(scale: int, channels: int = 48) -> Spec:
    # As SharpFu's SPAN (models/architectures/span.py): about a dozen feature
    # maps alive at once, float32, per output pixel, plus the output itself.
    return Spec(task="upscale", scale=scale, colours=3,
                receptive_radius=span_official.receptive_radius(),
                bytes_per_pixel=12 * channels * 4 / scale ** 2 + 64.0,
                flavour="the authors' SPAN, %d channels" % channels)


ARCHITECTURE = Architecture(
    name=NAME, title="SPAN as its authors built it (Wan et al. 2024), convolutions folded",
    licence="GPL-3.0-or-later (SharpFu's implementation; the authors' weights are Apache-2.0)",
    detect=detect, build=span_official.SPANOfficial, spec=spec)
