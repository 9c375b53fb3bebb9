# -*- coding: utf-8 -*-
"""Every operation SharpFu offers, declared once.

Two tables, read by everyone who needs to know about an operation:

* OPERATIONS: what a job may ask for (docs/PROTOCOL.md, "Operations"): its
  input and output frames, its parameters with their types, defaults,
  choices and ranges, the checks the server runs on them before a job is
  queued, and the engine's runner that computes it. The server's
  server/ops.py and server/protocol.py read it, the CLI takes its scales
  from it.
* PROCEDURES: how GIMP presents them: the menu entries, their labels, menu
  paths, blurbs and help texts, and each procedure's arguments with the
  labels and tooltips of their fields in the dialog. An argument that is an
  op's parameter takes its type, default, choices and range from
  OPERATIONS. Both plug-ins (GIMP 3: plugin/sharpfu, GIMP 2.10:
  plugin/sharpfu_gimp2) register their procedures and build their dialogs
  from it.

Python 2.7 and 3 (GIMP 2.10 reads it too), standard library only. Texts for
people are unicode; GIMP 2.10 gets them through `plain`.
"""
from __future__ import absolute_import, division

import math
from collections import OrderedDict

from .wire import WireError, integer_types, string_types

# -- the wire: what a job may ask for ---------------------------------------------------------

KINDS = {"int": "an integer", "float": "a finite number", "str": "a string or null",
         "bool": "true or false"}


class Param(object):
    """One parameter of an op: `kind` is "int", "float", "str" or "bool"."""

    def __init__(self, kind, default=None, choices=(), minimum=None, maximum=None, help=""):
        if kind not in KINDS:
            raise ValueError("unknown parameter kind %r" % kind)
        self.kind, self.default, self.choices = kind, default, tuple(choices)
        self.minimum, self.maximum, self.help = minimum, maximum, help

    def check(self, op, name, value, msg_id):
        """The value as the op uses it, or WireError("bad_params") saying what is wrong."""
        if value is None and self.kind == "str":
            return None
        if self.kind == "bool":
            valid = isinstance(value, bool)
        elif self.kind == "str":
            valid = isinstance(value, string_types)
        elif isinstance(value, bool):
            valid = False
        elif self.kind == "int":
            valid = isinstance(value, integer_types)
        else:
            valid = isinstance(value, integer_types + (float,))
            if valid:
                value = float(value)
                valid = not (math.isnan(value) or math.isinf(value))
        if not valid:
            raise WireError("bad_params", "Option %r of %s must be %s." % (
                name, op, KINDS[self.kind]), msg_id)
        if self.choices and value not in self.choices:
            raise WireError("bad_params", "Option %r of %s must be one of %s, not %r." % (
                name, op, ", ".join(str(c) for c in self.choices), value), msg_id)
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise WireError("bad_params", "Option %r of %s must lie between %s and %s." % (
                name, op, self.minimum, self.maximum), msg_id)
        return value

    def describe(self):
        found = OrderedDict([("type", self.kind), ("default", self.default)])
        if self.choices:
            found["choices"] = list(self.choices)
        if self.minimum is not None:
            found["min"], found["max"] = self.minimum, self.maximum
        found["help"] = self.help
        return found


# Options every op but echo (and, for tile, adapt) takes.
COMMON = OrderedDict([
    ("method", Param("str", help="name of the model or method to use (see status); null: the "
                                 "best installed")),
    ("tile", Param("int", 0, minimum=0, maximum=16384,
                   help="tile side in input pixels; 0: picked from free memory")),
])


