"""Pixels between GIMP 3 layers and SharpFu frames.

A layer is read and written in the image's own precision (8-bit, 16-bit or
float; never forced down to 8-bit), with perceptual (gamma) encodings, which
is what the models are trained on, and in the image's own colour space, so
that a wide-gamut image is not clipped to sRGB on the way.
"""
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp  # noqa: E402

from sharpfu_client import Frame, layers  # noqa: E402

# GIMP precision (the first word of its nick) -> SharpFu sample format. The
# precisions the wire lacks go as 32-bit float: half exactly, u32 and double
# to within float precision.
SAMPLES = {"u8": "u8", "u16": "u16", "u32": "f32", "half": "f32", "float": "f32", "double": "f32"}
BABL_TYPES = {"u8": "u8", "u16": "u16", "f32": "float"}


def rectangle(region):
    """A Region as GEGL takes it."""
    return Gegl.Rectangle.new(region.x, region.y, region.width, region.height)


def sample_format(image):
    """The SharpFu sample format for this image's precision."""
    return SAMPLES[image.get_precision().value_nick.split("-")[0]]


def check_layer(image, drawable, changes_layer):
    """Refuse what cannot be processed, before any work is done."""
    layers.check_drawable(
        drawable.get_name(), indexed=image.get_base_type() == Gimp.ImageBaseType.INDEXED,
        mask_or_channel=drawable.is_layer_mask() or drawable.is_channel(),
        group=drawable.is_group(), locked=changes_layer and drawable.get_lock_content())


def _babl_format(drawable, sample):
    """The perceptual Babl format name for this drawable, in its image's colour space."""
    if drawable.is_gray():
        components = "Y'A" if drawable.has_alpha() else "Y'"
    else:
        components = "R'G'B'A" if drawable.has_alpha() else "R'G'B'"
    # A plain name such as "R'G'B'A u16" means sRGB: an Adobe RGB image read
    # that way would come back with its saturated colours clipped.
    return Babl.get_name(Babl.format_with_space("%s %s" % (components, BABL_TYPES[sample]),
                                                drawable.get_format()))


def channels(drawable):
    return (1 if drawable.is_gray() else 3) + (1 if drawable.has_alpha() else 0)


def read(drawable, region, sample):
    """The drawable's pixels inside `region` as a Frame."""
    data = drawable.get_buffer().get(rectangle(region), 1.0, _babl_format(drawable, sample),
                                     Gegl.AbyssPolicy.CLAMP)
    return Frame(data, region.width, region.height, channels(drawable), sample)


def write_undoable(drawable, frame, x, y):
    """Write a frame at (x, y) through the shadow buffer: GIMP merges it through
    the selection mask (feathering included) and records one undo step."""
    shadow = drawable.get_shadow_buffer()
    shadow.set(Gegl.Rectangle.new(x, y, frame.width, frame.height),
               _babl_format(drawable, frame.format), frame.data)
    shadow.flush()
    drawable.merge_shadow(True)
    drawable.update(x, y, frame.width, frame.height)


def write_direct(drawable, frame):
    """Replace all of a drawable's pixels without an undo step of their own.

    Only right after a step that saved the old pixels (image.scale) or on a
    layer nobody has seen yet: the undo of that step restores them."""
    buffer = drawable.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, frame.width, frame.height),
               _babl_format(drawable, frame.format), frame.data)
    buffer.flush()
    drawable.update(0, 0, frame.width, frame.height)


def new_image(source, layer, frame):
    """A new image holding the frame as its one layer, with the source image's
    precision, base type, colour profile and resolution. Its history starts
    empty; it is unsaved (dirty), so closing it asks first."""
    image = Gimp.Image.new_with_precision(frame.width, frame.height, source.get_base_type(),
                                          source.get_precision())
    image.undo_disable()
    profile = source.get_color_profile()
    if profile is not None:
        image.set_color_profile(profile)
    _, xres, yres = source.get_resolution()
    image.set_resolution(xres, yres)
    result = Gimp.Layer.new(image, layer.get_name(), frame.width, frame.height, layer.type(),
                            100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(result, None, 0)
    write_direct(result, frame)
    image.undo_enable()
    return image
