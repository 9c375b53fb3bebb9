"""Select > AI Select Subject: the main subject of the layer, selected.

The whole layer goes to the SharpFu server's `select` op, which finds the
subject with a segmentation network and (unless Refine edges is off) refines
its edges with the matte's band solver; transparent pixels are background.
The soft mask replaces the selection, or becomes the layer's mask, and
optionally a cut-out layer above holds the subject with freed colours, all
as one undo step. Nothing changes until the server's answer is in.
"""
import time

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp  # noqa: E402

import gimp_pixels  # noqa: E402
import refine_matte  # noqa: E402
import server_job  # noqa: E402
from sharpfu_client.layers import Refusal, Region, check_subject, crop  # noqa: E402
from sharpfu_client.operations import SELECT_SUBJECT  # noqa: E402

TITLE = SELECT_SUBJECT.title


def job_params(refine, cutout, method):
    params = server_job.job_params(None, method)
    if not refine:
        params["refine"] = False
    if cutout:
        params["foreground"] = True
    return params


def select(image, layer, result="selection", refine=True, cutout=False, method="",
           interactive=False):
    """Find the subject of `layer`; returns (the cut-out layer or None, the
    server's description of the method)."""
    started = time.time()
    gimp_pixels.check_layer(image, layer, changes_layer=False)
    sample = gimp_pixels.sample_format(image)
    width, height = layer.get_width(), layer.get_height()
    colour = gimp_pixels.read(layer, Region(0, 0, width, height), sample)
    answer = server_job.run("select", [colour], job_params(refine, cutout, method), TITLE,
                            started)
    mask = answer.frame("mask")
    if (mask.width, mask.height, mask.channels) != (width, height, 1):
        raise Refusal("The SharpFu server answered with a %dx%d mask instead of %dx%d; the "
                      "image is unchanged." % (mask.width, mask.height, width, height))
    check_subject(mask, TITLE, layer.get_name())
    foreground = answer.frame("foreground") if cutout else None

    # Everything so far only read the image. From here it changes, as one undo step.
    image.undo_group_start()
    try:
        if result == "mask":
            refine_matte.replace_mask(layer, mask)
        else:
            replace_selection(image, layer, mask)
        cut = refine_matte.add_cutout(image, layer, foreground, mask) if cutout else None
    finally:
        image.undo_group_end()
    Gimp.displays_flush()
    server_job.finish(TITLE, answer.words.done(answer), interactive)
    return cut, answer.method


def replace_selection(image, layer, mask):
    """The layer-sized `mask` becomes the image's selection, at the layer's
    offsets; outside the layer nothing is selected.

    Through a channel of the image's size, added for the moment: selecting
    it is the undo step that brings the old selection back, and the adding
    and removing of the channel undo with it."""
    _, x, y = layer.get_offsets()
    left, top = max(0, x), max(0, y)
    right = min(image.get_width(), x + mask.width)
    bottom = min(image.get_height(), y + mask.height)
    if right <= left or bottom <= top:       # the layer lies outside the canvas
        Gimp.Selection.none(image)
        return
    channel = Gimp.Channel.new(image, "%s (subject)" % layer.get_name(), image.get_width(),
                               image.get_height(), 50.0, Gegl.Color.new("black"))
    image.insert_channel(channel, None, 0)
    try:
        buffer = channel.get_buffer()
        buffer.clear(Gegl.Rectangle.new(0, 0, image.get_width(), image.get_height()))
        inside = crop(mask, left - x, top - y, right - left, bottom - top)
        buffer.set(Gegl.Rectangle.new(left, top, inside.width, inside.height),
                   stored_as(channel, mask.format), inside.data)
        buffer.flush()
        image.select_item(Gimp.ChannelOps.REPLACE, channel)
    finally:
        image.remove_channel(channel)


def stored_as(channel, sample):
    """The format to write coverage into `channel` with: its own (a channel
    of a perceptual image stores Y', not linear Y), with the frame's sample
    type. Selecting a channel copies its stored values into the selection
    as they are, so the mask's values must be stored, not their linear
    light."""
    own = channel.get_format()
    model = Babl.get_name(Babl.format_get_model(own))
    return Babl.get_name(Babl.format_with_space("%s %s" % (model, gimp_pixels.BABL_TYPES[sample]),
                                                own))
