"""Matting data with exact ground truth, made procedurally.

Real matting data sets are small, licensed for research only, and their
alpha mattes come from a green screen; here every training pair is built
from the project's own photos and an alpha matte drawn by this script, so the
ground truth is exact by construction:

* an alpha matte (`make_matte`): a person-like or object-like silhouette,
  anti-aliased, with hair strands and fur of partial opacity growing out of
  its edge, stretches of edge softened by defocus or motion blur,
  semi-transparent regions (glass, veils) and holes;
* a composite (`composite`): a foreground and a background cut from two
  different photos, blended through the matte in linear light, as a camera
  sees a fine strand in front of a background;
* a coarse mask (`coarse_mask`) made the ways users make them: a lasso or a
  rough brush (eroded or dilated by a few to a dozen pixels, more on one side
  than another, shifted), holes filled in or punched, stray blobs, a
  segmenter's smooth mask, binarised or soft.

Photos: any folders (training/photos.py). The photos held out for
validation (training/photos.py's VALIDATION) are never used for training;
`validation_set` builds the fixed-seed held-out composites from them alone.

    .venv/bin/python -m training.composites --out /tmp/matte-samples --count 8

writes a few samples (image, coarse mask, alpha) to look at.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .photos import DEFAULT_PHOTOS, read_rgb, training_photos, validation_photos

SUPERSAMPLE = 4      # strands are drawn this much larger, then box-filtered: true coverage
VALIDATION_SEED = 20260226


# -- small image tools -------------------------------------------------------

def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]


def gaussian_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0.05:
        return a
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-x * x / (2 * sigma * sigma))
    k /= k.sum()
    t = F.pad(_t(a), (radius, radius, radius, radius), mode="replicate")
    t = F.conv2d(t, k.view(1, 1, 1, -1))
    t = F.conv2d(t, k.view(1, 1, -1, 1))
    return t[0, 0].numpy()


def motion_blur(a: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Blur along a line `length` px long: the smear a moving strand leaves."""
    size = int(math.ceil(length)) | 1
    kernel = Image.new("L", (size * SUPERSAMPLE,) * 2, 0)
    c = size * SUPERSAMPLE / 2
    dx, dy = math.cos(angle) * length * SUPERSAMPLE / 2, math.sin(angle) * length * SUPERSAMPLE / 2
    ImageDraw.Draw(kernel).line([(c - dx, c - dy), (c + dx, c + dy)], fill=255,
                                width=SUPERSAMPLE)
    k = np.asarray(kernel.resize((size, size), Image.BOX), np.float32)
    k /= max(k.sum(), 1e-6)
    pad = size // 2
    t = F.pad(_t(a), (pad, pad, pad, pad), mode="replicate")
    return F.conv2d(t, _t(k))[0, 0].numpy()