class Operation(object):
    """One op of the wire protocol.

    inputs: the names of its input frames, in order; with max_frames > 0 it
    takes 1 to max_frames frames, all named inputs[0]. masks: the inputs
    that must have one channel and the first input's size. outputs: the
    names of the frames its result holds; on_request: those among them it
    holds only when the job asks, each by a boolean param of its name.
    runner: which of the engine's runners computes it ("image": a method
    chain over the image, "matte", "select", "adapt", "echo")."""

    def __init__(self, name, inputs, outputs, params, summary, runner, doing,
                 common=("method", "tile"), max_frames=0, masks=(), on_request=()):
        self.name, self.inputs, self.outputs = name, tuple(inputs), tuple(outputs)
        self.on_request = tuple(on_request)
        self.doing = doing    # what a progress bar says while it runs
        self.masks = tuple(masks)
        self.params = OrderedDict(params)
        self.summary, self.runner = summary, runner
        self.common, self.max_frames = tuple(common), max_frames

    def __repr__(self):
        return "Operation(%r)" % self.name

    def all_params(self):
        found = OrderedDict((name, COMMON[name]) for name in self.common)
        found.update(self.params)
        return found

    def check_params(self, params, msg_id):
        """Every parameter of a job, checked, with the defaults filled in;
        WireError("bad_params") for anything unknown or invalid."""
        if not isinstance(params, dict):
            raise WireError("bad_params", "'params' must be a JSON object.", msg_id)
        known = self.all_params()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise WireError("bad_params", "Unknown option(s) %s for %s; it takes: %s." % (
                ", ".join(map(repr, unknown)), self.name, ", ".join(sorted(known)) or "none"),
                msg_id)
        return dict((name, spec.check(self.name, name, params.get(name, spec.default), msg_id))
                    for name, spec in known.items())

    def scale(self, params):
        """How many times larger than its input the result is."""
        return params.get("scale") or 1

    @property
    def scales(self):
        """The scales it offers, the default first ((1,) for an op without one)."""
        spec = self.params.get("scale")
        if spec is None:
            return (1,)
        return (spec.default,) + tuple(c for c in spec.choices if c != spec.default)

    def describe(self):
        """The op as the server's status reply lists it."""
        return {"inputs": list(self.inputs), "summary": self.summary,
                "params": dict((name, p.describe()) for name, p in self.all_params().items())}


# How much of the method's change a job keeps (upscale, deblur, sharpen).
STRENGTH = Param("float", 1.0, minimum=0.0, maximum=1.0,
                 help="how much of the method's change to keep: 1 all of it, 0 none (the image "
                      "plainly resampled with Lanczos-3, or unchanged at 1x), in between a mix")


# The blur a deblurrer estimates (deblur, sharpen).
KERNEL_SIZE = Param("int", 0, minimum=0, maximum=99,
                    help="side in pixels of the largest blur to look for (the estimated blur "
                         "kernel's square), made odd, at least 3; 0: automatic (35, or 2.5% of "
                         "the shorter side of a large image, up to 75). Methods that estimate no "
                         "kernel ignore it")
KERNEL = Param("bool", False,
               help="also return the estimated blur kernel as frame 'kernel' (f32, 1 channel, "
                    "its weights, which sum to 1; [[1]] for an image found unblurred); only "
                    "methods that estimate one (status: extra_frames), and not at strength 0, "
                    "where nothing runs")


def _table(entries):
    return OrderedDict((entry.name, entry) for entry in entries)


