"""Refine Matte's default: closed-form matting over an adaptive band at a
working resolution, brought to full resolution by each window's colour model.

1. The image and the coarse mask are area-shrunk to a working resolution of
   about WORKING_PIXELS (never enlarged).
2. Trimap: pixels farther than BAND working pixels from the mask's edge keep
   the mask's verdict; the band between is unknown. Within the band the mask
   still pulls, as a soft prior (PRIOR times the squared distance from the
   edge over BAND): a mask that is a few pixels off moves onto the image's
   edges, one that is far off does not drag alpha across flat colour.
3. Where the solution is still soft at the band's inner or outer limit, the
   subject's edge lies beyond it (a lasso drawn loosely around the subject,
   backdrop inside it): the band widens there, up to WIDEN times, and is
   solved again from where it was. This is what turns the backdrop inside a
   loose lasso transparent.
4. Each solve is closed-form matting (server/methods/matting_laplacian.py:
   the matting Laplacian as a stencil, multigrid-preconditioned conjugate
   gradients), in torch, so a GPU runs it.
5. Full resolution: alpha is affine in colour within every small window
   (the model closed-form matting rests on). The coefficients (a, b) of each
   working-resolution window are fitted to the solved alpha, averaged per
   pixel, bilinearly enlarged and applied to the full-resolution colours:
   alpha = a . I + b. Strands thinner than a working pixel come back where
   their colour differs from what is behind them. Tile by tile; tiles wholly
   inside or outside the subject are written as constants.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import pixels, tiling
from . import MatteMethod
from . import matting_laplacian

log = logging.getLogger("sharpfu.methods")

WORKING_PIXELS = 250_000
BAND = 15            # working pixels either side of the mask's edge that are unknown
PRIOR = 0.1          # pull towards the mask at the band's limit (zero at the edge)
WIDEN = 3            # times the band may widen where the subject's edge lies beyond it
COLOUR = 1.0         # pull towards what the local colour models say, when sure
COLOUR_TEMPERATURE = 4.0   # log-likelihood ratio (nats) at which they count as 76% sure
COLOUR_NOISE = 1e-3  # added to the models' colour variances
TYPICAL = 7.8        # squared Mahalanobis distance: chi-square, 3 dof, 95%
WIDEN_CONFIDENCE = 0.9
WIDEN_OUTWARDS = False   # a lasso's outside is the user's word: only its inside widens
SURE = 0.02          # alpha this close to 0 or 1 feeds the colour models of later rounds
EPSILON = 1e-6       # the matting Laplacian's regularisation
UPSAMPLE_EPSILON = 1e-5   # regularisation of the colour model brought to full resolution
ITERATIONS = 60
TOLERANCE = 1e-4
TILE = 512


def working_size(height: int, width: int, pixels_: int | None = None) -> tuple[int, int]:
    factor = min(1.0, math.sqrt((pixels_ or WORKING_PIXELS) / (height * width)))
    return max(1, round(height * factor)), max(1, round(width * factor))


# -- the band ---------------------------------------------------------------------

def distance(region: torch.Tensor, limit: int) -> torch.Tensor:
    """Distance in pixels from every pixel outside `region` (1, 1, h, w
    bool) to it, up to `limit` (beyond: limit + 1); 0 inside. Steps alternate
    the 8- and the 4-neighbourhood, so the distance is octagonal, within 8%
    of Euclidean."""
    reached = region.float()
    out = torch.zeros_like(reached)
    for step in range(limit + 1):
        out += 1 - reached
        if step % 2 == 0:
            reached = F.max_pool2d(reached, 3, 1, 1)
        else:
            reached = torch.maximum(F.max_pool2d(reached, (3, 1), 1, (1, 0)),
                                    F.max_pool2d(reached, (1, 3), 1, (0, 1)))
    return out


def box(x: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Mean over the (2 radius + 1)^2 window, shrunk at the borders;
    separable, so its cost grows with the radius, not its square."""
    size = 2 * radius + 1
    x = F.avg_pool2d(x, (size, 1), 1, (radius, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, size), 1, (0, radius), count_include_pad=False)


