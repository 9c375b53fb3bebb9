"""What blurred a photo, found from the photo alone: the part of blind
deconvolution that needs the whole picture. The engine runs it once per job
(server/methods/blind_deconvolution.py, `prepare`), then deconvolves tile by
tile with what it found (deconvolve.py, through server/tiling.py).

1. The noise's level is measured (noise.py) and clipped highlights found.
2. The kernel is estimated (estimate.py) on the grey picture, in the window
   with the most strong edges (a kernel needs edges, and a window keeps it
   fast); a noisy picture's window is first denoised by the learned prior.
3. A soft blur that looks like a round Gaussian or a disc (soft focus,
   defocus) is replaced by the best-fitting one of those (training/degradations.py
   draws them): a smooth kernel is what a blind estimate gets least
   exactly, and the model is exact. An estimate that is a single pixel, or
   one the picture's own spectrum contradicts (detail left where the kernel
   would have removed it: blur_evident), means no blur: the picture is
   left as it is.
4. Where the picture is large, each overlapping region re-estimates its own
   kernel, starting from the whole picture's (a camera that rotated while
   shaking blurs its corners differently), keeping it only if the region
   has the edges to support it and it stays close to its start. A tile is
   deconvolved with the kernel of the region nearest to it, and the tiler
   cross-fades neighbouring tiles.

All of it runs with torch on the picture's device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from server import tiling
from training import degradations

from . import deconvolve, estimate, fourier, kernels
from .noise import noise_sigma

WINDOW = 640            # side of the window the picture's kernel is estimated in
REGION = 768            # side of the regions that get kernels of their own
NOISE_SAMPLE = 1024     # side of the centre crop the noise is measured on
CLIPPED = 0.985         # values at or above this fraction of the top are clipped
AUTOMATIC_SIZE = 35     # the automatic kernel side ...
AUTOMATIC_SHARE = 0.025     # ... or this share of the shorter side, if larger ...
LARGEST_AUTOMATIC = 75      # ... up to this
PARAMETRIC_FIT = 0.9    # replace an estimate by a Gaussian or a disc this similar to it ...
ROUND = 0.8             # ... if it is at least this round (kernels.aspect)
REGION_AGREEMENT = 0.5  # a region's kernel must be this similar to the picture's
DENOISE_FOR_ESTIMATION = 1.5 / 255   # above this noise, estimate on a denoised window
EDGE_FRACTION = 0.002   # fewer strong-edge pixels than this share: no kernel can be told
NO_BLUR_PEAK = 0.9      # an estimate with this much of its weight on one pixel is no blur
STOPPED = 0.05          # |K|^2 below this: frequencies a blur removed (blur_evident)
UNBLURRED_POWER = 2.0   # picture power there above this many times the noise's: no blur

Progress = Callable[[float], None]
Colour = Callable[[int, int, int, int], torch.Tensor]   # (top, left, h, w) -> (c, h, w)
Denoise = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class Settings:
    kernel_size: int = 0                    # 0: automatic
    estimation: estimate.Settings = estimate.Settings()
    regions: bool = True                    # kernels of their own for a large picture's regions


@dataclass
class Region:
    top: int
    left: int
    height: int
    width: int
    kernel: torch.Tensor


@dataclass
class Blur:
    """What blurred a picture: its kernel, what model the kernel follows
    ("free": an estimated shape, "gaussian", "disc", "given", or "none": no
    blur to remove), the noise's standard deviation ([0, 1] units) and the
    kernels of its regions, where they have their own."""
    kernel: torch.Tensor
    model: str
    noise: float
    regions: list[Region] = field(default_factory=list)

    def kernel_at(self, box: tuple[int, int, int, int]) -> torch.Tensor:
        """The kernel for the tile at `box` (top, left, height, width): the
        region's whose centre is nearest to the tile's."""
        if not self.regions:
            return self.kernel
        top, left, height, width = box
        y, x = top + height / 2, left + width / 2
        nearest = min(self.regions, key=lambda r: (r.top + r.height / 2 - y) ** 2
                      + (r.left + r.width / 2 - x) ** 2)
        return nearest.kernel

    @property
    def margin(self) -> int:
        """Pixels of picture a tile needs around it: a deconvolved pixel
        depends, in practice, on a few kernels' reach of picture (and on the
        denoiser's own reach)."""
        largest = max([self.kernel.shape[-1]] + [r.kernel.shape[-1] for r in self.regions])
        return 0 if self.model == "none" else 2 * largest + 32

    def describe(self) -> dict:
        return {"kernel_size": int(self.kernel.shape[-1]), "kernel_model": self.model,
                "noise_sigma": round(self.noise * 255.0, 2), "regions": len(self.regions) or 1}


