"""The matte refiner (models/matte_refiner.py) and its guided upsampler
(models/guided_upsampler.py): the two networks of the `matte` op."""
from __future__ import annotations

import torch

from .. import guided_upsampler, matte_refiner
from ..descriptor import Architecture, Spec


def detect_refiner(state: dict[str, torch.Tensor]) -> dict | None:
    if not all(key in state for key in ("stem.weight", "select.gate.weight", "step.c1.weight")):
        return None
    return {"channels": int(state["down4.0.weight"].shape[0])}


def detect_upsampler(state: dict[str, torch.Tensor]) -> dict | None:
    if not all(key in state for key in ("guide.2.weight", "detail.0.weight", "log_sigma")):
        return None
    return {"guide": int(state["guide.2.weight"].shape[0]),
            "channels": int(state["detail.0.weight"].shape[0])}


REFINER = Architecture(
    name="matte-refiner", title="Mask-guided iterative matte refiner",
    licence="GPL-3.0-or-later (SharpFu's implementation)",
    detect=detect_refiner, build=matte_refiner.MatteRefiner,
    # It runs on the whole working-resolution image, never tiled; its
    # radius is stated for the record.
    spec=lambda **_: Spec(task="matte-refiner", scale=1, colours=3,
                          receptive_radius=matte_refiner.RECEPTIVE_RADIUS, bytes_per_pixel=0.0,
                          multiple=matte_refiner.MULTIPLE))

UPSAMPLER = Architecture(
    name="guided-upsampler", title="Guided matte upsampler (FeatSharp-style)",
    licence="GPL-3.0-or-later (SharpFu's implementation)",
    detect=detect_upsampler, build=guided_upsampler.GuidedUpsampler,
    spec=lambda **_: Spec(task="matte-upsampler", scale=1, colours=3,
                          receptive_radius=guided_upsampler.GuidedUpsampler.RADIUS,
                          bytes_per_pixel=0.0))