OPERATIONS = _table([
    Operation("upscale", ["image"], ["image"],
              [("scale", Param("int", 2, choices=(2, 4), help="output size factor")),
               ("strength", STRENGTH)],
              "Enlarge the image 2x or 4x.", runner="image", doing=u"Enlarging"),
    Operation("deblur", ["image"], ["image", "kernel"],
              [("strength", STRENGTH), ("kernel_size", KERNEL_SIZE), ("kernel", KERNEL)],
              "Remove blur at the same size.", runner="image", doing=u"Removing blur",
              on_request=["kernel"]),
    Operation("sharpen", ["image"], ["image", "kernel"],
              [("scale", Param("int", 1, choices=(1, 2, 4), help="output size factor")),
               ("strength", STRENGTH), ("kernel_size", KERNEL_SIZE), ("kernel", KERNEL)],
              "Deblur, then upscale: AI Sharpen.", runner="image", doing=u"Sharpening",
              on_request=["kernel"]),
    Operation("matte", ["image", "mask"], ["alpha", "foreground"], [
        ("foreground", Param("bool", False, help="also return the foreground colours (frame "
                                                 "'foreground'), free of the old background")),
        ("iterations", Param("int", 0, minimum=0, maximum=8,
                             help="refinement passes of a network refiner; 0: its default"))],
        "Refine a coarse mask (1 channel, the image's size) into an alpha matte.",
        runner="matte", doing=u"Refining the matte", masks=["mask"], on_request=["foreground"]),
    Operation("select", ["image"], ["mask", "foreground"], [
        ("refine", Param("bool", True, help="refine the network's mask with the matte's band "
                                             "solver (method 'laplacian'), so that edges and hair "
                                             "come out crisp; false: the network's soft mask as "
                                             "it is, enlarged")),
        ("foreground", Param("bool", False, help="also return the subject's colours (frame "
                                                 "'foreground'), free of the old background"))],
        "Find the main subject of a photo: a soft mask (1 channel, the image's size; "
        "transparent pixels are background).", runner="select",
        doing=u"Finding the subject", on_request=["foreground"]),
    Operation("echo", ["image"], ["image"], [
        ("delay", Param("float", 0.0, minimum=0.0, maximum=60.0,
                        help="seconds to spend, in progress steps (for tests)")),
        ("steps", Param("int", 10, minimum=1, maximum=1000, help="progress steps"))],
        "Diagnostic: returns its frames unchanged, through the same queue as every job.",
        runner="echo", doing=u"Working", common=()),
    Operation("adapt", ["sample"], [], [
        ("task", Param("str", "upscale", choices=("upscale", "deblur"),
                       help="which network adapts: an upscaler, or a deblurrer")),
        ("scale", Param("int", 2, choices=(2, 4),
                        help="the upscaler's scale to adapt (a deblurrer ignores it)")),
        ("steps", Param("int", 0, minimum=0, maximum=5000,
                        help="training steps, 10 or more; 0: the network's default (300 for an "
                             "upscaler, 150 for a deblurrer)")),
        ("save", Param("bool", False, help="also write the adapted weights to the models folder, "
                                           "to be offered again after a restart")),
        ("compressed", Param("bool", True, help="the images were saved as JPEG (or another lossy "
                                                "format) at some point; false: the training "
                                                "pairs get no JPEG either")),
        ("trainable", Param("str", "all", choices=("all", "low-rank"),
                            help="what trains: all of the network's weights, or low-rank "
                                 "adapters on its convolutions (about 15% as many; "
                                 "docs/models/adaptation.md)"))],
        "Adapt an upscaler or a deblurrer to samples of the user's own images (no ground truth "
        "needed); the result names the model to use as the method of later jobs.",
        runner="adapt", doing=u"Adapting the model to your images", common=("method",),
        max_frames=32),
])


# -- GIMP: the procedures that present them ---------------------------------------------------

class Choice(object):
    def __init__(self, nick, label, help=""):
        self.nick, self.label, self.help = nick, label, help


class Argument(object):
    """One argument of a GIMP procedure, and its field in the dialog.

    kind: "choice" (a string from `choices`), "bool", "int", "percent" (a
    number 0..100 that the job gets as a fraction), "string", "folder"
    (action "open" or "create"), "image". label: the field's label,
    its access key marked with "_"; help: its tooltip and PDB description.
    hint: said after the label where GIMP 2.10 shows no tooltip.
    only_if: (argument, values): the field is greyed out unless that
    argument has one of the values (True: unless that boolean is on).
    dialog: False for an argument scripts pass and a dialog asks otherwise."""

    def __init__(self, name, kind, label, help, default=None, choices=(), minimum=None,
                 maximum=None, hint=u"", action=None, only_if=None, param=None, dialog=True):
        self.name, self.kind, self.label, self.help = name, kind, label, help
        self.default, self.choices = default, list(choices)
        self.minimum, self.maximum, self.hint = minimum, maximum, hint
        self.action, self.only_if, self.param = action, only_if, param
        self.dialog = dialog

    @property
    def in_dialog(self):
        return self.dialog and self.kind != "image"

    def __repr__(self):
        return "Argument(%r)" % self.name

    @property
    def nicks(self):
        return [choice.nick for choice in self.choices]


