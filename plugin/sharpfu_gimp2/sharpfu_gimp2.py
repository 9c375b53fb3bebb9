#!/usr/bin/env python
# -*- coding: utf-8 -*-
#   SharpFu for GIMP 2.10 (Python-Fu): AI Sharpen, AI Upscale, AI Deblur,
#   AI Refine Matte and AI Batch.
#
#   This program is free software: you can redistribute it and/or modify
#   it under the terms of the GNU General Public License as published by
#   the Free Software Foundation; either version 3 of the License, or
#   (at your option) any later version.
"""Filters > Enhance > AI Sharpen, AI Upscale, AI Deblur, AI Refine Matte and
AI Batch, for GIMP 2.10 and its Python 2.7.

The same filters as SharpFu's GIMP 3 plug-in, through the same client
library. The procedures are named python-fu-sharpfu-ai-sharpen and so on:
gimpfu would prefix "python-fu-" to the GIMP 3 names anyway, so they are
registered under the full name, which is the one scripts call
(pdb.python_fu_sharpfu_ai_upscale(image, drawable, "2", "in-place", "", 0)).

Nothing in the image changes until the server's answer is in; then the
change is one undo step. A failure is told with gimp.message and leaves the
image as it was; a script's call then fails with an execution error.
"""
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)                        # sharpfu_client, installed beside this file
sys.path.insert(1, os.path.join(HERE, "_vendor"))   # pyzmq 19 for GIMP's Python 2.7

from gimpfu import (PF_DIRNAME, PF_DRAWABLE, PF_IMAGE, PF_INT32, PF_RADIO, PF_STRING,  # noqa: E402
                    PF_TOGGLE, gimp, main, register)

try:
    import gimp2_batch
    import gimp2_job
    import gimp2_layers
    from gimp2_layers import Refusal, native
    from sharpfu_client import SharpFuError
    from sharpfu_client.config import ConfigError
    MISSING = None
except ImportError as error:
    # Register the menu entries anyway: running one then says what is missing,
    # which is easier to act on than entries that silently never appear.
    MISSING = error

    class Refusal(Exception):
        def __init__(self, message):
            Exception.__init__(self, message)
            self.message = message

    SharpFuError = ConfigError = Refusal

    def native(text):
        return text

PREFIX = "python-fu-"
MENU = "<Image>/Filters/Enhance"
AUTHOR = "SharpFu authors"
COPYRIGHT = "SharpFu authors, GPL-3.0-or-later"
DATE = "2026"


class Failed(Exception):
    """Raised to GIMP after the user was told: a script's call then fails."""


class Op(object):
    def __init__(self, name, op, label, blurb, help_text, scales=()):
        self.name = PREFIX + name
        self.op = op
        self.label = label
        self.title = label.replace("_", "").rstrip(".")
        self.blurb = blurb
        self.help = help_text
        self.scales = scales    # the values of its scale argument; the first is the default


OPS = [
    Op("sharpfu-ai-sharpen", "sharpen", "AI _Sharpen...",
       "Sharpen the layer with SharpFu, optionally enlarging it",
       "Removes blur from the active layer with SharpFu's deblurring model, then, at 2x or 4x, "
       "enlarges it with its upscaling model. At 1x only the selection changes.",
       ("1", "2", "4")),
    Op("sharpfu-ai-upscale", "upscale", "AI _Upscale...", "Enlarge the layer 2x or 4x with SharpFu",
       "Enlarges the active layer with SharpFu's upscaling model. In place, the whole image is "
       "scaled as Image > Scale Image does: the active layer gets the model's pixels, the other "
       "layers GIMP's interpolation. Or the result opens as a new image.",
       ("2", "4")),
    Op("sharpfu-ai-deblur", "deblur", "AI _Deblur...", "Remove blur from the layer with SharpFu",
       "Removes motion and focus blur from the active layer with SharpFu's deblurring model, at "
       "the same size. Only the selection changes."),
]
MATTE = Op("sharpfu-refine-matte", "matte", "AI Refine _Matte...",
           "Refine the layer's rough mask into a clean matte with SharpFu",
           "Takes the active layer's mask (or, when it has none, the selection) as a rough mask "
           "of the subject and refines it with SharpFu's matting model into a soft, detailed "
           "alpha matte, which becomes the layer's mask. With both a mask and a selection, "
           "only the selected part of the mask changes.")
