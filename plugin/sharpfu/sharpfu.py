#!/usr/bin/env python3
#   SharpFu for GIMP 3: AI Sharpen, AI Upscale, AI Deblur, AI Batch and
#   AI Refine Matte.
#
#   This program is free software: you can redistribute it and/or modify
#   it under the terms of the GNU General Public License as published by
#   the Free Software Foundation; either version 3 of the License, or
#   (at your option) any later version.
"""Filters > Enhance > AI Sharpen, AI Upscale, AI Deblur and AI Batch.

The active layer goes to the SharpFu server (started on first use), in the
image's own precision. Nothing in the image changes until the server's
result is in; then the change is a single undo step. At 2x and 4x the image
is scaled as Image > Scale Image does, with the model's pixels in the active
layer and GIMP's interpolation in the others; or the result opens as a new
image. AI Batch (batch.py) does the same to every layer, every open image
or a folder of files. AI Refine Matte (refine_matte.py, also under Layer >
Mask) turns a rough mask into the layer's alpha matte.
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
    import batch
    import gimp_pixels
    import in_place
    import refine_matte
    import server_job
    from gimp_pixels import Refusal
    from sharpfu_client import SharpFuError
    from sharpfu_client.adapt import task_for
    from sharpfu_client.config import ConfigError
    MISSING = None
except ImportError as error:
    # Register the menu entries anyway: running one then says what is missing,
    # which is easier to act on than entries that silently never appear.
    MISSING = error

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
BATCH = "sharpfu-batch"     # AI Batch: any of OPS on many layers or files
REFINE = "sharpfu-refine-matte"


def run(procedure, run_mode, image, drawables, config, op):
    def work():
        result_image, method = process(op, image, drawables, config,
                                       show=run_mode != Gimp.RunMode.NONINTERACTIVE)
        return [GObject.Value(Gimp.Image, result_image),
                GObject.Value(GObject.TYPE_STRING, method.get("name", ""))]
    return answer(procedure, run_mode, lambda: dialog(procedure, config, op), work)


def run_batch(procedure, config, data):
    run_mode = config.get_property("run-mode")

    def work():
        op = next(op for op in OPS.values() if op.name == config.get_property("op"))
        scale = config.get_property("scale")
        if op.scales and scale not in op.scales:
            raise Refusal("%s works at %s\u00d7, not at %s\u00d7." % (
                op.title, "\u00d7 or ".join(op.scales), scale))
        scale = int(scale) if op.scales else None
        outcome = batch.run(op.name, scale or 1,
                            server_job.job_params(scale, config.get_property("method")),
                            config.get_property("target"), config.get_property("image"),
                            config.get_property("input-folder"),
                            config.get_property("output-folder"),
                            adapt_steps=config.get_property("adapt-steps")
                            if config.get_property("adapt") else None)
        if outcome.notes and run_mode == Gimp.RunMode.INTERACTIVE:
            # Failures come back as the error, which GIMP shows; notes alone need a word.
            Gimp.message("%s: %s" % (batch.TITLE, outcome.summary()))
        return [GObject.Value(GObject.TYPE_INT, outcome.done),
                GObject.Value(GObject.TYPE_STRING, "\n".join(outcome.notes))]
    return answer(procedure, run_mode, lambda: batch_dialog(procedure, config), work)


def run_refine(procedure, run_mode, image, drawables, config, data):
    def work():
        if len(drawables) != 1:
            raise Refusal("Select exactly one layer for %s (%d are selected)." % (
                refine_matte.TITLE, len(drawables)))
        layer = drawables[0]
        if layer.is_layer_mask():   # its thumbnail was clicked: the layer is meant
            layer = Gimp.Layer.from_mask(layer)
        _, cutout, method = refine_matte.refine(
            image, layer, config.get_property("source"), config.get_property("cutout"),
            config.get_property("iterations"), config.get_property("method"))
        return [GObject.Value(Gimp.Layer, cutout),
                GObject.Value(GObject.TYPE_STRING, method.get("name", ""))]
    return answer(procedure, run_mode, lambda: refine_dialog(procedure, config), work)


def answer(procedure, run_mode, ask, work):
    """Ask (when interactive), then work; GIMP gets work's return values, or
    the reason it failed."""
    if MISSING is not None:
        return failure(procedure, missing_message(MISSING))
    if run_mode == Gimp.RunMode.INTERACTIVE and not ask():
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
        returned = work()
    except (Refusal, SharpFuError, batch.Failed) as error:
        return failure(procedure, error.message)
    except ConfigError as error:
        return failure(procedure, str(error))
    except Exception as error:  # a bug: say so rather than leave GIMP without an answer
        traceback.print_exc()
        return failure(procedure, "SharpFu failed unexpectedly (%s: %s). Please report this "
                       "with GIMP's terminal output." % (type(error).__name__, error))
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    # index() hands out copies, so a return value is set by replacing its slot.
    for index, value in enumerate(returned, 1):
        values.remove(index)
        values.insert(index, value)
    return values


def dialog(procedure, config, op):
    GimpUi = ui()
    window = GimpUi.ProcedureDialog.new(procedure, config, op.title)
    if op.scales:
        window.get_widget("scale", GimpUi.IntRadioFrame)
        window.get_widget("output", GimpUi.IntRadioFrame)
    window.fill(None)
    accepted = window.run()
    window.destroy()
    return accepted


def batch_dialog(procedure, config):
    GimpUi = ui()
    window = GimpUi.ProcedureDialog.new(procedure, config, batch.TITLE)
    for name in ("op", "target", "scale"):
        window.get_widget(name, GimpUi.IntRadioFrame)
    for name in ("input-folder", "output-folder"):
        window.get_widget(name, GObject.TYPE_NONE)     # the default: a folder chooser
    # The scale means nothing to AI Deblur, the folders only to a folder.
    for name, chooser, value, when_in in (("scale", "op", "deblur", False),
                                          ("input-folder", "target", "folder", True),
                                          ("output-folder", "target", "folder", True)):
        values = Gimp.ValueArray.new(1)
        values.append(GObject.Value(GObject.TYPE_STRING, value))
        window.set_sensitive_if_in(name, None, chooser, values, when_in)
    window.fill(["op", "scale", "method", "adapt", "adapt-steps", "target", "input-folder",
                 "output-folder"])
    accepted = window.run()
    window.destroy()
    return accepted


def refine_dialog(procedure, config):
    GimpUi = ui()
    window = GimpUi.ProcedureDialog.new(procedure, config, "AI Refine Matte")
    window.get_widget("source", GimpUi.IntRadioFrame)
    window.fill(None)
    accepted = window.run()
    window.destroy()
    return accepted


def ui():
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init("sharpfu")
    return GimpUi


def process(op, image, drawables, config, show):
    """Do the op; returns the image holding the result and the server's
    description of the method that made it."""
    if len(drawables) != 1:
        raise Refusal("Select exactly one layer for %s (%d are selected)." % (
            op.title, len(drawables)))
    layer = drawables[0]
    scale = int(config.get_property("scale")) if op.scales else 1
    new_image = bool(op.scales) and config.get_property("output") == "new-image"
    gimp_pixels.check_layer(image, layer, changes_layer=not new_image)
    params = server_job.job_params(scale if op.scales else None, config.get_property("method"))

    if not new_image:
        in_place.check_size(image, scale)
    adapting = config.get_property("adapt")
    change = in_place.LayerChange(image, layer, scale, whole=new_image)
    frame = change.read()
    note = ""
    if adapting:
        # On the very pixels the job sends; a Cancel here leaves the image as it was.
        params, note = server_job.adapt(
            [frame], params, op.title, config.get_property("adapt-steps"),
            server_job.came_compressed(image, frame.format),
            task_for(op.name, scale))
        note = "; " + note
    result = server_job.run(op.name, frame, params, op.title)
    change.take(result.frame("image"))
    Gimp.progress_set_text("%s: done by %s%s" % (op.title, result.method.get("title", "?"),
                                                 note))

    # Everything so far only read the image. From here it changes, as one undo step.
    if new_image:
        new = gimp_pixels.new_image(image, layer, change.pixels)
        if show:
            Gimp.Display.new(new)
        return new, result.method
    in_place.apply(image, [change], scale)
    return image, result.method


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


def choice(*entries):
    """A Gimp.Choice of (nick, label, help) entries."""
    found = Gimp.Choice.new()
    for index, (nick, label, help_text) in enumerate(entries):
        found.add(nick, index, label, help_text)
    return found


def scale_choice(scales):
    return choice(*[(nick, "%s\u00d7" % nick if nick != "1" else "1\u00d7 (same size)", "")
                    for nick in scales])


class SharpFu(Gimp.PlugIn):
    def do_query_procedures(self):
        return list(OPS) + [BATCH, REFINE]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        if name == BATCH:
            return self.batch_procedure()
        if name == REFINE:
            return self.refine_procedure()
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
            procedure.add_choice_argument("scale", "_Scale", "Size of the result, in times the "
                                          "layer's size", scale_choice(op.scales), op.scales[0],
                                          flags)
            procedure.add_choice_argument(
                "output", "_Result", "Where the result goes", choice(
                    ("in-place", "Change this image", "Replace the layer's pixels; above 1x "
                     "scale the whole image, as Image > Scale Image does"),
                    ("new-image", "Open as a new image", "Leave this image as it is")),
                "in-place", flags)
        add_method_argument(procedure)
        add_adapt_arguments(procedure, "this image", "tiles of the layer")
        procedure.add_image_return_value("result-image", "Result image", "The image holding "
                                         "the result: this one, or the new one", False, flags)
        procedure.add_string_return_value("method-used", "Method used", "The name of the "
                                          "model or method that made the result", "", flags)
        return procedure

    def batch_procedure(self):
        # A plain procedure, not an ImageProcedure: a folder needs no image.
        procedure = Gimp.Procedure.new(self, BATCH, Gimp.PDBProcType.PLUGIN, run_batch, None)
        procedure.set_image_types("*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
        procedure.set_menu_label("AI _Batch\u2026")
        procedure.add_menu_path("<Image>/Filters/Enhance")
        procedure.set_documentation(
            "Run a SharpFu filter on every layer, every open image or a folder of files",
            "Runs AI Upscale, AI Sharpen or AI Deblur on every layer of the image, on every "
            "layer of every open image, or on every file in a folder, exporting the results "
            "under the same names into an output folder. Each image changes as one undo step, "
            "once all of its layers are done. Text layers and layers with locked pixels are "
            "left as they are. A layer or file that fails is reported at the end; the others "
            "go on.", BATCH)
        procedure.set_attribution("SharpFu", "SharpFu authors, GPL-3.0-or-later", "2026")
        flags = GObject.ParamFlags.READWRITE
        procedure.add_enum_argument("run-mode", "Run mode", "The run mode", Gimp.RunMode,
                                    Gimp.RunMode.NONINTERACTIVE, flags)
        procedure.add_image_argument("image", "Image", "The image whose layers 'layers' "
                                     "processes", True, flags)
        procedure.add_choice_argument(
            "op", "_Filter", "The SharpFu filter to run", choice(*[
                (op.name, op.title, op.blurb) for op in OPS.values()]), "upscale", flags)
        procedure.add_choice_argument(
            "scale", "_Scale", "Size of the result, in times the original's (AI Upscale: 2 or "
            "4; AI Sharpen: 1, 2 or 4; AI Deblur: not used)", scale_choice(("1", "2", "4")), "2",
            flags)
        add_method_argument(procedure)
        add_adapt_arguments(procedure, "this batch", "tiles of up to 8 of its layers or files")
        procedure.add_choice_argument(
            "target", "_Work on", "What the filter runs on", choice(
                ("layers", "Every layer of this image", "Each layer changes in place, in one "
                 "undo step"),
                ("images", "Every open image", "Every layer of every open image, one undo step "
                 "per image"),
                ("folder", "Every file in a folder", "Each file is opened, processed, exported "
                 "under its own name into the output folder and closed")),
            "layers", flags)
        procedure.add_file_argument("input-folder", "_Input folder", "The folder whose files "
                                    "'folder' processes (not its subfolders)",
                                    Gimp.FileChooserAction.SELECT_FOLDER, True, None, flags)
        procedure.add_file_argument("output-folder", "_Output folder", "Where 'folder' writes "
                                    "its results, under the same names (made if missing)",
                                    Gimp.FileChooserAction.CREATE_FOLDER, True, None, flags)
        procedure.add_int_return_value("done", "Done", "How many layers ('layers', 'images') or "
                                       "files ('folder') were processed", 0, GLib.MAXINT32, 0,
                                       flags)
        procedure.add_string_return_value("notes", "Notes", "The layers left as they were, and "
                                          "why; one a line", "", flags)
        return procedure

    def refine_procedure(self):
        procedure = Gimp.ImageProcedure.new(self, REFINE, Gimp.PDBProcType.PLUGIN, run_refine,
                                            None)
        procedure.set_image_types("*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("AI _Refine Matte\u2026")
        procedure.add_menu_path("<Image>/Layer/Mask")
        procedure.add_menu_path("<Image>/Filters/Enhance")
        procedure.set_documentation(
            "Turn a rough mask of the layer's subject into a clean alpha matte with SharpFu",
            "Refines the layer's rough outline (its layer mask, the selection or its alpha "
            "channel) into an alpha matte with every strand of hair, at the layer's full "
            "resolution, with SharpFu's matting model. The matte becomes the layer's mask (the "
            "old mask's contents are replaced; a layer without one gets one), and optionally a "
            "cut-out layer above it holds the subject with the old background's colours removed "
            "from its edges. One undo step.", REFINE)
        procedure.set_attribution("SharpFu", "SharpFu authors, GPL-3.0-or-later", "2026")
        flags = GObject.ParamFlags.READWRITE
        procedure.add_choice_argument(
            "source", "_Rough outline", "What outlines the subject roughly", choice(
                ("auto", "Automatic", "The layer mask if there is one, else the selection if "
                 "there is one, else the alpha channel"),
                ("mask", "Layer mask", "The layer's mask"),
                ("selection", "Selection", "The current selection"),
                ("alpha", "Alpha channel", "The layer's transparency")), "auto", flags)
        procedure.add_boolean_argument("cutout", "Add a _cut-out layer", "Also add a layer "
                                       "above, holding the subject with clean edge colours",
                                       False, flags)
        procedure.add_int_argument("iterations", "_Passes", "Refinement passes of the model "
                                   "(0: its default)", 0, 8, 0, flags)
        add_method_argument(procedure)
        procedure.add_layer_return_value("cutout-layer", "Cut-out layer", "The cut-out layer, "
                                         "when one was asked for", True, flags)
        procedure.add_string_return_value("method-used", "Method used", "The name of the "
                                          "model or method that made the matte", "", flags)
        return procedure


def add_method_argument(procedure):
    procedure.add_string_argument("method", "_Method", "The model or method to use, by the "
                                  "name 'sharpfu status' lists; empty: the best installed", "",
                                  GObject.ParamFlags.READWRITE)


def add_adapt_arguments(procedure, what, where):
    flags = GObject.ParamFlags.READWRITE
    procedure.add_boolean_argument(
        "adapt", "_Adapt to %s first" % what, "First fit the model to %s (on %s, no "
        "reference needed; a minute or so), then use it: the upscaler at 2x and 4x, the "
        "deblurrer for AI Deblur and at 1x. When the fit brings no gain the shipped model is "
        "used, and the status bar says so" % (what, where), False, flags)
    procedure.add_int_argument("adapt-steps", "Adaptation ste_ps", "Training steps of the "
                               "adaptation (0: the server's default, 300 for the upscaler, "
                               "150 for the deblurrer)", 0, 5000, 0, flags)


Gimp.main(SharpFu.__gtype__, sys.argv)
