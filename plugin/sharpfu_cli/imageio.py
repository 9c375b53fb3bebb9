"""Image files <-> numpy arrays of shape (height, width, channels), with
samples u8, u16 or f32 (little-endian): the three formats SharpFu frames use.

Pillow has no 16-bit colour modes, so 16-bit PNGs go through imagecodecs
and TIFFs through tifffile; everything 8-bit goes through Pillow. The ICC
profile travels with the pixels, and EXIF where Pillow can carry it.
Files are written whole or not at all (a temporary name, then a rename).

Reading is bounded before anything is decoded: the pixel count comes from
the file's header and is checked against a limit (the server's, for the job
at hand), and a colour profile larger than MAX_ICC_BYTES is dropped, never
decompressed whole.
"""
from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field

import imagecodecs
import numpy as np
import tifffile
from PIL import Image, PngImagePlugin, UnidentifiedImageError

DTYPES = {"u8": np.dtype("u1"), "u16": np.dtype("<u2"), "f32": np.dtype("<f4")}
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
           ".webp": "WEBP"}
JPEG_QUALITY = 95
WEBP_QUALITY = 95

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
EXIF_HEADER = b"Exif\x00\x00"
MAX_PIXELS = 256_000_000        # the server's default limit per frame
MAX_ICC_BYTES = 8 << 20         # printers' profiles reach a few MB; more is not a profile


class ImageError(Exception):
    """A file that cannot be read or written; the message is for the user."""


@dataclass
class Picture:
    pixels: np.ndarray            # (height, width, channels), uint8, <u2 or <f4
    icc: bytes | None = None
    exif: bytes | None = None     # as Pillow keeps it: b"Exif\0\0" + TIFF data
    notes: list[str] = field(default_factory=list)   # what reading had to change

    @property
    def format(self) -> str:
        return sample_format(self.pixels)

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]


def sample_format(pixels: np.ndarray) -> str:
    for name, dtype in DTYPES.items():
        if pixels.dtype == dtype:
            return name
    raise ValueError("unsupported sample type %s" % pixels.dtype)


def to_format(pixels: np.ndarray, fmt: str) -> np.ndarray:
    """Samples in another format, rounded to nearest; f32 is clipped to [0, 1]
    when it becomes an integer format."""
    source = sample_format(pixels)
    if source == fmt:
        return pixels
    if fmt == "f32":
        return (pixels.astype("<f4") / (255.0 if source == "u8" else 65535.0)).astype("<f4")
    if source == "u8":  # to u16: 0..255 -> 0..65535 exactly
        return pixels.astype("<u2") * np.uint16(257)
    if source == "u16":  # to u8
        return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype("u1")
    full = 255.0 if fmt == "u8" else 65535.0
    return np.floor(np.clip(pixels, 0.0, 1.0) * full + 0.5).astype(DTYPES[fmt])


def format_for(path: str) -> str:
    """The file format an output path asks for, from its extension."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise ImageError("cannot write %s files; name the output .png, .jpg, .tif or .webp"
                         % (extension or "extension-less"))
    return FORMATS[extension]


# -- reading ------------------------------------------------------------------

def read(path: str, max_pixels: int = MAX_PIXELS) -> Picture:
    """The picture in a file; ImageError when it cannot be read or has more
    than `max_pixels` pixels (told from its header, before decoding)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
    except OSError as error:
        raise ImageError(error.strerror or str(error)) from None
    # The content decides the decoder, not the name: a .png may be a JPEG.
    try:
        if head[:4] in TIFF_MAGIC:
            return _read_tiff(path, max_pixels)
        if head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
            _check_pixels(*struct.unpack(">II", head[16:24]), max_pixels)
            if head[24] == 16:
                return _read_png16(path)
        return _read_pillow(path, max_pixels)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image file, or one in an unsupported format") from None
    except Exception as error:  # noqa: BLE001 - decoders raise all kinds on damaged files
        raise ImageError("cannot read the image, it may be damaged (%s)" % (
            str(error) or type(error).__name__)) from None


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError("the image is %dx%d, %.1f megapixels; at most %.1f can be worked on "
                         "here (the server's max_megapixels, divided by the scale's square)"
                         % (width, height, width * height / 1e6, max_pixels / 1e6))


def _capped_profile(icc: bytes | None, notes: list[str]) -> bytes | None:
    if icc and len(icc) > MAX_ICC_BYTES:
        notes.append("its colour profile (%.1f MB) was dropped: profiles over %d MB are not "
                     "kept" % (len(icc) / 1e6, MAX_ICC_BYTES >> 20))
        return None
    return icc or None


