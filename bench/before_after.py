"""The README's before/after picture, made by SharpFu itself.

    .venv/bin/python bench/before_after.py [--input docs/images/thumbnail.png]

Upscales the input 2x through a real server (started for the purpose) with
the default method, and writes docs/images/before-after.png: the thumbnail
enlarged by pixel repetition (what it really holds) beside SharpFu's result,
each labelled, the right one with the method the server says it used.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.scratch import ServerProcess  # noqa: E402
from sharpfu_cli import imageio  # noqa: E402
from sharpfu_client import Frame  # noqa: E402

DISPLAY = 2        # each side is shown at 2x the thumbnail, then enlarged again for the page
ZOOM = 2
LABEL_HEIGHT = 22


def upscale(path: Path) -> tuple[np.ndarray, dict]:
    picture = imageio.read(str(path))
    pixels = np.ascontiguousarray(picture.pixels)
    height, width, channels = pixels.shape
    with tempfile.TemporaryDirectory() as directory:
        proc = ServerProcess(Path(directory)).start()
        try:
            with proc.client() as client:
                result = client.run("upscale", [Frame(pixels, width, height, channels,
                                                      picture.format)], {"scale": DISPLAY})
                image = result.frame("image")
                out = np.frombuffer(image.data, imageio.DTYPES[image.format]).reshape(
                    image.height, image.width, image.channels)
                return imageio.to_format(out, "u8"), result.method
        finally:
            proc.stop()


def labelled(pixels: np.ndarray, text: str) -> Image.Image:
    image = Image.fromarray(pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., 0])
    image = image.convert("RGB").resize((image.width * ZOOM, image.height * ZOOM), Image.NEAREST)
    canvas = Image.new("RGB", (image.width, image.height + LABEL_HEIGHT), "white")
    canvas.paste(image, (0, LABEL_HEIGHT))
    ImageDraw.Draw(canvas).text((4, 5), text, fill="black")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", default=str(ROOT / "docs" / "images" / "thumbnail.png"))
    parser.add_argument("--output", default=str(ROOT / "docs" / "images" / "before-after.png"))
    args = parser.parse_args()
    source = imageio.to_format(imageio.read(args.input).pixels, "u8")
    result, method = upscale(Path(args.input))
    before = np.repeat(np.repeat(source, DISPLAY, 0), DISPLAY, 1)
    kind = "AI model" if method.get("kind") == "network" else "classical, not AI"
    left = labelled(before, "before: %dx%d thumbnail" % (source.shape[1], source.shape[0]))
    right = labelled(result, "SharpFu 2x: %s (%s)" % (method.get("title", "?"), kind))
    figure = Image.new("RGB", (left.width + right.width + 8, left.height), "white")
    figure.paste(left, (0, 0))
    figure.paste(right, (left.width + 8, 0))
    figure.save(args.output, optimize=True)
    print("wrote %s (%s)" % (args.output, method.get("name")))


if __name__ == "__main__":
    main()
