#!/usr/bin/env python
# -*- coding: utf-8 -*-
#   SharpFu for GIMP 2.10 (Python-Fu): AI Sharpen, AI Upscale, AI Deblur,
#   AI Refine Matte, AI Batch and AI Select Subject.
#
#   This program is free software: you can redistribute it and/or modify
#   it under the terms of the GNU General Public License as published by
#   the Free Software Foundation; either version 3 of the License, or
#   (at your option) any later version.
"""Filters > Enhance > AI Sharpen, AI Upscale, AI Deblur, AI Refine Matte and
AI Batch, and Select > AI Select Subject, for GIMP 2.10 and its Python 2.7.

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

# The table of procedures needs only the standard library: the menus are
# there even when the rest cannot load.
from sharpfu_client.operations import (AUTHOR, BATCH, COPYRIGHT, DATE, FILTERS,  # noqa: E402
                                       PROCEDURES, REFINE_MATTE, SELECT_SUBJECT, filter_for,
                                       gimp2_label, plain)

try:
    import zmq  # noqa: F401 - first, so that when it is missing, that is what is told
    import gimp2_batch
    import gimp2_job
    import gimp2_layers
    from gimp2_layers import native
    from sharpfu_client import SharpFuError
    from sharpfu_client.config import ConfigError
    from sharpfu_client.layers import Refusal, check_subject
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


class Failed(Exception):
    """Raised to GIMP after the user was told: a script's call then fails."""


def title(spec):
    """The procedure's label in words, for messages."""
    return plain(spec.gimp2_value("label")).replace("_", "").rstrip(".")


IMAGE_ARGS = [(PF_IMAGE, "image", "Input image", None),
              (PF_DRAWABLE, "drawable", "Input drawable", None)]
PF_TYPES = {"image": PF_IMAGE, "string": PF_STRING, "int": PF_INT32}


def parameters(spec):
    """gimpfu's parameters for a procedure of the table."""
    found = list(IMAGE_ARGS)
    for argument in spec.gimp2_arguments():
        label = gimp2_label(argument)
        if argument.kind == "choice":
            found.append((PF_RADIO, argument.name, label, argument.default, tuple(
                (plain(choice.label), choice.nick) for choice in argument.choices)))
        elif argument.kind == "bool":
            found.append((PF_TOGGLE, argument.name, label, argument.default))
        elif argument.kind == "string":
            found.append((PF_STRING, argument.name, label, plain(argument.default)))
        elif argument.kind == "folder":
            found.append((PF_DIRNAME, argument.name, label, ""))
        else:
            raise ValueError("no GIMP 2.10 parameter for kind %r" % argument.kind)
    return found


def results(spec):
    return [(PF_TYPES[value.kind], value.name, plain(value.help))
            for value in spec.gimp2_returns()]


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


def filter_function(spec):
    def run(image, drawable, *args):
        def work(shown):
            values = dict(zip([p[1] for p in parameters(spec)[2:]], args))
            result_image, method = process(spec, image, drawable, values, shown)
            return result_image, native(method.get("name", ""))
        return guarded(title(spec), (image, ""), work)
    return run


def process(spec, image, drawable, values, show):
    """Do the filter; returns the image holding the result and the server's
    description of the method that made it."""
    gimp2_layers.check_precision(image, values["high-bit-depth-as-8-bit"])
    name = title(spec)
    scale = 1
    if spec.scales:
        if values["scale"] not in spec.scales:
            raise Refusal("%s works at %sx, not at %sx." % (
                name, "x or ".join(sorted(spec.scales)), native(values["scale"])))
        scale = int(values["scale"])
    new_image = bool(spec.scales) and values["output"] == "new-image"
    gimp2_layers.check_layer(image, drawable, changes_layer=not new_image)
    params = gimp2_job.job_params(scale if spec.scales else None, values["method"])
    if not new_image:
        gimp2_layers.check_size(image, scale)
    change = gimp2_layers.LayerChange(image, drawable, scale, whole=new_image)
    result = gimp2_job.run(spec.op, [change.read()], params, name)
    change.take(result.frame("image"))

    # Everything so far only read the image. From here it changes, as one undo step.
    if new_image:
        new = gimp2_layers.new_image(image, drawable, change.pixels)
        if show:
            gimp.Display(new)
    else:
        new = image
        gimp2_layers.apply(image, [change], scale)
    finish(name, result)
    return new, result.method


