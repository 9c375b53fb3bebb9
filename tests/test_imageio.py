"""sharpfu_cli.imageio: every format and bit depth the CLI reads and writes."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from sharpfu_cli import imageio
from sharpfu_cli.imageio import Picture

rng = np.random.default_rng(7)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def random_pixels(fmt, channels, height=48, width=64):
    if fmt == "f32":
        return rng.random((height, width, channels), dtype=np.float32).astype("<f4")
    dtype = imageio.DTYPES[fmt]
    return rng.integers(0, np.iinfo(dtype).max + 1, (height, width, channels)).astype(dtype)


def smooth_pixels(channels, height=48, width=64):
    """A gradient: what lossy codecs are made for."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * 255 // width), (y * 255 // height), ((x + y) * 255 // (width + height)),
              np.full_like(x, 255)]
    return np.stack(planes[:channels], -1).astype("u1")


LOSSLESS = ([(".png", "u8", c) for c in (1, 2, 3, 4)]
            + [(".png", "u16", c) for c in (1, 2, 3, 4)]
            + [(".tif", fmt, c) for fmt in ("u8", "u16", "f32") for c in (1, 2, 3, 4)])


@pytest.mark.parametrize("extension, fmt, channels", LOSSLESS)
def test_lossless_round_trip_is_bit_exact(tmp_path, extension, fmt, channels):
    pixels = random_pixels(fmt, channels)
    path = str(tmp_path / ("image" + extension))
    assert imageio.write(path, Picture(pixels)) == []
    back = imageio.read(path)
    assert back.format == fmt and back.pixels.shape == pixels.shape
    assert np.array_equal(back.pixels, pixels)
    assert back.notes == []


