"""How a restoration is measured: the numbers of the training logs, the
weights' records, adaptation's safeguard and the benchmarks, from one
place, so a number means the same wherever it appears.

* Super-resolution: PSNR and SSIM of the BT.601 luma of 8-bit RGB, 2 px
  shaved, as the SR literature reports them (`y_psnr`, `y_ssim`;
  `batch_y_psnr` for float tensors, rounded to 8 bits first).
* Deblurring: PSNR and SSIM over the RGB values, 8 px shaved, as the
  deblurring literature reports them (`psnr`, `ssim`).
* Matting: the Composition-1k errors (Xu et al., "Deep Image Matting",
  CVPR 2017): SAD (in thousands), MSE (x 1000), gradient and connectivity
  errors (in thousands), over a region (`matte_errors`). These two need
  scipy, which the test and benchmark extras install.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# -- super-resolution: luma ---------------------------------------------------------

LUMA_SHAVE = 2
LUMA_WEIGHTS = (65.481, 128.553, 24.966)     # BT.601, MATLAB's rgb2ycbcr


def luma(pixels: np.ndarray) -> np.ndarray:
    """BT.601 luma of 8-bit RGB in [16, 235], as the SR literature measures it
    (MATLAB's rgb2ycbcr)."""
    rgb = np.asarray(pixels).astype(np.float64)
    r, g, b = LUMA_WEIGHTS
    return 16.0 + (r * rgb[..., 0] + g * rgb[..., 1] + b * rgb[..., 2]) / 255.0


def _shaved(values: np.ndarray, shave: int) -> np.ndarray:
    return values[shave:-shave, shave:-shave] if shave else values


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def y_psnr(result, truth) -> float:
    """PSNR in dB of the BT.601 luma, LUMA_SHAVE pixels shaved off each border."""
    return _psnr(_shaved(luma(result), LUMA_SHAVE), _shaved(luma(truth), LUMA_SHAVE))


def y_ssim(result, truth) -> float:
    """SSIM of the shaved BT.601 luma (see `ssim_plane`)."""
    return ssim_plane(_shaved(luma(result), LUMA_SHAVE), _shaved(luma(truth), LUMA_SHAVE))


def batch_y_psnr(output: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean Y-PSNR over a batch of float RGB tensors (n, 3, h, w) in [0, 1],
    the output rounded to 8 bits first: `y_psnr` for tensors on any device."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=output.dtype, device=output.device).view(1, 3, 1, 1)
    out = (output.clamp(0, 1) * 255).round() / 255
    s = LUMA_SHAVE
    a = (out * weights).sum(1)[:, s:-s, s:-s]
    b = (truth * weights).sum(1)[:, s:-s, s:-s]
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(255.0 ** 2 / mse)).mean())


# -- SSIM -----------------------------------------------------------------------------

def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_plane(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window of sigma 1.5, K1 0.01,
    K2 0.03, population statistics) of two planes, over the part of them
    where the window lies wholly inside."""
    x = torch.from_numpy(np.asarray(a, np.float64))[None, None]
    y = torch.from_numpy(np.asarray(b, np.float64))[None, None]
    window = _gaussian_window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x ** 2
    var_y = F.conv2d(y * y, window) - mu_y ** 2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
             / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))
    return float(value.mean())


# -- deblurring: RGB ------------------------------------------------------------------

RGB_SHAVE = 8


def psnr(result: np.ndarray, truth: np.ndarray, shave: int = RGB_SHAVE) -> float:
    """PSNR in dB over the RGB values (8-bit range), `shave` pixels off each
    border, as the deblurring literature reports it."""
    return _psnr(_shaved(np.asarray(result, np.float64), shave),
                 _shaved(np.asarray(truth, np.float64), shave))


def ssim(result: np.ndarray, truth: np.ndarray, shave: int = RGB_SHAVE) -> float:
    """SSIM over the RGB values, the mean of the channels' (as
    scikit-image's structural_similarity with Gaussian weights computes it),
    `shave` pixels off each border."""
    a = _shaved(np.asarray(result, np.float64), shave)
    b = _shaved(np.asarray(truth, np.float64), shave)
    return float(np.mean([ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))


# -- matting ---------------------------------------------------------------------------

def gradient_magnitude(a: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    """Gradient magnitude with first-derivative-of-Gaussian filters scaled to
    unit L2 norm, as in the Composition-1k evaluation code."""
    from scipy.ndimage import convolve
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * 1e-2))))
    t = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-t * t / (2 * sigma * sigma)) / (sigma * np.sqrt(2 * np.pi))
    hx = g[:, None] * (-t * g / (sigma * sigma))[None, :]
    hx /= np.sqrt((hx * hx).sum())
    a = a.astype(np.float64)
    return np.hypot(convolve(a, hx, mode="nearest"), convolve(a, hx.T, mode="nearest"))


def connectivity_map(a: np.ndarray, truth: np.ndarray, step: float = 0.1,
                     theta: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """phi of prediction and truth: how far each pixel's alpha reaches above
    the last threshold at which it still belonged to the largest region
    (4-connected) that both agree is above the threshold."""
    from scipy.ndimage import label
    level = np.full(a.shape, -1.0)
    thresholds = np.arange(0, 1 + step / 2, step)
    for previous, t in zip(thresholds[:-1], thresholds[1:]):
        labels, count = label((a >= t) & (truth >= t))
        largest = labels == (np.bincount(labels.ravel())[1:].argmax() + 1) if count \
            else np.zeros(a.shape, bool)
        level[(level == -1) & ~largest] = previous
    level[level == -1] = 1.0

    def phi(x):
        d = x - level
        return 1 - d * (d >= theta)
    return phi(a), phi(truth)


def sad_mse(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Composition-1k units over the whole matte: SAD in thousands, MSE x 1000."""
    d = pred.astype(np.float64) - truth
    return float(np.abs(d).sum() / 1000), float((d * d).mean() * 1000)


def matte_errors(pred: np.ndarray, truth: np.ndarray, regions: dict) -> dict:
    """SAD, MSE, gradient and connectivity errors of an alpha matte, each
    summed (MSE: averaged) over each named region (boolean masks)."""
    d = pred.astype(np.float64) - truth
    grad = (gradient_magnitude(pred) - gradient_magnitude(truth)) ** 2
    p_phi, t_phi = connectivity_map(pred, truth)
    conn = np.abs(p_phi - t_phi)
    return {name: {"SAD": np.abs(d)[r].sum() / 1000, "MSE": (d * d)[r].mean() * 1000,
                   "Grad": grad[r].sum() / 1000, "Conn": conn[r].sum() / 1000}
            for name, r in regions.items()}