class Return(object):
    """A return value: kind "image", "layer", "int" or "string"; optional:
    it may be None."""

    def __init__(self, name, kind, label, help, optional=False):
        self.name, self.kind, self.label, self.help = name, kind, label, help
        self.optional = optional


def scale_label(scale):
    return u"1\u00d7 (same size)" if int(scale) == 1 else u"%d\u00d7" % int(scale)


def from_param(name, op, param, label, help, percent=False, **options):
    """A procedure argument that is `op`'s parameter `param` (op None: one
    of COMMON): its type, default, choices and range come from OPERATIONS.
    percent: a fraction 0..1 shown and passed as 0..100 %."""
    spec = (COMMON if op is None else OPERATIONS[op].all_params())[param]
    values = dict(options, param=(op, param))
    if percent:
        return Argument(name, "percent", label, help, spec.default * 100,
                        minimum=spec.minimum * 100, maximum=spec.maximum * 100, **values)
    if spec.choices and spec.kind == "int":
        return Argument(name, "choice", label, help, str(spec.default),
                        [Choice(str(c), scale_label(c) if param == "scale" else str(c))
                         for c in spec.choices], **values)
    kind = {"str": "string", "int": "int", "bool": "bool"}[spec.kind]
    default = u"" if spec.kind == "str" else spec.default
    return Argument(name, kind, label, help, default, minimum=spec.minimum,
                    maximum=spec.maximum, **values)


def _or(items):
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else "%s or %s" % (", ".join(items[:-1]), items[-1])


class Procedure(object):
    """One menu entry (a PDB procedure) of the GIMP 3 plug-in, and what the
    GIMP 2.10 plug-in registers for it (python-fu- in front of the name).

    op: the operation it runs (None for AI Batch, which runs any of
    BATCH_OPS). arguments: GIMP 3's, in order, after run-mode (and, for an
    image procedure, the image and drawables). gimp2: what differs in GIMP
    2.10: its own "arguments" (names of GIMP 3's or of GIMP2_ONLY), and the
    "label", "blurb", "help", "menus" or "returns" it has instead. preview:
    GIMP 3's dialog has a Preview button (PREVIEW)."""

    def __init__(self, name, op, label, blurb, help, menus, arguments, returns, gimp2=None,
                 image=True, preview=False):
        self.name, self.op, self.label, self.blurb, self.help = name, op, label, blurb, help
        self.menus, self.arguments, self.returns = list(menus), list(arguments), list(returns)
        self.gimp2 = dict(gimp2 or {})
        self.image = image    # an image procedure: the image and its drawables come first
        self.preview = preview

    def __repr__(self):
        return "Procedure(%r)" % self.name

    @property
    def title(self):
        """The label in words: for messages and the dialog's title."""
        return self.label.replace(u"_", u"").rstrip(u"\u2026")

    def argument(self, name):
        for found in self.arguments:
            if found.name == name:
                return found
        raise KeyError(name)

    @property
    def scales(self):
        """The scale choices (nicks), the default first; () without a scale."""
        try:
            scale = self.argument("scale")
        except KeyError:
            return ()
        return tuple([scale.default] + [n for n in scale.nicks if n != scale.default])

    # -- GIMP 2.10 --

    def gimp2_value(self, field):
        return self.gimp2.get(field, getattr(self, field))

    def gimp2_arguments(self):
        found = []
        for name in self.gimp2["arguments"]:
            found.append(GIMP2_ONLY[name] if name in GIMP2_ONLY else self.argument(name))
        return found

    def gimp2_returns(self):
        return self.gimp2.get("returns", self.returns)


