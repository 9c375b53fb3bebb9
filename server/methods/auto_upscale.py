"""`auto`: one upscaler for clean photos and for JPEG thumbnails, chosen per
image.

No installed network holds both goals of issue 16: the authors' SPAN,
trained on clean bicubic downscales, gains most on clean inputs but
sharpens JPEG blocks on thumbnails; SharpFu's fine-tune of it on thumbnails
(span-tuned, else SharpFu's SPAN-32) is the better there and the worse on
clean inputs (docs/models/span-tuned.md). `auto` looks at the whole input
once, before tiling, and hands the job to one of them.

The estimate is JPEG's quantisation, which survives decoding: on the 8x8
block grid, each DCT coefficient of the luma was rounded to a multiple of
its step, so the decoded picture's coefficients sit close to multiples of
some step where a clean picture's spread evenly. `jpeg_evidence` is, for the
best grid offset, coefficient and step, the share of coefficients within a
quarter step of a multiple (one half for a clean picture, near 1 for a JPEG),
less two standard deviations of a clean picture's share at that count, so
that a small picture proves less. An earlier estimate, the luma steps
across the grid lines, confused content, and the blocks of a photo
downscaled after compression, with those of the input (3 of 26 clean 2x
downscales counted as JPEG; 9 of 26 JPEG 75 missed at 4x). Measured on the
26 photos reduced 2x, 3x and 4x (bicubic, Lanczos, box; Lanczos then JPEG at
quality 30 to 95, also cropped off the grid; 0.4 s an image): clean ones
score 0.49 to 0.62, JPEG at quality 90 or lower 0.71 to 0.98, so above
THRESHOLD 0.68 the input counts as a JPEG thumbnail. Quality 95 scores like
a clean picture: its blocks are faint. A JPEG resampled after compression
has lost its grid and counts as clean, which it then nearly is.
"""
from __future__ import annotations

import numpy as np

from . import ImageMethod

THRESHOLD = 0.68
LUMA = (0.299, 0.587, 0.114)     # JPEG's (JFIF's) own luma, so its DCT is the file's

# The low-frequency coefficients: they are nonzero often enough to count,
# and their steps (3 to 64 between JPEG qualities 95 and 10) are the largest
# against the rounding noise of decoding.
COEFFICIENTS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2), (0, 3), (3, 0))
STEPS = np.arange(3, 65, dtype=np.float64)
LEAST = 30              # coefficients a step needs before its share counts
SEARCH_BLOCKS = 600     # blocks sampled per grid offset while finding the grid
BLOCKS = 4000           # blocks sampled at the grid found


def _dct_matrix() -> np.ndarray:
    x = np.arange(8)
    matrix = np.cos((2 * x[None, :] + 1) * x[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    matrix[0] = np.sqrt(1 / 8)
    return matrix


DCT = _dct_matrix()


def _luma_8bit(image: np.ndarray) -> np.ndarray:
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.dtype == np.uint8:
        scale = 1.0
    elif pixels.dtype == np.uint16:
        scale = 1 / 257             # GIMP's 16-bit precision holds 8-bit v as 257 v
    else:
        scale = 255.0
    pixels = pixels.astype(np.float64) * scale
    if pixels.shape[2] >= 3:
        return pixels[..., :3] @ np.asarray(LUMA)
    return pixels[..., 0]


def _evidence_at(luma: np.ndarray, top: int, left: int, blocks: int) -> float:
    rows, cols = (luma.shape[0] - top) // 8, (luma.shape[1] - left) // 8
    if rows * cols == 0:
        return 0.0
    tiles = (luma[top:top + rows * 8, left:left + cols * 8] - 128).reshape(rows, 8, cols, 8)
    tiles = tiles.transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    if len(tiles) > blocks:      # evenly spread over the picture, the same every time
        tiles = tiles[np.linspace(0, len(tiles) - 1, blocks).astype(int)]
    coefficients = np.abs(np.einsum("ux,nxy,vy->nuv", DCT, tiles, DCT))
    best = 0.0
    for u, v in COEFFICIENTS:
        values = coefficients[:, u, v][:, None]
        # only values past half a step tell a step: below, rounding made zeros
        counted = values >= STEPS / 2
        ratio = values / STEPS
        near = ((np.abs(ratio - np.round(ratio)) < 0.25) & counted).sum(axis=0)
        totals = counted.sum(axis=0)
        # the share, less two standard deviations of a clean picture's share
        # (one half) at that count, so that few coefficients prove little
        shares = near / np.maximum(totals, 1) - 1 / np.sqrt(np.maximum(totals, 1))
        best = max(best, float(np.where(totals >= LEAST, shares, 0.0).max()))
    return best


def jpeg_evidence(image: np.ndarray) -> float:
    """How surely an (h, w, c) image in any sample format was decoded from a
    JPEG and not resampled since: about 0.5 for a clean picture, near 1 for
    a JPEG; 0 when it is too small to tell."""
    luma = _luma_8bit(image)
    offsets = [(top, left) for top in range(8) for left in range(8)]
    found = {offset: _evidence_at(luma, *offset, SEARCH_BLOCKS) for offset in offsets}
    top, left = max(offsets, key=lambda offset: found[offset])
    return _evidence_at(luma, top, left, BLOCKS)


def looks_like_jpeg(image: np.ndarray) -> bool:
    return jpeg_evidence(image) > THRESHOLD


class AutoUpscale(ImageMethod):
    """Delegates each image to `clean` or `thumbnail` (scale -> method)."""
    name = "auto"
    kind = "network"
    ops = ("upscale", "sharpen")

    def __init__(self, clean: dict, thumbnail: dict, preference: float = 2.0):
        super().__init__()
        self.clean, self.thumbnail = clean, thumbnail
        self.scales = tuple(sorted(set(clean) & set(thumbnail)))
        self.preference = preference
        self.title = "Best available: chosen per image"
        self.description = (
            "Looks for JPEG compression in the input: with it, %s; without, %s." % (
                " / ".join(sorted({m.name for m in thumbnail.values()})),
                " / ".join(sorted({m.name for m in clean.values()}))))
        self.source = "built in"
        self.loaded = True     # it holds no weights; the one it picks loads itself

    def choose(self, image: np.ndarray, scale: int) -> ImageMethod:
        found = self.thumbnail if looks_like_jpeg(image) else self.clean
        return found[scale]

    def info(self) -> dict:
        info = super().info()
        info["chooses"] = {"jpeg": {str(s): m.name for s, m in self.thumbnail.items()},
                           "clean": {str(s): m.name for s, m in self.clean.items()},
                           "threshold": THRESHOLD}
        return info