def analyse(grey: torch.Tensor, clipped: torch.Tensor, colour: Colour, denoise: Denoise,
            settings: Settings = Settings(), kernel: torch.Tensor | None = None,
            progress: Progress = lambda fraction: None) -> Blur:
    """The blur of a picture: `grey` (h, w) its luminance in [0, 1],
    `clipped` (h, w) True where the sensor clipped, `colour(top, left, h, w)`
    its colour channels (c, h, w) in a box. `kernel`: the blur, when it is
    known (nothing is estimated then). `progress` may raise to cancel."""
    height, width = grey.shape
    top, left = max(0, (height - NOISE_SAMPLE) // 2), max(0, (width - NOISE_SAMPLE) // 2)
    noise = noise_sigma(colour(top, left, min(height, NOISE_SAMPLE), min(width, NOISE_SAMPLE)))
    if kernel is not None:
        kernel = kernels.normalise(kernel.to(grey))
        if kernel.shape[-1] % 2 == 0:
            kernel = F.pad(kernel, (0, 1, 0, 1))
        return Blur(kernel, "given", noise)
    none = Blur(kernels.delta(1, grey), "none", noise)
    size = kernel_size(settings.kernel_size, height, width)
    if size < 3 or not has_edges(grey):
        return none
    kernel, window = picture_kernel(grey, clipped, colour, size, noise, denoise,
                                    settings.estimation, lambda f: progress(0.8 * f))
    kernel, model = simplest_model(kernel)
    if model == "none" or not blur_evident(window, kernel):
        return none
    regions = []
    if settings.regions and model == "free":
        regions = region_kernels(grey, clipped, kernel, settings.estimation,
                                 lambda f: progress(0.8 + 0.2 * f))
    progress(1.0)
    return Blur(kernel, model, noise, regions)


def kernel_size(requested: int, height: int, width: int) -> int:
    """The kernel side to estimate: the requested one made odd (0:
    automatic), never more than a third of the shorter side."""
    if requested:
        size = max(3, requested | 1)
    else:
        size = min(max(AUTOMATIC_SIZE, int(AUTOMATIC_SHARE * min(height, width))) | 1,
                   LARGEST_AUTOMATIC)
    return min(size, odd_below(min(height, width) // 3))


def odd_below(n: int) -> int:
    return n if n % 2 else n - 1


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(c, h, w) -> (h, w), ITU-R 601 for colour."""
    if image.shape[0] < 3:
        return image[0]
    weights = torch.tensor([0.299, 0.587, 0.114], device=image.device, dtype=image.dtype)
    return (image[:3] * weights[:, None, None]).sum(0)


def clipped_pixels(image: torch.Tensor, top_value: float = 1.0) -> torch.Tensor:
    """(c, h, w) -> (h, w): True where any channel is at the top of its range."""
    return (image >= CLIPPED * top_value).any(0)


def strong_edges(grey: torch.Tensor) -> torch.Tensor:
    """Pixels whose gradient stands clearly out of the noise and texture."""
    gx, gy = grey[:, 1:] - grey[:, :-1], grey[1:] - grey[:-1]
    magnitude = torch.sqrt(gx[:-1] ** 2 + gy[:, :-1] ** 2)
    return magnitude > 0.04


def has_edges(grey: torch.Tensor) -> bool:
    if min(grey.shape) < 2:
        return False
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
    step = max(1, side // 4)
    tops = sorted(set(list(range(0, height - h + 1, step)) + [height - h]))
    lefts = sorted(set(list(range(0, width - w + 1, step)) + [width - w]))
    best, where = -1.0, (0, 0)
    for top in tops:
        for left in lefts:
            total = float(integral[top + h, left + w] - integral[top, left + w]
                          - integral[top + h, left] + integral[top, left])
            if total > best:
                best, where = total, (top, left)
    return where[0], where[1], h, w


def dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    if not bool(mask.any()):
        return mask
    return F.max_pool2d(mask[None, None].float(), size | 1, stride=1,
                        padding=(size | 1) // 2)[0, 0] > 0


def picture_kernel(grey, clipped, colour: Colour, size: int, noise: float, denoise: Denoise,
                   settings: estimate.Settings,
                   progress: Progress) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel estimated in the window with the most edges, and that
    window of `grey` (as it is, not denoised)."""
    # the convolution model fails within a kernel's reach of a clipped pixel
    usable = ~dilate(clipped, size)
    top, left, h, w = best_window(grey, usable, WINDOW)
    window = found_in = grey[top:top + h, left:left + w]
    if noise > DENOISE_FOR_ESTIMATION:
        found_in = luminance(denoise(colour(top, left, h, w), noise).clamp(0.0, 1.0))
    kernel = estimate.estimate(found_in, size, settings, valid=usable[top:top + h, left:left + w],
                               progress=progress)
    return kernels.centre_exactly(kernels.crop_to_support(kernel)), window


def blur_evident(grey: torch.Tensor, kernel: torch.Tensor) -> bool:
    """Whether `grey` (h, w) looks blurred by `kernel`: a blur all but
    removes the frequencies where the kernel's transfer is small, leaving
    only noise there, while an unblurred picture still holds detail. So the
    picture's power in those frequencies (where |K|^2 < STOPPED), its median
    over them, is compared with the noise's (measured on the same picture,
    8-bit rounding included): about 0.7 times it for a blurred picture (the
    median of an exponential), several times it for a sharp one (measured
    on the held-out photos and on synthetic ones: 0.64 to 1.05 blurred with
    Gaussian, motion or shake kernels, 2.9 to 20 sharp). Blind estimation
    finds some blur in any picture; this is what keeps a sharp one as it
    is."""
    if kernel.shape[-1] < 3 or min(grey.shape) < 4 * kernel.shape[-1]:
        return True
    noise = noise_sigma(grey[None]) ** 2 + (1.0 / 255.0) ** 2 / 12.0
    pad = kernel.shape[-1]
    picture = estimate.periodic_pad(grey - grey.mean(), pad)
    stopped = fourier.otf(kernel.to(grey), picture.shape).abs() ** 2 < STOPPED
    if int(stopped.sum()) < 16:
        # a kernel that stops no frequency (a slight blur): nothing to tell
        # it by, and deconvolving it cannot ring much
        return True
    power = torch.fft.rfft2(picture).abs()[stopped] ** 2 / picture.numel()
    return float(power.median()) < UNBLURRED_POWER * noise


def simplest_model(kernel: torch.Tensor) -> tuple[torch.Tensor, str]:
    """A Gaussian or a disc where one fits the estimate closely, no blur
    where it is (nearly) a single pixel, else the estimate as it is."""
    if kernel.shape[-1] <= 1 or float(kernel.max()) > NO_BLUR_PEAK:
        return kernels.delta(1, kernel), "none"
    # Gaussians and discs are round; an elongated blob is a motion the
    # estimate got only roughly, and a round model would blur it further
    # (bench/kernel_estimation.py: estimates of Gaussian blurs had aspects
    # 0.82 to 0.97, blobs that were motion or shake and that a Gaussian
    # fitted 0.58 to 0.71)
    if kernels.aspect(kernel) < ROUND:
        return kernel, "free"
    best, fit, name = 0.0, kernel, "free"
    size = kernel.shape[-1]
    for sigma in [0.3 + 0.1 * i for i in range(1, 60)]:
        candidate = kernels.from_array(degradations.gaussian(sigma), kernel)
        similarity = kernels.similarity(kernel, candidate)
        if similarity > best:
            best, fit, name = similarity, candidate, "gaussian"
    for radius in [0.5 + 0.25 * i for i in range(1, 40)]:
        if 2 * radius + 1 > size + 6:
            break
        candidate = kernels.from_array(degradations.disc(radius), kernel)
        similarity = kernels.similarity(kernel, candidate)
        if similarity > best:
            best, fit, name = similarity, candidate, "disc"
    if best >= PARAMETRIC_FIT:
        return fit, name
    return kernel, "free"


def region_kernels(grey, clipped, kernel: torch.Tensor, settings: estimate.Settings,
                   progress: Progress) -> list[Region]:
    """Kernels of their own for the overlapping regions of a large picture;
    none where the picture is one region."""
    height, width = grey.shape
    overlap = REGION // 3
    rows, columns = tiling.plan_axis(height, REGION, overlap), tiling.plan_axis(width, REGION,
                                                                                overlap)
    if rows.count * columns.count == 1:
        return []
    size = kernel.shape[-1]
    usable = ~dilate(clipped, size)
    refine = settings.with_(iterations=3, lambda_gradient=settings.lambda_floor * 4)
    found, total = [], rows.count * columns.count
    for top in rows.starts:
        for left in columns.starts:
            box = (slice(top, top + rows.size), slice(left, left + columns.size))
            own = kernel
            if has_edges(grey[box]):
                estimated = kernels.centre_exactly(estimate.estimate(
                    grey[box], size, refine, valid=usable[box], initial=kernel))
                if kernels.similarity(estimated, kernel) >= REGION_AGREEMENT:
                    own = estimated
            found.append(Region(top, left, rows.size, columns.size, own))
            progress(len(found) / total)
    return found


def deconvolve_tile(colour: torch.Tensor, box: tuple[int, int, int, int], blur: Blur,
                    clipped: torch.Tensor, denoise: Denoise,
                    settings: deconvolve.Settings = deconvolve.Settings(),
                    step: Callable[[int, int], None] = lambda done, total: None) -> torch.Tensor:
    """One tile (c, h, w) at `box` of the picture deconvolved with its
    kernel; `clipped` is the whole picture's map. A picture without blur
    comes back as it is."""
    if blur.model == "none":
        return colour
    top, left, height, width = box
    valid = ~clipped[top:top + height, left:left + width]
    return deconvolve.deconvolve(colour, blur.kernel_at(box), denoise, blur.noise, valid,
                                 settings, step)
