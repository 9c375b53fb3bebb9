"""Training pairs made from the user's own images, for adaptation (ZSSR's
idea: Shocher et al., "Zero-Shot Super-Resolution using Deep Internal
Learning", CVPR 2018).

The user's image plays the high-resolution part; a copy reduced by the
network's scale, with the same random degradations the shipped network was
trained on, plays the low-resolution part. Using the training recipe (read
from the weights' own record) matters: the network then keeps its notion of
what a thumbnail suffers from, and what it learns from the pairs is the
content (the strokes of text, the edges of a screenshot) rather than a new
degradation.

A strip of every image large enough is held out: the pairs cut from it are
fixed once (crop and degradation) and never trained on, so that the
safeguard in server/adaptation.py judges the adapted network on pixels it
has not seen.

The degradation pipeline mirrors scripts/degradations.py (which the server
cannot import: scripts/ is not installed with it); tests/test_adapt.py
checks that the two recipes have the same fields.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter

KERNELS = {"area": Image.Resampling.BOX, "bicubic": Image.Resampling.BICUBIC,
           "lanczos": Image.Resampling.LANCZOS}

# scripts/degradations.py Recipe(); used when a record names no recipe.
DEFAULT_RECIPE = {"blur": 0.25, "blur_sigma": (0.3, 1.2), "noise": 0.2,
                  "noise_sigma": (1.0, 8.0), "grey_noise": 0.4, "jpeg": 0.6,
                  "jpeg_quality": (30, 95), "second_order": 0.2}


def recipe_of(record: dict) -> dict:
    """The degradation recipe a network was trained with last: the final
    entry of its record's recipe changes, else its recipe."""
    data = ((record or {}).get("training") or {}).get("data") or {}
    changes = data.get("recipe_changes") or []
    recipe = changes[-1].get("recipe") if changes else data.get("recipe")
    merged = dict(DEFAULT_RECIPE)
    for key in DEFAULT_RECIPE:
        if isinstance(recipe, dict) and key in recipe:
            value = recipe[key]
            merged[key] = tuple(value) if isinstance(value, (list, tuple)) else value
    return merged


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _round(image: Image.Image, size, recipe: dict, rng: np.random.Generator) -> Image.Image:
    if rng.random() < recipe["blur"]:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*recipe["blur_sigma"])))
    image = image.resize(size, KERNELS[rng.choice(sorted(KERNELS))])
    if rng.random() < recipe["noise"]:
        pixels = np.asarray(image, np.float32)
        grey = rng.random() < recipe["grey_noise"]
        shape = pixels.shape[:2] + ((1,) if grey else (3,))
        pixels = pixels + rng.normal(0.0, rng.uniform(*recipe["noise_sigma"]), shape)
        image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
    if rng.random() < recipe["jpeg"]:
        low, high = recipe["jpeg_quality"]
        image = _jpeg(image, rng.integers(low, high + 1))
    return image


def degrade(high: Image.Image, scale: int, rng: np.random.Generator, recipe: dict) -> Image.Image:
    """A random 1/scale copy of `high` (sides multiples of `scale`)."""
    size = (high.width // scale, high.height // scale)
    if rng.random() < recipe["second_order"]:
        factor = rng.uniform(1.0, float(scale))
        middle = (max(size[0], round(high.width / factor)),
                  max(size[1], round(high.height / factor)))
        high = _round(high, middle, recipe, rng)
    return _round(high, size, recipe, rng)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (n, h, w, 3) -> float32 (n, 3, h, w) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div_(255.0)


@dataclass
class Region:
    image: int
    top: int
    left: int
    height: int
    width: int


class Pairs:
    """Low/high-resolution pairs cut from `images` (uint8 RGB arrays).

    `patch` is the side of a low-resolution patch; its high-resolution side
    is patch * scale and must fit in every image used."""

    HOLD_OUT = 0.25        # share of an image's longer side held out for checking

    def __init__(self, images: list[np.ndarray], scale: int, patch: int, recipe: dict,
                 seed: int, check_patches: int = 24):
        self.scale, self.patch, self.recipe = scale, patch, recipe
        self.rng = np.random.default_rng(seed)
        side = patch * scale
        self.images = [np.ascontiguousarray(a) for a in images if min(a.shape[:2]) >= side]
        if not self.images:
            raise ValueError("no image is at least %d pixels on its shorter side" % side)
        self.train: list[Region] = []
        held: list[Region] = []
        for index, image in enumerate(self.images):
            height, width = image.shape[:2]
            # A strip along the longer side, when what is left still holds a patch.
            if width >= height:
                strip = max(side, int(width * self.HOLD_OUT))
                if width - strip >= side:
                    self.train.append(Region(index, 0, 0, height, width - strip))
                    held.append(Region(index, 0, width - strip, height, strip))
                    continue
            else:
                strip = max(side, int(height * self.HOLD_OUT))
                if height - strip >= side:
                    self.train.append(Region(index, 0, 0, height - strip, width))
                    held.append(Region(index, height - strip, 0, strip, width))
                    continue
            self.train.append(Region(index, 0, 0, height, width))
        # Training areas weigh by the square root of their size, as in
        # scripts/train_sr.py: big images hold more, but not in proportion.
        weights = np.array([np.sqrt(r.height * r.width) for r in self.train])
        self.weights = weights / weights.sum()
        self.held_out = bool(held)
        # With nothing to hold out (every image tiny), the check falls back
        # to fixed pairs from the training areas: weaker, and said so.
        self.check = self._fixed(held or self.train, check_patches)

    def _crop(self, region: Region, side: int, rng: np.random.Generator) -> np.ndarray:
        top = region.top + rng.integers(0, region.height - side + 1)
        left = region.left + rng.integers(0, region.width - side + 1)
        return self.images[region.image][top:top + side, left:left + side]

    def _pair(self, high: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        low = degrade(Image.fromarray(np.ascontiguousarray(high)), self.scale, rng, self.recipe)
        return np.asarray(low), high

    def _fixed(self, regions: list[Region], count: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(self.rng.integers(1 << 31))
        side = self.patch * self.scale
        lows, highs = [], []
        for k in range(count):
            low, high = self._pair(self._crop(regions[k % len(regions)], side, rng), rng)
            lows.append(low)
            highs.append(high)
        return to_tensor(np.stack(lows)), to_tensor(np.stack(highs))

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        side = self.patch * self.scale
        lows, highs = [], []
        for index in self.rng.choice(len(self.train), size, p=self.weights):
            high = self._crop(self.train[index], side, self.rng)
            if self.rng.random() < 0.5:
                high = high[:, ::-1]
            high = np.ascontiguousarray(np.rot90(high, self.rng.integers(4)))
            low, high = self._pair(high, self.rng)
            lows.append(low)
            highs.append(high)
        return to_tensor(np.stack(lows)), to_tensor(np.stack(highs))

    def targets(self, size: int, side: int) -> torch.Tensor:
        """Crops of the images as they are: what the adapted network will be
        given. side is at most the smallest image's shorter side."""
        crops = [self._crop(self.train[i], min(side, self.train[i].height, self.train[i].width),
                            self.rng)
                 for i in self.rng.choice(len(self.train), size, p=self.weights)]
        smallest = min(min(c.shape[:2]) for c in crops)
        return to_tensor(np.stack([c[:smallest, :smallest] for c in crops]))