def plain(text):
    """Text for GIMP 2.10, whose Python 2 API takes byte strings: the few
    typographic characters the table uses, in ASCII."""
    for fancy, simple in ((u"\u2026", u"..."), (u"\u00d7", u"x")):
        text = text.replace(fancy, simple)
    if not isinstance(text, str):     # unicode, in Python 2
        text = text.encode("ascii", "replace")
    return text


def gimp2_label(argument):
    """GIMP 2.10's dialogs have no tooltips: a hint goes after the label."""
    return plain(argument.label + (u" (%s)" % argument.hint if argument.hint else u""))


# Access keys the dialogs' own buttons take (_Help, _Reset, _Cancel, _OK,
# _Load Saved Settings, _Save Settings, the filters' Pre_view): no field's
# label may use them.
BUTTON_KEYS = "hrcolsv"

# The filters' Preview button (GIMP 3), its label and what it does.
PREVIEW = (u"Pre_view", u"Shows a part of the layer before and after, about 256 pixels a side "
           u"of the result around the selection (else the image's centre), computed as OK "
           u"would with the method, scale and strength chosen (not adapting first). After a "
           u"change of those, press it again. Above 1x, before is that part plainly enlarged, as "
           u"strength 0 leaves it")

# The arguments several procedures share.
METHOD = from_param("method", None, "method", u"_Method",
                    u"The model or method to use, by the name 'sharpfu status' lists; empty: "
                    u"the best installed", hint=u"empty: the best installed")
OUTPUT = Argument("output", "choice", u"Res_ult", u"Where the result goes", "in-place", [
    Choice("in-place", u"Change this image", u"Replace the layer's pixels; above 1x scale the "
           u"whole image, as Image > Scale Image does"),
    Choice("new-image", u"Open as a new image", u"Leave this image as it is")])


def adapt_arguments(what, where):
    return [
        Argument("adapt", "bool", u"_Adapt to %s first" % what,
                 u"First fit the model to %s (on %s, no reference needed; a minute or so), then "
                 u"use it: the upscaler at 2x and 4x, the deblurrer for AI Deblur and at 1x. When "
                 u"the fit brings no gain the shipped model is used, and the status bar says so"
                 % (what, where), False),
        from_param("adapt-steps", "adapt", "steps", u"Adaptation ste_ps",
                   u"Training steps of the adaptation (0: the server's default, 300 for the "
                   u"upscaler, 150 for the deblurrer)", only_if=("adapt", True))]


# A result larger than this asks first (sharpfu_client.layers.ResultSize).
ALLOW_LARGE = Argument(
    "allow-large", "bool", u"Allow a very large result",
    u"Go on when the result would have more than 64 megapixels or need more memory than is "
    u"free; without it a script's call is refused and the image stays as it was (the dialog "
    u"asks instead)", False, dialog=False)


def strength_argument(op):
    return from_param("strength", op, "strength", u"Stre_ngth",
                      u"How much of the model's change to keep, in percent: 100 all of it, 0 "
                      u"none (the image plainly resized with Lanczos-3, or unchanged at the "
                      u"same size), in between a mix", percent=True)


def scale_argument(op, help):
    return from_param("scale", op, "scale", u"Scal_e", help)


SCALE_HELP = u"Size of the result, in times the layer's size"
FILTER_MENU = "<Image>/Filters/Enhance"
AUTHOR = "SharpFu authors"
COPYRIGHT = "SharpFu authors, GPL-3.0-or-later"
DATE = "2026"

FILTER_RETURNS = [
    Return("result-image", "image", u"Result image",
           u"The image holding the result: this one, or the new one"),
    Return("method-used", "string", u"Method used",
           u"The name of the model or method that made the result")]