def colour_model(image: torch.Tensor, alpha: torch.Tensor, eps: float | None = None,
                 radius: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel, the mean over the windows holding it of each window's
    least-squares fit alpha = a . I + b (a: (1, 3, h, w), b: (1, 1, h, w)).
    Float64: covariances of nearly flat windows are small differences."""
    eps = UPSAMPLE_EPSILON if eps is None else eps
    image, alpha = image.double(), alpha.double()
    mean_i, mean_a = box(image, radius), box(alpha, radius)
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    cov = [(box(image[:, i:i + 1] * image[:, j:j + 1], radius)
            - mean_i[:, i:i + 1] * mean_i[:, j:j + 1]) for i, j in pairs]
    for d in (0, 3, 5):
        cov[d] = cov[d] + eps
    xx, xy, xz, yy, yz, zz = matting_laplacian._inverse_sym3(cov)
    c = box(image * alpha, radius) - mean_i * mean_a
    c0, c1, c2 = c[:, 0:1], c[:, 1:2], c[:, 2:3]
    a = torch.cat([xx * c0 + xy * c1 + xz * c2, xy * c0 + yy * c1 + yz * c2,
                   xz * c0 + yz * c1 + zz * c2], 1)
    b = mean_a - (a * mean_i).sum(1, keepdim=True)
    return box(a, radius).float(), box(b, radius).float()


def colour_evidence(image: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor,
                    radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Local colour models: a Gaussian (full covariance) of the colours of
    `fg` and one of `bg` (1, 1, h, w bool) within `radius` px of every pixel.
    Returns the log-likelihood ratio log p(I | fg) - log p(I | bg) of every
    pixel's colour, and where it counts: both models exist, and the likelier
    one finds the colour typical. (Not the colour's place on the line between
    the two means: a shaded petal falls part of the way along it and would be
    pulled semi-transparent.) The statistics are
    gathered on a grid shrunk so that the window is about 16 of its cells
    across: they change slowly, and the shrunk grid makes any radius cheap."""
    h, w = image.shape[-2:]
    step = max(1, radius // 8)
    small = (max(1, h // step), max(1, w // step))
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    x = image.double()
    products = torch.cat([x[:, i:i + 1] * x[:, j:j + 1] for i, j in pairs], 1)
    models = []
    for region in (fg, bg):
        r = region.double()
        stats = torch.cat([r, x * r, products * r], 1)
        stats = box(F.interpolate(stats, size=small, mode="area"),
                               max(1, radius // step))
        stats = F.interpolate(stats, size=(h, w), mode="bilinear", align_corners=False)
        weight = stats[:, :1]
        mean = stats[:, 1:4] / weight.clamp_min(1e-6)
        second = stats[:, 4:] / weight.clamp_min(1e-6)
        cov = [second[:, k:k + 1] - mean[:, i:i + 1] * mean[:, j:j + 1]
               for k, (i, j) in enumerate(pairs)]
        for d in (0, 3, 5):
            cov[d] = cov[d] + COLOUR_NOISE
        inv = matting_laplacian._inverse_sym3(cov)
        xx, xy, xz, yy, yz, zz = cov
        det = (xx * (yy * zz - yz * yz) - xy * (xy * zz - yz * xz) + xz * (xy * yz - yy * xz))
        d = x - mean
        d0, d1, d2 = d[:, 0:1], d[:, 1:2], d[:, 2:3]
        ixx, ixy, ixz, iyy, iyz, izz = inv
        quad = (ixx * d0 * d0 + iyy * d1 * d1 + izz * d2 * d2
                + 2 * (ixy * d0 * d1 + ixz * d0 * d2 + iyz * d1 * d2))
        models.append((-0.5 * quad - 0.5 * det.clamp_min(1e-30).log(), quad, weight > 0.02))
    (log_fg, quad_fg, has_fg), (log_bg, quad_bg, has_bg) = models
    evidence = (log_fg - log_bg).float()
    # A colour that the model it is closer to explains badly too (a strand
    # mixing both, a colour seen nowhere near) says nothing.
    typical = torch.where(evidence > 0, quad_fg, quad_bg) <= TYPICAL
    return evidence, has_fg & has_bg & typical


def solve_band(image: torch.Tensor, mask: torch.Tensor, band: int | None = None,
               prior: float | None = None, widen: int | None = None,
               progress: Callable[[float], None] | None = None) -> tuple[torch.Tensor, dict]:
    """image (1, 3, h, w) and coarse mask (1, 1, h, w) at working resolution
    -> alpha there, and what was done."""
    band = BAND if band is None else band
    prior = PRIOR if prior is None else prior
    widen = WIDEN if widen is None else widen
    hard = mask > 0.5
    inside, outside = distance(~hard, 2 * band), distance(hard, 2 * band)
    # distance from the mask's edge, in units of the band
    depth = torch.where(hard, inside, outside) / band
    unknown = depth <= 1
    # A soft mask (a segmenter's, a feathered selection) keeps its own
    # values as the starting guess.
    alpha = torch.where(unknown, mask, hard.float())
    # The colour models start from the pixels the mask is surest of.
    fg, bg = hard & ~unknown, ~hard & ~unknown
    info = {"rounds": []}
    for round_ in range(widen + 1):
        evidence, usable = colour_evidence(image, fg, bg, 2 * band)
        colour_fg = (evidence > 0).float()
        confidence = torch.where(usable, torch.tanh(evidence.abs() / COLOUR_TEMPERATURE),
                                 torch.zeros_like(evidence))
        if round_ > 0:
            # Fixed pixels next to the band whose colour says the opposite
            # of the mask, confidently: the subject's edge lies beyond the
            # band there (a loose lasso). Widen the band around them.
            near = ~unknown & (F.max_pool2d(unknown.float(), 5, 1, 2) > 0)
            seeds = near & (colour_fg != hard.float()) & (confidence > WIDEN_CONFIDENCE)
            if not WIDEN_OUTWARDS:
                seeds &= hard
            if not bool(seeds.any()):
                break
            more = (distance(seeds, band) <= band) & ~unknown
            if not bool(more.any()):
                break
            unknown = unknown | more
            # the mask is doubted there: its pull is half of that at the band's limit
            depth = torch.where(more, torch.full_like(depth, 0.7), depth)
            alpha = torch.where(more, mask, alpha)
        w_mask = prior * depth.clamp(0, 1) ** 2
        w_colour = COLOUR * confidence ** 2
        weight = w_mask + w_colour
        target = (w_mask * hard.float() + w_colour * colour_fg) / weight.clamp_min(1e-12)
        alpha, solved = matting_laplacian.solve(image, unknown, alpha, weight, target,
                                                EPSILON, ITERATIONS, TOLERANCE)
        info["rounds"].append({"unknown": solved["unknown"], "iterations": solved["iterations"]})
        if progress:
            progress((round_ + 1) / (widen + 1))
        # GrabCut's lesson: the models improve with the segmentation
        fg, bg = alpha >= 1 - SURE, alpha <= SURE
    return alpha, info


# -- full resolution ---------------------------------------------------------------

def _sample(field: torch.Tensor, start: int, stop: int, length: int, axis: int) -> torch.Tensor:
    """Bilinear (half-pixel centres, edges clamped) samples of a low-
    resolution field along one axis at full-resolution positions start..stop
    of an image `length` long."""
    low = field.shape[axis]
    position = (torch.arange(start, stop, device=field.device, dtype=torch.float64) + 0.5) \
        * (low / length) - 0.5
    position = position.clamp(0, low - 1)
    lower = position.floor().long()
    upper = (lower + 1).clamp(max=low - 1)
    t = (position - lower).float()
    shape = [1] * field.dim()
    shape[axis] = -1
    t = t.view(shape)
    return field.index_select(axis, lower) * (1 - t) + field.index_select(axis, upper) * t


class ColourModelTiles:
    """The tile function: alpha = a . I + b at the full-resolution pixels of a
    tile, the coefficients bilinearly enlarged from the working resolution.
    Each pixel depends on its own colour only, so tiles need no margin; a
    tile whose working-resolution footprint is all 0 or all 1 is that
    constant, computed from nothing."""

    def __init__(self, alpha_lo: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 size: tuple[int, int]):
        self.alpha_lo, self.size = alpha_lo, size
        self.coefficients = torch.cat([a, b], 1)
        self.counts = {"computed": 0, "skipped": 0}

    def __call__(self, colour: torch.Tensor, coarse: torch.Tensor | None,
                 box: tuple[int, int, int, int]) -> torch.Tensor:
        top, left, height, width = box
        full_h, full_w = self.size
        low_h, low_w = self.alpha_lo.shape[-2:]
        if (low_h, low_w) == (full_h, full_w):
            # solved at full resolution: the colour model would only smooth it
            self.counts["computed"] += 1
            return self.alpha_lo[..., top:top + height, left:left + width]
        rows = _reach(top, top + height, full_h, low_h)
        cols = _reach(left, left + width, full_w, low_w)
        seen = self.alpha_lo[..., rows, cols]
        if bool((seen == 0).all()) or bool((seen == 1).all()):
            self.counts["skipped"] += 1
            return seen.new_full((1, 1, height, width), float(seen.flatten()[0]))
        self.counts["computed"] += 1
        c = _sample(_sample(self.coefficients, top, top + height, full_h, 2),
                    left, left + width, full_w, 3)
        alpha = (c[:, :3] * colour.to(c.device)).sum(1, keepdim=True) + c[:, 3:]
        return alpha.clamp(0, 1)


def _reach(start: int, stop: int, length: int, low: int) -> slice:
    """The working-resolution rows (or columns) whose bilinear weights reach
    full-resolution [start, stop)."""
    first = math.floor(max((start + 0.5) * low / length - 0.5, 0))
    last = math.floor(max((stop - 0.5) * low / length - 0.5, 0)) + 1
    return slice(first, min(last + 1, low))


@contextlib.contextmanager
def one_thread(device: torch.device):
    """One CPU thread for the working-resolution solve: it is thousands of
    operations on fields of at most about WORKING_PIXELS, where threads
    spend more time waiting on each other than working as soon as other
    programs hold the cores (on two shared cores the solve took 1 s on one
    thread and 12 s on two). The server runs one job at a time."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class LaplacianMatte(MatteMethod):
    name = "laplacian"
    title = "Closed-form matting (adaptive band, multigrid)"
    description = ("Classical (not AI): closed-form matting over a band around the mask's edge "
                   "that widens where colour says the subject's edge lies farther in (a loose "
                   "lasso), solved at about %.2f MP by multigrid and brought to full "
                   "resolution by each window's colour model." % (WORKING_PIXELS / 1e6))
    ops = ("matte",)
    preference = 2.0        # ahead of the trained refiner: it measures better (docs/models/)
    prepared_share = 0.6    # of the progress: the working-resolution solve
    bytes_per_pixel = 64.0

    def __init__(self):
        super().__init__()
        self.device = torch.device("cpu")

    def info(self) -> dict:
        info = super().info()
        info["working_megapixels"] = WORKING_PIXELS / 1e6
        return info

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device
        self.loaded = True

    def prepare(self, image: np.ndarray, image_format: str, colour_channels: int,
                mask: np.ndarray, mask_format: str, iterations: int | None,
                progress: Callable[[float, str], None]) -> ColourModelTiles:
        """Solve the band at working resolution from frames `image` (h, w,
        c) and `mask` (h, w, 1); returns the tile function."""
        height, width = image.shape[:2]
        small = working_size(height, width)

        def whole(array, fmt, channels):
            return pixels.shrunk(array, fmt, channels, small, self.device)

        progress(0.0, "%s: working resolution" % self.title)
        image_lo = whole(image, image_format, colour_channels)
        if colour_channels == 1:
            image_lo = image_lo.expand(-1, 3, -1, -1)
        mask_lo = whole(mask, mask_format, 1).clamp(0, 1)
        with one_thread(self.device):
            alpha_lo, self.last = solve_band(
                image_lo, mask_lo,
                progress=lambda f: progress(f, "%s: solving the band" % self.title))
            a, b = colour_model(image_lo, alpha_lo)
        log.debug("band solved at %d x %d: %s", small[1], small[0], self.last["rounds"])
        return ColourModelTiles(alpha_lo, a, b, (height, width))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Whole tensors (1, 3, h, w) and (1, 1, h, w) in, alpha out, through
        the same tiler as the engine (tests use this)."""
        colour, tiles = self.prepare_whole(image, mask)
        out = np.zeros(colour.shape[:2] + (1,), np.float32)
        tiling.run_tiled([colour], ["f32"], out, "f32",
                         lambda inputs, box: tiles(inputs[0], None, box), scale=1, tile=TILE,
                         margin=0, device=self.device)
        return torch.from_numpy(out).permute(2, 0, 1)[None]
