"""Run a per-pixel model over an image in overlapping tiles.

Big images do not fit a model's working memory in one piece, so the image is
cut into equal tiles that overlap. Near a tile's inner edge a model lacks
context: those `margin` pixels get no weight, and across the rest of the
overlap the two neighbours are cross-faded with linear ramps that sum to one.
For a model whose receptive field fits in the margin the tiled result equals
the untiled one; for networks with wider, fading receptive fields the ramp
hides what is left of the seam.

Tiles are processed a row at a time into a band of float accumulators; rows
that no later tile touches are converted and written to the result at once,
so memory stays at one band, whatever the image size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from . import pixels


@dataclass(frozen=True)
class Axis:
    starts: tuple[int, ...]
    size: int

    @property
    def count(self) -> int:
        return len(self.starts)


def plan_axis(length: int, tile: int, overlap: int, align: int = 1) -> Axis:
    """Equal tiles covering [0, length), evenly spaced, neighbours overlapping
    by at least `overlap`, never three on one pixel (needs tile >= 4 *
    (overlap + align - 1) + 16), every start a multiple of `align` (for
    networks that only shifts by that much leave unchanged)."""
    if length <= tile:
        return Axis((0,), length)
    # rounding the starts down to multiples of `align` can widen a gap by
    # align - 1: plan for that much more overlap
    planned = overlap + align - 1
    # the last tile ends at `length`: its start, length - size, must be
    # aligned too, which can make the tiles up to align - 1 larger
    count = math.ceil((length - planned) / (tile - (align - 1) - planned))
    size = math.ceil((length + (count - 1) * planned) / count)
    size += (length - size) % align
    if size >= length:
        return Axis((0,), length)
    starts = tuple(k * (length - size) // (count - 1) // align * align for k in range(count))
    return Axis(starts, size)


def axis_weights(axis: Axis, index: int, scale: int, margin: int) -> np.ndarray:
    """Blend weights of one tile along one axis, in output pixels."""
    n = axis.size * scale
    weights = np.ones(n, np.float32)
    position = np.arange(n, dtype=np.float32) + 0.5
    if index > 0:
        shared = (axis.starts[index - 1] + axis.size - axis.starts[index]) * scale
        ramp = shared - 2 * margin * scale
        rising = np.clip((position - margin * scale) / ramp, 0.0, 1.0)
        weights = np.minimum(weights, rising)
    if index < axis.count - 1:
        shared = (axis.starts[index] + axis.size - axis.starts[index + 1]) * scale
        ramp = shared - 2 * margin * scale
        falling = np.clip((n - position - margin * scale) / ramp, 0.0, 1.0)
        weights = np.minimum(weights, falling)
    return weights


def min_tile(margin: int, align: int = 1) -> int:
    return 4 * (overlap_for(margin) + align - 1) + 16


def overlap_for(margin: int) -> int:
    """Margins on both sides plus a ramp to fade across."""
    return 2 * margin + max(8, margin // 2)


class Cancelled(Exception):
    pass


# (one float32 tensor per source, the tile's box in input pixels: top, left,
# height, width) -> the tile's result
TileFunction = Callable[[list[torch.Tensor], tuple[int, int, int, int]], torch.Tensor]


def run_tiled(sources: Sequence[np.ndarray], formats: Sequence[str], out: np.ndarray,
              out_format: str, fn: TileFunction, *, scale: int, tile: int, margin: int,
              device: torch.device, align: int = 1,
              progress: Callable[[int, int], None] = lambda done, total: None,
              cancelled: Callable[[], bool] = lambda: False) -> None:
    """Apply `fn` to every tile of `sources` (arrays of equal height and width)
    and write the blended result, `scale` times larger, into `out`.

    `fn` takes float32 (1, c, h, w) tensors on `device`, one per source,
    and the tile's box (top, left, h, w), and returns a (1, c_out, h * scale,
    w * scale) tensor. Tiles start at multiples of `align` input pixels.
    progress(done, total) before the first tile (done 0) and after each."""
    height, width = sources[0].shape[:2]
    overlap = overlap_for(margin)
    tile = max(tile, min_tile(margin, align))
    rows = plan_axis(height, tile, overlap, align)
    cols = plan_axis(width, tile, overlap, align)
    channels_out = out.shape[2]
    col_weights = [axis_weights(cols, j, scale, margin) for j in range(cols.count)]
    band_height = rows.size * scale
    band = np.zeros((band_height, width * scale, channels_out), np.float32)
    band_top = 0
    total = rows.count * cols.count
    done = 0
    progress(0, total)
    for i, y in enumerate(rows.starts):
        row_weight = axis_weights(rows, i, scale, margin)[:, None, None]
        for j, x in enumerate(cols.starts):
            if cancelled():
                raise Cancelled()
            inputs = [pixels.to_tensor(src[y:y + rows.size, x:x + cols.size], fmt, device)
                      for src, fmt in zip(sources, formats)]
            with torch.inference_mode():
                result = fn(inputs, (y, x, rows.size, cols.size))
            expected = (1, channels_out, rows.size * scale, cols.size * scale)
            if tuple(result.shape) != expected:
                raise RuntimeError("tile function returned %s, expected %s"
                                   % (tuple(result.shape), expected))
            block = result[0].permute(1, 2, 0).float().cpu().numpy()
            block *= row_weight
            block *= col_weights[j][None, :, None]
            top = y * scale - band_top
            band[top:top + block.shape[0], x * scale:x * scale + block.shape[1]] += block
            done += 1
            progress(done, total)
        final = (rows.starts[i + 1] * scale if i + 1 < rows.count else height * scale) - band_top
        pixels.store(band[:final], out[band_top:band_top + final], out_format)
        keep = band_height - final
        band[:keep] = band[final:final + keep]
        band[keep:] = 0.0
        band_top += final