# Only GIMP 2.10 has these.
GIMP2_ONLY = {
    "high-bit-depth-as-8-bit": Argument(
        "high-bit-depth-as-8-bit", "bool",
        u"Work in 8 bits on a 16/32-bit image (GIMP 2.10's Python-Fu reads no more)",
        u"GIMP 2.10's Python-Fu reads and writes 8 bits per channel only", False),
}

def blur_arguments(op):
    """The estimated blur: how large to look for it, and showing it."""
    return [
        from_param("blur-size", op, "kernel_size", u"Blur si_ze",
                   u"The largest blur to look for, in pixels (the side of the estimated blur "
                   u"kernel); 0: automatic. Raise it for strong camera shake; a larger size "
                   u"takes longer", hint=u"pixels, 0: automatic"),
        from_param("show-blur", op, "kernel", u"Show estimated _blur",
                   u"Also add the blur the deblurrer found (its kernel: the path the camera "
                   u"shook along, or the disc of a focus blur) as a small layer above, "
                   u"enlarged to be seen. Only a method that estimates the blur (Blind "
                   u"deconvolution) can; with another the filter says so and changes nothing")]


def filter_procedure(name, op, label, blurb, help, extra=()):
    """A filter on the active layer: with the op's scales, if it has any,
    and where the result goes; the method; adapting first; `extra`
    arguments last."""
    scaled = "scale" in OPERATIONS[op].params
    arguments = [scale_argument(op, SCALE_HELP), OUTPUT] if scaled else []
    return Procedure(name, op, label, blurb, help, [FILTER_MENU], arguments + [METHOD]
                     + adapt_arguments(u"this image", u"tiles of the layer")
                     + ([ALLOW_LARGE] if scaled else []) + [strength_argument(op)]
                     + list(extra),
                     FILTER_RETURNS,
                     gimp2={"arguments": [a.name for a in arguments]
                            + ["method", "high-bit-depth-as-8-bit"]}, preview=True)


SHARPEN = filter_procedure(
    "sharpfu-ai-sharpen", "sharpen", u"AI _Sharpen\u2026",
    u"Sharpen the layer with SharpFu, optionally enlarging it",
    u"Removes blur from the active layer with SharpFu's deblurring model, then, at 2x or 4x, "
    u"enlarges it with its upscaling model. At 1x only the selection changes.",
    blur_arguments("sharpen"))
UPSCALE = filter_procedure(
    "sharpfu-ai-upscale", "upscale", u"AI _Upscale\u2026",
    u"Enlarge the layer 2x or 4x with SharpFu",
    u"Enlarges the active layer with SharpFu's upscaling model. In place, the whole image is "
    u"scaled as Image > Scale Image does: the active layer gets the model's pixels, the other "
    u"layers GIMP's interpolation. Or the result opens as a new image.")
DEBLUR = filter_procedure(
    "sharpfu-ai-deblur", "deblur", u"AI _Deblur\u2026", u"Remove blur from the layer with SharpFu",
    u"Removes motion and focus blur from the active layer with SharpFu's deblurring model, at "
    u"the same size. Only the selection changes.", blur_arguments("deblur"))

FILTERS = [SHARPEN, UPSCALE, DEBLUR]     # the filters AI Batch runs, in menu order
BATCH_OPS = [f.op for f in FILTERS]


def _batch_scale():
    """AI Batch's scale: every scale of its ops, AI Upscale's default."""
    ops = [OPERATIONS[op] for op in BATCH_OPS]
    every = sorted(set(s for op in ops for s in op.scales if "scale" in op.params))
    # AI Upscale, the default, first
    scaled = sorted([f for f in FILTERS if "scale" in OPERATIONS[f.op].params],
                    key=lambda f: f.op != "upscale")
    help = u"Size of the result, in times the original's (%s)" % u"; ".join(
        [u"%s: %s" % (f.title, _or(sorted(OPERATIONS[f.op].scales))) for f in scaled] +
        [u"%s: not used" % f.title for f in FILTERS if f not in scaled])
    hint = u"; ".join(
        [u"%s: %s" % (f.title, u"any" if sorted(OPERATIONS[f.op].scales) == every else u" or ".join(
            u"%dx" % s for s in sorted(OPERATIONS[f.op].scales))) for f in scaled] +
        [u"%s: not used" % f.title for f in FILTERS if f not in scaled])
    default = OPERATIONS["upscale"].params["scale"].default
    return Argument("scale", "choice", u"Scal_e", help, str(default),
                    [Choice(str(s), scale_label(s)) for s in every], hint=hint,
                    only_if=("op", [f.op for f in scaled]))


