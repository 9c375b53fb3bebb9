"""Blind estimation of a blur kernel from the blurry photo alone.

Alternating minimisation, coarse to fine over an image pyramid, as in Pan,
Hu, Su and Yang ("Deblurring text images via L0-regularized intensity and
gradient prior", CVPR 2014 / TPAMI 2017) and Pan, Sun, Pfister and Yang
("Blind image deblurring using dark channel prior", CVPR 2016):

    min over x, k of  ||k * x - y||^2 + lambda_g ||grad x||_0 + lambda_p P(x) + gamma ||k||^2

* The latent image x is not the answer, only a guide: the L0 prior keeps its
  strong edges and flattens everything else, and strong edges are what pin
  down a kernel. x is found by half-quadratic splitting: the L0 terms get
  auxiliary variables solved by hard thresholding, x itself in closed form
  in the Fourier domain, with the splitting weight doubling until the
  auxiliaries equal what they stand for.
* P(x) is one of: nothing ("gradient", as Xu, Zheng and Jia 2013), the
  L0 norm of the intensities ("intensity", Pan 2014: text on white), or the
  L0 norm of the dark channel ("dark", Pan 2016: blur lifts the darkest pixel
  of every patch, so a sparse dark channel favours sharp images).
* The kernel is fitted to the gradients of x and y (gradients make the
  least-squares fit better conditioned, as Cho and Lee 2009 argued) in the
  Fourier domain, then made non-negative, summing to one, its components
  below a fraction of its peak pruned, and recentred on its centre of mass.
* Coarse to fine: at the coarsest level the kernel is a few pixels wide and
  the fit cannot go far wrong; each finer level starts from the kernel of
  the level below, enlarged.

Saturated highlights break the convolution model (the sensor clipped what
the blur spread), and so do the image's borders; both are masked out of the
kernel fit. Noise is reduced beforehand by the caller (server/deblurring/
__init__.py denoises the estimation image when it is noisy).

Images are float32 (h, w) tensors in [0, 1], grey.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

from . import fourier
from .kernels import centre, prune, resize_kernel


@dataclass(frozen=True)
class Settings:
    prior: str = "gradient"         # "gradient", "intensity" or "dark"
    lambda_gradient: float = 4e-3   # weight of the L0 gradient prior (decays per iteration)
    lambda_prior: float = 4e-3      # weight of P(x)
    lambda_floor: float = 1e-4      # lambda_gradient never falls below this
    decay: float = 1.1              # lambda_gradient /= decay after each iteration
    gamma: float = 2.0              # Tikhonov weight of the kernel fit
    iterations: int = 5             # alternations per pyramid level
    ratio: float = 1 / math.sqrt(2)     # size ratio between pyramid levels
    coarsest: int = 5               # kernel side at the coarsest level
    prune: float = 0.1              # kernel values below this fraction of the peak go
    kappa: float = 2.0              # growth of the splitting weights
    mu_max: float = 1e5             # last splitting weight of the gradient prior
    beta_max: float = 2e3           # last splitting weight of P(x)
    dark_patch: int = 35            # dark channel patch side, at the finest level
    solver: str = "cg"              # kernel fit: "fourier" (unconstrained, then cropped) or
                                    # "cg" (conjugate gradients on the kernel's support)
    cg_iterations: int = 50
    select: float = 0.0             # keep the latent's strongest gradients: at least this many
                                    # times the kernel's side per orientation (0: all)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)


Progress = Callable[[float], None]


def estimate(blurry: torch.Tensor, size: int, settings: Settings = Settings(),
             valid: torch.Tensor | None = None, initial: torch.Tensor | None = None,
             progress: Progress = lambda fraction: None) -> torch.Tensor:
    """The (size, size) kernel that blurred `blurry`, a grey (h, w) image.

    `valid` (h, w), 1 where the convolution model holds (0 on and around
    saturated pixels), masks the kernel fit. `initial`: a kernel to start
    from at the finest level instead of the pyramid (for a region, the
    whole picture's kernel)."""
    if size % 2 == 0 or size < 3:
        raise ValueError("the kernel size must be odd and at least 3")
    valid = torch.ones_like(blurry) if valid is None else valid.to(blurry)
    levels = pyramid(size, min(blurry.shape), settings)
    if initial is not None:
        levels = levels[-1:]
    kernel = None
    lambda_g = settings.lambda_gradient
    total = sum(s * s for s, _ in levels)
    done = 0
    for kernel_size, scale in levels:
        y = resize(blurry, scale)
        mask = (resize(valid, scale) > 0.999).float() if scale < 1 else valid
        if kernel is None:
            kernel = initial.to(blurry) if initial is not None else first_kernel(kernel_size, blurry)
        else:
            kernel = resize_kernel(kernel, kernel_size)
        patch = max(3, int(round(settings.dark_patch * scale)) | 1)
        kernel, lambda_g = one_level(y, mask, kernel, lambda_g, patch, settings)
        done += kernel_size * kernel_size
        progress(done / total)
    return kernel


def pyramid(size: int, shortest_side: int, settings: Settings) -> list[tuple[int, float]]:
    """(kernel side, image scale) per level, coarsest first. Levels stop where
    the image would become smaller than a few kernels."""
    levels = []
    scale = 1.0
    while True:
        kernel_size = max(3, int(round(size * scale)) | 1)
        if levels and (kernel_size < settings.coarsest or shortest_side * scale < 4 * kernel_size):
            break
        levels.append((kernel_size, scale))
        if kernel_size <= settings.coarsest:
            break
        scale *= settings.ratio
    return levels[::-1]


def first_kernel(size: int, like: torch.Tensor) -> torch.Tensor:
    """Two neighbouring pixels in the middle, as Pan et al. start: not a
    delta, which is where the trivial no-blur solution lies."""
    kernel = like.new_zeros(size, size)
    kernel[size // 2, size // 2 - 1:size // 2 + 1] = 0.5
    return kernel


def resize(image: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return image
    height, width = image.shape[-2:]
    size = (max(1, int(round(height * scale))), max(1, int(round(width * scale))))
    return F.interpolate(image[None, None], size=size, mode="bilinear", align_corners=False,
                         antialias=True)[0, 0]


def one_level(blurry: torch.Tensor, valid: torch.Tensor, kernel: torch.Tensor, lambda_g: float,
              patch: int, settings: Settings) -> tuple[torch.Tensor, float]:
    size = kernel.shape[-1]
    pad = min(size, min(blurry.shape) // 2)
    y = periodic_pad(blurry, pad)
    weight = F.pad(valid, (pad,) * 4)
    # masked gradients: no fit across the wrap seam, borders or highlights
    weight = erode(weight, 3)
    bx, by = fourier.gradients(y)
    bx, by = bx * weight, by * weight
    for _ in range(settings.iterations):
        latent = latent_image(y, kernel, lambda_g, patch, settings)
        lx, ly = fourier.gradients(latent)
        lx, ly = lx * weight, ly * weight
        if settings.select:
            lx, ly = select_gradients(lx, ly, int(math.ceil(settings.select * size)))
        kernel = fit_kernel(lx, ly, bx, by, size, settings.gamma, settings.solver, kernel,
                            settings.cg_iterations)
        kernel = centre(prune(kernel, settings.prune))
        lambda_g = max(lambda_g / settings.decay, settings.lambda_floor)
    return kernel, lambda_g


def latent_image(y: torch.Tensor, kernel: torch.Tensor, lambda_g: float, patch: int,
                 settings: Settings) -> torch.Tensor:
    """argmin_x ||k * x - y||^2 + lambda_g ||grad x||_0 + lambda_p P(x), by
    half-quadratic splitting with weights mu (gradients) and beta (P)."""
    shape = y.shape
    k = fourier.otf(kernel, shape)
    dx, dy = fourier.gradient_otfs(shape, y.device)
    numerator_data = torch.conj(k) * torch.fft.rfft2(y)
    k2 = k.abs() ** 2
    d2 = dx.abs() ** 2 + dy.abs() ** 2
    lambda_p = settings.lambda_prior if settings.prior != "gradient" else 0.0
    x = y
    mu = 2 * lambda_g
    beta = 2 * lambda_p
    while mu < settings.mu_max:
        numerator = numerator_data
        denominator = k2 + mu * d2
        if lambda_p:
            u = sparse_prior(x, lambda_p / beta, settings.prior, patch)
            numerator = numerator + beta * torch.fft.rfft2(u)
            denominator = denominator + beta
        gx, gy = fourier.gradients(x)
        small = gx * gx + gy * gy < lambda_g / mu
        gx, gy = gx.masked_fill(small, 0.0), gy.masked_fill(small, 0.0)
        numerator = numerator + mu * torch.fft.rfft2(fourier.divergence_adjoint(gx, gy))
        x = torch.fft.irfft2(numerator / denominator, s=shape)
        mu *= settings.kappa
        beta = min(beta * settings.kappa, settings.beta_max)
    return x


def sparse_prior(x: torch.Tensor, threshold: float, prior: str, patch: int) -> torch.Tensor:
    """The auxiliary variable of P(x)'s L0 term: x with the entries whose
    square is below `threshold` set to zero (intensities), or with the pixels
    that make up a dark channel value below it set to zero (dark channel)."""
    if prior == "intensity":
        return x.masked_fill(x * x < threshold, 0.0)
    # dark channel: min over each patch (separably: along rows, then along
    # columns, carrying where each minimum came from); zero the pixels that
    # are a patch's minimum where that minimum is small
    dark, where = dark_channel(x, patch)
    chosen = where[dark * dark < threshold]
    u = x.clone().reshape(-1)
    u[chosen] = 0.0
    return u.reshape(x.shape)


def dark_channel(x: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum of `x` (h, w) over the patch x patch square around each
    pixel (the square cut by the image's edges), and the flat index of the
    pixel it comes from: separably, along rows and then along columns,
    carrying where each minimum came from."""
    half = patch // 2
    negative, along = F.max_pool2d(-x[None, None], (1, patch), stride=1, padding=(0, half),
                                   return_indices=True)
    negative, down = F.max_pool2d(negative, (patch, 1), stride=1, padding=(half, 0),
                                  return_indices=True)
    # `down` indexes the row minima; look up which pixel each came from
    where = along.reshape(-1)[down.reshape(-1)].reshape(x.shape)
    return -negative[0, 0], where


def select_gradients(gx: torch.Tensor, gy: torch.Tensor,
                     count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The strongest gradients only, as Cho and Lee (2009) select them: the
    threshold on the magnitude is the highest that keeps at least `count`
    pixels in each of four orientation bins (so that every direction of the
    kernel stays constrained); weaker gradients are set to zero."""
    magnitude = gx * gx + gy * gy
    angle = torch.atan2(gy, gx).remainder(math.pi)
    bins = (angle / (math.pi / 4)).long().clamp_(max=3)
    threshold = float("inf")
    for b in range(4):
        values = magnitude[(bins == b) & (magnitude > 0)]
        if values.numel() == 0:
            continue
        k = min(count, values.numel())
        threshold = min(threshold, float(torch.topk(values, k).values[-1]))
    if not math.isfinite(threshold):
        return gx, gy
    weak = magnitude < threshold
    return gx.masked_fill(weak, 0.0), gy.masked_fill(weak, 0.0)


def fit_kernel(lx: torch.Tensor, ly: torch.Tensor, bx: torch.Tensor, by: torch.Tensor,
               size: int, gamma: float, solver: str = "fourier",
               start: torch.Tensor | None = None, iterations: int = 20) -> torch.Tensor:
    """argmin_k ||grad x * k - grad y||^2 + gamma ||k||^2 over the masked
    gradients of the latent (lx, ly) and the blurry image (bx, by); then
    non-negative and summing to one. "fourier": the minimiser over kernels
    as large as the image, one division in the Fourier domain, cropped to
    size x size; "cg": the minimiser over size x size kernels, by conjugate
    gradients from `start` (each step a product in the Fourier domain)."""
    shape = lx.shape
    fx, fy = torch.fft.rfft2(lx), torch.fft.rfft2(ly)
    numerator = torch.conj(fx) * torch.fft.rfft2(bx) + torch.conj(fy) * torch.fft.rfft2(by)
    power = fx.abs() ** 2 + fy.abs() ** 2
    if solver == "cg":
        kernel = conjugate_gradients(
            lambda k: fourier.kernel_from_spectrum(power * fourier.otf(k, shape), shape, size)
            + gamma * k,
            fourier.kernel_from_spectrum(numerator, shape, size),
            start if start is not None and start.shape[-1] == size else None,
            iterations).clamp_(min=0.0)
    else:
        kernel = fourier.kernel_from_spectrum(numerator / (power + gamma), shape,
                                              size).clamp_(min=0.0)
    total = kernel.sum()
    if not torch.isfinite(total) or total <= 0:
        kernel = torch.zeros_like(kernel)
        kernel[size // 2, size // 2] = 1.0
        return kernel
    return kernel / total


def conjugate_gradients(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                        x: torch.Tensor | None, iterations: int) -> torch.Tensor:
    """x with apply(x) = b, `apply` symmetric positive definite."""
    x = torch.zeros_like(b) if x is None else x.clone()
    r = b - apply(x)
    p = r
    rs = float((r * r).sum())
    target = 1e-10 * float((b * b).sum())
    for _ in range(iterations):
        if rs <= target:
            break
        ap = apply(p)
        alpha = rs / float((p * ap).sum())
        x = x + alpha * p
        r = r - alpha * ap
        rs_next = float((r * r).sum())
        p = r + (rs_next / rs) * p
        rs = rs_next
    return x


def erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    return -F.max_pool2d(-mask[None, None], size, stride=1, padding=size // 2)[0, 0]


def periodic_pad(image: torch.Tensor, pad: int) -> torch.Tensor:
    """`image` (h, w) extended by `pad` on every side so that it wraps
    around smoothly: across each seam, the mirror image of one edge fades
    into the mirror image of the opposite edge. The circular FFT then sees
    no jump at the borders."""
    for axis in (-2, -1):
        n = image.shape[axis]
        p = min(pad, n // 2)
        band = 2 * p
        # band position j = 0 .. 2p-1 lies after the last row and wraps to
        # the first: the mirror of the end fades into the mirror of the start
        from_end = torch.flip(image.narrow(axis, n - band, band), (axis,))
        from_start = torch.flip(image.narrow(axis, 0, band), (axis,))
        j = torch.arange(band, device=image.device, dtype=image.dtype)
        shape = [1, 1]
        shape[axis] = band
        fade = (0.5 + 0.5 * torch.cos(math.pi * (j + 0.5) / band)).reshape(shape)   # 1 -> 0
        mixed = fade * from_end + (1 - fade) * from_start
        image = torch.cat([mixed.narrow(axis, p, p), image, mixed.narrow(axis, 0, p)], axis)
    return image


def unpad(image: torch.Tensor, pad: int, shape: tuple[int, int]) -> torch.Tensor:
    return image[..., pad:pad + shape[0], pad:pad + shape[1]]
