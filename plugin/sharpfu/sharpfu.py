#!/usr/bin/env python3
#   SharpFu for GIMP 3: AI Sharpen, AI Upscale and AI Deblur.
#
#   This program is free software: you can redistribute it and/or modify
#   it under the terms of the GNU General Public License as published by
#   the Free Software Foundation; either version 3 of the License, or
#   (at your option) any later version.
"""Filters > Enhance > AI Sharpen, AI Upscale and AI Deblur.

The active layer goes to the SharpFu server (started on first use), in the
image's own precision. Nothing in the image changes until the server's
result is in; then the change is a single undo step. At 2x and 4x the image
is scaled as Image > Scale Image does, with the model's pixels in the active
layer and GIMP's interpolation in the others; or the result opens as a new
image.
"""
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)                        # sharpfu_client, installed beside this file
sys.path.append(os.path.join(HERE, "_vendor"))  # pyzmq, for GIMPs whose Python lacks it

import gi  # noqa: E402
gi.require_version("Gimp", "3.0")
from gi.repository import GLib, GObject, Gimp  # noqa: E402

try:
    import gimp_pixels
    import server_job
    from gimp_pixels import Refusal
    from sharpfu_client import SharpFuError
    from sharpfu_client.config import ConfigError
    MISSING = None
except ImportError as error:
    # Register the menu entries anyway: running one then says what is missing,
    # which is easier to act on than entries that silently never appear.
    MISSING = error

# Pixels of real image around a selection, so that the model sees what lies
# beyond its edge; cropped away again before writing.
CONTEXT = 128


class Op(object):
    def __init__(self, name, label, blurb, help_text, scales=()):
        self.name = name
        self.label = label
        self.title = label.replace("_", "").rstrip("\u2026")
        self.blurb = blurb
        self.help = help_text
        self.scales = scales    # choice nicks; the first is the default


OPS = {
    "sharpfu-ai-sharpen": Op(
        "sharpen", "AI _Sharpen\u2026", "Sharpen the layer with SharpFu, optionally enlarging it",
        "Removes blur from the active layer with SharpFu's deblurring model, then, at 2x or 4x, "
        "enlarges it with its upscaling model. At 1x only the selection changes.",
        ("1", "2", "4")),
    "sharpfu-ai-upscale": Op(
        "upscale", "AI _Upscale\u2026", "Enlarge the layer 2x or 4x with SharpFu",
        "Enlarges the active layer with SharpFu's upscaling model. In place, the whole image is "
        "scaled as Image > Scale Image does: the active layer gets the model's pixels, the other "
        "layers GIMP's interpolation. Or the result opens as a new image.",
        ("2", "4")),
    "sharpfu-ai-deblur": Op(
        "deblur", "AI _Deblur\u2026", "Remove blur from the layer with SharpFu",
        "Removes motion and focus blur from the active layer with SharpFu's deblurring model, at "
        "the same size. Only the selection changes."),
}


def run(procedure, run_mode, image, drawables, config, op):
    if MISSING is not None:
        return failure(procedure, missing_message(MISSING))
    if run_mode == Gimp.RunMode.INTERACTIVE and not dialog(procedure, config, op):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
        result_image, method = process(op, image, drawables, config,
                                       show=run_mode != Gimp.RunMode.NONINTERACTIVE)
    except (Refusal, SharpFuError) as error:
        return failure(procedure, error.message)
    except ConfigError as error:
        return failure(procedure, str(error))
    except Exception as error:  # a bug: say so rather than leave GIMP without an answer
        traceback.print_exc()
        return failure(procedure, "SharpFu failed unexpectedly (%s: %s). Please report this "
                       "with GIMP's terminal output." % (type(error).__name__, error))
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    # index() hands out copies, so a return value is set by replacing its slot.
    values.remove(1)
    values.insert(1, GObject.Value(Gimp.Image, result_image))
    values.remove(2)
    values.insert(2, GObject.Value(GObject.TYPE_STRING, method.get("name", "")))
    return values


def dialog(procedure, config, op):
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init("sharpfu")
    window = GimpUi.ProcedureDialog.new(procedure, config, op.title)
    if op.scales:
        window.get_widget("scale", GimpUi.IntRadioFrame)
        window.get_widget("output", GimpUi.IntRadioFrame)
    window.fill(None)
    accepted = window.run()
    window.destroy()
    return accepted


