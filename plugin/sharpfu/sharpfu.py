#!/usr/bin/env python3
#   SharpFu for GIMP 3: AI Sharpen, AI Upscale, AI Deblur, AI Batch,
#   AI Refine Matte and AI Select Subject.
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
Mask) turns a rough mask into the layer's alpha matte; Select > AI Select
Subject (select_subject.py) selects the layer's main subject.
"""
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)                        # sharpfu_client, installed beside this file
sys.path.append(os.path.join(HERE, "_vendor"))  # pyzmq, for GIMPs whose Python lacks it

import gi  # noqa: E402
gi.require_version("Gimp", "3.0")
from gi.repository import GLib, GObject, Gimp, Gio  # noqa: E402

# The table of procedures needs only the standard library: the menus are
# there even when the rest cannot load.
from sharpfu_client import help_pages  # noqa: E402
from sharpfu_client.operations import (AUTHOR, COPYRIGHT, DATE, PROCEDURES,  # noqa: E402
                                       filter_for)

try:
    import zmq  # noqa: F401 - first, so that when it is missing, that is what is told
    import batch
    import dialogs
    import gimp_pixels
    import in_place
    import refine_matte
    import select_subject
    import server_job
    from sharpfu_client.layers import Declined, Refusal, free_memory
    from sharpfu_client import Frame, SharpFuError, plugin_jobs
    from sharpfu_client.adapt import task_for
    from sharpfu_client.config import ConfigError
    MISSING = None
except ImportError as error:
    # Register the menu entries anyway: running one then says what is missing,
    # which is easier to act on than entries that silently never appear.
    MISSING = error


def one_layer(spec, image, drawables):
    """The one layer a filter works on, refused before any dialog opens when
    SharpFu cannot work on it (an indexed image, a group, several layers)."""
    if len(drawables) != 1:
        raise Refusal("Select exactly one layer for %s (%d are selected)." % (
            spec.title, len(drawables)))
    layer = drawables[0]
    if spec.op in ("matte", "select") and layer.is_layer_mask():   # its thumbnail was clicked
        layer = Gimp.Layer.from_mask(layer)
    gimp_pixels.check_layer(image, layer, changes_layer=False)
    return layer


def run(procedure, run_mode, image, drawables, config, spec):
    def work():
        result_image, method = process(spec, image, drawables, config,
                                       show=run_mode != Gimp.RunMode.NONINTERACTIVE)
        return [GObject.Value(Gimp.Image, result_image),
                GObject.Value(GObject.TYPE_STRING, method.get("name", ""))]
    return answer(procedure, run_mode, lambda: dialogs.run(
        procedure, config, spec, image, drawables, filter_size(image, drawables, spec)), work,
        lambda: one_layer(spec, image, drawables))


def run_batch(procedure, config, spec):
    run_mode = config.get_property("run-mode")

    def work():
        try:
            return batch_work()
        finally:
            # GIMP keeps a dialog's last values, and cannot keep an image.
            config.set_property("image", None)

    def batch_work():
        chosen = filter_for(config.get_property("op"))
        scale = config.get_property("scale")
        if chosen.scales and scale not in chosen.scales:
            raise Refusal("%s works at %s\u00d7, not at %s\u00d7." % (
                chosen.title, "\u00d7 or ".join(sorted(chosen.scales)), scale))
        scale = int(scale) if chosen.scales else None
        outcome = batch.run(chosen.op, scale or 1,
                            server_job.job_params(scale, config.get_property("method"),
                                                  config.get_property("strength")),
                            config.get_property("target"), config.get_property("image"),
                            config.get_property("input-folder"),
                            config.get_property("output-folder"),
                            adapt_steps=config.get_property("adapt-steps")
                            if config.get_property("adapt") else None,
                            guard=batch_guard(config, run_mode))
        if run_mode == Gimp.RunMode.INTERACTIVE:
            # The message that stays (failures come back as the error, which GIMP shows).
            Gimp.message("%s: %s" % (batch.TITLE, outcome.summary()))
        return [GObject.Value(GObject.TYPE_INT, outcome.done),
                GObject.Value(GObject.TYPE_STRING, "\n".join(outcome.notes))]
    return answer(procedure, run_mode, lambda: dialogs.run(
        procedure, config, spec, size=batch_size(config.get_property("image"))), work)


def run_refine(procedure, run_mode, image, drawables, config, spec):
    def work():
        layer = one_layer(spec, image, drawables)
        _, cutout, method = refine_matte.refine(
            image, layer, config.get_property("source"), config.get_property("cutout"),
            config.get_property("iterations"), config.get_property("method"),
            interactive=run_mode != Gimp.RunMode.NONINTERACTIVE)
        return [GObject.Value(Gimp.Layer, cutout),
                GObject.Value(GObject.TYPE_STRING, method.get("name", ""))]
    return answer(procedure, run_mode, lambda: dialogs.run(
        procedure, config, spec, image, drawables), work,
        lambda: one_layer(spec, image, drawables))


def run_select(procedure, run_mode, image, drawables, config, spec):
    def work():
        layer = one_layer(spec, image, drawables)
        cutout, method = select_subject.select(
            image, layer, config.get_property("result"), config.get_property("refine"),
            config.get_property("cutout"), config.get_property("method"),
            interactive=run_mode != Gimp.RunMode.NONINTERACTIVE)
        return [GObject.Value(Gimp.Layer, cutout),
                GObject.Value(GObject.TYPE_STRING, method.get("name", ""))]
    return answer(procedure, run_mode, lambda: dialogs.run(
        procedure, config, spec, image, drawables), work,
        lambda: one_layer(spec, image, drawables))


def answer(procedure, run_mode, ask, work, check=None):
    """Check (before any dialog: what cannot work is said at once), ask
    (when interactive), then work; GIMP gets work's return values, or the
    reason it failed."""
    if MISSING is not None:
        return failure(procedure, missing_message(MISSING))
    try:
        if check is not None:
            check()
    except Refusal as refusal:
        return failure(procedure, refusal.message)
    if run_mode == Gimp.RunMode.INTERACTIVE and not ask():
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
        returned = work()
    except Declined:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except (Refusal, SharpFuError) as error:    # batch.Failed is a Refusal
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


def filter_size(image, drawables, spec):
    """For the dialog: the result's size at the config's scale, or None."""
    def size(config):
        scale = int(config.get_property("scale"))
        if scale == 1 or len(drawables) != 1:
            return None
        return in_place.result_size(image, drawables[0], scale,
                                    config.get_property("output") != "new-image")
    return size if spec.scales else None


def batch_guard(config, run_mode):
    """AI Batch's guard against very large results: a user is asked once for
    the whole batch; a script must pass allow-large."""
    allowed = [config.get_property("allow-large")]

    def guard(size, name):
        in_place.guard(size, "%s: %s" % (batch.TITLE, name),
                       run_mode != Gimp.RunMode.NONINTERACTIVE, allowed[0], dialogs.confirm)
        if size.too_large(free_memory()) is not None:
            allowed[0] = True       # confirmed: the rest of the batch goes on too
    return guard


def batch_size(image):
    """For AI Batch's dialog: the size of this image's result, when the
    batch works on its layers above 1x."""
    def size(config):
        chosen = filter_for(config.get_property("op"))
        if image is None or config.get_property("target") != "layers" or not chosen.scales:
            return None
        scale = int(config.get_property("scale"))
        return in_place.result_size(image, None, scale) if scale > 1 else None
    return size


def process(spec, image, drawables, config, show):
    """Do the filter; returns the image holding the result and the server's
    description of the method that made it."""
    started = time.time()
    layer = one_layer(spec, image, drawables)
    scale = int(config.get_property("scale")) if spec.scales else 1
    new_image = bool(spec.scales) and config.get_property("output") == "new-image"
    gimp_pixels.check_layer(image, layer, changes_layer=not new_image)
    params = server_job.job_params(scale if spec.scales else None, config.get_property("method"),
                                   config.get_property("strength"))
    show_blur = has_blur_fields(spec) and config.get_property("show-blur")
    if has_blur_fields(spec):
        plugin_jobs.blur_params(params, spec.op, config.get_property("blur-size"), show_blur)

    if not new_image:
        in_place.check_size(image, scale)
    if scale > 1:
        in_place.guard(in_place.result_size(image, layer, scale, not new_image), spec.title,
                       show, config.get_property("allow-large"), dialogs.confirm)
    adapting = config.get_property("adapt")
    change = in_place.LayerChange(image, layer, scale, whole=new_image)
    frame = change.read()
    note = ""
    if adapting:
        # On the very pixels the job sends; a Cancel here leaves the image as it was.
        params, note = server_job.adapt(
            [frame], params, spec.title, config.get_property("adapt-steps"),
            server_job.came_compressed(image, frame.format),
            task_for(spec.op, scale))
        note = "; " + note
    result = server_job.run(spec.op, [frame], params, spec.title, started)
    change.take(result.frame("image"))
    blur = None
    if show_blur and any(f.name == "kernel" for f in result.frames):  # none at strength 0
        kernel = result.frame("kernel")
        grey = image.get_base_type() == Gimp.ImageBaseType.GRAY
        blur = plugin_jobs.blur_view(kernel.data, kernel.width, kernel.height, 1 if grey else 3)

    # Everything so far only read the image. From here it changes, as one undo step.
    if new_image:
        new = gimp_pixels.new_image(image, layer, change.pixels)
        if blur is not None:
            add_blur_layer(new, new.get_layers()[0], blur)
        if show:
            Gimp.Display.new(new)
    else:
        new = image
        image.undo_group_start()
        try:
            in_place.apply(image, [change], scale)
            if blur is not None:
                add_blur_layer(image, layer, blur)
        finally:
            image.undo_group_end()
    server_job.finish(spec.title, result.words.done(result, note), show)
    return new, result.method


def has_blur_fields(spec):
    return any(argument.name == "show-blur" for argument in spec.arguments)


def add_blur_layer(image, layer, blur):
    """The estimated blur (blur_view's pixels) as a small layer above
    `layer`, at its top left corner."""
    data, width, height = blur
    grey = image.get_base_type() == Gimp.ImageBaseType.GRAY
    shown = Gimp.Layer.new(image, "%s (estimated blur)" % layer.get_name(), width, height,
                           Gimp.ImageType.GRAY_IMAGE if grey else Gimp.ImageType.RGB_IMAGE,
                           100.0, Gimp.LayerMode.NORMAL)
    _, x, y = layer.get_offsets()
    shown.set_offsets(x, y)
    image.insert_layer(shown, layer.get_parent(), image.get_item_position(layer))
    # The insertion's undo step removes the layer: its pixels need none.
    gimp_pixels.write_direct(shown, Frame(data, width, height, 1 if grey else 3, "u8"))
    Gimp.displays_flush()


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


def choice(entries):
    """A Gimp.Choice of the table's choices."""
    found = Gimp.Choice.new()
    for index, entry in enumerate(entries):
        found.add(entry.nick, index, entry.label, entry.help)
    return found


def add_argument(procedure, argument):
    flags = GObject.ParamFlags.READWRITE
    name, label, help_text = argument.name, argument.label, argument.help
    if argument.kind == "choice":
        procedure.add_choice_argument(name, label, help_text, choice(argument.choices),
                                      argument.default, flags)
    elif argument.kind == "bool":
        procedure.add_boolean_argument(name, label, help_text, argument.default, flags)
    elif argument.kind == "int":
        procedure.add_int_argument(name, label, help_text, argument.minimum, argument.maximum,
                                   argument.default, flags)
    elif argument.kind == "percent":
        procedure.add_double_argument(name, label, help_text, argument.minimum,
                                      argument.maximum, argument.default, flags)
    elif argument.kind == "string":
        procedure.add_string_argument(name, label, help_text, argument.default, flags)
    elif argument.kind == "folder":
        action = {"open": Gimp.FileChooserAction.SELECT_FOLDER,
                  "create": Gimp.FileChooserAction.CREATE_FOLDER}[argument.action]
        procedure.add_file_argument(name, label, help_text, action, True, None, flags)
    elif argument.kind == "image":
        procedure.add_image_argument(name, label, help_text, True, flags)
    else:
        raise ValueError("no GIMP argument for kind %r" % argument.kind)


def add_return_value(procedure, value):
    flags = GObject.ParamFlags.READWRITE
    name, label, help_text = value.name, value.label, value.help
    if value.kind == "image":
        procedure.add_image_return_value(name, label, help_text, value.optional, flags)
    elif value.kind == "layer":
        procedure.add_layer_return_value(name, label, help_text, value.optional, flags)
    elif value.kind == "int":
        procedure.add_int_return_value(name, label, help_text, 0, GLib.MAXINT32, 0, flags)
    else:
        procedure.add_string_return_value(name, label, help_text, "", flags)


RUNS = {"sharpfu-batch": run_batch, "sharpfu-refine-matte": run_refine,
        "sharpfu-select-subject": run_select}


class SharpFu(Gimp.PlugIn):
    def do_query_procedures(self):
        # The Help buttons' pages (install.py writes them from the table).
        pages = os.path.join(HERE, help_pages.FOLDER)
        if os.path.isdir(pages):
            self.set_help_domain(help_pages.DOMAIN, Gio.File.new_for_path(pages))
        return list(PROCEDURES)

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        spec = PROCEDURES[name]
        if spec.image:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN,
                                                RUNS.get(name, run), spec)
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        else:
            # A plain procedure, not an ImageProcedure: a folder needs no image.
            procedure = Gimp.Procedure.new(self, name, Gimp.PDBProcType.PLUGIN, RUNS[name],
                                           spec)
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
            procedure.add_enum_argument("run-mode", "Run mode", "The run mode", Gimp.RunMode,
                                        Gimp.RunMode.NONINTERACTIVE,
                                        GObject.ParamFlags.READWRITE)
        # Every type, so that an indexed image gets an explanation rather than
        # a greyed-out menu entry.
        procedure.set_image_types("*")
        procedure.set_menu_label(spec.label)
        for menu in spec.menus:
            procedure.add_menu_path(menu)
        procedure.set_documentation(spec.blurb, spec.help, name)
        procedure.set_attribution(AUTHOR, COPYRIGHT, DATE)
        for argument in spec.arguments:
            add_argument(procedure, argument)
        for value in spec.returns:
            add_return_value(procedure, value)
        return procedure


Gimp.main(SharpFu.__gtype__, sys.argv)
