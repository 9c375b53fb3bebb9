"""Reading image files with limits that hold before decoding: the pixel
count from the header, the colour profile's size; and samples of unusual
bit depths scaled to their full range."""
from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from sharpfu_cli import imageio
from sharpfu_cli.imageio import ImageError, Picture

LIMIT = 100_000_000   # pixels


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_claiming(path, width, height, depth):
    """A PNG whose header claims a huge image (its data is a short stream):
    only a reader that decodes first notices anything wrong."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    idat = zlib.compress(bytes(1 << 16))
    path.write_bytes(imageio.PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
                     + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("depth", [8, 16])
def test_a_png_over_the_pixel_limit_is_refused_from_its_header(tmp_path, depth):
    path = tmp_path / "huge.png"
    png_claiming(path, 15000, 15000, depth)
    started = time.monotonic()
    with pytest.raises(ImageError) as caught:
        imageio.read(str(path), max_pixels=LIMIT)
    assert "225.0 megapixels" in str(caught.value) and "100.0" in str(caught.value)
    assert time.monotonic() - started < 1.0


def test_a_tiff_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.tif"   # 1.35 GB of 16-bit samples, sparse on disk
    tifffile.imwrite(path, shape=(15000, 15000, 3), dtype="uint16", photometric="rgb")
    with pytest.raises(ImageError) as caught:
        imageio.read(str(path), max_pixels=LIMIT)
    assert "225.0 megapixels" in str(caught.value)


def test_a_jpeg_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (20000, 200)).save(path, quality=50)   # 4 MP
    with pytest.raises(ImageError) as caught:
        imageio.read(str(path), max_pixels=1_000_000)
    assert "4.0 megapixels" in str(caught.value)
    assert imageio.read(str(path), max_pixels=5_000_000).size == (20000, 200)


def bomb_profile():
    """A 'profile' of 106 MB that compresses to about 100 KB."""
    return zlib.compress(bytes(106 << 20), 9)


@pytest.mark.parametrize("depth", [8, 16])
def test_a_huge_colour_profile_is_dropped_not_decompressed(tmp_path, depth):
    path = tmp_path / "bomb.png"
    pixels = np.full((4, 4, 3), 7, np.uint8 if depth == 8 else "<u2")
    imageio.write(str(path), Picture(pixels))
    data = path.read_bytes()
    end_of_ihdr = len(imageio.PNG_SIGNATURE) + 25
    path.write_bytes(data[:end_of_ihdr] + png_chunk(b"iCCP", b"evil\0\0" + bomb_profile())
                     + data[end_of_ihdr:])
    picture = imageio.read(str(path))
    assert picture.icc is None
    assert any("profile" in note for note in picture.notes)
    assert (picture.pixels == 7).all()


def test_a_large_but_sane_profile_survives_an_8_bit_png(tmp_path):
    """Pillow alone refuses profiles over 1 MB; printers' profiles can be larger."""
    profile = bytes(np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8))
    path = tmp_path / "big-profile.png"
    imageio.write(str(path), Picture(np.zeros((4, 4, 3), np.uint8), icc=profile))
    assert imageio.read(str(path)).icc == profile


def test_a_huge_tiff_profile_is_dropped(tmp_path):
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((4, 4, 3), np.uint8), photometric="rgb",
                     iccprofile=bytes(imageio.MAX_ICC_BYTES + 1))
    picture = imageio.read(str(path))
    assert picture.icc is None and any("profile" in note for note in picture.notes)


@pytest.mark.parametrize("bits, dtype, top", [(12, "uint16", 65535), (10, "uint16", 65535),
                                              (4, "uint8", 255), (2, "uint8", 255)])
def test_tiff_samples_of_few_bits_are_scaled_to_the_full_range(tmp_path, bits, dtype, top):
    path = tmp_path / ("%d-bit.tif" % bits)
    ramp = (np.arange(32 * 32).reshape(32, 32) * ((1 << bits) - 1) // 1023).astype(dtype)
    tifffile.imwrite(path, ramp, bitspersample=bits)
    pixels = imageio.read(str(path)).pixels[..., 0]
    assert pixels.max() == top and pixels.min() == 0
    expected = np.floor(ramp.astype(np.float64) * top / ((1 << bits) - 1) + 0.5)
    assert np.array_equal(pixels, expected.astype(pixels.dtype))