@pytest.mark.parametrize("extension", [".jpg", ".jpeg", ".webp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_lossy_round_trip_is_close(tmp_path, extension, channels):
    pixels = smooth_pixels(channels)
    path = str(tmp_path / ("image" + extension))
    imageio.write(path, Picture(pixels))
    back = imageio.read(path).pixels
    if extension == ".webp" and channels == 1:
        back = back[..., :1]   # WebP has no grey mode; it comes back as RGB
    assert back.shape == pixels.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - pixels).mean() < 3


def test_webp_keeps_alpha_exactly(tmp_path):
    pixels = smooth_pixels(4)
    pixels[:, :20, 3] = 0
    pixels[:, 20:40, 3] = 128
    path = str(tmp_path / "image.webp")
    imageio.write(path, Picture(pixels))
    assert np.array_equal(imageio.read(path).pixels[..., 3], pixels[..., 3])


def test_tiff_is_deflated_with_unassociated_alpha_and_contiguous(tmp_path):
    path = str(tmp_path / "image.tif")
    imageio.write(path, Picture(random_pixels("u16", 4)))
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        assert page.compression in (tifffile.COMPRESSION.ADOBE_DEFLATE,
                                    tifffile.COMPRESSION.DEFLATE)
        assert page.extrasamples == (tifffile.EXTRASAMPLE.UNASSALPHA,)
        assert page.photometric == tifffile.PHOTOMETRIC.RGB


def test_tiff_with_associated_alpha_is_read_as_straight_alpha(tmp_path):
    straight = np.array([[[200, 100, 50, 128], [10, 20, 30, 0], [255, 255, 255, 255]]], "u1")
    premultiplied = straight.copy()
    premultiplied[..., :3] = np.floor(straight[..., :3] * (straight[..., 3:] / 255.0) + 0.5)
    path = str(tmp_path / "assoc.tif")
    tifffile.imwrite(path, premultiplied, photometric="rgb", extrasamples=("assocalpha",))
    back = imageio.read(path).pixels
    assert np.abs(back[0, 0].astype(int) - straight[0, 0]).max() <= 1
    assert np.array_equal(back[0, 2], straight[0, 2]) and back[0, 1, 3] == 0


def test_planar_tiff_is_read_as_interleaved(tmp_path):
    pixels = random_pixels("u16", 3)
    path = str(tmp_path / "planar.tif")
    tifffile.imwrite(path, np.moveaxis(pixels, -1, 0), photometric="rgb", planarconfig="separate")
    assert np.array_equal(imageio.read(path).pixels, pixels)


@pytest.mark.parametrize("extension, fmt", [(".png", "u8"), (".png", "u16"), (".jpg", "u8"),
                                            (".webp", "u8"), (".tif", "u8"), (".tif", "u16"),
                                            (".tif", "f32")])
def test_icc_profile_survives(tmp_path, extension, fmt):
    path = str(tmp_path / ("image" + extension))
    imageio.write(path, Picture(random_pixels(fmt, 3), icc=SRGB))
    assert imageio.read(path).icc == SRGB


def test_16_bit_png_metadata_chunks_are_valid_png(tmp_path):
    """The iCCP and eXIf chunks added to imagecodecs' PNG must satisfy an
    independent decoder (Pillow checks chunk CRCs)."""
    exif = Image.Exif()
    exif[0x010F] = "SharpFu test camera"
    path = str(tmp_path / "deep.png")
    imageio.write(path, Picture(random_pixels("u16", 3), icc=SRGB, exif=exif.tobytes()))
    with Image.open(path) as image:
        assert image.info["icc_profile"] == SRGB
        image.load()
        assert image.getexif()[0x010F] == "SharpFu test camera"
    assert imageio.read(path).exif == exif.tobytes()


@pytest.mark.parametrize("extension", [".jpg", ".png", ".webp"])
def test_exif_survives_8_bit_formats(tmp_path, extension):
    exif = Image.Exif()
    exif[0x010F] = "SharpFu test camera"
    path = str(tmp_path / ("image" + extension))
    imageio.write(path, Picture(smooth_pixels(3), exif=exif.tobytes()))
    with Image.open(path) as image:
        assert image.getexif()[0x010F] == "SharpFu test camera"


@pytest.mark.parametrize("extension", [".jpg", ".webp"])
def test_16_bit_to_8_bit_formats_is_noted_and_rounded(tmp_path, extension):
    pixels = np.full((16, 16, 3), 257 * 100 + 128, "<u2")   # 100.498 in 8 bits
    path = str(tmp_path / ("image" + extension))
    notes = imageio.write(path, Picture(pixels))
    assert len(notes) == 1 and "8 bits" in notes[0]
    assert abs(int(imageio.read(path).pixels.mean().round()) - 100) <= 1


def test_float_to_png_becomes_16_bit(tmp_path):
    pixels = np.array([[[0.0], [0.5], [1.0], [1.5], [-0.2]]], "<f4")
    path = str(tmp_path / "float.png")
    notes = imageio.write(path, Picture(pixels))
    assert len(notes) == 1 and "16-bit" in notes[0]
    back = imageio.read(path)
    assert back.format == "u16"
    assert back.pixels[0, :, 0].tolist() == [0, 32768, 65535, 65535, 0]


def test_jpeg_drops_alpha_with_a_note(tmp_path):
    path = str(tmp_path / "image.jpg")
    notes = imageio.write(path, Picture(smooth_pixels(4)))
    assert any("transparency" in note for note in notes)
    assert imageio.read(path).pixels.shape[2] == 3


def test_to_format_rounds_to_nearest():
    u16 = np.array([0, 128, 129, 257, 32767, 65535], "<u2")
    assert imageio.to_format(u16, "u8").tolist() == [0, 0, 1, 1, 127, 255]
    u8 = np.array([0, 1, 128, 255], "u1")
    assert imageio.to_format(u8, "u16").tolist() == [0, 257, 32896, 65535]
    f32 = np.array([-1.0, 0.4 / 255, 0.6 / 255, 0.5, 1.0, 2.0], "<f4")
    assert imageio.to_format(f32, "u8").tolist() == [0, 0, 1, 128, 255, 255]
    assert imageio.to_format(f32, "u16").tolist()[3:] == [32768, 65535, 65535]
    assert np.array_equal(imageio.to_format(imageio.to_format(u16, "f32"), "u16"), u16)


# -- Pillow modes ---------------------------------------------------------------

def saved(tmp_path, image, name, **options):
    path = str(tmp_path / name)
    image.save(path, **options)
    return path


def test_palette_image_becomes_rgb_or_rgba(tmp_path):
    image = Image.new("P", (8, 4))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (4, 0, 8, 4))
    rgb = imageio.read(saved(tmp_path, image, "p.png")).pixels
    assert rgb.shape == (4, 8, 3) and rgb[0, 0].tolist() == [255, 0, 0]
    rgba = imageio.read(saved(tmp_path, image, "pt.png", transparency=0)).pixels
    assert rgba.shape == (4, 8, 4) and rgba[0, 0, 3] == 0 and rgba[0, 7].tolist() == [0, 255, 0, 255]


