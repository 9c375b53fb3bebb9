"""Implementations the ops can run: classical methods here, trained networks
in models/ (wrapped by server.catalog). Each is a Method."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch


class Method:
    """One way of doing an op.

    kind is "classical" or "network": status and the CLI show it, and a
    classical method is never presented as AI. margin is how many input
    pixels of context each output pixel depends on at most (the tiler cuts
    with that much to spare); alignment: tiles start at multiples of it (a
    network that subsamples is unchanged only by shifts of its stride);
    rgb_only methods get grey images as RGB. preference ranks the methods
    of an op when none is named, highest first: None means 1 for a network
    and 0 for a classical method. largest_tile caps the tiler's tile side
    (None: memory decides)."""

    name = ""
    kind = "classical"
    title = ""
    description = ""
    source = "built in"
    ops: tuple[str, ...] = ()
    scales: tuple[int, ...] = (1,)
    margin = 0
    alignment = 1
    preference: float | None = None
    rgb_only = False
    bytes_per_pixel = 64.0   # working memory per input pixel, for tile sizing
    largest_tile: int | None = None

    def __init__(self):
        self.loaded = self.kind == "classical"

    def rank(self) -> float:
        if self.preference is not None:
            return self.preference
        return 1.0 if self.kind == "network" else 0.0

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        """Load weights onto the device; classical methods have none."""
        self.loaded = True

    def networks(self, scale: int) -> list[torch.nn.Module]:
        """The loaded networks a tile at `scale` runs (progress inside a tile
        follows their layers)."""
        return []

    def info(self) -> dict:
        return {"name": self.name, "kind": self.kind, "title": self.title,
                "description": self.description, "source": self.source, "ops": list(self.ops),
                "scales": list(self.scales), "loaded": self.loaded}


# A tile function: float32 (1, c, h, w) in [0, 1], the tile's box in input
# pixels (top, left, height, width) -> (1, c, h * scale, w * scale).
TileFunction = Callable[[torch.Tensor, tuple[int, int, int, int]], torch.Tensor]


@dataclass
class Prepared:
    """What an image method worked out from the whole frame before the
    tiler runs it: its tile function, the context each tile needs (which
    may depend on what it found, as a blur kernel's size does), what it
    found, for the job's result (`outcome`), and frames it can add to the
    result on request (name -> float32 (h, w, c) array)."""
    run: TileFunction
    margin: int
    outcome: dict = field(default_factory=dict)
    frames: dict[str, np.ndarray] = field(default_factory=dict)


class ImageMethod(Method):
    prepared_share = 0.0     # of the job's progress, taken by `prepare`
    extra_frames: tuple[str, ...] = ()     # result frames `prepare` can add ("kernel")

    def info(self) -> dict:
        info = super().info()
        if self.extra_frames:
            info["extra_frames"] = list(self.extra_frames)
        return info

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """float32 (1, c, h, w) in [0, 1] -> (1, c, h * scale, w * scale)."""
        raise NotImplementedError

    def prepare(self, image: np.ndarray, image_format: str, colour_channels: int, scale: int,
                params: dict, progress: Callable[[float, str], None]) -> Prepared:
        """Whatever needs the whole frame `image` (h, w, c; transparent
        pixels already filled) before tiling, done once per job as the first
        method of its chain (a later stage's input exists only tile by
        tile); `params` are the job's. By default nothing: `forward` on each
        tile, with the method's own margin."""
        return Prepared(lambda colour, box: self.forward(colour, scale), self.margin)


class MatteMethod(Method):
    prepared_share = 0.0     # of the job's progress, taken by `prepare`

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) colour and (1, 1, h, w) coarse mask -> (1, 1, h, w) alpha."""
        raise NotImplementedError

    def prepare(self, image, image_format: str, colour_channels: int, mask, mask_format: str,
                iterations: int | None, progress) -> Callable:
        """Whatever needs the whole frames (image (h, w, c), mask (h, w, 1)),
        done once before tiling; returns the tile function: (colour (1, 3,
        h, w), coarse mask (1, 1, h, w), box (top, left, height, width)) ->
        alpha (1, 1, h, w). By default, `forward` on each tile."""
        return lambda colour, coarse, box: self.forward(colour, coarse)

    def prepare_whole(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, Callable]:
        """`prepare` on whole tensors (1, 3, h, w) and (1, 1, h, w) as float
        frames, for a `forward` that takes the engine's path: the colour
        frame (h, w, 3) and the tile function."""
        colour, coarse = [np.ascontiguousarray(t[0].permute(1, 2, 0).float().cpu().numpy())
                          for t in (image[:, :3], mask)]
        return colour, self.prepare(colour, "f32", 3, coarse, "f32", None,
                                    lambda fraction, stage: None)


class SubjectMethod(Method):
    """Finds the main subject of a photo (the `select` op): a rough mask for
    a refine to start from. A segmentation network sees the whole frame at
    its own working size, so the op does not tile it."""
    ops = ("select",)

    def subject(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) colour in [0, 1] on the method's device -> (1, 1, h,
        w) soft mask in [0, 1] at the same size (1: subject)."""
        raise NotImplementedError
