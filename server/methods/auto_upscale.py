"""`auto`: one upscaler for clean photos and for JPEG thumbnails, chosen per
image.

No installed network holds both goals of issue 16: the authors' SPAN,
trained on clean bicubic downscales, gains most on clean inputs but
sharpens JPEG blocks on thumbnails; SharpFu's fine-tune of it on thumbnails
(span-tuned, else SharpFu's SPAN-32) is the better there and the worse on
clean inputs (docs/models/span-tuned.md). `auto` looks at the whole input
once, before tiling, and hands the job to one of them.

The estimate is JPEG's 8x8 block grid: the mean absolute luma step across
the grid lines (columns 8k-1|8k, rows likewise) over the mean step
everywhere. Without JPEG the grid lines are like any other (ratio about
1.00); a JPEG at quality 75 raises it (1.19 on average). Measured on 26
photos reduced to half size (bicubic: largest 1.044, two above 1.03;
Lanczos + JPEG 75: smallest 1.037, none at or below 1.03), so above
THRESHOLD the input counts as a JPEG thumbnail. A JPEG whose grid was
shifted or resampled after compression looks clean to it.
"""
from __future__ import annotations

import numpy as np

from . import ImageMethod

THRESHOLD = 1.03
LUMA = (0.299, 0.587, 0.114)


def blockiness(image: np.ndarray) -> float:
    """JPEG block-grid strength of an (h, w, c) image in any sample format."""
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 3 and pixels.shape[2] >= 3:
        luma = pixels[..., :3] @ np.asarray(LUMA, np.float32)
    else:
        luma = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)[..., 0]
    if min(luma.shape) < 16:
        return 1.0
    across = np.abs(np.diff(luma, axis=1))
    down = np.abs(np.diff(luma, axis=0))
    ratios = [a[:, 7::8].mean() / (a.mean() + 1e-6) if axis == 1 else
              a[7::8, :].mean() / (a.mean() + 1e-6) for a, axis in ((across, 1), (down, 0))]
    return float(np.mean(ratios))


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
            "Looks for JPEG blocks in the input: with them, %s; without, %s." % (
                " / ".join(sorted({m.name for m in thumbnail.values()})),
                " / ".join(sorted({m.name for m in clean.values()}))))
        self.source = "built in"
        self.loaded = True     # it holds no weights; the one it picks loads itself

    def choose(self, image: np.ndarray, scale: int) -> ImageMethod:
        found = self.thumbnail if blockiness(image) > THRESHOLD else self.clean
        return found[scale]

    def info(self) -> dict:
        info = super().info()
        info["chooses"] = {"jpeg": {str(s): m.name for s, m in self.thumbnail.items()},
                           "clean": {str(s): m.name for s, m in self.clean.items()},
                           "threshold": THRESHOLD}
        return info
