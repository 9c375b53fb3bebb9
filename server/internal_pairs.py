"""Training pairs made from the user's own images, for adaptation (ZSSR's
idea: Shocher et al., "Zero-Shot Super-Resolution using Deep Internal
Learning", CVPR 2018).

The user's image plays the clean part of a pair; a copy degraded the way
the shipped network's training photos were plays the input:

* for an upscaler (`Downscale`), reduced by the network's scale with the
  random degradations of its training recipe (scripts/degradations.py);
* for a deblurrer (`Reblur`), reduced to half size (the user's image may be
  blurry itself; reduced, it is sharper), then blurred once more with a
  random kernel from its training recipe (server/blur_kernels.py), then
  noise, 8-bit rounding and JPEG, as scripts/blur_kernels.degrade does.

Using the training recipe (read from the weights' own record) matters: the
network then keeps its notion of what a thumbnail or a shaken camera does,
and what it learns from the pairs is the content (the strokes of text, the
edges of a screenshot) rather than a new degradation.

A strip of every image large enough is held out: the pairs cut from it are
fixed once (crop and degradation) and never trained on, so that the
safeguard in server/adaptation.py judges the adapted network on pixels it
has not seen.

The downscaling pipeline mirrors scripts/degradations.py (which the server
cannot import: scripts/ is not installed with it); tests/test_adapt.py
checks that the two recipes have the same fields.
"""
from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from . import blur_kernels

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


class Downscale:
    """Pairs for an upscaler: the crop is the target, a random 1/scale copy
    of it the input."""

    reach = 0              # pixels of picture read beyond the target, on each side

    def __init__(self, scale: int, recipe: dict):
        self.scale, self.recipe = scale, recipe

    def sources(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """The pictures the pairs are cut from: the user's images as they are."""
        return images

    def make(self, crop: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        low = degrade(Image.fromarray(np.ascontiguousarray(crop)), self.scale, rng, self.recipe)
        return np.asarray(low), crop


def blur_recipe_of(record: dict | None) -> blur_kernels.Recipe:
    """The blur recipe a deblurrer was trained with (its record's), else the
    training script's default: a user's checkpoint has no record."""
    data = ((record or {}).get("training") or {}).get("data") or {}
    recipe = data.get("recipe") if isinstance(data.get("recipe"), dict) else {}
    fields = {f.name for f in dataclasses.fields(blur_kernels.Recipe)}
    return blur_kernels.Recipe(**{key: tuple(value) if isinstance(value, list) else value
                                  for key, value in recipe.items() if key in fields})


class Reblur:
    """Pairs for a deblurrer: the crop's centre is the target; the input is
    the crop blurred by a random kernel of the recipe (read from the picture
    around the centre, not from padding, as in training), with noise, 8-bit
    rounding and sometimes JPEG.

    The crops come from the user's images reduced by `reduce`: a blur shrinks
    with the picture, so a reduced copy of a blurry photo is a sharper photo
    of the same kind of content (the recurrence of patches across scales
    that Michaeli and Irani's blind deblurring rests on, ECCV 2014). Cut at
    full size, the targets would be as blurry as the photo, and the network
    would learn to leave that much blur in: on text and screenshots, pairs
    at full size lost 0.41 dB against the truth, pairs at half size moved it
    by -0.05 to +0.04 dB, and on line art they gained 0.7 to 1.2 dB
    (docs/MODELS.md, "The deblurrer")."""

    scale = 1
    reduce = 2

    def __init__(self, recipe: blur_kernels.Recipe):
        self.recipe = recipe
        self.reach = blur_kernels.largest_radius(recipe)

    def sources(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
                    (max(1, round(image.shape[1] / self.reduce)),
                     max(1, round(image.shape[0] / self.reduce))), Image.Resampling.LANCZOS))
                for image in images]

    def make(self, crop: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        kernel, _ = blur_kernels.random_kernel(rng, self.recipe)
        while kernel.shape[0] // 2 > self.reach:     # a rare curled-up shake path
            kernel, _ = blur_kernels.random_kernel(rng, self.recipe)
        side = crop.shape[0] - 2 * self.reach
        radius = kernel.shape[0] // 2
        scene = crop[self.reach - radius:self.reach + radius + side,
                     self.reach - radius:self.reach + radius + side]
        # A true convolution (the kernel flipped), over the valid part only.
        pixels = torch.from_numpy(np.ascontiguousarray(scene)).permute(2, 0, 1)[:, None].double()
        weights = torch.from_numpy(kernel[::-1, ::-1].copy())[None, None]
        blurred = F.conv2d(pixels, weights)[:, 0].permute(1, 2, 0).numpy()
        recipe = self.recipe
        if rng.random() < recipe.noise:
            grey = rng.random() < recipe.grey_noise
            shape = blurred.shape[:2] + ((1,) if grey else (3,))
            blurred = blurred + rng.normal(0.0, rng.uniform(*recipe.noise_sigma), shape)
        low = np.clip(np.round(blurred), 0, 255).astype(np.uint8)
        if rng.random() < recipe.jpeg:
            low = np.asarray(_jpeg(Image.fromarray(low),
                                   rng.integers(recipe.jpeg_quality[0],
                                                recipe.jpeg_quality[1] + 1)))
        high = crop[self.reach:self.reach + side, self.reach:self.reach + side]
        return low, high


@dataclass
class Region:
    image: int
    top: int
    left: int
    height: int
    width: int


class Pairs:
    """Input/target pairs cut from `images` (uint8 RGB arrays) and made by
    `degradation` (Downscale or Reblur).

    `patch` is the side of an input patch; the crop it is made from, patch *
    scale plus the degradation's reach on each side, must fit in every image
    used."""

    HOLD_OUT = 0.25        # share of an image's longer side held out for checking

    def __init__(self, images: list[np.ndarray], degradation, patch: int, seed: int,
                 check_patches: int = 24):
        self.degradation, self.patch = degradation, patch
        self.scale = degradation.scale
        self.rng = np.random.default_rng(seed)
        side = self.side = patch * self.scale + 2 * degradation.reach
        self.images = [np.ascontiguousarray(a) for a in degradation.sources(images)
                       if min(a.shape[:2]) >= side]
        if not self.images:
            raise ValueError("no image is at least %d pixels on its shorter side" % (
                side * getattr(degradation, "reduce", 1)))
        self.train: list[Region] = []
        held: list[Region] = []
        for index, image in enumerate(self.images):
            height, width = image.shape[:2]
            # A strip along the longer side, when what is left still holds a crop.
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

    def _fixed(self, regions: list[Region], count: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(self.rng.integers(1 << 31))
        lows, highs = [], []
        for k in range(count):
            low, high = self.degradation.make(self._crop(regions[k % len(regions)], self.side,
                                                         rng), rng)
            lows.append(low)
            highs.append(high)
        return to_tensor(np.stack(lows)), to_tensor(np.stack(highs))

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        lows, highs = [], []
        for index in self.rng.choice(len(self.train), size, p=self.weights):
            crop = self._crop(self.train[index], self.side, self.rng)
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            crop = np.ascontiguousarray(np.rot90(crop, self.rng.integers(4)))
            low, high = self.degradation.make(crop, self.rng)
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
