"""Ground-truth images for bench/adapt_quality.py, from domains the training
photos of scripts/train_sr.py lack. Everything here is rendered by this
file (deterministically, from a seed) or taken from scikit-image's bundled
data images that are not training photos (see
../shared/data/photos/ATTRIBUTION.md: astronaut, brick, camera, chelsea,
coffee, grass, gravel and rocket are; hubble_deep_field, moon and page are
not).

Rendering is done at 4x and reduced with Pillow's LANCZOS, so edges are
anti-aliased as in real screenshots and scans, not stair-stepped.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SUPER = 4
FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu")]
WORDS = ("the quick brown fox jumps over lazy dogs while sharp small thumbnails restore "
         "every letter pixel edge layer mask filter enhance upscale GIMP image render "
         "0123456789 SharpFu adapts to your own pictures without ground truth").split()


def font(size: int, style: str = "Sans") -> ImageFont.FreeTypeFont:
    for folder in FONT_DIRS:
        path = folder / ("DejaVu%s.ttf" % style)
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    # Pillow's bundled font (Pillow >= 10.1 scales it).
    return ImageFont.load_default(size)


def _finish(canvas: Image.Image, size: tuple[int, int]) -> Image.Image:
    return canvas.resize(size, Image.Resampling.LANCZOS).convert("RGB")


def text_page(seed: int, size=(384, 384)) -> Image.Image:
    """Paragraphs in several DejaVu faces and sizes, dark on light."""
    rng = np.random.default_rng(seed)
    width, height = size[0] * SUPER, size[1] * SUPER
    paper = tuple(int(v) for v in rng.integers(225, 256, 3))
    canvas = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(canvas)
    y = 6 * SUPER
    while y < height - 10 * SUPER:
        style = rng.choice(["Sans", "Serif", "SansMono", "Sans-Bold"])
        points = int(rng.integers(9, 17))
        face = font(points * SUPER, style)
        ink = tuple(int(v) for v in rng.integers(0, 90, 3))
        x = 6 * SUPER
        line = " ".join(rng.choice(WORDS, 12))
        draw.text((x, y), line, font=face, fill=ink)
        y += int(points * 1.5 * SUPER)
    return _finish(canvas, size)


def screenshot(seed: int, size=(448, 320)) -> Image.Image:
    """A UI-like window: title bar, menu, buttons, a list, a text field."""
    rng = np.random.default_rng(seed)
    width, height = size[0] * SUPER, size[1] * SUPER
    s = SUPER
    canvas = Image.new("RGB", (width, height), (236, 236, 236))
    draw = ImageDraw.Draw(canvas)
    accent = tuple(int(v) for v in rng.integers(40, 200, 3))
    draw.rectangle((0, 0, width, 22 * s), fill=accent)
    draw.text((8 * s, 4 * s), "SharpFu - " + " ".join(rng.choice(WORDS, 3)),
              font=font(12 * s, "Sans-Bold"), fill=(255, 255, 255))
    x = 8 * s
    for word in ("File", "Edit", "View", "Image", "Layer", "Filters", "Help"):
        draw.text((x, 28 * s), word, font=font(11 * s), fill=(20, 20, 20))
        x += (len(word) * 7 + 14) * s
    draw.line((0, 46 * s, width, 46 * s), fill=(180, 180, 180), width=s)
    # a list with alternating rows and small icons
    for row in range(12):
        top = (54 + row * 20) * s
        fill = (250, 250, 250) if row % 2 else (226, 230, 236)
        draw.rectangle((8 * s, top, 220 * s, top + 20 * s), fill=fill)
        icon = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.rounded_rectangle((12 * s, top + 4 * s, 24 * s, top + 16 * s), 3 * s, fill=icon)
        draw.text((30 * s, top + 3 * s), " ".join(rng.choice(WORDS, 2)) + ".png",
                  font=font(11 * s), fill=(30, 30, 30))
    # buttons and a text field
    for k, label in enumerate(("OK", "Cancel", "Apply", "Reset")):
        left = (236 + (k % 2) * 100) * s
        top = (60 + (k // 2) * 36) * s
        draw.rounded_rectangle((left, top, left + 90 * s, top + 26 * s), 5 * s,
                               fill=(250, 250, 250), outline=(120, 120, 120), width=s)
        draw.text((left + 30 * s, top + 6 * s), label, font=font(11 * s), fill=(0, 0, 0))
    draw.rectangle((236 * s, 140 * s, 432 * s, 164 * s), fill=(255, 255, 255),
                   outline=(100, 100, 100), width=s)
    draw.text((242 * s, 145 * s), " ".join(rng.choice(WORDS, 3)), font=font(11 * s, "SansMono"),
              fill=(0, 0, 0))
    for k in range(6):   # checkboxes and a slider
        top = (176 + k * 20) * s
        draw.rectangle((236 * s, top, 248 * s, top + 12 * s), outline=(60, 60, 60), width=s)
        if rng.random() < 0.5:
            draw.line((238 * s, top + 6 * s, 241 * s, top + 10 * s, 247 * s, top + 2 * s),
                      fill=accent, width=2 * s)
        draw.text((254 * s, top - s), " ".join(rng.choice(WORDS, 2)), font=font(10 * s),
                  fill=(20, 20, 20))
    return _finish(canvas, size)


def line_art(seed: int, size=(384, 384)) -> Image.Image:
    """Ink drawing: curves, circles, hatching and a few filled shapes."""
    rng = np.random.default_rng(seed)
    width, height = size[0] * SUPER, size[1] * SUPER
    canvas = Image.new("RGB", (width, height), (252, 250, 244))
    draw = ImageDraw.Draw(canvas)
    for _ in range(6):   # flat colour areas under the ink, as in a cartoon
        box = sorted(rng.integers(0, width, 2)), sorted(rng.integers(0, height, 2))
        colour = tuple(int(v) for v in rng.integers(120, 250, 3))
        draw.ellipse((box[0][0], box[1][0], box[0][1], box[1][1]), fill=colour)
    for _ in range(40):  # smooth curves (Bezier-ish via sampled sines)
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        angle, bend = rng.uniform(0, 2 * math.pi), rng.uniform(-0.04, 0.04)
        length = rng.uniform(40, 260) * SUPER
        points = []
        for t in np.linspace(0, 1, 40):
            a = angle + bend * t * 40
            points.append((x0 + math.cos(a) * length * t, y0 + math.sin(a) * length * t))
        draw.line(points, fill=(10, 10, 10), width=int(rng.integers(1, 4)) * SUPER, joint="curve")
    for _ in range(10):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(8, 50) * SUPER
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(0, 0, 0),
                     width=int(rng.integers(1, 3)) * SUPER)
    for _ in range(4):   # hatching
        left, top = rng.uniform(0, width * 0.7), rng.uniform(0, height * 0.7)
        span = rng.uniform(30, 90) * SUPER
        step = rng.uniform(3, 7) * SUPER
        for k in np.arange(0, span, step):
            draw.line((left + k, top, left, top + k), fill=(30, 30, 30), width=SUPER)
    return _finish(canvas, size)


def fur(seed: int, size=(384, 384)) -> Image.Image:
    """A close-up of fur: thousands of thin curved strands over an
    undercoat, in one animal's palette."""
    rng = np.random.default_rng(seed)
    width, height = size[0] * SUPER, size[1] * SUPER
    base = rng.uniform(0.35, 0.85) * np.array([1.0, 0.78, 0.55]) * rng.uniform(0.85, 1.0, 3)
    canvas = Image.new("RGB", (width, height), tuple(int(v * 120) for v in base))
    draw = ImageDraw.Draw(canvas)
    flow = rng.uniform(0, 2 * math.pi)
    for _ in range(9000):
        x, y = rng.uniform(-20, width), rng.uniform(-20, height)
        angle = flow + 0.6 * math.sin(x / width * 3 + y / height * 2) + rng.normal(0, 0.15)
        length = rng.uniform(10, 30) * SUPER
        curl = rng.normal(0, 0.02)
        shade = np.clip(base * rng.uniform(0.5, 1.6) + rng.normal(0, 0.05, 3), 0, 1)
        points = []
        for t in np.linspace(0, 1, 6):
            a = angle + curl * t * 30
            points.append((x + math.cos(a) * length * t, y + math.sin(a) * length * t))
        draw.line(points, fill=tuple(int(v * 255) for v in shade),
                  width=max(1, int(rng.uniform(0.6, 1.6) * SUPER)))
    return _finish(canvas.filter(ImageFilter.GaussianBlur(SUPER * 0.3)), size)