BATCH = PREFIX + "sharpfu-batch"

SCALE_LABELS = {"1": "1x (same size)", "2": "2x", "4": "4x"}
OUTPUTS = (("Change this image", "in-place"), ("Open as a new image", "new-image"))
TARGETS = (("Every layer of this image", "layers"), ("Every open image", "images"),
           ("Every file in a folder", "folder"))
METHOD = (PF_STRING, "method", "_Method (empty: the best installed)", "")
EIGHT_BIT = (PF_TOGGLE, "high-bit-depth-as-8-bit", "Work in 8 bits on a 16/32-bit image "
             "(GIMP 2.10's Python-Fu reads no more)", False)
IMAGE_ARGS = [(PF_IMAGE, "image", "Input image", None),
              (PF_DRAWABLE, "drawable", "Input drawable", None)]

# gimpfu calls on_run only when a procedure runs interactively, before its dialog.
interactive = [False]


def began_interactively():
    interactive[0] = True


def guarded(title, fallback, work):
    """work()'s return values; on failure, the reason told in plain words,
    and `fallback` returned (interactive) or Failed raised (a script)."""
    shown, interactive[0] = interactive[0], False
    try:
        if MISSING is not None:
            raise Refusal(missing_message(MISSING))
        return work(shown)
    except (Refusal, SharpFuError) as error:
        message = native(error.message)
    except ConfigError as error:
        message = native(str(error))
    except Exception as error:  # a bug: say so rather than leave the user guessing
        traceback.print_exc()
        message = "SharpFu failed unexpectedly (%s: %s). Please report this with GIMP's " \
                  "terminal output." % (type(error).__name__, native(str(error)))
    gimp.message("%s: %s" % (title, message))
    if shown:
        return fallback
    raise Failed(message)


def filter_function(op):
    def run(image, drawable, *args):
        def work(shown):
            values = dict(zip([p[1] for p in parameters(op)[2:]], args))
            result_image, method = process(op, image, drawable, values, shown)
            return result_image, native(method.get("name", ""))
        return guarded(op.title, (image, ""), work)
    return run


def process(op, image, drawable, values, show):
    """Do the op; returns the image holding the result and the server's
    description of the method that made it."""
    gimp2_layers.check_precision(image, values["high-bit-depth-as-8-bit"])
    scale = 1
    if op.scales:
        if values["scale"] not in op.scales:
            raise Refusal("%s works at %sx, not at %sx." % (
                op.title, "x or ".join(op.scales), native(values["scale"])))
        scale = int(values["scale"])
    new_image = bool(op.scales) and values["output"] == "new-image"
    gimp2_layers.check_layer(image, drawable, changes_layer=not new_image)
    params = gimp2_job.job_params(scale if op.scales else None, values["method"])
    if not new_image:
        gimp2_layers.check_size(image, scale)
    change = gimp2_layers.LayerChange(image, drawable, scale, whole=new_image)
    result = gimp2_job.run(op.op, [change.read()], params, op.title)
    change.take(result.frame("image"))
    gimp2_job.say("%s: done by %s" % (op.title, result.method.get("title", "?")))
    gimp.progress_update(1.0)

    # Everything so far only read the image. From here it changes, as one undo step.
    if new_image:
        new = gimp2_layers.new_image(image, drawable, change.pixels)
        if show:
            gimp.Display(new)
        return new, result.method
    gimp2_layers.apply(image, [change], scale)
    return image, result.method


def refine_matte(image, drawable, method, accept_8_bit):
    def work(shown):
        gimp2_layers.check_precision(image, accept_8_bit)
        layer = gimp2_layers.layer_of(drawable)
        gimp2_layers.check_layer(image, layer, changes_layer=False)
        change = gimp2_layers.MatteChange(image, layer)
        try:
            result = gimp2_job.run(MATTE.op, change.frames(), gimp2_job.job_params(None, method),
                                   MATTE.title)
            change.take(result.frame("alpha"))
        except Exception:
            change.discard()
            raise
        gimp2_job.say("%s: done by %s" % (MATTE.title, result.method.get("title", "?")))
        gimp.progress_update(1.0)
        change.apply()
        return native(result.method.get("name", ""))
    return guarded(MATTE.title, "", work)