def finish(name, result):
    """What stays in the progress bar's place: how long, and what made it."""
    gimp2_job.say("%s: %s" % (name, plain(result.words.done(result))))
    gimp.progress_update(1.0)


def refine_matte(image, drawable, method, accept_8_bit):
    def work(shown):
        gimp2_layers.check_precision(image, accept_8_bit)
        layer = gimp2_layers.layer_of(drawable)
        gimp2_layers.check_layer(image, layer, changes_layer=False)
        change = gimp2_layers.MatteChange(image, layer)
        try:
            result = gimp2_job.run(REFINE_MATTE.op, change.frames(),
                                   gimp2_job.job_params(None, method), title(REFINE_MATTE))
            change.take(result.frame("alpha"))
        except Exception:
            change.discard()
            raise
        change.apply()
        finish(title(REFINE_MATTE), result)
        return native(result.method.get("name", ""))
    return guarded(title(REFINE_MATTE), "", work)


def select_subject(image, drawable, result, refine, method, accept_8_bit):
    def work(shown):
        gimp2_layers.check_precision(image, accept_8_bit)
        layer = gimp2_layers.layer_of(drawable)
        gimp2_layers.check_layer(image, layer, changes_layer=False)
        if result not in ("selection", "mask"):
            raise Refusal("%s puts the subject in the selection or the layer mask, not %r." % (
                title(SELECT_SUBJECT), native(result)))
        change = gimp2_layers.SubjectChange(image, layer, result)
        params = gimp2_job.job_params(None, method)
        if not refine:
            params["refine"] = False
        answer = gimp2_job.run(SELECT_SUBJECT.op, change.frames(), params,
                               title(SELECT_SUBJECT))
        change.take(answer.frame("mask"))
        check_subject(change.mask, title(SELECT_SUBJECT), native(layer.name))
        change.apply()
        finish(title(SELECT_SUBJECT), answer)
        return native(answer.method.get("name", ""))
    return guarded(title(SELECT_SUBJECT), "", work)


def batch(image, drawable, op, scale, method, target, input_folder, output_folder,
          accept_8_bit):
    def work(shown):
        try:
            entry = filter_for(op)
        except KeyError:
            raise Refusal("AI Batch runs %s, not %r." % (
                ", ".join(spec.op for spec in FILTERS), native(op)))
        if entry.scales and scale not in entry.scales:
            raise Refusal("%s works at %sx, not at %sx." % (
                title(entry), "x or ".join(sorted(entry.scales)), native(scale)))
        factor = int(scale) if entry.scales else None
        outcome = gimp2_batch.run(entry.op, factor or 1, gimp2_job.job_params(factor, method),
                                  target, image, input_folder, output_folder, accept_8_bit)
        if outcome.notes and shown:
            gimp.message("%s: %s" % (gimp2_batch.TITLE, outcome.summary()))
        return outcome.done, "\n".join(outcome.notes)
    return guarded(title(BATCH), (0, ""), work)


def missing_message(error):
    if getattr(error, "name", None) == "zmq" or "zmq" in str(error):
        return ("SharpFu needs pyzmq in GIMP's Python (%s, Python %d.%d), and it is not there. "
                "Run SharpFu's install.py again: it places pyzmq 19 for Python 2.7 beside the "
                "plug-in (in %s)." % ((sys.executable,) + sys.version_info[:2]
                                      + (os.path.join(HERE, "_vendor"),)))
    return ("SharpFu's plug-in is incomplete (%s). Run SharpFu's install.py again; it copies "
            "the client library into %s." % (error, HERE))


FUNCTIONS = {REFINE_MATTE.name: refine_matte, BATCH.name: batch,
             SELECT_SUBJECT.name: select_subject}

for _spec in PROCEDURES.values():
    register(PREFIX + _spec.name, plain(_spec.gimp2_value("blurb")),
             plain(_spec.gimp2_value("help")), AUTHOR, COPYRIGHT, DATE,
             plain(_spec.gimp2_value("label")), "*", parameters(_spec), results(_spec),
             FUNCTIONS.get(_spec.name) or filter_function(_spec),
             menu=_spec.gimp2_value("menus")[0], on_run=began_interactively)

main()