def _read_pillow(path: str, max_pixels: int = MAX_PIXELS) -> Picture:
    notes: list[str] = []
    with _open_pillow(path, max_pixels, notes) as image:
        _check_pixels(*image.size, max_pixels)
        image.load()
        info, mode = dict(image.info), image.mode
        icc = _capped_profile(info.get("icc_profile"), notes)
        if mode in ("1", "L", "LA", "RGB", "RGBA"):
            pixels = np.asarray(image.convert("L") if mode == "1" else image)
        elif mode in ("P", "PA"):
            transparent = mode == "PA" or "transparency" in info
            pixels = np.asarray(image.convert("RGBA" if transparent else "RGB"))
        elif mode.startswith("I;16"):
            pixels = np.asarray(image).astype("<u2")
        elif mode == "I":
            pixels = np.asarray(image)
            if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
                raise ImageError("32-bit integer samples outside 0..65535 are not supported")
            pixels = pixels.astype("<u2")
        elif mode == "F":
            pixels = np.asarray(image).astype("<f4")
        elif mode in ("La", "RGBa", "RGBX"):
            pixels = np.asarray(image.convert({"La": "LA", "RGBa": "RGBA"}.get(mode, "RGB")))
        else:  # CMYK, YCbCr, LAB, HSV
            pixels = np.asarray(image.convert("RGB"))
            notes.append("converted from %s to RGB" % mode)
            if icc and icc[16:20] != b"RGB ":
                icc = None  # it describes the old colour space, not RGB
                notes.append("its %s colour profile was dropped" % mode)
    return Picture(_as_3d(pixels), icc, info.get("exif") or None, notes)


def _open_pillow(path: str, max_pixels: int, notes: list[str]) -> Image.Image:
    """Image.open (which reads only the header) with our pixel limit instead
    of Pillow's own, checked by the caller before anything is decoded, and
    with PNG colour profiles up to MAX_ICC_BYTES instead of 1 MB; a PNG with
    a larger one opens without it."""
    saved = Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK
    Image.MAX_IMAGE_PIXELS = None
    PngImagePlugin.MAX_TEXT_CHUNK = MAX_ICC_BYTES
    try:
        try:
            return Image.open(path)
        except ValueError as error:
            if "MAX_TEXT_CHUNK" not in str(error):
                raise
            with open(path, "rb") as handle:
                data = _without_chunks(handle.read(), b"iCCP")
            notes.append("its colour profile was dropped: profiles over %d MB are not kept"
                         % (MAX_ICC_BYTES >> 20))
            return Image.open(io.BytesIO(data))
    finally:
        Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK = saved


def _without_chunks(data: bytes, kind: bytes) -> bytes:
    """A PNG file's bytes without its chunks of one kind."""
    kept, position = [data[:len(PNG_SIGNATURE)]], len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length = struct.unpack(">I", data[position:position + 4])[0]
        chunk = data[position:position + 12 + length]
        if chunk[4:8] != kind:
            kept.append(chunk)
        position += 12 + length
    return b"".join(kept)


def _read_png16(path: str) -> Picture:
    with open(path, "rb") as handle:
        data = handle.read()
    pixels = imagecodecs.png_decode(data)
    icc = exif = None
    notes: list[str] = []
    for kind, body in _png_chunks(data):
        if kind == b"iCCP":
            icc = _inflate_profile(body, notes)
        elif kind == b"eXIf":
            exif = EXIF_HEADER + body
    return Picture(_as_3d(pixels.astype("<u2")), icc, exif, notes)


def _inflate_profile(body: bytes, notes: list[str]) -> bytes | None:
    """An iCCP chunk's profile, decompressed no further than MAX_ICC_BYTES."""
    name_end = body.find(b"\x00")
    if name_end <= 0:
        return None
    inflater = zlib.decompressobj()
    try:
        icc = inflater.decompress(body[name_end + 2:], MAX_ICC_BYTES)
    except zlib.error:
        return None
    if inflater.unconsumed_tail:
        notes.append("its colour profile was dropped: profiles over %d MB are not kept"
                     % (MAX_ICC_BYTES >> 20))
        return None
    return icc


def _png_chunks(data: bytes):
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        yield kind, data[position + 8:position + 8 + length]
        if kind == b"IEND":
            return
        position += 12 + length


def _read_tiff(path: str, max_pixels: int) -> Picture:
    notes: list[str] = []
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        _check_pixels(page.imagewidth, page.imagelength * max(1, page.imagedepth), max_pixels)
        photometric = int(page.photometric)
        if photometric not in (1, 2):   # minisblack, rgb; Pillow knows palettes, CMYK, ...
            return _read_pillow(path, max_pixels)
        bits = page.bitspersample
        pixels = page.asarray()
        if page.axes.startswith("S"):     # planar: one plane per channel
            pixels = np.moveaxis(pixels, 0, -1)
        extras = tuple(int(e) for e in page.extrasamples)
        tag = page.tags.get(34675)        # InterColorProfile
        icc = _capped_profile(bytes(tag.value) if tag is not None else None, notes)
    pixels = _as_3d(pixels)
    colour = 3 if photometric == 2 else 1
    if pixels.shape[2] > colour + 1:
        notes.append("only the first %d of its %d channels were kept" % (colour + 1,
                                                                         pixels.shape[2]))
        pixels = pixels[..., :colour + 1]
    if pixels.dtype == bool:
        pixels = pixels.astype("u1") * np.uint8(255)
    elif pixels.dtype.kind == "f":
        pixels = pixels.astype("<f4")
    elif pixels.dtype.kind != "u" or pixels.dtype.itemsize > 2:
        raise ImageError("TIFF samples of type %s are not supported; use 8 or 16-bit integers "
                         "or 32-bit floats" % pixels.dtype)
    pixels = pixels.astype(pixels.dtype.newbyteorder("<"))
    if pixels.dtype.kind == "u" and 1 < bits < 8 * pixels.dtype.itemsize:
        pixels = _full_range(pixels, bits)   # 12-bit scans, 4-bit greys: not nearly black
    if pixels.shape[2] == colour + 1 and extras[:1] == (1,):
        pixels = _unpremultiply(pixels)   # SharpFu works on straight alpha
    return Picture(pixels, icc, None, notes)