def batch(image, drawable, op, scale, method, target, input_folder, output_folder,
          accept_8_bit):
    def work(shown):
        found = [entry for entry in OPS if entry.op == op]
        if not found:
            raise Refusal("AI Batch runs %s, not %r." % (
                ", ".join(entry.op for entry in OPS), native(op)))
        entry = found[0]
        if entry.scales and scale not in entry.scales:
            raise Refusal("%s works at %sx, not at %sx." % (
                entry.title, "x or ".join(entry.scales), native(scale)))
        factor = int(scale) if entry.scales else None
        outcome = gimp2_batch.run(entry.op, factor or 1, gimp2_job.job_params(factor, method),
                                  target, image, input_folder, output_folder, accept_8_bit)
        if outcome.notes and shown:
            gimp.message("%s: %s" % (gimp2_batch.TITLE, outcome.summary()))
        return outcome.done, "\n".join(outcome.notes)
    return guarded(gimp2_batch.TITLE if MISSING is None else "AI Batch", (0, ""), work)


def missing_message(error):
    if getattr(error, "name", None) == "zmq" or "zmq" in str(error):
        return ("SharpFu needs pyzmq in GIMP's Python (%s, Python %d.%d), and it is not there. "
                "Run SharpFu's install.py again: it places pyzmq 19 for Python 2.7 beside the "
                "plug-in (in %s)." % ((sys.executable,) + sys.version_info[:2]
                                      + (os.path.join(HERE, "_vendor"),)))
    return ("SharpFu's plug-in is incomplete (%s). Run SharpFu's install.py again; it copies "
            "the client library into %s." % (error, HERE))


def parameters(op):
    found = list(IMAGE_ARGS)
    if op.scales:
        found.append((PF_RADIO, "scale", "_Scale", op.scales[0],
                      tuple((SCALE_LABELS[value], value) for value in op.scales)))
        found.append((PF_RADIO, "output", "_Result", "in-place", OUTPUTS))
    return found + [METHOD, EIGHT_BIT]


RESULTS = [(PF_IMAGE, "result-image", "The image holding the result: this one, or the new one"),
           (PF_STRING, "method-used", "The name of the model or method that made the result")]

for _op in OPS:
    register(_op.name, _op.blurb, _op.help, AUTHOR, COPYRIGHT, DATE, _op.label, "*",
             parameters(_op), RESULTS, filter_function(_op), menu=MENU,
             on_run=began_interactively)

register(MATTE.name, MATTE.blurb, MATTE.help, AUTHOR, COPYRIGHT, DATE, MATTE.label, "*",
         IMAGE_ARGS + [METHOD, EIGHT_BIT],
         [(PF_STRING, "method-used", "The name of the model or method that made the matte")],
         refine_matte, menu=MENU, on_run=began_interactively)

register(BATCH, "Run a SharpFu filter on every layer, every open image or a folder of files",
         "Runs AI Upscale, AI Sharpen or AI Deblur on every layer of the image, on every layer "
         "of every open image, or on every file in a folder, saving the results under the same "
         "names into an output folder. Each image changes as one undo step, once all of its "
         "layers are done. Text layers and layers with locked pixels are left as they are. A "
         "layer or file that fails is reported at the end; the others go on.",
         AUTHOR, COPYRIGHT, DATE, "AI _Batch...", "*",
         IMAGE_ARGS + [
             (PF_RADIO, "op", "_Filter", "upscale",
              tuple((entry.title, entry.op) for entry in OPS)),
             (PF_RADIO, "scale", "_Scale (AI Upscale: 2x or 4x; AI Sharpen: any; AI Deblur: "
              "not used)", "2", tuple((SCALE_LABELS[v], v) for v in ("1", "2", "4"))),
             METHOD,
             (PF_RADIO, "target", "_Work on", "layers", TARGETS),
             (PF_DIRNAME, "input-folder", "_Input folder (for a folder)", ""),
             (PF_DIRNAME, "output-folder", "_Output folder (for a folder)", ""),
             EIGHT_BIT],
         [(PF_INT32, "done", "How many layers ('layers', 'images') or files ('folder') were "
           "processed"),
          (PF_STRING, "notes", "The layers left as they were, and why; one a line")],
         batch, menu=MENU, on_run=began_interactively)

main()