def test_bilevel_becomes_grey(tmp_path):
    image = Image.new("1", (8, 4))
    image.paste(1, (0, 0, 4, 4))
    pixels = imageio.read(saved(tmp_path, image, "bw.png")).pixels
    assert pixels.shape == (4, 8, 1) and pixels.dtype == np.uint8
    assert pixels[0, 0, 0] == 255 and pixels[0, 7, 0] == 0


def test_pillow_16_bit_grey_and_32_bit_int_and_float_modes(tmp_path):
    grey16 = Image.fromarray(np.array([[0, 1000, 65535]], "<u2"))   # mode I;16
    path = saved(tmp_path, grey16, "grey16.tif")
    picture = imageio._read_pillow(path)
    assert picture.format == "u16" and picture.pixels[0, :, 0].tolist() == [0, 1000, 65535]
    fits = imageio._read_pillow(saved(tmp_path, Image.new("I", (3, 2), 40000), "i.tif"))
    assert fits.format == "u16" and fits.pixels.max() == 40000
    with pytest.raises(imageio.ImageError):
        imageio._read_pillow(saved(tmp_path, Image.new("I", (3, 2), 70000), "big.tif"))
    floats = imageio.read(saved(tmp_path, Image.new("F", (3, 2), 0.25), "f.tif"))
    assert floats.format == "f32" and floats.pixels.shape == (2, 3, 1)


def test_cmyk_becomes_rgb_with_a_note(tmp_path):
    path = saved(tmp_path, Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "cmyk.jpg")
    picture = imageio.read(path)
    assert picture.pixels.shape == (8, 8, 3)
    assert picture.notes and "CMYK" in picture.notes[0]


# -- failures -------------------------------------------------------------------

def test_missing_damaged_and_foreign_files_raise_image_error(tmp_path):
    good = str(tmp_path / "good.png")
    imageio.write(good, Picture(random_pixels("u8", 3)))
    with open(good, "rb") as handle:
        data = handle.read()
    (tmp_path / "truncated.png").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    deep = str(tmp_path / "deep.png")
    imageio.write(deep, Picture(random_pixels("u16", 3)))
    with open(deep, "rb") as handle:
        (tmp_path / "deep_truncated.png").write_bytes(handle.read()[:200])
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"\xff" * 40)
    for name in ("missing.png", "truncated.png", "text.png", "deep_truncated.png", "bad.tif"):
        with pytest.raises(imageio.ImageError) as caught:
            imageio.read(str(tmp_path / name))
        assert str(caught.value) and "\n" not in str(caught.value)


def test_unknown_output_extension_is_refused():
    with pytest.raises(imageio.ImageError):
        imageio.format_for("out.bmp")
    assert imageio.format_for("OUT.JPG") == "JPEG"


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"

    def fail(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        imageio.write(str(target), Picture(random_pixels("u8", 3)))
    assert os.listdir(tmp_path) == []


def test_written_files_get_ordinary_permissions(tmp_path):
    path = tmp_path / "out.png"
    imageio.write(str(path), Picture(random_pixels("u8", 3)))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_content_decides_the_decoder(tmp_path):
    """A JPEG named .png is still read (GIMP users rename files)."""
    buffer = io.BytesIO()
    Image.fromarray(smooth_pixels(3)).save(buffer, "JPEG")
    path = tmp_path / "really_a_jpeg.png"
    path.write_bytes(buffer.getvalue())
    assert imageio.read(str(path)).pixels.shape == (48, 64, 3)
