"""Pixel frames as arrays, and the conversions around the models.

Frames arrive as raw u8, u16 or f32 samples. Models see float32 in [0, 1]
(f32 frames are taken as they are); results go back in the frame's own
format, rounded once at the very end, so 16-bit and float images never
pass through 8 bits.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"u8": np.dtype("u1"), "u16": np.dtype("<u2"), "f32": np.dtype("<f4")}
FULL_SCALE = {"u8": 255.0, "u16": 65535.0, "f32": 1.0}


def as_array(buffer, desc: dict) -> np.ndarray:
    """A zero-copy (height, width, channels) view of a frame's bytes."""
    return np.frombuffer(buffer, DTYPES[desc["format"]]).reshape(
        desc["height"], desc["width"], desc["channels"])


def is_finite(array: np.ndarray) -> bool:
    if array.dtype.kind != "f":
        return True
    rows = max(1, (64 << 20) // max(1, array[0].nbytes))
    return all(np.isfinite(array[y:y + rows]).all() for y in range(0, array.shape[0], rows))


MAX_FLOAT_SAMPLE = 65504.0   # half precision's largest: networks may run in float16


def out_of_range(array: np.ndarray) -> float | None:
    """None when every sample of a float frame is finite and within
    ±MAX_FLOAT_SAMPLE; else the first offending magnitude found (NaN, inf or
    the largest). Larger samples would overflow a model's arithmetic (1e38
    times a filter weight is infinity) and come back as NaN everywhere."""
    if array.dtype.kind != "f":
        return None
    rows = max(1, (64 << 20) // max(1, array[0].nbytes))
    for y in range(0, array.shape[0], rows):
        largest = float(np.abs(array[y:y + rows]).max())
        if not largest <= MAX_FLOAT_SAMPLE:   # also NaN
            return largest
    return None


def to_tensor(block: np.ndarray, fmt: str, device: torch.device) -> torch.Tensor:
    """(h, w, c) samples -> float32 (1, c, h, w) on `device`, in [0, 1]."""
    if fmt == "u8":
        # Moving bytes to a GPU costs a quarter of moving floats.
        tensor = torch.from_numpy(np.array(block, copy=True)).to(device).float().div_(255.0)
    else:
        values = np.array(block, dtype=np.float32, copy=True)
        if fmt == "u16":
            values /= 65535.0
        tensor = torch.from_numpy(values).to(device)
    return tensor.permute(2, 0, 1).unsqueeze(0)


def store(values: np.ndarray, out: np.ndarray, fmt: str) -> None:
    """float32 (h, w, c) -> `out` (a slice of the result frame) in its format:
    rounded to nearest and clamped for u8 and u16, as is for f32."""
    if fmt == "f32":
        out[...] = values
        return
    full = FULL_SCALE[fmt]
    scaled = values * full
    scaled += 0.5
    np.clip(scaled, 0.0, full, out=scaled)
    out[...] = scaled.astype(out.dtype)


def fill_transparent(image: np.ndarray, fmt: str) -> np.ndarray:
    """A copy of an image with alpha whose fully transparent pixels take the
    colour of the visible pixels around them.

    Their stored colour is arbitrary (often black), and any filter wider than
    a pixel would smear it into the visible edge. Colour is averaged, weighted
    by alpha, on a coarse grid and pulled down a pyramid into empty cells, so
    every hidden pixel gets a nearby visible colour. Returns `image` itself
    when no pixel is fully transparent."""
    height, width, channels = image.shape
    alpha = image[..., channels - 1]
    hidden = alpha == 0
    if not hidden.any() or hidden.all():
        return image
    factor = max(1, math.ceil(math.sqrt(height * width / 4e6)))
    coarse = _pooled_premultiplied(image, fmt, factor)       # (c, H/f, W/f), alpha last
    colour = _push_pull(torch.from_numpy(coarse))             # (c-1, H/f, W/f)
    filled = np.array(image, copy=True)
    full = FULL_SCALE[fmt]
    if fmt != "f32":
        colour = (colour * full + 0.5).clamp_(0, full)
    colour = colour.permute(1, 2, 0).numpy().astype(image.dtype)
    block = max(factor, (32 << 20) // max(1, image[0].nbytes) // factor * factor)
    for y in range(0, height, block):
        rows = slice(y, min(height, y + block))
        grid = colour[y // factor:(rows.stop + factor - 1) // factor]
        grid = np.repeat(np.repeat(grid, factor, axis=0), factor, axis=1)
        grid = grid[:rows.stop - y, :width]
        mask = hidden[rows]
        filled[rows][mask, :channels - 1] = grid[mask]
    return filled


def _pooled_premultiplied(image: np.ndarray, fmt: str, factor: int) -> np.ndarray:
    """Sums over factor x factor cells of alpha-weighted colour, and of alpha."""
    height, width, channels = image.shape
    rows_out = math.ceil(height / factor)
    cols_out = math.ceil(width / factor)
    pooled = np.zeros((channels, rows_out, cols_out), np.float32)
    full = FULL_SCALE[fmt]
    step = factor * max(1, (16 << 20) // max(1, image[0].nbytes * factor))
    for y in range(0, height, step):
        chunk = image[y:y + step].astype(np.float32) / full
        weight = chunk[..., channels - 1:]
        chunk[..., :channels - 1] *= weight
        tensor = torch.from_numpy(chunk).permute(2, 0, 1).unsqueeze(0)
        pad_h = -tensor.shape[2] % factor
        pad_w = -tensor.shape[3] % factor
        tensor = F.pad(tensor, (0, pad_w, 0, pad_h))
        summed = F.avg_pool2d(tensor, factor) * (factor * factor)
        pooled[:, y // factor:y // factor + summed.shape[2]] = summed[0].numpy()
    return pooled


def _push_pull(pooled: torch.Tensor) -> torch.Tensor:
    """Colour for every cell: its own alpha-weighted mean where it has any
    alpha, else the mean of the nearest coarser level that has."""
    colour_sum, weight = pooled[:-1].unsqueeze(0), pooled[-1:].unsqueeze(0)
    levels = [(colour_sum, weight)]
    while min(levels[-1][1].shape[2:]) > 1:
        c, w = levels[-1]
        pad = (0, c.shape[3] % 2, 0, c.shape[2] % 2)
        levels.append((F.avg_pool2d(F.pad(c, pad), 2) * 4, F.avg_pool2d(F.pad(w, pad), 2) * 4))
    c, w = levels[-1]
    colour = c / w.clamp_min(1e-12)
    for c, w in reversed(levels[:-1]):
        up = F.interpolate(colour, scale_factor=2, mode="nearest")[..., :c.shape[2], :c.shape[3]]
        own = c / w.clamp_min(1e-12)
        colour = torch.where(w > 1e-6, own, up)
    return colour[0]


def shrink_bands(bands: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Area-shrink an image, given as bands of its rows, to `size`: each band
    in width first, then all of them in height. Area averaging is separable,
    so this equals shrinking the whole image at once."""
    narrow = torch.cat([F.interpolate(x, size=(x.shape[-2], size[1]), mode="area")
                        for x in bands], 2)
    return F.interpolate(narrow, size=size, mode="area")


def shrunk(frame: np.ndarray, fmt: str, channels: int, size: tuple[int, int],
           device: torch.device) -> torch.Tensor:
    """Frame (h, w, c) area-shrunk to `size` as (1, channels, *size) float32,
    a band of rows at a time: a 24 MP frame in float32 at once would need
    gigabytes."""
    height, width = frame.shape[:2]
    step = max(64, 2_000_000 // width)
    return shrink_bands([to_tensor(frame[top:top + step], fmt, device)[:, :channels]
                         for top in range(0, height, step)], size)