def max_filter(a: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return a
    return F.max_pool2d(_t(a), 2 * radius + 1, stride=1, padding=radius)[0, 0].numpy()


def dilate(a: np.ndarray, radius: int) -> np.ndarray:
    """Morphological dilation by a roughly round structuring element (a
    square then a diamond, so corners do not grow twice as fast)."""
    if radius <= 0:
        return a
    t = _t(a)
    square = max(1, int(round(radius * 0.6)))
    t = F.max_pool2d(t, 2 * square + 1, stride=1, padding=square)
    rest = radius - square
    for _ in range(rest):
        t = torch.maximum(F.max_pool2d(t, (3, 1), stride=1, padding=(1, 0)),
                          F.max_pool2d(t, (1, 3), stride=1, padding=(0, 1)))
    return t[0, 0].numpy()


def erode(a: np.ndarray, radius: int) -> np.ndarray:
    return 1.0 - dilate(1.0 - a, radius)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth random field, unit variance, features about `cell` px across."""
    gh, gw = int(h / cell) + 3, int(w / cell) + 3
    grid = torch.from_numpy(rng.standard_normal((1, 1, gh, gw)).astype(np.float32))
    big = F.interpolate(grid, size=(int(gh * cell), int(gw * cell)), mode="bicubic",
                        align_corners=False)[0, 0].numpy()
    oy, ox = rng.integers(0, big.shape[0] - h + 1), rng.integers(0, big.shape[1] - w + 1)
    field = big[oy:oy + h, ox:ox + w]
    return (field - field.mean()) / (field.std() + 1e-6)


def level_set_alpha(field: np.ndarray) -> np.ndarray:
    """Alpha of the region field > 0 with one pixel of anti-aliasing: the
    field divided by its gradient is the signed distance to the edge."""
    gy, gx = np.gradient(field)
    distance = field / np.maximum(np.hypot(gx, gy), 1e-4)
    return np.clip(0.5 + distance, 0.0, 1.0).astype(np.float32)


def over(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Coverage of two independent layers together."""
    return 1.0 - (1.0 - a) * (1.0 - b)


# -- alpha mattes ------------------------------------------------------------

def silhouette(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Signed field (> 0 inside) of a person-like figure, an object or a blob,
    with a wobbly outline."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    side = min(h, w)
    kind = rng.choice(["person", "object", "blob"], p=[0.4, 0.4, 0.2])
    if kind == "person":
        cx = w * rng.uniform(0.3, 0.7)
        head_r = side * rng.uniform(0.12, 0.22)
        head_y = h * rng.uniform(0.2, 0.45)
        head = 1.0 - np.hypot((xx - cx) / (head_r * rng.uniform(0.8, 1.0)),
                              (yy - head_y) / head_r)
        shoulders = head_y + head_r * rng.uniform(1.3, 1.8)
        half = head_r * rng.uniform(1.8, 2.8)
        # a torso widening from the neck down to the shoulders, running off
        # the bottom of the frame as in a portrait
        width = np.where(yy < shoulders, half * np.clip((yy - head_y) / (shoulders - head_y), 0.35, 1.0),
                         half + (yy - shoulders) * rng.uniform(0.0, 0.3))
        torso = np.minimum((width - np.abs(xx - cx)) / head_r, (yy - head_y - head_r * 0.6) / head_r)
        field = np.maximum(head, torso) * head_r
    elif kind == "object":
        cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)
        radius = side * rng.uniform(0.2, 0.4)
        theta = np.arctan2(yy - cy, xx - cx)
        r = np.ones_like(theta)
        for k in range(1, 6):
            r += rng.uniform(0, 0.25 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        power = rng.uniform(1.5, 5.0)   # superellipse: round to boxy
        rho = (np.abs((xx - cx) / radius) ** power + np.abs((yy - cy) / radius) ** power) ** (1 / power)
        field = (r - rho) * radius
    else:
        field = smooth_noise(rng, h, w, side * rng.uniform(0.25, 0.5)) + rng.uniform(-0.3, 0.6)
        field = field * side * 0.15
    wobble = smooth_noise(rng, h, w, side * rng.uniform(0.05, 0.15)) * rng.uniform(0.5, 4.0)
    return (field + wobble).astype(np.float32)


def strands(rng: np.random.Generator, alpha: np.ndarray, count: int, length: tuple,
            width: tuple, opacity: tuple, curl: float) -> np.ndarray:
    """Anti-aliased strands growing outward from the matte's edge: each a
    random walk drawn SUPERSAMPLE times larger and box-filtered down, so a
    strand thinner than a pixel gets its true partial coverage."""
    h, w = alpha.shape
    edge = np.argwhere((alpha > 0.05) & (alpha < 0.95))
    if len(edge) == 0:
        return np.zeros_like(alpha)
    gy, gx = np.gradient(gaussian_blur(alpha, 2.0))
    canvas = Image.new("L", (w * SUPERSAMPLE, h * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    s = SUPERSAMPLE
    for y, x in edge[rng.integers(0, len(edge), count)]:
        # outward is down the gradient of alpha
        angle = math.atan2(-gy[y, x], -gx[y, x]) + rng.normal(0, 0.5)
        steps = max(2, int(rng.uniform(*length) / 1.5))
        start = rng.uniform(1.0, 4.0)   # roots start inside the body
        py, px = y - math.sin(angle) * start, x - math.cos(angle) * start
        points = [(px * s, py * s)]
        turn = rng.normal(0, curl)
        for _ in range(steps):
            turn += rng.normal(0, curl * 0.5)
            angle += turn * 0.1
            py, px = py + math.sin(angle) * 1.5, px + math.cos(angle) * 1.5
            points.append((px * s, py * s))
        draw.line(points, fill=int(255 * rng.uniform(*opacity)),
                  width=max(1, int(round(rng.uniform(*width) * s))), joint="curve")
    return np.asarray(canvas.resize((w, h), Image.BOX), np.float32) / 255.0


def blob(rng: np.random.Generator, h: int, w: int, radius: float) -> np.ndarray:
    """Anti-aliased irregular blob somewhere in the frame."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    theta = np.arctan2(yy - cy, xx - cx)
    r = radius * (1 + 0.3 * np.cos(2 * theta + rng.uniform(0, 6)) + 0.15 * np.cos(
        3 * theta + rng.uniform(0, 6)))
    return np.clip(0.5 + r - np.hypot(yy - cy, xx - cx), 0, 1).astype(np.float32)


def make_matte(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One alpha matte, float32 in [0, 1], as hard as real ones are."""
    field = silhouette(rng, h, w)
    alpha = level_set_alpha(field)
    side = min(h, w)
    body = alpha.copy()
    # Holes: the gap between an arm and the body, a handle, a ring.
    for _ in range(rng.poisson(0.7)):
        hole = blob(rng, h, w, side * rng.uniform(0.02, 0.08)) * erode(body, 3)
        alpha = alpha * (1.0 - hole)
    # Semi-transparent regions: glass, a veil, thin fabric; some textured.
    if rng.random() < 0.35:
        region = level_set_alpha(smooth_noise(rng, h, w, side * 0.2) - rng.uniform(0.0, 1.0))
        level = rng.uniform(0.15, 0.8)
        if rng.random() < 0.5:
            level = np.clip(level + 0.2 * smooth_noise(rng, h, w, side * 0.03), 0.05, 0.95)
        alpha = alpha * (1.0 - region * (1.0 - level))
    # Hair or fur along the edge, or both, or neither (a hard object).
    kind = rng.choice(["hair", "fur", "both", "none"], p=[0.35, 0.3, 0.15, 0.2])
    perimeter = float(((body > 0.05) & (body < 0.95)).sum())
    grown = np.zeros_like(alpha)
    if kind in ("hair", "both"):
        grown = over(grown, strands(rng, body, int(perimeter * rng.uniform(0.05, 0.4)) + 5,
                                    (side * 0.05, side * 0.35), (0.25, 1.6), (0.3, 1.0),
                                    rng.uniform(0.05, 0.6)))
    if kind in ("fur", "both"):
        grown = over(grown, strands(rng, body, int(perimeter * rng.uniform(0.5, 2.0)) + 5,
                                    (2.0, side * 0.06), (0.3, 1.2), (0.4, 1.0),
                                    rng.uniform(0.1, 1.0)))
    alpha = over(alpha, grown)
    # Stretches of the edge defocused or smeared by motion: a smooth mask of
    # where, so one matte has sharp and soft edges together.
    if rng.random() < 0.5:
        where = np.clip(smooth_noise(rng, h, w, side * 0.3) * 0.8 + rng.uniform(-0.8, 0.4), 0, 1)
        if rng.random() < 0.5:
            soft = gaussian_blur(alpha, rng.uniform(1.0, 5.0))
        else:
            soft = motion_blur(alpha, rng.uniform(4.0, 20.0), rng.uniform(0, np.pi))
        alpha = alpha * (1 - where) + soft * where
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


# -- composites --------------------------------------------------------------

def random_crop(rng: np.random.Generator, photo: np.ndarray, h: int, w: int,
                zoom: tuple = (0.6, 1.6)) -> np.ndarray:
    """A crop of `photo` resized to h x w, float32 sRGB in [0, 1]."""
    ph, pw = photo.shape[:2]
    scale = rng.uniform(*zoom)
    ch, cw = min(ph, int(h / scale)), min(pw, int(w / scale))
    ratio = min(ch / h, cw / w)
    ch, cw = max(8, int(h * ratio)), max(8, int(w * ratio))
    y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    crop = Image.fromarray(photo[y:y + ch, x:x + cw])
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    crop = crop.resize((w, h), Image.BICUBIC if ch < h else Image.BOX)
    return np.asarray(crop, np.float32) / 255.0


def composite(alpha: np.ndarray, foreground: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The image a camera records: foreground over background through alpha,
    in linear light, back in sRGB."""
    a = alpha[..., None]
    linear = a * srgb_to_linear(foreground) + (1 - a) * srgb_to_linear(background)
    return linear_to_srgb(linear).astype(np.float32)


def coarse_mask(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """A rough mask of the matte's subject, as a user or a segmenter makes it."""
    h, w = alpha.shape
    side = min(h, w)
    hard = (alpha > rng.uniform(0.2, 0.8)).astype(np.float32)
    kind = rng.choice(["brush", "lasso", "segmenter"], p=[0.45, 0.3, 0.25])
    if kind == "brush":
        # eroded in some stretches, dilated in others, by up to a dozen px
        grow = dilate(hard, int(rng.integers(0, 13)))
        shrink = erode(hard, int(rng.integers(0, 9)))
        where = (smooth_noise(rng, h, w, side * 0.3) + rng.uniform(-1, 1) > 0).astype(np.float32)
        mask = grow * where + shrink * (1 - where)
    elif kind == "lasso":
        # a polygon following the outline loosely, holes filled in, strands
        # left out or lumped in
        cell = int(rng.integers(6, 20))
        small = F.adaptive_avg_pool2d(_t(hard), (max(2, h // cell), max(2, w // cell)))
        small = (small > rng.uniform(0.2, 0.7)).float()
        mask = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
        mask = (mask > 0.5).astype(np.float32)
        mask = fill_holes(mask)
    else:
        mask = gaussian_blur(hard, rng.uniform(2.0, 8.0))
        mask = np.clip(mask + 0.15 * smooth_noise(rng, h, w, side * 0.1), 0, 1)
    # shifted by a few pixels
    dy, dx = rng.integers(-5, 6, 2)
    mask = np.roll(mask, (int(dy), int(dx)), (0, 1))
    # stray blobs added outside, holes punched inside
    for _ in range(rng.poisson(0.8)):
        mask = np.maximum(mask, blob(rng, h, w, side * rng.uniform(0.01, 0.06)))
    for _ in range(rng.poisson(0.5)):
        mask = mask * (1 - blob(rng, h, w, side * rng.uniform(0.01, 0.05)))
    if rng.random() < 0.6:
        mask = (mask > 0.5).astype(np.float32)
    return mask.astype(np.float32)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill what the background cannot reach from the border (a lasso
    encloses everything inside it)."""
    outside = torch.zeros_like(_t(mask))
    free = _t(mask) < 0.5
    outside[..., 0, :], outside[..., -1, :] = free[..., 0, :], free[..., -1, :]
    outside[..., :, 0], outside[..., :, -1] = free[..., :, 0], free[..., :, -1]
    while True:
        grown = F.max_pool2d(outside, 3, stride=1, padding=1) * free
        if torch.equal(grown, outside):
            break
        outside = grown
    return 1.0 - outside[0, 0].numpy()


@dataclass
class Sample:
    image: np.ndarray        # (h, w, 3) float32 sRGB
    alpha: np.ndarray        # (h, w) float32, exact
    mask: np.ndarray         # (h, w) float32, the coarse mask
    foreground: np.ndarray   # (h, w, 3) float32 sRGB, the true foreground colour


class Photos:
    def __init__(self, paths: list[Path]):
        if len(paths) < 2:
            raise SystemExit("need at least two photos (a foreground and a background)")
        self.names = [p.name for p in paths]
        self.images = [np.asarray(read_rgb(p)) for p in paths]

    def two(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        i, j = rng.choice(len(self.images), 2, replace=False)
        return self.images[i], self.images[j]


def make_sample(rng: np.random.Generator, photos: Photos, h: int, w: int,
                alpha: np.ndarray | None = None) -> Sample:
    alpha = make_matte(rng, h, w) if alpha is None else alpha
    fg_photo, bg_photo = photos.two(rng)
    foreground = random_crop(rng, fg_photo, h, w)
    background = random_crop(rng, bg_photo, h, w)
    if rng.random() < 0.4:   # a defocused background, as in most portraits
        sigma = rng.uniform(1.0, 6.0)
        background = np.stack([gaussian_blur(background[..., c], sigma) for c in range(3)], -1)
    return Sample(composite(alpha, foreground, background), alpha, coarse_mask(rng, alpha),
                  foreground)


def validation_set(folders: list[Path], count: int, h: int, w: int,
                   seed: int = VALIDATION_SEED) -> list[Sample]:
    """Fixed held-out composites: only validation photos, a fixed seed."""
    photos = Photos(validation_photos(folders))
    rng = np.random.default_rng(seed)
    return [make_sample(rng, photos, h, w) for _ in range(count)]


def to_u8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, action="append")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(384, 384), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation", action="store_true", help="the held-out set instead")
    args = parser.parse_args(argv)
    folders = args.photos or DEFAULT_PHOTOS
    h, w = args.size
    if args.validation:
        samples = validation_set(folders, args.count, h, w)
    else:
        rng = np.random.default_rng(args.seed)
        photos = Photos(training_photos(folders))
        samples = [make_sample(rng, photos, h, w) for _ in range(args.count)]
    args.out.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples):
        Image.fromarray(to_u8(s.image)).save(args.out / ("%03d-image.png" % i))
        Image.fromarray(to_u8(s.mask)).save(args.out / ("%03d-mask.png" % i))
        Image.fromarray(to_u8(s.alpha)).save(args.out / ("%03d-alpha.png" % i))
    print("wrote %d samples to %s" % (len(samples), args.out))


if __name__ == "__main__":
    main()
