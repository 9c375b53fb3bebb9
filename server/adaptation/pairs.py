"""Training pairs made from the user's own images, for adaptation (ZSSR's
idea: Shocher et al., "Zero-Shot Super-Resolution using Deep Internal
Learning", CVPR 2018).

The user's image plays the clean part of a pair; a copy degraded the way
the shipped network's training photos were plays the input
(training/degradations.py, with the recipe read from the weights' own
record):

* for an upscaler (`Downscale`), a random thumbnail of it;
* for a deblurrer (`Reblur`), the image reduced to half size (the user's
  image may be blurry itself; reduced, it is sharper), then blurred once
  more with a random kernel of its training recipe, with noise, 8-bit
  rounding and sometimes JPEG.

Using the training recipe matters: the network then keeps its notion of
what a thumbnail or a shaken camera does, and what it learns from the pairs
is the content (the strokes of text, the edges of a screenshot) rather than
a new degradation.

A strip of every image large enough is held out: the pairs cut from it are
fixed once (crop and degradation) and never trained on, so that the
safeguard in server/adaptation/fit.py judges the adapted network on pixels
it has not seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from training import degradations
from training.photos import to_tensor


class Downscale:
    """Pairs for an upscaler: the crop is the target, a random 1/scale copy
    of it the input."""

    reach = 0              # pixels of picture read beyond the target, on each side

    def __init__(self, scale: int, recipe: degradations.ThumbnailRecipe):
        self.scale, self.recipe = scale, recipe

    def sources(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """The pictures the pairs are cut from: the user's images as they are."""
        return images

    def make(self, crop: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        low = degradations.thumbnail(Image.fromarray(np.ascontiguousarray(crop)), self.scale,
                                     rng, self.recipe)
        return np.asarray(low), crop


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
    (docs/models/adaptation.md)."""

    scale = 1
    reduce = 2

    def __init__(self, recipe: degradations.BlurRecipe):
        self.recipe = recipe
        self.reach = degradations.largest_radius(recipe)

    def sources(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
                    (max(1, round(image.shape[1] / self.reduce)),
                     max(1, round(image.shape[0] / self.reduce))), Image.Resampling.LANCZOS))
                for image in images]

    def make(self, crop: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        kernel, _ = degradations.random_kernel(rng, self.recipe)
        side = crop.shape[0] - 2 * self.reach
        radius = kernel.shape[0] // 2
        scene = crop[self.reach - radius:self.reach + radius + side,
                     self.reach - radius:self.reach + radius + side]
        low = degradations.blurred_photo(scene, kernel, rng, self.recipe)
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
        # training: big images hold more, but not in proportion.
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
