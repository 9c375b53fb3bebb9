"""What a blur kernel may look like, and fitting one to it.

A kernel is a float32 (k, k) tensor, k odd: non-negative, summing to one,
its centre of mass on its middle pixel (so that deblurring does not move
the picture). These helpers keep estimates in that shape.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def normalise(kernel: torch.Tensor) -> torch.Tensor:
    kernel = kernel.clamp(min=0.0)
    total = kernel.sum()
    if not torch.isfinite(total) or total <= 0:
        return delta(kernel.shape[-1], kernel)
    return kernel / total


def delta(size: int, like: torch.Tensor) -> torch.Tensor:
    kernel = like.new_zeros(size, size)
    kernel[size // 2, size // 2] = 1.0
    return kernel


def prune(kernel: torch.Tensor, fraction: float, keep: float = 0.1) -> torch.Tensor:
    """Values below `fraction` of the peak set to zero, then connected
    pieces holding less than `keep` of the largest piece's mass removed
    (stray specks that noise and texture leave), normalised again."""
    kernel = kernel.masked_fill(kernel < fraction * kernel.max(), 0.0)
    pieces = connected_pieces(kernel.detach().cpu().numpy() > 0)
    if len(pieces) > 1:
        values = kernel.detach().cpu().numpy()
        masses = [float(values[rows, columns].sum()) for rows, columns in pieces]
        drop = np.zeros(values.shape, bool)
        for (rows, columns), mass in zip(pieces, masses):
            if mass < keep * max(masses):
                drop[rows, columns] = True
        kernel = kernel.masked_fill(torch.from_numpy(drop).to(kernel.device), 0.0)
    return normalise(kernel)


def connected_pieces(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 8-connected pieces of a small boolean mask, as (rows, columns)
    index arrays."""
    seen = np.zeros(mask.shape, bool)
    height, width = mask.shape
    pieces = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        stack, members = [start], []
        while stack:
            r, c = stack.pop()
            members.append((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < height and 0 <= cc < width and mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
        rows, columns = zip(*members)
        pieces.append((np.array(rows), np.array(columns)))
    return pieces


def centre_of_mass(kernel: torch.Tensor) -> tuple[float, float]:
    """(row, column) of the centre of mass, relative to the middle pixel."""
    size = kernel.shape[-1]
    index = torch.arange(size, device=kernel.device, dtype=kernel.dtype) - size // 2
    total = kernel.sum()
    return (float((kernel.sum(1) * index).sum() / total),
            float((kernel.sum(0) * index).sum() / total))


def aspect(kernel: torch.Tensor) -> float:
    """How round the kernel's spread is: the square root of the ratio of the
    smaller to the larger eigenvalue of its second moments (1 for a round
    Gaussian or a disc, near 0 for a line)."""
    size = kernel.shape[-1]
    index = torch.arange(size, device=kernel.device, dtype=torch.float64) - size // 2
    k = kernel.double() / kernel.double().sum()
    rows, columns = index[:, None], index[None, :]
    mean_r, mean_c = float((k * rows).sum()), float((k * columns).sum())
    rr = float((k * (rows - mean_r) ** 2).sum())
    cc = float((k * (columns - mean_c) ** 2).sum())
    rc = float((k * (rows - mean_r) * (columns - mean_c)).sum())
    spread = ((rr - cc) ** 2 / 4 + rc * rc) ** 0.5
    larger, smaller = (rr + cc) / 2 + spread, (rr + cc) / 2 - spread
    if larger <= 0:
        return 1.0
    return max(0.0, smaller / larger) ** 0.5


def shift(kernel: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """Move the kernel by whole pixels, what leaves the square dropped."""
    size = kernel.shape[-1]
    padded = F.pad(kernel, (size, size, size, size))
    return padded[size - rows:2 * size - rows, size - columns:2 * size - columns]


def centre(kernel: torch.Tensor) -> torch.Tensor:
    """The kernel moved by whole pixels so that its centre of mass lies
    within half a pixel of the middle."""
    row, column = centre_of_mass(kernel)
    if abs(row) < 0.5 and abs(column) < 0.5:
        return kernel
    return normalise(shift(kernel, -int(round(row)), -int(round(column))))


def centre_exactly(kernel: torch.Tensor) -> torch.Tensor:
    """The kernel moved so that its centre of mass is exactly the middle:
    whole pixels, then the fraction by linear interpolation (which softens
    it by less than a pixel)."""
    kernel = centre(kernel)
    row, column = centre_of_mass(kernel)
    moved = kernel
    for axis, amount in ((0, -row), (1, -column)):
        if abs(amount) < 1e-3:
            continue
        # x(t + a) for |a| < 1: blend with the neighbour on that side
        neighbour = torch.roll(moved, 1 if amount > 0 else -1, axis)
        edge = [slice(None), slice(None)]
        edge[axis] = 0 if amount > 0 else -1
        neighbour[tuple(edge)] = 0.0
        moved = (1 - abs(amount)) * moved + abs(amount) * neighbour
    return normalise(moved)


def resize_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """The kernel at another scale, as the next finer pyramid level needs it."""
    if kernel.shape[-1] == size:
        return kernel
    resized = F.interpolate(kernel[None, None], size=(size, size), mode="bilinear",
                            align_corners=False)[0, 0]
    return centre(normalise(resized))


def crop_to_support(kernel: torch.Tensor, minimum: int = 3) -> torch.Tensor:
    """The smallest odd centred square holding every non-zero value."""
    size = kernel.shape[-1]
    rows = torch.nonzero(kernel.sum(1) > 0).flatten()
    columns = torch.nonzero(kernel.sum(0) > 0).flatten()
    if len(rows) == 0:
        return delta(minimum, kernel)
    middle = size // 2
    reach = int(max(middle - rows.min(), rows.max() - middle,
                    middle - columns.min(), columns.max() - middle))
    reach = max(reach, minimum // 2)
    return kernel[middle - reach:middle + reach + 1, middle - reach:middle + reach + 1]


def pad_to(kernel: torch.Tensor, size: int) -> torch.Tensor:
    extra = (size - kernel.shape[-1]) // 2
    if extra <= 0:
        return kernel
    return F.pad(kernel, (extra,) * 4)


def from_array(kernel, like: torch.Tensor) -> torch.Tensor:
    """A kernel of training/degradations.py (float64 numpy, the one home of
    blur shapes) as a float32 tensor on `like`'s device."""
    return torch.as_tensor(np.asarray(kernel), dtype=torch.float32, device=like.device)


def similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """The peak normalised cross-correlation of two kernels over all shifts
    (a blind estimate is defined only up to a shift): 1 for the same shape."""
    size = max(a.shape[-1], b.shape[-1])
    a = pad_to(a.double(), size)
    b = pad_to(b.double().to(a.device), size)
    if a.shape[-1] != b.shape[-1]:          # sizes of different parity
        size = max(a.shape[-1], b.shape[-1])
        a, b = (F.pad(t, (0, size - t.shape[-1], 0, size - t.shape[-2])) for t in (a, b))
    a = a - a.mean()
    b = b - b.mean()
    norm = float(a.norm() * b.norm())
    if norm == 0.0:
        return 0.0
    shape = (2 * size, 2 * size)
    correlation = torch.fft.irfft2(torch.fft.rfft2(a, s=shape) * torch.conj(torch.fft.rfft2(b, s=shape)),
                                   s=shape)
    return float(correlation.max()) / norm
