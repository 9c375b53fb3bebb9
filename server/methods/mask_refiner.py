"""The trained matte refiner as the `matte` op's method: the refiner
(models/matte_refiner.py) on the whole image at a working resolution of
about a megapixel, then the guided upsampler (models/guided_upsampler.py)
on full-resolution tiles.

The refiner needs the whole picture at once (the subject's colours far from
an edge say what belongs to it), so the image is shrunk to the working size
rather than tiled; the upsampler brings the alpha back to every full-
resolution pixel, tile by tile, with its exact context, so tiles never show
seams and tiles wholly inside or outside the subject cost nothing.
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from models import guided_upsampler, matte_refiner, registry

from .. import pixels
from . import MatteMethod

log = logging.getLogger("sharpfu.methods")

WORKING_PIXELS = 1_000_000
# The refiner leaves a faint haze (alpha below 0.02 or above 0.98) over most
# of the background and the subject; made exact, it costs nothing in the
# band and lowers whole-image SAD by 3-10% on held-out composites.
HAZE = 0.02
UPSAMPLE_TILE = 256


def working_size(height: int, width: int, pixels_: int | None = None) -> tuple[int, int]:
    """The image's size shrunk to about `pixels_` (default WORKING_PIXELS;
    never enlarged), sides multiples of the refiner's."""
    factor = min(1.0, math.sqrt((pixels_ or WORKING_PIXELS) / (height * width)))
    m = matte_refiner.MULTIPLE
    return (max(m, int(round(height * factor / m)) * m),
            max(m, int(round(width * factor / m)) * m))


