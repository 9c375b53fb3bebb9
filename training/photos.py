"""The photos networks train on and are judged on.

Training reads every photo in the folders it is given (during development
../shared/data/photos and ../shared/data/photos-by-sa beside the checkout;
scripts/fetch_training_photos.py rebuilds both from public packages),
except the held-out VALIDATION photos: those are never trained on, and are
what the training scripts validate on and what bench/ measures with.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = [ROOT.parent / "shared" / "data" / "photos",
                  ROOT.parent / "shared" / "data" / "photos-by-sa"]
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

# A face, fine fur, fine architecture, bristles and fur again, at several sizes.
VALIDATION = ("grace_hopper.jpg", "raccoon.png", "china.jpg", "picture_1a_by_freespace.jpg",
              "chelsea.png")


def find_photos(folders: list[Path]) -> dict[str, Path]:
    """Photo files by name; a name found in an earlier folder wins."""
    photos = {}
    for folder in folders:
        for path in sorted(Path(folder).iterdir()):
            if path.suffix.lower() in PHOTO_SUFFIXES and path.name not in photos:
                photos[path.name] = path
    return photos


def training_photos(folders: list[Path]) -> list[Path]:
    return [path for name, path in find_photos(folders).items() if name not in VALIDATION]


def validation_photos(folders: list[Path]) -> list[Path]:
    photos = find_photos(folders)
    missing = [name for name in VALIDATION if name not in photos]
    if missing:
        raise SystemExit("validation photos not found in %s: %s" % (
            ", ".join(map(str, folders)), ", ".join(missing)))
    return [photos[name] for name in VALIDATION]


def read_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def validation_set(folders: list[Path]) -> dict[str, Image.Image]:
    return {path.name: read_rgb(path) for path in validation_photos(folders)}


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (n, h, w, c) or (h, w, c) -> float32 (n, c, h, w) in [0, 1]."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        pixels = pixels[None]
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div_(255.0)


def to_pixels(tensor: torch.Tensor) -> np.ndarray:
    """The first image of a float (n, c, h, w) batch in [0, 1] as uint8 (h, w, c)."""
    return tensor[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


class RandomCrops:
    """Random square crops of photos, flipped and rotated at random. Big
    photos hold more distinct crops, but not in proportion to their area, or
    the few wallpapers would crowd out everything else: a photo is drawn in
    proportion to the square root of its area. `rng` may be replaced (batch
    workers give each their own stream)."""

    def __init__(self, paths: list[Path], largest: int, seed: int):
        self.images = [np.asarray(read_rgb(path)) for path in paths]
        small = [p.name for p, a in zip(paths, self.images) if min(a.shape[:2]) < largest]
        if small:
            raise SystemExit("photos smaller than a %d px crop: %s" % (largest, ", ".join(small)))
        weights = np.array([np.sqrt(a.shape[0] * a.shape[1]) for a in self.images])
        self.weights = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def crop(self, side: int) -> np.ndarray:
        image = self.images[self.rng.choice(len(self.images), p=self.weights)]
        y = self.rng.integers(0, image.shape[0] - side + 1)
        x = self.rng.integers(0, image.shape[1] - side + 1)
        crop = image[y:y + side, x:x + side]
        if self.rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(np.rot90(crop, self.rng.integers(4)))
