"""Layer > Mask > AI Refine Matte: a rough mask becomes a clean alpha matte.

The coarse input is the layer's mask, the selection or the layer's alpha
channel; the SharpFu server's `matte` op refines it with the whole layer as
guide. The result becomes the layer's mask (its old contents replaced, or a
new mask added), and optionally a cut-out layer above it holds the subject
with decontaminated colours (no halo of the old background), all as one undo
step. Nothing changes until the server's answer is in.
"""
import time

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

import gimp_pixels  # noqa: E402
import server_job  # noqa: E402
from sharpfu_client import Frame, wire  # noqa: E402
from sharpfu_client.layers import Refusal, Region  # noqa: E402
from sharpfu_client.operations import REFINE_MATTE  # noqa: E402

TITLE = REFINE_MATTE.title
# Masks and the selection are read and written as linear coverage, which is
# what GIMP composites with, whatever their storage.
MASK_TYPES = {"u8": "Y u8", "u16": "Y u16", "f32": "Y float"}


def pick_source(image, layer, source):
    """The coarse input actually used: 'auto' takes the layer mask if there is
    one, else the selection if there is one, else the alpha channel."""
    if source == "auto":
        if layer.get_mask() is not None:
            return "mask"
        if not Gimp.Selection.is_empty(image):
            return "selection"
        if layer.has_alpha():
            return "alpha"
        raise Refusal("%s needs a rough outline of the subject: a layer mask, a selection or "
                      "transparent areas in layer '%s'. Make one (a quick lasso will do), then "
                      "try again." % (TITLE, layer.get_name()))
    if source == "mask" and layer.get_mask() is None:
        raise Refusal("Layer '%s' has no layer mask to refine. Add one, or refine the selection "
                      "or the alpha channel instead." % layer.get_name())
    if source == "selection" and Gimp.Selection.is_empty(image):
        raise Refusal("There is no selection to refine. Select the subject roughly, or refine "
                      "the layer mask or the alpha channel instead.")
    if source == "alpha" and not layer.has_alpha():
        raise Refusal("Layer '%s' has no alpha channel to refine." % layer.get_name())
    return source


def read_coarse(image, layer, source, sample, layer_frame):
    """The coarse mask, the layer's size, as a one-channel Frame named 'mask'."""
    width, height = layer.get_width(), layer.get_height()
    if source == "mask":
        buffer, region = layer.get_mask().get_buffer(), Region(0, 0, width, height)
    elif source == "selection":
        _, x, y = layer.get_offsets()
        buffer, region = image.get_selection().get_buffer(), Region(x, y, width, height)
    else:
        return Frame(channel(layer_frame, layer_frame.channels - 1), width, height, 1, sample,
                     "mask")
    # Outside the image the selection is empty: ABYSS NONE reads zeros there.
    data = buffer.get(gimp_pixels.rectangle(region), 1.0, MASK_TYPES[sample], Gegl.AbyssPolicy.NONE)
    return Frame(data, width, height, 1, sample, "mask")


def channel(frame, index):
    """One channel of an interleaved frame, as bytes."""
    size = wire.SAMPLE_BYTES[frame.format]
    pixel = size * frame.channels
    data = bytes(frame.data)
    out = bytearray(frame.width * frame.height * size)
    for k in range(size):
        out[k::size] = data[index * size + k::pixel]
    return bytes(out)


def interleave(colour, alpha):
    """RGBA (or YA) bytes from a colour frame and a one-channel alpha frame."""
    size = wire.SAMPLE_BYTES[colour.format]
    count = colour.channels + 1
    out = bytearray(colour.width * colour.height * size * count)
    data, a = bytes(colour.data), bytes(alpha.data)
    for c in range(colour.channels):
        for k in range(size):
            out[c * size + k::size * count] = data[c * size + k::size * colour.channels]
    for k in range(size):
        out[colour.channels * size + k::size * count] = a[k::size]
    return bytes(out)


def job_params(cutout, iterations, method):
    params = server_job.job_params(None, method)
    params["foreground"] = bool(cutout)
    if iterations:
        params["iterations"] = int(iterations)
    return params


def refine(image, layer, source="auto", cutout=False, iterations=0, method="", interactive=False):
    """Refine the layer's coarse mask; returns (the layer mask, the cut-out
    layer or None, the server's description of the method)."""
    started = time.time()
    gimp_pixels.check_layer(image, layer, changes_layer=False)
    source = pick_source(image, layer, source)
    sample = gimp_pixels.sample_format(image)
    width, height = layer.get_width(), layer.get_height()
    colour = gimp_pixels.read(layer, Region(0, 0, width, height), sample)
    coarse = read_coarse(image, layer, source, sample, colour)
    result = server_job.run("matte", [colour, coarse], job_params(cutout, iterations, method),
                            TITLE, started)
    alpha = result.frame("alpha")
    if (alpha.width, alpha.height, alpha.channels) != (width, height, 1):
        raise Refusal("The SharpFu server answered with a %dx%d matte instead of %dx%d; the "
                      "image is unchanged." % (alpha.width, alpha.height, width, height))
    foreground = result.frame("foreground") if cutout else None

    # Everything so far only read the image. From here it changes, as one undo step.
    image.undo_group_start()
    try:
        mask = replace_mask(layer, alpha)
        cut = add_cutout(image, layer, foreground, alpha) if cutout else None
    finally:
        image.undo_group_end()
    Gimp.displays_flush()
    server_job.finish(TITLE, result.words.done(result), interactive)
    return mask, cut, result.method


def replace_mask(layer, alpha):
    """Give the layer a new mask holding `alpha`, in place of any old one.

    The matte is written into the new mask before it is added: the adding is
    the undo step that brings the old state back (a shadow-buffer merge would
    be clipped to the selection, which may be the very outline refined)."""
    old = layer.get_mask()
    flags = None
    if old is not None:
        flags = (layer.get_apply_mask(), layer.get_edit_mask(), layer.get_show_mask())
        layer.remove_mask(Gimp.MaskApplyMode.DISCARD)
    mask = layer.create_mask(Gimp.AddMaskType.WHITE)
    buffer = mask.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, alpha.width, alpha.height), MASK_TYPES[alpha.format],
               alpha.data)
    buffer.flush()
    layer.add_mask(mask)
    if flags is not None:
        layer.set_apply_mask(flags[0])
        layer.set_edit_mask(flags[1])
        layer.set_show_mask(flags[2])
    return mask


def add_cutout(image, layer, foreground, alpha):
    """A new layer above `layer`: the decontaminated colours with the matte
    as alpha."""
    grey = foreground.channels == 1
    kind = Gimp.ImageType.GRAYA_IMAGE if grey else Gimp.ImageType.RGBA_IMAGE
    cut = Gimp.Layer.new(image, "%s (cut-out)" % layer.get_name(), alpha.width, alpha.height,
                         kind, 100.0, Gimp.LayerMode.NORMAL)
    _, x, y = layer.get_offsets()
    cut.set_offsets(x, y)
    image.insert_layer(cut, layer.get_parent(), image.get_item_position(layer))
    frame = Frame(interleave(foreground, alpha), alpha.width, alpha.height,
                  foreground.channels + 1, alpha.format)
    # The insertion's undo step removes the layer: its pixels need none.
    gimp_pixels.write_direct(cut, frame)
    return cut