class MaskRefiner(MatteMethod):
    kind = "network"
    name = "mask-refiner"
    whole_image = True   # the engine hands it the whole frames, not tiles
    ops = ("matte",)

    def __init__(self, refiner: registry.Weights, upsampler: registry.Weights):
        super().__init__()
        self.weights = {"refiner": refiner, "upsampler": upsampler}
        self.title = "AI matte refiner (mask-guided, iterative, guided upsampling)"
        self.description = ("Trained network: refines a rough mask into an alpha matte with "
                            "hair-level detail at a working resolution of about 1 MP, then "
                            "brings it to full resolution guided by the full-resolution image.")
        self.source = refiner.record["source"]
        self.margin = upsampler.receptive_radius
        self.refiner: matte_refiner.MatteRefiner | None = None
        self.upsampler: guided_upsampler.GuidedUpsampler | None = None
        self.device = torch.device("cpu")

    def info(self) -> dict:
        info = super().info()
        info["weights"] = {role: {"name": w.name, "parameters": w.record.get("parameters")}
                           for role, w in self.weights.items()}
        info["working_megapixels"] = WORKING_PIXELS / 1e6
        return info

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        # float32 throughout: the models are small, and alpha near 0 and 1
        # must stay exact for the upsampler to skip settled tiles.
        self.refiner = self.weights["refiner"].load().to(device)
        self.upsampler = self.weights["upsampler"].load().to(device)
        self.device = device
        self.loaded = True
        log.info("loaded %s on %s", self.name, device)

    # -- the two stages ------------------------------------------------------

    @torch.inference_mode()
    def refine(self, image: torch.Tensor, mask: torch.Tensor,
               iterations: int | None = None) -> torch.Tensor:
        """image (1, 3, h, w) and mask (1, 1, h, w) at working resolution ->
        alpha there. Sides are padded (replicated) to the refiner's multiple."""
        h, w = image.shape[-2:]
        m = matte_refiner.MULTIPLE
        pad = (0, (-w) % m, 0, (-h) % m)
        if any(pad):
            image, mask = F.pad(image, pad, mode="replicate"), F.pad(mask, pad, mode="replicate")
        passes = self.refiner(image.to(self.device), mask.to(self.device), iterations)
        return guided_upsampler.snap(passes[-1]["alpha"][..., :h, :w].float(), HAZE)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Whole tensors in, alpha out (the benchmark and tests use this;
        the engine uses run(), which reads and writes frames tile by tile)."""
        height, width = image.shape[-2:]
        out = torch.zeros(1, 1, height, width)

        def read(top, bottom, left, right):
            rows = torch.arange(top, bottom).clamp(0, height - 1)
            cols = torch.arange(left, right).clamp(0, width - 1)
            return image[:, :3, rows][..., cols]

        def write(top, bottom, left, right, alpha):
            out[..., top:bottom, left:right] = alpha

        small = working_size(height, width)
        self._run(read, (height, width), shrink_bands([image[:, :3]], small),
                  shrink_bands([mask], small).clamp(0, 1), write, UPSAMPLE_TILE, None)
        return out

    def run(self, image: np.ndarray, image_format: str, colour_channels: int, mask: np.ndarray,
            mask_format: str, out: np.ndarray, out_format: str, tile: int,
            iterations: int | None, progress: Callable[[float, str], None]) -> dict:
        """Alpha for frames `image` (h, w, c) and `mask` (h, w, 1), written
        into `out` (h, w, 1) in out_format."""
        height, width = image.shape[:2]

        def read(top, bottom, left, right):
            rows = np.clip(np.arange(top, bottom), 0, height - 1)
            cols = np.clip(np.arange(left, right), 0, width - 1)
            if top >= 0 and left >= 0 and bottom <= height and right <= width:
                block = image[top:bottom, left:right]
            else:
                block = image[rows][:, cols]
            x = pixels.to_tensor(block, image_format, self.device)[:, :colour_channels]
            return x.expand(-1, 3, -1, -1) if colour_channels == 1 else x

        def write(top, bottom, left, right, alpha):
            values = alpha[0].permute(1, 2, 0).float().cpu().numpy()
            pixels.store(values, out[top:bottom, left:right], out_format)

        def whole(array, fmt, channels):
            # A band of rows at a time: a 24 MP frame in float32 at once
            # would need gigabytes.
            step = max(64, 2_000_000 // width)
            bands = [pixels.to_tensor(array[top:top + step], fmt, self.device)[:, :channels]
                     for top in range(0, height, step)]
            return shrink_bands(bands, working_size(height, width))

        progress(0.0, "%s: working resolution" % self.title)
        image_lo = whole(image, image_format, colour_channels)
        if colour_channels == 1:
            image_lo = image_lo.expand(-1, 3, -1, -1)
        mask_lo = whole(mask, mask_format, 1).clamp(0, 1)
        return self._run(read, (height, width), image_lo, mask_lo, write, tile, iterations,
                         progress)

    def _run(self, read, size, image_lo, mask_lo, write, tile, iterations, progress=None):
        alpha_lo = self.refine(image_lo, mask_lo, iterations)
        if progress:
            progress(0.3, "%s: full resolution" % self.title)

        def tiles_done(done, total):
            if progress:
                progress(0.3 + 0.7 * done / total, "%s: tile %d of %d" % (self.title, done, total))
        return guided_upsampler.upsample(self.upsampler, read, size, alpha_lo,
                                         image_lo.to(self.device), write, tile or UPSAMPLE_TILE,
                                         tiles_done)


def shrink_bands(bands: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Area-shrink an image, given as bands of its rows, to `size`: each band
    in width first, then all of them in height. Area averaging is separable,
    so this equals shrinking the whole image at once."""
    narrow = torch.cat([F.interpolate(x, size=(x.shape[-2], size[1]), mode="area")
                        for x in bands], 2)
    return F.interpolate(narrow, size=size, mode="area")


def mask_refiner_methods(directory=None) -> list[MaskRefiner]:
    """The refiner and its upsampler, if both are shipped (or in `directory`)."""
    found = {w.record.get("role"): w for w in registry.shipped(directory)
             if w.record.get("method") == MaskRefiner.name}
    if "refiner" in found and "upsampler" in found:
        return [MaskRefiner(found["refiner"], found["upsampler"])]
    if found:
        log.warning("not offering %s: it needs both a refiner and an upsampler, found %s",
                    MaskRefiner.name, ", ".join(sorted(map(str, found))))
    return []