def foliage(seed: int, size=(384, 384)) -> Image.Image:
    """A close-up of leaves: overlapping shaded leaf shapes with veins."""
    rng = np.random.default_rng(seed)
    width, height = size[0] * SUPER, size[1] * SUPER
    canvas = Image.new("RGB", (width, height), (20, 40, 18))
    draw = ImageDraw.Draw(canvas)
    for _ in range(260):
        cx, cy = rng.uniform(-40, width + 40), rng.uniform(-40, height + 40)
        length, breadth = rng.uniform(25, 70) * SUPER, rng.uniform(0.25, 0.45)
        angle = rng.uniform(0, 2 * math.pi)
        green = np.array([rng.uniform(0.15, 0.45), rng.uniform(0.45, 0.85), rng.uniform(0.1, 0.3)])
        green = green * rng.uniform(0.5, 1.2)
        outline = []
        for t in np.linspace(0, 2 * math.pi, 48):
            u = math.cos(t) * length / 2
            v = math.sin(t) * length * breadth / 2 * (1 - 0.3 * math.cos(t))
            outline.append((cx + u * math.cos(angle) - v * math.sin(angle),
                            cy + u * math.sin(angle) + v * math.cos(angle)))
        draw.polygon(outline, fill=tuple(int(min(1, v) * 255) for v in green))
        tip = (cx + math.cos(angle) * length / 2, cy + math.sin(angle) * length / 2)
        tail = (cx - math.cos(angle) * length / 2, cy - math.sin(angle) * length / 2)
        vein = tuple(int(min(1, v * 1.4) * 255) for v in green)
        draw.line((tail, tip), fill=vein, width=SUPER)
        for k in np.linspace(0.2, 0.8, 5):
            px, py = tail[0] + (tip[0] - tail[0]) * k, tail[1] + (tip[1] - tail[1]) * k
            for side in (-1, 1):
                a = angle + side * 0.8
                draw.line((px, py, px + math.cos(a) * length * 0.15,
                           py + math.sin(a) * length * 0.15), fill=vein, width=max(1, SUPER // 2))
    return _finish(canvas, size)


def skimage_image(name: str, box=None) -> Image.Image:
    """A scikit-image data image that is not a training photo, cropped to
    `box` (left, top, right, bottom) when given."""
    from skimage import data
    pixels = getattr(data, name)()
    image = Image.fromarray(pixels).convert("RGB")
    return image.crop(box) if box else image


def domains() -> dict[str, list[tuple[str, Image.Image]]]:
    """domain -> [(name, ground-truth image)] (out of domain only)."""
    return {
        "text & screenshots": [("text page 1", text_page(1)), ("text page 2", text_page(2)),
                               ("screenshot 1", screenshot(3)), ("screenshot 2", screenshot(4)),
                               ("skimage page", skimage_image("page"))],
        "line art": [("line art 1", line_art(5)), ("line art 2", line_art(6)),
                     ("line art 3", line_art(7))],
        "fur & foliage": [("fur 1", fur(8)), ("fur 2", fur(9)), ("foliage 1", foliage(10)),
                          ("foliage 2", foliage(11))],
        "astronomy": [("hubble deep field 1", skimage_image("hubble_deep_field", (0, 0, 448, 448))),
                      ("hubble deep field 2",
                       skimage_image("hubble_deep_field", (424, 552, 872, 1000))),
                      ("moon", skimage_image("moon"))],
    }