BATCH = Procedure(
    "sharpfu-batch", None, u"AI _Batch\u2026",
    u"Run a SharpFu filter on every layer, every open image or a folder of files",
    u"Runs AI Upscale, AI Sharpen or AI Deblur on every layer of the image, on every layer of "
    u"every open image, or on every file in a folder, exporting the results under the same "
    u"names into an output folder. Each image changes as one undo step, once all of its layers "
    u"are done. Text layers and layers with locked pixels are left as they are. A layer or file "
    u"that fails is reported at the end; the others go on.",
    [FILTER_MENU], [
        Argument("image", "image", u"Image", u"The image whose layers 'layers' processes"),
        Argument("op", "choice", u"_Filter", u"The SharpFu filter to run", "upscale",
                 [Choice(f.op, f.title, f.blurb) for f in FILTERS]),
        _batch_scale(), METHOD] + adapt_arguments(
            u"this batch", u"tiles of up to 8 of its layers or files") + [
        Argument("target", "choice", u"_Work on", u"What the filter runs on", "layers", [
            Choice("layers", u"Every layer of this image", u"Each layer changes in place, in "
                   u"one undo step"),
            Choice("images", u"Every open image", u"Every layer of every open image, one undo "
                   u"step per image"),
            Choice("folder", u"Every file in a folder", u"Each file is opened, processed, "
                   u"exported under its own name into the output folder and closed")]),
        Argument("input-folder", "folder", u"_Input folder",
                 u"The folder whose files 'folder' processes (not its subfolders)",
                 action="open", hint=u"for a folder", only_if=("target", ["folder"])),
        Argument("output-folder", "folder", u"O_utput folder",
                 u"Where 'folder' writes its results, under the same names (made if missing)",
                 action="create", hint=u"for a folder", only_if=("target", ["folder"])),
        ALLOW_LARGE, strength_argument("upscale")],
    [Return("done", "int", u"Done", u"How many layers ('layers', 'images') or files ('folder') "
            u"were processed"),
     Return("notes", "string", u"Notes", u"The layers left as they were, and why; one a line")],
    gimp2={"arguments": ["op", "scale", "method", "target", "input-folder", "output-folder",
                         "high-bit-depth-as-8-bit"]},
    image=False)

MATTE_SOURCES = [
    Choice("auto", u"Automatic", u"The layer mask if there is one, else the selection if there "
           u"is one, else the alpha channel"),
    Choice("mask", u"Layer mask", u"The layer's mask"),
    Choice("selection", u"Selection", u"The current selection"),
    Choice("alpha", u"Alpha channel", u"The layer's transparency")]

