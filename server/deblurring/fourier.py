"""Convolution in the Fourier domain, with torch so that it runs where the
image is (CPU or GPU).

Blur is a convolution, and a convolution is a product of Fourier
transforms, so the least-squares steps of kernel estimation and
deconvolution are divisions there. The transforms treat an image as
periodic; callers pad it first and decide what the padding means
(estimate.py tapers it, deconvolve.py excludes it from the data term).

Images are float32 tensors (..., h, w); kernels (k, k), k odd, centred on
their middle pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def otf(kernel: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The real FFT of `kernel` placed on an image of `shape` with its
    centre on pixel (0, 0): multiplying an image's rfft2 by it convolves
    the image with the kernel (circularly)."""
    height, width = shape
    kh, kw = kernel.shape[-2:]
    padded = kernel.new_zeros(kernel.shape[:-2] + (height, width))
    padded[..., :kh, :kw] = kernel
    padded = torch.roll(padded, (-(kh // 2), -(kw // 2)), (-2, -1))
    return torch.fft.rfft2(padded)


def kernel_from_spectrum(spectrum: torch.Tensor, shape: tuple[int, int], size: int) -> torch.Tensor:
    """The inverse of `otf`: the (size, size) kernel around pixel (0, 0) of
    the image whose rfft2 is `spectrum`."""
    full = torch.fft.irfft2(spectrum, s=shape)
    full = torch.roll(full, (size // 2, size // 2), (-2, -1))
    return full[..., :size, :size]


def convolve(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Circular convolution of (..., h, w) with a (k, k) kernel."""
    shape = image.shape[-2:]
    return torch.fft.irfft2(torch.fft.rfft2(image) * otf(kernel.to(image), shape), s=shape)


def convolve_same(image: torch.Tensor, kernel: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
    """True convolution of (c, h, w) with a (k, k) kernel, the image
    extended by `mode` at its borders: for small kernels and images, and to
    check the FFT paths."""
    radius = kernel.shape[-1] // 2
    channels = image.shape[0]
    padded = F.pad(image[None], (radius,) * 4, mode=mode)
    weight = torch.flip(kernel, (-2, -1)).to(image)[None, None].expand(channels, 1, -1, -1)
    return F.conv2d(padded, weight, groups=channels)[0]


def gradient_otfs(shape: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The OTFs of the forward differences x[i+1] - x[i] along columns and rows."""
    dx = torch.zeros(3, 3, device=device)
    dx[1, 1], dx[1, 2] = -1.0, 1.0
    # as a convolution kernel: flipped, so that (x * dx)[i] = x[i + 1] - x[i]
    dx = torch.flip(dx, (0, 1))
    return otf(dx, shape), otf(dx.t().contiguous(), shape)


def gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Circular forward differences along columns (x) and rows (y)."""
    return (torch.roll(image, -1, -1) - image, torch.roll(image, -1, -2) - image)


def divergence_adjoint(gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """The adjoint of `gradients` applied to (gx, gy): D^T g."""
    return (torch.roll(gx, 1, -1) - gx) + (torch.roll(gy, 1, -2) - gy)


def fast_size(n: int) -> int:
    """The smallest size >= n whose only prime factors are 2, 3 and 5
    (transforms of such sizes are fast)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1