def _full_range(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Samples of `bits` bits (0 .. 2^bits - 1) scaled to their type's full
    range, rounded to nearest."""
    top = np.iinfo(pixels.dtype).max
    scaled = (pixels.astype(np.uint64) * top * 2 + (1 << bits) - 1) // (2 * ((1 << bits) - 1))
    return np.minimum(scaled, top).astype(pixels.dtype)


def _unpremultiply(pixels: np.ndarray) -> np.ndarray:
    fmt = sample_format(pixels)
    values = pixels.astype(np.float64)
    alpha = values[..., -1:] / (1.0 if fmt == "f32" else np.iinfo(pixels.dtype).max)
    np.divide(values[..., :-1], alpha, out=values[..., :-1], where=alpha > 0)
    if fmt == "f32":
        return values.astype("<f4")
    top = np.iinfo(pixels.dtype).max
    return np.clip(np.floor(values + 0.5), 0, top).astype(pixels.dtype)


def _as_3d(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or not 1 <= pixels.shape[2] <= 4:
        raise ImageError("unsupported image layout %s" % (pixels.shape,))
    return np.ascontiguousarray(pixels)


# -- writing ------------------------------------------------------------------

def write(path: str, picture: Picture) -> list[str]:
    """Write a picture in the format its extension names; returns notes on
    what the format could not keep (bit depth, alpha)."""
    data, notes = encode(picture, format_for(path))
    _write_whole(path, data)
    return notes


def encode(picture: Picture, file_format: str) -> tuple[bytes, list[str]]:
    pixels, notes = picture.pixels, []
    fmt = picture.format
    if file_format == "TIFF":
        return _encode_tiff(picture), notes
    if file_format == "PNG" and fmt != "u8":
        if fmt == "f32":
            notes.append("floating-point samples written as a 16-bit PNG (clipped to 0..1)")
        return _encode_png16(to_format(pixels, "u16"), picture.icc, picture.exif), notes
    if fmt != "u8":
        notes.append("%s samples written as 8 bits (%s has no more)" % (
            "16-bit" if fmt == "u16" else "floating-point", file_format))
        pixels = to_format(pixels, "u8")
    if file_format == "JPEG" and pixels.shape[2] in (2, 4):
        notes.append("transparency dropped (JPEG has none)")
        pixels = pixels[..., :-1]
    image = Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.shape[2] == 1
                                                 else pixels), PIL_MODES[pixels.shape[2]])
    options = {}
    if picture.icc:
        options["icc_profile"] = picture.icc
    if picture.exif:
        options["exif"] = picture.exif
    if file_format in ("JPEG", "WEBP"):
        options["quality"] = JPEG_QUALITY if file_format == "JPEG" else WEBP_QUALITY
    buffer = io.BytesIO()
    image.save(buffer, file_format, **options)
    return buffer.getvalue(), notes


def _encode_png16(pixels: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    data = imagecodecs.png_encode(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    # imagecodecs writes no metadata; the chunks go right after IHDR, where
    # the PNG specification wants iCCP (before PLTE and IDAT).
    chunks = b""
    if icc:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    if exif:
        chunks += _png_chunk(b"eXIf", exif[len(EXIF_HEADER):] if exif.startswith(EXIF_HEADER)
                             else exif)
    end_of_ihdr = len(PNG_SIGNATURE) + 12 + 13
    return data[:end_of_ihdr] + chunks + data[end_of_ihdr:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def _encode_tiff(picture: Picture) -> bytes:
    pixels = picture.pixels
    channels = pixels.shape[2]
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer, pixels[..., 0] if channels == 1 else pixels,
        photometric="rgb" if channels >= 3 else "minisblack",
        planarconfig="contig" if channels > 1 else None,
        extrasamples=("unassalpha",) if channels in (2, 4) else None,
        compression="zlib", iccprofile=picture.icc or None, metadata=None)
    return buffer.getvalue()


def _write_whole(path: str, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`:
    readers never see half a file, and a failure leaves no debris."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                                         suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        try:   # a file replaced keeps its mode; mkstemp's 0600 is for secrets, not images
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
