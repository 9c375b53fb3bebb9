"""The trained matte refiner as the `matte` op's method: the refiner
(models/matte_refiner.py) on the whole image at a working resolution of
about a megapixel, then the guided upsampler (models/guided_upsampler.py)
on full-resolution tiles, through the engine's one tiler.

The refiner needs the whole picture at once (the subject's colours far from
an edge say what belongs to it), so the image is shrunk to the working size
rather than tiled; the upsampler brings the alpha back to every full-
resolution pixel, tile by tile. Its layers are unpadded, so a tile computed
with its RADIUS px of context equals the same pixels of the untiled result,
and tiles wholly inside or outside the subject cost nothing.
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from models import guided_upsampler, matte_refiner, registry

from .. import pixels, tiling
from . import MatteMethod

log = logging.getLogger("sharpfu.methods")

WORKING_PIXELS = 1_000_000
# The refiner leaves a faint haze (alpha below 0.02 or above 0.98) over most
# of the background and the subject; made exact, it costs nothing in the
# band and lowers whole-image SAD by 3-10% on held-out composites.
HAZE = 0.02
# Settled tiles are skipped whole: small tiles skip more of the picture.
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
    ops = ("matte",)
    largest_tile = UPSAMPLE_TILE
    prepared_share = 0.3      # of the progress: the working-resolution pass

    def __init__(self, refiner: registry.Weights, upsampler: registry.Weights):
        super().__init__()
        self.weights = {"refiner": refiner, "upsampler": upsampler}
        self.title = "AI matte refiner (mask-guided, iterative, guided upsampling)"
        self.description = ("Trained network: refines a rough mask into an alpha matte with "
                            "hair-level detail at a working resolution of about 1 MP, then "
                            "brings it to full resolution guided by the full-resolution image.")
        self.source = refiner.record["source"]
        self.margin = upsampler.spec.receptive_radius
        self.refiner: matte_refiner.MatteRefiner | None = None
        self.upsampler: guided_upsampler.GuidedUpsampler | None = None
        self.device = torch.device("cpu")

    def info(self) -> dict:
        info = super().info()
        info["weights"] = {role: {"name": w.name, "parameters": w.parameters}
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

    def networks(self, scale: int) -> list[torch.nn.Module]:
        return [self.upsampler] if self.upsampler is not None else []

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

    def prepare(self, image: np.ndarray, image_format: str, colour_channels: int,
                mask: np.ndarray, mask_format: str, iterations: int | None,
                progress: Callable[[float, str], None]) -> Callable:
        """The working-resolution alpha of frames `image` (h, w, c) and
        `mask` (h, w, 1); returns the tile function that brings it to full
        resolution (Upsampling)."""
        height, width = image.shape[:2]

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
        alpha_lo = self.refine(image_lo, whole(mask, mask_format, 1).clamp(0, 1), iterations)
        return Upsampling(self.upsampler, alpha_lo, image_lo, (height, width))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Whole tensors (1, 3, h, w) and (1, 1, h, w) in, alpha out, through
        the same tiler as the engine (the benchmark and tests use this)."""
        frames = [np.ascontiguousarray(t[0].permute(1, 2, 0).float().cpu().numpy())
                  for t in (image[:, :3], mask)]
        upsampling = self.prepare(frames[0], "f32", 3, frames[1], "f32", None,
                                  lambda fraction, stage: None)
        return upsampling.whole(frames[0], self.device)


class Upsampling:
    """The guided upsampler as a tile function: (1, 3, h, w) full-resolution
    colour of the tile at `box` (top, left, height, width) -> its alpha.
    Beyond the image's edges the tile is extended by replication, as the
    untiled network sees it; at a tile's inner edges the tiler's margin
    (the upsampler's RADIUS) hides what replication there gets wrong."""

    def __init__(self, upsampler: guided_upsampler.GuidedUpsampler, alpha_lo: torch.Tensor,
                 image_lo: torch.Tensor, size: tuple[int, int]):
        self.upsampler, self.size = upsampler, size
        self.alpha_lo = guided_upsampler.snap(alpha_lo)
        self.guide_lo = upsampler.low_guide(image_lo)
        self.counts = {"computed": 0, "skipped": 0}

    def __call__(self, colour: torch.Tensor, coarse: torch.Tensor | None,
                 box: tuple[int, int, int, int]) -> torch.Tensor:
        top, left, height, width = box
        r = self.upsampler.RADIUS
        low_h, low_w = self.alpha_lo.shape[-2:]
        seen = self.alpha_lo[..., footprint(top, top + height, self.size[0], low_h, r),
                             footprint(left, left + width, self.size[1], low_w, r)]
        if bool((seen == 0).all()) or bool((seen == 1).all()):
            self.counts["skipped"] += 1
            return seen.new_full((1, 1, height, width), float(seen.flatten()[0]))
        self.counts["computed"] += 1
        padded = F.pad(colour, (r, r, r, r), mode="replicate")
        return self.upsampler(padded.to(self.alpha_lo.device), self.alpha_lo, self.guide_lo,
                              (top, left), self.size)

    def whole(self, image: np.ndarray, device: torch.device,
              tile: int = UPSAMPLE_TILE) -> torch.Tensor:
        """The full-resolution alpha of a float32 (h, w, 3) image, tiled."""
        out = np.zeros(image.shape[:2] + (1,), np.float32)
        tiling.run_tiled([image], ["f32"], out, "f32",
                         lambda inputs, box: self(inputs[0], None, box), scale=1, tile=tile,
                         margin=self.upsampler.RADIUS, device=device)
        return torch.from_numpy(out).permute(2, 0, 1)[None]


def footprint(start: int, stop: int, length: int, low: int, margin: int) -> slice:
    """Working-resolution rows (or columns) that full-resolution [start,
    stop) with `margin` px of context can read."""
    lo = (max(start - margin, 0) + 0.5) * low / length - 0.5
    hi = (min(stop + margin, length) - 0.5) * low / length - 0.5
    return slice(max(int(math.floor(lo)) - guided_upsampler.WINDOW - 1, 0),
                 min(int(math.ceil(hi)) + guided_upsampler.WINDOW + 2, low))


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
