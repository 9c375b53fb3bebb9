"""The DRUNet denoiser (models/drunet.py): the learned prior of blind
deconvolution (server/deblurring/). It is not an image-to-image method of
its own: it takes the noise level besides the image, and the deconvolution
calls it at a level that falls from one iteration to the next."""
from __future__ import annotations

import re

import torch

from .. import drunet
from ..descriptor import Architecture, Spec

TASK = "denoise"
_NEEDED = ("head.weight", "tail.weight", "downs.0.weight", "ups.0.weight")


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    if not all(key in state for key in _NEEDED):
        return None
    levels = 1 + max(int(m.group(1)) for key in state
                     for m in [re.match(r"downs\.(\d+)\.weight$", key)] if m)
    channels = [int(state["head.weight"].shape[0])] + [
        int(state["downs.%d.weight" % i].shape[0]) for i in range(levels)]

    def count(prefix: str) -> int:
        found = [int(m.group(1)) for key in state
                 for m in [re.match(re.escape(prefix) + r"\.(\d+)\.conv1\.weight$", key)] if m]
        return 1 + max(found) if found else 0

    blocks = [count("encoders.%d" % i) for i in range(levels)] + [count("body")]
    return {"colours": int(state["tail.weight"].shape[0]), "channels": channels,
            "blocks": blocks}


def spec(colours: int, channels: list[int], blocks: list[int]) -> Spec:
    # float32 on the CPU: about six feature maps of the first level alive at
    # once, the deeper levels adding a third of that again
    return Spec(task=TASK, scale=1, colours=colours,
                receptive_radius=drunet.receptive_radius(channels, blocks),
                bytes_per_pixel=8 * channels[0] * 4.0,
                multiple=2 ** (len(channels) - 1),
                flavour="%s channels, %s blocks" % ("/".join(map(str, channels)),
                                                    "/".join(map(str, blocks))))


def build(colours: int, channels: list[int], blocks: list[int]) -> drunet.DRUNet:
    return drunet.DRUNet(colours, tuple(channels), tuple(blocks))


ARCHITECTURE = Architecture(
    name="drunet", title="DRUNet denoiser (noise-level conditioned U-Net, Zhang et al. 2021)",
    licence="GPL-3.0-or-later (SharpFu's implementation)",
    detect=detect, build=build, spec=spec)