REFINE_MATTE = Procedure(
    "sharpfu-refine-matte", "matte", u"AI _Refine Matte\u2026",
    u"Turn a rough mask of the layer's subject into a clean alpha matte with SharpFu",
    u"Refines the layer's rough outline (its layer mask, the selection or its alpha channel) "
    u"into an alpha matte with every strand of hair, at the layer's full resolution: by "
    u"default with closed-form matting over a band around the outline that widens where the "
    u"subject lies farther in (a classical method), or with SharpFu's trained refiner chosen "
    u"as the method. The matte becomes the layer's mask (the old mask's contents are "
    u"replaced; a layer without one gets one), and optionally a cut-out layer above it holds "
    u"the subject with the old background's colours removed from its edges. One undo step.",
    ["<Image>/Layer/Mask", FILTER_MENU], [
        Argument("source", "choice", u"Rou_gh outline", u"What outlines the subject roughly",
                 "auto", MATTE_SOURCES),
        from_param("cutout", "matte", "foreground", u"Add a cu_t-out layer",
                   u"Also add a layer above, holding the subject with clean edge colours"),
        from_param("iterations", "matte", "iterations", u"_Passes",
                   u"Refinement passes of the trained refiner (0: its default; the "
                   u"classical methods take none)"),
        METHOD],
    [Return("cutout-layer", "layer", u"Cut-out layer",
            u"The cut-out layer, when one was asked for", optional=True),
     Return("method-used", "string", u"Method used",
            u"The name of the model or method that made the matte")],
    # GIMP 2.10's Refine Matte came first and stays as it was: the layer
    # mask, else the selection, and no cut-out.
    gimp2={"arguments": ["method", "high-bit-depth-as-8-bit"], "label": u"AI Refine _Matte\u2026",
           "menus": [FILTER_MENU],
           "blurb": u"Refine the layer's rough mask into a clean matte with SharpFu",
           "help": u"Takes the active layer's mask (or, when it has none, the selection) as a "
                   u"rough mask of the subject and refines it with SharpFu's matting into "
                   u"a soft, detailed alpha matte, which becomes the layer's mask. With both a "
                   u"mask and a selection, only the selected part of the mask changes.",
           "returns": [Return("method-used", "string", u"Method used",
                              u"The name of the model or method that made the matte")]})

SELECT_RESULTS = [
    Choice("selection", u"Replace the selection", u"The subject becomes the image's selection, "
           u"soft where its edge is (outside the layer nothing is selected)"),
    Choice("mask", u"Layer mask", u"The subject becomes the layer's mask (the old mask's "
           u"contents are replaced; a layer without one gets one)")]

SELECT_SUBJECT = Procedure(
    "sharpfu-select-subject", "select", u"AI Select S_ubject…",
    u"Select the main subject of the layer with SharpFu",
    u"Finds the main subject of the active layer (a person, an animal, an object in front) "
    u"with SharpFu's subject model, a segmentation network (install it once with 'sharpfu "
    u"models pull isnet-general'), and selects it with a soft mask, its edges and hair refined "
    u"by closed-form matting (a classical method) unless that is turned off. The whole layer is "
    u"looked at; its transparent pixels count as background. The selection is replaced, or "
    u"the mask becomes the layer's mask, and optionally a cut-out layer above holds the subject "
    u"with the old background's colours removed from its edges. One undo step.",
    ["<Image>/Select"], [
        Argument("result", "choice", u"Res_ult", u"Where the subject's mask goes", "selection",
                 SELECT_RESULTS),
        from_param("refine", "select", "refine", u"Refine _edges",
                   u"Refine the model's mask with closed-form matting over a band around its "
                   u"edge, so that hair and fine edges come out crisp (a few seconds more); "
                   u"off: the model's own soft mask"),
        from_param("cutout", "select", "foreground", u"Add a cu_t-out layer",
                   u"Also add a layer above, holding the subject with clean edge colours"),
        METHOD],
    [Return("cutout-layer", "layer", u"Cut-out layer",
            u"The cut-out layer, when one was asked for", optional=True),
     Return("method-used", "string", u"Method used",
            u"The name of the model (and refiner) that found the subject")],
    gimp2={"arguments": ["result", "refine", "method", "high-bit-depth-as-8-bit"],
           "returns": [Return("method-used", "string", u"Method used",
                              u"The name of the model (and refiner) that found the subject")]})

PROCEDURES = _table(FILTERS + [BATCH, REFINE_MATTE, SELECT_SUBJECT])


def filter_for(op):
    """The filter procedure that runs `op`."""
    for procedure in FILTERS:
        if procedure.op == op:
            return procedure
    raise KeyError(op)