def process(op, image, drawables, config, show):
    """Do the op; returns the image holding the result and the server's
    description of the method that made it."""
    if len(drawables) != 1:
        raise Refusal("Select exactly one layer for %s (%d are selected)." % (
            op.title, len(drawables)))
    layer = drawables[0]
    scale = int(config.get_property("scale")) if op.scales else 1
    in_place = not op.scales or config.get_property("output") == "in-place"
    gimp_pixels.check_layer(image, layer, changes_layer=in_place)
    params = {"scale": scale} if op.scales else {}
    method = (config.get_property("method") or "").strip()
    if method:
        params["method"] = method

    width, height = layer.get_width(), layer.get_height()
    target = source = gimp_pixels.Region(0, 0, width, height)
    if in_place and scale == 1:
        ok, x, y, w, h = layer.mask_intersect()
        if not ok:
            raise Refusal("The selection does not touch layer '%s', so there is nothing to do. "
                          "Select part of the layer, or nothing (Select > None) to work on all "
                          "of it." % layer.get_name())
        target = gimp_pixels.Region(x, y, w, h)
        source = target.grown(CONTEXT, width, height)
    elif in_place and max(image.get_width(), image.get_height()) * scale > Gimp.MAX_IMAGE_SIZE:
        raise Refusal("At %dx the image would be larger than GIMP allows (%d pixels a side)." % (
            scale, Gimp.MAX_IMAGE_SIZE))

    frame = gimp_pixels.read(layer, source, gimp_pixels.sample_format(image))
    result = server_job.run(op.name, frame, params, op.title)
    pixels = result.frame("image")
    if (pixels.width, pixels.height) != (source.width * scale, source.height * scale):
        raise Refusal("The SharpFu server answered with a %dx%d image instead of %dx%d; the "
                      "image is unchanged." % (pixels.width, pixels.height,
                                               source.width * scale, source.height * scale))
    Gimp.progress_set_text("%s: done by %s" % (op.title, result.method.get("title", "?")))

    # Everything so far only read the image. From here it changes, as one undo step.
    if not in_place:
        new = gimp_pixels.new_image(image, layer, pixels)
        if show:
            Gimp.Display.new(new)
        return new, result.method
    image.undo_group_start()
    try:
        if scale == 1:
            pixels = gimp_pixels.crop(pixels, target.x - source.x, target.y - source.y,
                                      target.width, target.height)
            gimp_pixels.write_undoable(layer, pixels, target.x, target.y)
        else:
            scale_image(image, layer, pixels, scale)
    finally:
        image.undo_group_end()
    Gimp.displays_flush()
    return image, result.method


def scale_image(image, layer, pixels, scale):
    """Image > Scale Image by `scale`, with the model's pixels in `layer`."""
    Gimp.context_push()     # image.scale() interpolates with the context's (the user's) choice
    try:
        image.scale(image.get_width() * scale, image.get_height() * scale)
    finally:
        Gimp.context_pop()
    if (layer.get_width(), layer.get_height()) != (pixels.width, pixels.height):
        raise RuntimeError("layer '%s' became %dx%d, not %dx%d" % (
            layer.get_name(), layer.get_width(), layer.get_height(), pixels.width, pixels.height))
    # The scale step's undo already holds the layer's old pixels, so this
    # write needs no undo step of its own. merge_shadow() would add one (a
    # second copy of the enlarged layer in memory) and would write only
    # inside the selection, leaving GIMP's interpolation outside it.
    gimp_pixels.write_direct(layer, pixels)


def failure(procedure, message):
    # GIMP shows this message itself when the filter was run from a menu
    # ("Execution error for 'AI Upscale'"), and hands it to scripts.
    return procedure.new_return_values(
        Gimp.PDBStatusType.EXECUTION_ERROR,
        GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0))


def missing_message(error):
    if getattr(error, "name", None) == "zmq":
        return ("SharpFu needs pyzmq in GIMP's Python (%s, Python %d.%d), and it is not "
                "installed there. On Linux install your distribution's python3-zmq (Debian, "
                "Ubuntu: sudo apt install python3-zmq; Fedora: sudo dnf install python3-zmq); "
                "elsewhere run SharpFu's install.py again, which places pyzmq beside the "
                "plug-in." % ((sys.executable,) + sys.version_info[:2]))
    return ("SharpFu's plug-in is incomplete (%s). Run SharpFu's install.py again; it copies "
            "the client library into %s." % (error, HERE))


class SharpFu(Gimp.PlugIn):
    def do_query_procedures(self):
        return list(OPS)

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        op = OPS[name]
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, op)
        # Every type, so that an indexed image gets an explanation rather than
        # a greyed-out menu entry.
        procedure.set_image_types("*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label(op.label)
        procedure.add_menu_path("<Image>/Filters/Enhance")
        procedure.set_documentation(op.blurb, op.help, name)
        procedure.set_attribution("SharpFu", "SharpFu authors, GPL-3.0-or-later", "2026")
        flags = GObject.ParamFlags.READWRITE
        if op.scales:
            choice = Gimp.Choice.new()
            for index, nick in enumerate(op.scales):
                choice.add(nick, index, "%s\u00d7" % nick if nick != "1" else "1\u00d7 (same size)",
                           "")
            procedure.add_choice_argument("scale", "_Scale", "Size of the result, in times the "
                                          "layer's size", choice, op.scales[0], flags)
            choice = Gimp.Choice.new()
            choice.add("in-place", 0, "Change this image",
                       "Replace the layer's pixels; above 1x scale the whole image, as "
                       "Image > Scale Image does")
            choice.add("new-image", 1, "Open as a new image", "Leave this image as it is")
            procedure.add_choice_argument("output", "_Result", "Where the result goes", choice,
                                          "in-place", flags)
        procedure.add_string_argument("method", "_Method", "The model or method to use, by the "
                                      "name 'sharpfu status' lists; empty: the best installed",
                                      "", flags)
        procedure.add_image_return_value("result-image", "Result image", "The image holding "
                                         "the result: this one, or the new one", False, flags)
        procedure.add_string_return_value("method-used", "Method used", "The name of the "
                                          "model or method that made the result", "", flags)
        return procedure


Gimp.main(SharpFu.__gtype__, sys.argv)
