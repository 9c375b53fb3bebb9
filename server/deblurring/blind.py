"""Deblurring a photo whose blur is not known: the whole procedure.

1. The noise's level is measured (noise.py), clipped highlights found.
2. The kernel is estimated (estimate.py) on the grey picture, in the window
   with the most edges (a kernel needs edges, and a window keeps it fast);
   a noisy picture is first denoised for this by the learned prior.
3. A soft blur that looks like a Gaussian or a disc (soft focus, defocus)
   is replaced by the best-fitting one of those: a smooth kernel is what a
   blind estimate gets least exactly, and the model is exact.
4. Where the picture is large, each overlapping region re-estimates its own
   kernel from the whole picture's (a camera that rotated while shaking
   blurs its corners differently), keeping it only if the region has the
   edges to support it and it stays close to its start.
5. Each region is deconvolved with its kernel (deconvolve.py, with the
   learned denoiser as the prior) and the regions are cross-faded.
6. `strength` mixes the result with the input.

All of it runs with torch on the image's device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from server import tiling

from . import deconvolve, estimate, kernels
from .denoiser import Denoiser
from .noise import noise_sigma

WINDOW = 640            # side of the window the global kernel is estimated in
REGION = 768            # side of the regions that get kernels of their own
DECONVOLVE_TILE = 1024  # deconvolution tiles (memory), when one kernel serves all
CLIPPED = 0.985         # pixel values at or above this fraction of the top are clipped
AUTOMATIC_SIZES = (15, 47)   # the automatic kernel side: 4% of the shorter side, within these
PARAMETRIC_FIT = 0.9    # replace an estimate by a Gaussian or a disc this similar to it
REGION_AGREEMENT = 0.5  # a region's kernel must be this similar to the picture's
DENOISE_FOR_ESTIMATION = 1.5 / 255   # above this noise, estimate on a denoised picture
EDGE_FRACTION = 0.002   # fewer strong-edge pixels than this share: no kernel can be told


@dataclass(frozen=True)
class Request:
    strength: float = 1.0
    kernel_size: int = 0                    # 0: automatic
    kernel: torch.Tensor | None = None      # given: no estimation (non-blind)
    tile: int = 0                           # deconvolution tile side; 0: DECONVOLVE_TILE
    estimation: estimate.Settings = estimate.Settings()
    deconvolution: deconvolve.Settings = deconvolve.Settings()


@dataclass
class Outcome:
    image: torch.Tensor                     # (c, h, w)
    kernel: torch.Tensor                    # the picture's kernel
    model: str                              # "free", "gaussian", "disc", "none", "given"
    noise: float                            # the noise's sigma, [0, 1] units
    regions: list[tuple[int, int, int, int, torch.Tensor]] = field(default_factory=list)
    # (top, left, height, width, kernel) where regions have kernels of their own

    def describe(self) -> dict:
        return {"kernel_size": int(self.kernel.shape[-1]), "kernel_model": self.model,
                "noise_sigma": round(self.noise * 255.0, 2), "regions": len(self.regions) or 1}


Progress = Callable[[float, str], None]


def deblur(image: torch.Tensor, denoiser: Denoiser, request: Request = Request(),
           progress: Progress = lambda fraction, stage: None) -> Outcome:
    """`image` (c, h, w) in [0, 1] (grey or colour, no alpha). `progress`
    may raise to cancel."""
    channels, height, width = image.shape
    noise = noise_sigma(image)
    if request.strength <= 0.0:
        return Outcome(image, kernels.delta(1, image), "none", noise)
    top_value = max(1.0, float(image.max()))
    clipped = (image >= CLIPPED * top_value).any(0)
    grey = luminance(image)

    if request.kernel is not None:
        kernel = kernels.normalise(request.kernel.to(image))
        if kernel.shape[-1] % 2 == 0:
            kernel = F.pad(kernel, (0, 1, 0, 1))
        model, regional = "given", []
    else:
        size = request.kernel_size or automatic_size(height, width)
        size = min(size, odd_below(min(height, width) // 3))
        if size < 3 or not has_edges(grey):
            return Outcome(image, kernels.delta(1, image), "none", noise)
        progress(0.0, "estimating the blur")
        kernel = global_kernel(image, grey, clipped, size, noise, denoiser, request.estimation,
                               lambda f: progress(0.3 * f, "estimating the blur"))
        kernel, model = simplest_model(kernel)
        regional = region_kernels(grey, clipped, kernel, model, request.estimation,
                                  lambda f: progress(0.3 + 0.1 * f, "estimating the blur by region"))
        if model == "none":
            return Outcome(image, kernel, "none", noise)

    start = 0.4 if request.kernel is None else 0.0
    result = deconvolve_all(image, clipped, kernel, regional, noise, denoiser,
                            request.deconvolution, request.tile or DECONVOLVE_TILE,
                            lambda f: progress(start + (1 - start) * f, "deconvolving"))
    if request.strength < 1.0:
        result = image + request.strength * (result - image)
    return Outcome(result, kernel, model, noise, regional)


def luminance(image: torch.Tensor) -> torch.Tensor:
    if image.shape[0] == 1:
        return image[0]
    weights = torch.tensor([0.299, 0.587, 0.114], device=image.device, dtype=image.dtype)
    return (image[:3] * weights[:, None, None]).sum(0)


def odd_below(n: int) -> int:
    return n if n % 2 else n - 1


def automatic_size(height: int, width: int) -> int:
    low, high = AUTOMATIC_SIZES
    return odd_below(int(min(max(0.04 * min(height, width) + 1, low), high)) | 1)


def strong_edges(grey: torch.Tensor) -> torch.Tensor:
    """Pixels whose gradient stands clearly out of the noise and texture."""
    gx, gy = grey[:, 1:] - grey[:, :-1], grey[1:] - grey[:-1]
    magnitude = torch.sqrt(gx[:-1] ** 2 + gy[:, :-1] ** 2)
    return magnitude > 0.04


def has_edges(grey: torch.Tensor) -> bool:
    return float(strong_edges(grey).float().mean()) > EDGE_FRACTION


def best_window(grey: torch.Tensor, usable: torch.Tensor, side: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the side x side window holding the most
    strong edges in usable pixels (a coarse search: quarter-window steps)."""
    height, width = grey.shape
    if height <= side and width <= side:
        return 0, 0, height, width
    h, w = min(side, height), min(side, width)
    score = F.pad(strong_edges(grey).float(), (0, 1, 0, 1)) * usable.float()
    integral = F.pad(score.cumsum(0).cumsum(1), (1, 0, 1, 0))
    best, where = -1.0, (0, 0)
    step = max(1, side // 4)
    tops = sorted(set(list(range(0, height - h + 1, step)) + [height - h]))
    lefts = sorted(set(list(range(0, width - w + 1, step)) + [width - w]))
    for top in tops:
        for left in lefts:
            total = float(integral[top + h, left + w] - integral[top, left + w]
                          - integral[top + h, left] + integral[top, left])
            if total > best:
                best, where = total, (top, left)
    return where[0], where[1], h, w


def global_kernel(image, grey, clipped, size, noise, denoiser, settings, progress):
    # the model fails within a kernel's reach of a clipped pixel
    usable = ~dilate(clipped, size)
    top, left, h, w = best_window(grey, usable, WINDOW)
    window = grey[top:top + h, left:left + w]
    if noise > DENOISE_FOR_ESTIMATION:
        colour = image[:, top:top + h, left:left + w]
        window = luminance(denoiser(colour, noise).clamp(0.0, 1.0))
    kernel = estimate.estimate(window, size, settings,
                               valid=usable[top:top + h, left:left + w], progress=progress)
    return kernels.centre_exactly(kernels.crop_to_support(kernel))


def dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    if not bool(mask.any()):
        return mask
    return F.max_pool2d(mask[None, None].float(), size | 1, stride=1,
                        padding=(size | 1) // 2)[0, 0] > 0


def simplest_model(kernel: torch.Tensor) -> tuple[torch.Tensor, str]:
    """A Gaussian or a disc where one fits the estimate closely, nothing where
    it is a single pixel, else the estimate as it is."""
    if kernel.shape[-1] <= 1 or float(kernel.max()) > 0.9:
        return kernels.delta(1, kernel), "none"
    best, fit, name = 0.0, kernel, "free"
    size = kernel.shape[-1]
    for sigma in [0.3 + 0.1 * i for i in range(1, 60)]:
        candidate = kernels.gaussian(sigma, like=kernel)
        similarity = kernels.similarity(kernel, candidate)
        if similarity > best:
            best, fit, name = similarity, candidate, "gaussian"
    for radius in [0.5 + 0.25 * i for i in range(1, 40)]:
        if 2 * radius + 1 > size + 6:
            break
        candidate = kernels.disc(radius, like=kernel)
        similarity = kernels.similarity(kernel, candidate)
        if similarity > best:
            best, fit, name = similarity, candidate, "disc"
    if best >= PARAMETRIC_FIT:
        return fit, name
    return kernel, "free"


def region_grid(height: int, width: int) -> tuple[tiling.Axis, tiling.Axis]:
    overlap = REGION // 3
    return (tiling.plan_axis(height, REGION, overlap), tiling.plan_axis(width, REGION, overlap))


def region_kernels(grey, clipped, kernel, model, settings, progress):
    """Kernels of their own for the regions of a large picture; empty where
    the picture is one region, or the blur is a parametric one (focus blur
    is the same everywhere a lens is sharp, and a model has no shape to
    refine)."""
    height, width = grey.shape
    rows, columns = region_grid(height, width)
    if rows.count * columns.count == 1 or model != "free":
        return []
    size = kernel.shape[-1]
    usable = ~dilate(clipped, size)
    found = []
    total, done = rows.count * columns.count, 0
    refine = settings.with_(iterations=3, lambda_gradient=settings.lambda_floor * 4)
    for top in rows.starts:
        for left in columns.starts:
            region = grey[top:top + rows.size, left:left + columns.size]
            own = kernel
            if has_edges(region):
                estimated = estimate.estimate(region, size, refine,
                                              valid=usable[top:top + rows.size,
                                                           left:left + columns.size],
                                              initial=kernel)
                estimated = kernels.centre_exactly(estimated)
                if kernels.similarity(estimated, kernel) >= REGION_AGREEMENT:
                    own = estimated
            found.append((top, left, rows.size, columns.size, own))
            done += 1
            progress(done / total)
    return found


def deconvolve_all(image, clipped, kernel, regional, noise, denoiser, settings, tile, progress):
    """Deconvolve tile by tile (each region with its kernel), cross-fading
    the overlaps."""
    channels, height, width = image.shape
    if regional:
        rows, columns = region_grid(height, width)
        tile_kernels = [k for *_, k in regional]
    else:
        # each tile is deconvolved with context around it: the overlap only
        # needs room to cross-fade
        overlap = 32
        tile = max(tile, 4 * overlap + 16)
        rows = tiling.plan_axis(height, tile, overlap)
        columns = tiling.plan_axis(width, tile, overlap)
        tile_kernels = [kernel] * (rows.count * columns.count)
    margin = max(context(k) for k in tile_kernels)
    total = rows.count * columns.count
    out = torch.zeros_like(image)
    index = 0
    for i, top in enumerate(rows.starts):
        row_weight = torch.from_numpy(tiling.axis_weights(rows, i, 1, 0)).to(image)
        for j, left in enumerate(columns.starts):
            column_weight = torch.from_numpy(tiling.axis_weights(columns, j, 1, 0)).to(image)
            # deconvolve with context around the tile, keep the tile
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1 = min(height, top + rows.size + margin)
            x1 = min(width, left + columns.size + margin)
            done_before = index

            def step(k, n):
                progress((done_before + k / n) / total)

            restored = deconvolve.deconvolve(image[:, y0:y1, x0:x1], tile_kernels[index],
                                             denoiser, noise, ~clipped[y0:y1, x0:x1], settings,
                                             step)
            restored = restored[:, top - y0:top - y0 + rows.size, left - x0:left - x0 + columns.size]
            out[:, top:top + rows.size, left:left + columns.size] += \
                restored * row_weight[:, None] * column_weight[None, :]
            index += 1
    return out


def context(kernel: torch.Tensor) -> int:
    """Pixels of picture around a tile that its deconvolution reads: a
    deconvolved pixel depends, in practice, on a few kernels' reach of
    picture (and the denoiser's own reach)."""
    return 2 * kernel.shape[-1] + 32
