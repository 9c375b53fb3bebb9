# Runs INSIDE GIMP 3 as a python-fu-eval batch script, with PARAMS prepended
# by gimp_runner: {"results": JSON-lines file, "suite": which checks to run,
# "work": the folder with the test images}. Each check records what it saw;
# test_gimp.py judges it. A check that raises is recorded with its traceback
# and the others still run, so one GIMP start covers the whole suite.
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import traceback

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import GObject, Gegl, Gimp, Gio  # noqa: E402

PDB = Gimp.get_pdb()
WORK = PARAMS["work"]  # noqa: F821 - prepended by the runner
SUITES = {}


def check(suite):
    def register(function):
        SUITES.setdefault(suite, []).append(function)
        return function
    return register


def record(name, **values):
    with open(PARAMS["results"], "a") as out:  # noqa: F821
        out.write(json.dumps(dict(values, check=name)) + "\n")


def path(name):
    return os.path.join(WORK, name)


def load(name):
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path(name)))
    assert image is not None, "GIMP could not load " + name
    return image


def export(image, name):
    assert Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path(name)),
                          None), "GIMP could not export " + name


def run(procedure, image, drawables, run_mode=Gimp.RunMode.NONINTERACTIVE, **arguments):
    """Call a SharpFu procedure the way another plug-in or script would."""
    proc = PDB.lookup_procedure(procedure)
    assert proc is not None, procedure + " is not registered"
    config = proc.create_config()
    config.set_property("run-mode", run_mode)
    config.set_property("image", image)
    config.set_core_object_array("drawables", drawables)
    for name, value in arguments.items():
        config.set_property(name.replace("_", "-"), value)
    started = time.time()
    values = proc.run(config)
    status = values.index(0)
    out = {"status": status.value_nick, "seconds": round(time.time() - started, 2)}
    if status == Gimp.PDBStatusType.SUCCESS:
        out["result_image"] = values.index(1)
        out["method"] = values.index(2)
    elif values.length() > 1:
        out["message"] = values.index(1)
    return out


def batch(image=None, run_mode=None, **arguments):
    """Call sharpfu-batch as a script would: run-mode and image only when
    given. Folders are given as names in WORK; underscores in argument names
    stand for dashes."""
    proc = PDB.lookup_procedure("sharpfu-batch")
    assert proc is not None, "sharpfu-batch is not registered"
    config = proc.create_config()
    if run_mode is not None:
        config.set_property("run-mode", run_mode)
    if image is not None:
        config.set_property("image", image)
    for name, value in arguments.items():
        name = name.replace("_", "-")
        if name.endswith("-folder"):
            value = Gio.File.new_for_path(path(value))
        config.set_property(name, value)
    started = time.time()
    values = proc.run(config)
    status = values.index(0)
    out = {"status": status.value_nick, "seconds": round(time.time() - started, 2)}
    if status == Gimp.PDBStatusType.SUCCESS:
        out["done"], out["notes"] = values.index(1), values.index(2)
    elif values.length() > 1:
        out["message"] = values.index(1)
    return out


def plain(result):
    return {k: v for k, v in result.items() if k != "result_image"}


def raw(drawable, fmt):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE))


def describe(image, text=True):
    """Everything Ctrl+Z must restore: size, precision, and each layer's
    geometry, pixels in its own format, and whether it is a (text) layer
    still to be edited as text. text=False: leave out the text layers."""
    digest = hashlib.sha256()
    layers, texts = [], []
    for layer in image.get_layers():
        if layer.is_text_layer():
            if not text:
                continue
            texts.append(layer.get_name())
        _, x, y = layer.get_offsets()
        layers.append([layer.get_name(), x, y, layer.get_width(), layer.get_height()])
        digest.update(raw(layer, None))
    return {"width": image.get_width(), "height": image.get_height(),
            "precision": image.get_precision().value_nick, "layers": layers, "text": texts,
            "pixels": digest.hexdigest()}


def dump(name, data):
    with open(path(name), "wb") as out:
        out.write(data)


# -- headless: results compared with the CLI's ----------------------------------------------------

def describe_argument(pspec):
    """What GIMP registered for an argument: its label, help, default and,
    for a choice, its nicks and labels, for a number, its range."""
    found = {"name": pspec.name, "label": pspec.get_nick(), "help": pspec.get_blurb(),
             "type": pspec.value_type.name, "spec": pspec.__gtype__.name}
    try:
        default = pspec.get_default_value()
        found["default"] = default if isinstance(default, (bool, int, float, str)) else None
    except Exception:  # noqa: BLE001 - an object argument has no plain default
        found["default"] = None
    if pspec.__gtype__.name == "GimpParamChoice":
        choice = Gimp.param_spec_choice_get_choice(pspec)
        found["choices"] = [[nick, choice.get_label(nick)] for nick in choice.list_nicks()]
        found["default"] = Gimp.param_spec_choice_get_default(pspec)
    if found["type"] in ("gint", "gdouble"):
        found["range"] = [pspec.minimum, pspec.maximum]
    return found


@check("headless")
def registration():
    found = {}
    for name in ("sharpfu-ai-sharpen", "sharpfu-ai-upscale", "sharpfu-ai-deblur",
                 "sharpfu-batch", "sharpfu-refine-matte", "sharpfu-select-subject"):
        proc = PDB.lookup_procedure(name)
        found[name] = None if proc is None else {
            "label": proc.get_menu_label(), "menu": list(proc.get_menu_paths()),
            "blurb": proc.get_blurb(), "help": proc.get_help(),
            "arguments": [a.name for a in proc.get_arguments()],
            "details": [describe_argument(a) for a in proc.get_arguments()],
            "returns": [a.name for a in proc.get_return_values()]}
    record("registration", procedures=found)


@check("headless")
def upscale_default():
    image = load("rgb8.png")
    result = run("sharpfu-ai-upscale", image, image.get_layers())
    export(image, "upscale_default.png")
    record("upscale_default", same_image=result["result_image"].get_id() == image.get_id(),
           image=describe(image), **plain(result))


@check("headless")
def strength():
    found = {}
    for percent in (0, 50):
        image = load("rgb8.png")
        found[str(percent)] = plain(run("sharpfu-ai-upscale", image, image.get_layers(),
                                        strength=float(percent)))
        export(image, "strength%d.png" % percent)
        image.delete()
    record("strength", **found)


@check("headless")
def upscale_4x_new_image():
    image = load("rgb8.png")
    before = describe(image)
    result = run("sharpfu-ai-upscale", image, image.get_layers(), scale="4", output="new-image")
    new = result["result_image"]
    export(new, "upscale_4x_new.png")
    record("upscale_4x_new_image", unchanged=describe(image) == before, new=describe(new),
           new_is_other=new.get_id() != image.get_id(), dirty=new.is_dirty(), **plain(result))


@check("headless")
def sharpen_rgba():
    image = load("rgba8.png")
    result = run("sharpfu-ai-sharpen", image, image.get_layers())
    export(image, "sharpen_rgba.png")
    record("sharpen_rgba", image=describe(image), **plain(result))


@check("headless")
def sharpen_2x_new_image_16bit():
    image = load("rgb16.png")
    result = run("sharpfu-ai-sharpen", image, image.get_layers(), scale="2", output="new-image")
    new = result["result_image"]
    export(new, "sharpen_2x_16.png")
    record("sharpen_2x_new_image_16bit", new=describe(new), **plain(result))


@check("headless")
def deblur_grey_alpha():
    image = load("la8.png")
    layer = image.get_layers()[0]
    result = run("sharpfu-ai-deblur", image, [layer])
    export(image, "deblur_grey.png")
    record("deblur_grey_alpha", base_type=image.get_base_type().value_nick,
           has_alpha=layer.has_alpha(), image=describe(image), **plain(result))


@check("headless")
def deblur_shows_the_blur():
    """Blind deconvolution with Show estimated blur: the kernel as a layer."""
    image = load("blurry.png")
    layer = image.get_layers()[0]
    result = run("sharpfu-ai-deblur", image, [layer], method="blind-deconvolution",
                 blur_size=9, show_blur=True)
    found = plain(result)
    found["layers"] = []
    for each in image.get_layers():
        _, x, y = each.get_offsets()
        found["layers"].append([each.get_name(), x, y, each.get_width(), each.get_height()])
        if each.get_name().endswith("(estimated blur)"):
            dump("blur_layer.raw", raw(each, "Y' u8"))
        else:
            dump("deblurred.raw", raw(each, "R'G'B' u8"))
    # a method that estimates no blur: said, and nothing changes
    plain_image = load("blurry.png")
    before = describe(plain_image)
    found["without_estimate"] = plain(run("sharpfu-ai-deblur", plain_image,
                                          [plain_image.get_layers()[0]], method="unsharp",
                                          show_blur=True))
    found["without_estimate_unchanged"] = describe(plain_image) == before
    image.delete()
    plain_image.delete()
    record("deblur_shows_the_blur", **found)


@check("headless")
def upscale_16bit():
    image = load("rgb16.png")
    result = run("sharpfu-ai-upscale", image, image.get_layers())
    export(image, "upscale_16.png")
    record("upscale_16bit", image=describe(image), **plain(result))


@check("headless")
def float_linear():
    # Read and written as perceptual float: what the model sees is dumped
    # on both sides of the job, so the test can repeat the job itself.
    image = load("rgb16.png")
    image.convert_precision(Gimp.Precision.FLOAT_LINEAR)
    layer = image.get_layers()[0]
    dump("float_in.raw", raw(layer, "R'G'B' float"))
    result = run("sharpfu-ai-deblur", image, [layer])
    dump("float_out.raw", raw(layer, "R'G'B' float"))
    record("float_linear", image=describe(image), **plain(result))


@check("headless")
def offset_layer():
    image = load("rgb8.png")
    small = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                                 Gio.File.new_for_path(path("small.png")))
    image.insert_layer(small, None, 0)
    small.set_offsets(10, 6)
    result = run("sharpfu-ai-upscale", image, [small])
    dump("offset_layer.raw", raw(small, "R'G'B'A u8"))
    record("offset_layer", image=describe(image), **plain(result))


@check("headless")
def upscale_ignores_selection():
    # Like Image > Scale Image: the whole layer, whatever is selected.
    image = load("rgb8.png")
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 12, 24, 16)
    result = run("sharpfu-ai-upscale", image, image.get_layers())
    Gimp.Selection.none(image)
    export(image, "upscale_selection.png")
    record("upscale_ignores_selection", image=describe(image), **plain(result))


@check("headless")
def offset_layer_selection():
    # A selection that covers part of an offset layer: image and layer
    # coordinates must not be mixed up.
    image = load("rgb8.png")
    small = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                                 Gio.File.new_for_path(path("small.png")))
    image.insert_layer(small, None, 0)
    small.set_offsets(10, 6)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 10, 30, 30)
    result = run("sharpfu-ai-deblur", image, [small])
    dump("offset_selection.raw", raw(small, "R'G'B'A u8"))
    record("offset_layer_selection", image=describe(image), **plain(result))


@check("headless")
def selection_rectangle():
    image = load("rgb8.png")
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 12, 24, 16)
    result = run("sharpfu-ai-deblur", image, image.get_layers())
    Gimp.Selection.none(image)
    export(image, "selection.png")
    record("selection_rectangle", image=describe(image), **plain(result))


@check("headless")
def selection_feathered():
    image = load("rgb8.png")
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 12, 8, 40, 32)
    Gimp.Selection.feather(image, 8.0)
    _, _, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    layer = image.get_layers()[0]
    # the selection's own values, to tell fully selected pixels from feathered ones
    mask = raw(image.get_selection(), "Y u8")
    dump("feather_mask.raw", mask)
    result = run("sharpfu-ai-sharpen", image, [layer])
    Gimp.Selection.none(image)
    export(image, "feathered.png")
    record("selection_feathered", bounds=[x1, y1, x2, y2], image=describe(image), **plain(result))


@check("headless")
def refusals():
    found = {}
    image = load("rgb8.png")
    image.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 16,
                          False, False, "")
    before = describe(image)
    found["indexed"] = dict(plain(run("sharpfu-ai-deblur", image, image.get_layers())),
                            unchanged=describe(image) == before)
    # From the menu: refused before the dialog would open (headless, it could not)
    for name in ("sharpfu-ai-upscale", "sharpfu-refine-matte"):
        found["indexed, from the menu: " + name] = dict(
            plain(run(name, image, image.get_layers(), run_mode=Gimp.RunMode.INTERACTIVE)),
            unchanged=describe(image) == before)
    image.delete()

    image = load("rgb8.png")
    group = Gimp.GroupLayer.new(image, "Group")
    image.insert_layer(group, None, 0)
    found["group"] = plain(run("sharpfu-ai-sharpen", image, [group]))
    found["no drawable"] = plain(run("sharpfu-ai-sharpen", image, []))
    layer = image.get_layers()[-1]
    layer.set_lock_content(True)
    before = describe(image)
    found["locked"] = dict(plain(run("sharpfu-ai-upscale", image, [layer])),
                           unchanged=describe(image) == before)
    found["locked, new image"] = plain(run("sharpfu-ai-upscale", image, [layer],
                                           output="new-image"))
    layer.set_lock_content(False)
    small = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                                 Gio.File.new_for_path(path("small.png")))
    image.insert_layer(small, None, 0)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 40, 30, 10, 10)    # away from `small`
    found["selection elsewhere"] = plain(run("sharpfu-ai-deblur", image, [small]))
    Gimp.Selection.none(image)
    before = describe(image)
    found["unknown method"] = dict(plain(run("sharpfu-ai-deblur", image, [layer],
                                             method="no-such-model")),
                                   unchanged=describe(image) == before)
    record("refusals", **found)


@check("headless")
def adapt():
    # Adaptation needs room for its training pairs (32 px at half size), so a
    # 96x96 layer; 10 steps keep it quick on a shared CPU.
    found = {}
    image, layer = noise_image(96)
    result = run("sharpfu-ai-upscale", image, [layer], adapt=True, adapt_steps=10)
    found["upscale"] = dict(plain(result), size=[image.get_width(), image.get_height()],
                            layer=place(layer))
    # AI Deblur adapts the deblurrer, whose pairs are cut at half size with
    # room for the blur: 168 px at least.
    image, layer = noise_image(192)
    found["deblur"] = dict(plain(run("sharpfu-ai-deblur", image, [layer], adapt=True,
                                     adapt_steps=10)), size=[image.get_width(), image.get_height()])
    for case, procedure, arguments in (
            ("unknown method", "sharpfu-ai-upscale", {"method": "no-such-model"}),
            ("sharpen 1x, too small", "sharpfu-ai-sharpen", {"scale": "1"})):
        image, layer = noise_image(96)
        before = describe(image)
        found[case] = dict(plain(run(procedure, image, [layer], adapt=True, adapt_steps=10,
                                     **arguments)), unchanged=describe(image) == before)
    record("adapt", **found)


@check("headless")
def batch_adapt():
    # Two layers, one adaptation on samples of both, then both upscaled with it.
    image, _ = noise_image(96)
    add_layer(image, "rgba8.png", None, (4, 2))
    found = {"layers": dict(batch(image, op="upscale", scale="2", adapt=True, adapt_steps=10),
                            size=[image.get_width(), image.get_height()])}
    image, _ = noise_image(192)
    found["deblur"] = batch(image, op="deblur", adapt=True, adapt_steps=10)
    # A folder: a PNG and a JPEG, sampled from the files before the batch starts.
    os.mkdir(path("adapt_in"))
    for name in ("noise.png", "noise.jpg"):
        image, _ = noise_image(96)
        image.flatten()             # JPEG has no alpha
        export(image, os.path.join("adapt_in", name))
    for leftover in Gimp.get_images():
        leftover.delete()
    found["folder"] = dict(batch(op="upscale", scale="2", target="folder", input_folder="adapt_in",
                                 output_folder="adapt_out", adapt=True, adapt_steps=10),
                           written=sorted(os.listdir(path("adapt_out"))),
                           images_left=len(Gimp.get_images()))
    record("batch_adapt", **found)


# -- headless: AI Refine Matte --------------------------------------------------------------------

@check("headless")
def guard():
    # 2100 x 2000 at 4x: 67 megapixels, over the 64 a script may make without allow-large
    image = Gimp.Image.new(2100, 2000, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(image, "big", 2100, 2000, Gimp.ImageType.RGB_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    before = describe(image)
    found = {"upscale": plain(run("sharpfu-ai-upscale", image, [layer], scale="4")),
             "batch": batch(image, op="upscale", scale="4", target="layers")}
    found["unchanged"] = describe(image) == before
    record("guard", **found)


def refine(image, layer, **arguments):
    """Call sharpfu-refine-matte as a script would."""
    proc = PDB.lookup_procedure("sharpfu-refine-matte")
    assert proc is not None, "sharpfu-refine-matte is not registered"
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    for name, value in arguments.items():
        config.set_property(name, value)
    values = proc.run(config)
    status = values.index(0)
    out = {"status": status.value_nick}
    if status == Gimp.PDBStatusType.SUCCESS:
        out["cutout"], out["method"] = values.index(1), values.index(2)
    elif values.length() > 1:
        out["message"] = values.index(1)
    return out


@check("headless")
def refine_matte():
    image = load("matte.png")
    layer = image.get_layers()[0]
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 26, 0, 38, 48)   # 6 px too generous
    dump("refine_selection.raw", raw(image.get_selection(), "Y u8"))
    result = refine(image, layer, source="selection", cutout=True)
    found = {k: v for k, v in result.items() if k != "cutout"}
    mask = layer.get_mask()
    found["has_mask"] = mask is not None
    if mask is not None:
        dump("refine_mask.raw", raw(mask, "Y u8"))
    cut = result.get("cutout")
    if cut is not None:
        found["cutout"] = {"name": cut.get_name(), "has_alpha": cut.has_alpha(),
                           "size": [cut.get_width(), cut.get_height()],
                           "position": image.get_item_position(cut)}
        dump("refine_cutout.raw", raw(cut, "R'G'B'A u8"))
    # again, from the mask it now has ("auto"): the mask is replaced, not added
    found["again"] = {k: v for k, v in refine(image, layer).items() if k != "cutout"}
    found["masks_after_again"] = layer.get_mask() is not None and len(image.get_layers()) == 2
    bare = load("rgb8.png")
    found["no outline"] = refine(bare, bare.get_layers()[0])
    proc = PDB.lookup_procedure("sharpfu-refine-matte")
    found["registration"] = {
        "label": proc.get_menu_label(), "menu": list(proc.get_menu_paths()),
        "arguments": [a.name for a in proc.get_arguments()],
        "returns": [a.name for a in proc.get_return_values()]}
    image.delete()
    bare.delete()
    record("refine_matte", **found)


# -- AI Select Subject (its own suite: a server with a subject finder) ----------------------------

def select_subject(image, layer, **arguments):
    """Call sharpfu-select-subject as a script would."""
    proc = PDB.lookup_procedure("sharpfu-select-subject")
    assert proc is not None, "sharpfu-select-subject is not registered"
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    for name, value in arguments.items():
        config.set_property(name, value)
    values = proc.run(config)
    status = values.index(0)
    out = {"status": status.value_nick}
    if status == Gimp.PDBStatusType.SUCCESS:
        out["cutout"], out["method"] = values.index(1), values.index(2)
    elif values.length() > 1:
        out["message"] = values.index(1)
    return out


def selection_state(image):
    """What Ctrl+Z must bring back after Select Subject: the layers, their
    masks, the channels and the selection."""
    masks = [hashlib.sha256(raw(l.get_mask(), "Y u8")).hexdigest() if l.get_mask() else None
             for l in image.get_layers()]
    return {"image": describe(image), "masks": masks,
            "channels": [c.get_name() for c in image.get_channels()],
            "selection": hashlib.sha256(raw(image.get_selection(), "Y u8")).hexdigest()}


@check("select")
def select_registration():
    proc = PDB.lookup_procedure("sharpfu-select-subject")
    record("select_registration", found=proc is not None, **({} if proc is None else {
        "label": proc.get_menu_label(), "menu": list(proc.get_menu_paths()),
        "arguments": [a.name for a in proc.get_arguments()],
        "returns": [a.name for a in proc.get_return_values()]}))


@check("select")
def select_replaces_the_selection():
    image = load("subject.png")
    layer = image.get_layers()[0]
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, 10, 10)    # an old selection
    found = {k: v for k, v in select_subject(image, layer).items() if k != "cutout"}
    dump("select_selection.raw", raw(image.get_selection(), "Y u8"))
    found["layers"] = len(image.get_layers())
    found["channels"] = [c.get_name() for c in image.get_channels()]   # none left behind
    found["mask"] = layer.get_mask() is not None
    found["layer_unchanged"] = raw(layer, None) == raw(load("subject.png").get_layers()[0], None)
    image.delete()
    record("select_replaces_the_selection", **found)


@check("select")
def select_as_layer_mask_with_a_cut_out():
    image = load("subject.png")
    layer = image.get_layers()[0]
    result = select_subject(image, layer, result="mask", refine=False, cutout=True)
    found = {k: v for k, v in result.items() if k != "cutout"}
    found["selection_empty"] = Gimp.Selection.is_empty(image)
    mask = layer.get_mask()
    found["has_mask"] = mask is not None
    if mask is not None:
        dump("select_mask.raw", raw(mask, "Y u8"))
    cut = result.get("cutout")
    if cut is not None:
        found["cutout"] = {"name": cut.get_name(), "has_alpha": cut.has_alpha(),
                           "size": [cut.get_width(), cut.get_height()],
                           "position": image.get_item_position(cut)}
    image.delete()
    record("select_as_layer_mask_with_a_cut_out", **found)


@check("select")
def select_offset_layer():
    # A layer smaller than the canvas, half off its right edge: selected at
    # its place, nothing selected outside it
    image = Gimp.Image.new(96, 64, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new_from_drawable(load("subject.png").get_layers()[0], image)
    image.insert_layer(layer, None, 0)
    layer.set_offsets(64, 8)
    found = {k: v for k, v in select_subject(image, layer).items() if k != "cutout"}
    dump("select_offset.raw", raw(image.get_selection(), "Y u8"))
    found["channels"] = [c.get_name() for c in image.get_channels()]
    image.delete()
    record("select_offset_layer", **found)


@check("select")
def select_finds_nothing():
    # a plain dark layer: no subject; the selection stays as it was
    image = Gimp.Image.new(40, 30, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(image, "Plain", 40, 30, Gimp.ImageType.RGB_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, 10, 10)
    before = selection_state(image)
    found = select_subject(image, layer)
    found.pop("cutout", None)
    found["unchanged"] = selection_state(image) == before
    image.delete()
    record("select_finds_nothing", **found)


@check("select")
def undo_select_subject():
    if not PARAMS.get("gui"):  # noqa: F821
        record("undo_select_subject", skipped="no GUI GIMP here")
        return
    image = load("subject.png")
    layer = image.get_layers()[0]
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, 10, 10)
    display, window = show(image, "undo_select_subject")

    def wait(wanted):
        deadline = time.time() + 15
        while time.time() < deadline:
            if selection_state(image) == wanted:
                return True
            time.sleep(0.25)
        return False
    before = selection_state(image)
    result = {k: v for k, v in select_subject(image, layer).items() if k != "cutout"}
    Gimp.displays_flush()
    after = selection_state(image)
    press(window, "ctrl+z")
    undone = wait(before)
    state_undone = selection_state(image)
    press(window, "ctrl+y")
    redone = wait(after)
    state_redone = selection_state(image)
    image.clean_all()
    display.delete()
    record("undo_select_subject", changed=after != before, undone=undone, redone=redone,
           before=before, after_undo=state_undone, after=after, after_redo=state_redone,
           **result)


# -- headless: AI Batch ---------------------------------------------------------------------------

def add_layer(image, name, parent=None, offsets=(0, 0), title=None):
    layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                                 Gio.File.new_for_path(path(name)))
    image.insert_layer(layer, parent, 0)
    layer.set_offsets(*offsets)
    if title:
        layer.set_name(title)
    return layer


def place(layer):
    _, x, y = layer.get_offsets()
    return [x, y, layer.get_width(), layer.get_height()]


def add_text_layer(image, text, offsets):
    layer = Gimp.TextLayer.new(image, text, Gimp.context_get_font(), 12.0, Gimp.Unit.pixel())
    image.insert_layer(layer, None, 0)
    layer.set_offsets(*offsets)
    return layer


def add_vector_layer(image, name):
    """A vector layer (GIMP 3.2 has them; None in 3.0)."""
    if not hasattr(Gimp, "VectorLayer"):
        return None
    shape = Gimp.Path.new(image, name)
    image.insert_path(shape, None, 0)
    shape.bezier_stroke_new_ellipse(20, 20, 10, 8, 0.0)
    layer = Gimp.VectorLayer.new(image, shape)
    image.insert_layer(layer, None, 0)
    layer.set_name(name)
    return layer


@check("headless")
def batch_layers():
    # Every kind of layer the batch meets: the background, an offset layer,
    # a layer inside a group, one with locked pixels, a text layer and (3.2)
    # a vector layer.
    image = load("rgb8.png")
    background = image.get_layers()[0]
    group = Gimp.GroupLayer.new(image, "Group")
    image.insert_layer(group, None, 0)
    inner = add_layer(image, "rgba8.png", group, (4, 2))
    small = add_layer(image, "small.png", None, (10, 6))
    locked = add_layer(image, "small.png", None, (30, 20), "locked")
    locked.set_lock_content(True)
    text = add_text_layer(image, "Hi", (2, 30))
    text_size = [text.get_width(), text.get_height()]
    vector = add_vector_layer(image, "ellipse")
    result = batch(image)           # the defaults: AI Upscale 2x on every layer
    layers = {}
    for name, layer, fmt in (("background", background, "R'G'B' u8"),
                             ("inner", inner, "R'G'B'A u8"), ("small", small, "R'G'B'A u8"),
                             ("locked", locked, "R'G'B'A u8")):
        dump("batch_layers_%s.raw" % name, raw(layer, fmt))
        layers[name] = place(layer)
    layers["text"] = place(text)
    record("batch_layers", size=[image.get_width(), image.get_height()], layers=layers,
           text_size=text_size, text_layer=text.is_text_layer(),
           vector_layer=vector is not None and vector.is_vector_layer(), **result)


@check("headless")
def batch_failing_layer():
    # Two layers at 2x; the server refuses the one with a NaN. The other one's
    # answer is in, yet the image stays exactly as it was: never half-changed.
    image = load("rgb16.png")
    image.convert_precision(Gimp.Precision.FLOAT_LINEAR)
    add_layer(image, "small.png", None, (6, 4), "good")
    broken = add_layer(image, "small.png", None, (20, 10), "broken")
    nan = float("nan")
    buffer = broken.get_buffer()
    buffer.set(Gegl.Rectangle.new(3, 3, 1, 1), "RGBA float", struct.pack("<4f", nan, nan, nan,
                                                                          1.0))
    buffer.flush()
    before = describe(image)
    result = batch(image, op="upscale", scale="2")
    record("batch_failing_layer", unchanged=describe(image) == before, **result)


@check("headless")
def batch_images():
    # Three open images; the middle one holds a NaN, which the server refuses:
    # that image stays as it was, and the batch goes on to the third.
    first = load("rgb8.png")
    broken = load("rgb16.png")
    broken.convert_precision(Gimp.Precision.FLOAT_LINEAR)
    buffer = broken.get_layers()[0].get_buffer()
    nan = float("nan")
    buffer.set(Gegl.Rectangle.new(3, 3, 1, 1), "RGB float", struct.pack("<3f", nan, nan, nan))
    buffer.flush()
    before = describe(broken)
    last = load("la8.png")
    result = batch(op="deblur", target="images")
    export(first, "batch_images_first.png")
    export(last, "batch_images_last.png")
    record("batch_images", broken_name="%s-%d" % (broken.get_name(), broken.get_id()),
           broken_unchanged=describe(broken) == before, **result)


@check("headless")
def batch_folder():
    # Three PNGs (one of them 16-bit), a JPEG, and a file that is no image,
    # which fails in the middle of the batch.
    os.mkdir(path("in"))
    for name in ("rgb8.png", "rgb16.png", "small.png"):
        shutil.copy(path(name), path(os.path.join("in", name)))
    export(load("rgb8.png"), os.path.join("in", "photo.jpg"))
    with open(path(os.path.join("in", "q-corrupt.png")), "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + b"not a PNG at all" * 8)
    for leftover in Gimp.get_images():
        leftover.delete()
    result = batch(op="upscale", scale="2", target="folder", input_folder="in",
                   output_folder="out")
    record("batch_folder", written=sorted(os.listdir(path("out"))),
           inputs=sorted(os.listdir(path("in"))), images_left=len(Gimp.get_images()), **result)


@check("headless")
def batch_refusals():
    found = {}
    os.mkdir(path("same"))
    shutil.copy(path("rgb8.png"), path(os.path.join("same", "rgb8.png")))
    found["same folder"] = batch(target="folder", input_folder="same", output_folder="same")
    found["no folders"] = batch(target="folder")
    found["upscale 1x"] = batch(image=load("rgb8.png"), op="upscale", scale="1")
    found["no image"] = batch(target="layers")
    found["same folder"]["unchanged"] = os.listdir(path("same")) == ["rgb8.png"]
    record("batch_refusals", **found)


# -- headless, with no server to be had -----------------------------------------------------------

@check("stopped")
def stopped_server():
    found = {}
    for procedure, arguments in (("sharpfu-ai-upscale", {}), ("sharpfu-ai-deblur", {})):
        image = load("rgb8.png")
        image.select_rectangle(Gimp.ChannelOps.REPLACE, 4, 4, 20, 20)
        before = describe(image)
        result = plain(run(procedure, image, image.get_layers(), **arguments))
        found[procedure] = dict(result, unchanged=describe(image) == before)
    os.mkdir(path("in"))
    shutil.copy(path("rgb8.png"), path(os.path.join("in", "rgb8.png")))
    images = len(Gimp.get_images())
    found["sharpfu-batch"] = dict(batch(target="folder", input_folder="in", output_folder="out"),
                                  written=os.listdir(path("out")),
                                  images_left=len(Gimp.get_images()) - images)
    record("stopped_server", **found)


# -- GUI under Xvfb: undo, the dialog, cancelling -------------------------------------------------

def xdotool(*args):
    return subprocess.run(("xdotool",) + args, capture_output=True, text=True).stdout.strip()


def show(image, title):
    """Open a display whose window title names `title`; returns (display, window id)."""
    image.set_file(Gio.File.new_for_path(path(title + ".xcf")))
    display = Gimp.Display.new(image)
    Gimp.displays_flush()
    image.clean_all()
    for _ in range(50):
        windows = xdotool("search", "--onlyvisible", "--name", title).split()
        if windows:
            time.sleep(0.5)
            return display, windows[0]
        time.sleep(0.2)
    raise AssertionError("no window titled " + title)


def press(window, keys):
    xdotool("windowfocus", "--sync", window)
    xdotool("key", "--clearmodifiers", keys)


def wait_for(image, wanted, seconds=15, text=True):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if describe(image, text) == wanted:
            return True
        time.sleep(0.25)
    return False


def undo_check(name, image, procedure, **arguments):
    """One Ctrl+Z undoes the procedure, Ctrl+Y redoes it. `procedure` is a
    filter's name, or a function that runs something on the image."""
    display, window = show(image, name)
    before = describe(image)
    if callable(procedure):
        result = procedure(image)
    else:
        result = plain(run(procedure, image, image.get_layers(), **arguments))
    Gimp.displays_flush()
    after = describe(image)
    # GIMP 3.2 redoes the scaling of a text layer at the layer's old size,
    # after its own Image > Scale Image too (checked without SharpFu), so
    # Ctrl+Y is judged on the other layers.
    after_but_text = describe(image, text=False)
    press(window, "ctrl+z")
    undone = wait_for(image, before)
    state_undone = describe(image)
    press(window, "ctrl+y")
    redone = wait_for(image, after_but_text, text=False)
    state_redone = describe(image)
    image.clean_all()
    display.delete()
    record(name, changed=after != before, undone=undone, redone=redone, before=before,
           after_undo=state_undone, after=after, after_redo=state_redone, **result)


@check("gui")
def undo_upscale():
    undo_check("undo_upscale", load("rgb8.png"), "sharpfu-ai-upscale")


@check("gui")
def undo_upscale_adapt():
    image, layer = noise_image(96)
    undo_check("undo_upscale_adapt", image, "sharpfu-ai-upscale", adapt=True, adapt_steps=10)


@check("gui")
def undo_deblur_selection():
    image = load("rgba8.png")
    image.undo_disable()              # the selection is set-up, not part of what is undone
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 6, 6, 30, 24)
    Gimp.Selection.feather(image, 4.0)
    image.undo_enable()
    undo_check("undo_deblur_selection", image, "sharpfu-ai-deblur")


@check("gui")
def undo_batch():
    # Three layers at 2x, one of them offset, and a text layer: still one step.
    image = load("rgb8.png")
    image.undo_disable()
    add_layer(image, "rgba8.png", None, (4, 2))
    add_layer(image, "small.png", None, (10, 6))
    add_text_layer(image, "Hi", (2, 30))
    image.undo_enable()
    undo_check("undo_batch", image,
               lambda image: batch(image, op="upscale", scale="2", target="layers"))


@check("gui")
def undo_refine_matte():
    # The mask, the new cut-out layer and the selection left as it was: one step.
    image = load("matte.png")
    layer = image.get_layers()[0]
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 26, 0, 38, 48)
    display, window = show(image, "undo_refine_matte")

    def state():
        mask = layer.get_mask()
        return {"image": describe(image),
                "mask": None if mask is None else hashlib.sha256(raw(mask, "Y u8")).hexdigest()}

    def wait(wanted):
        deadline = time.time() + 15
        while time.time() < deadline:
            if state() == wanted:
                return True
            time.sleep(0.25)
        return False
    before = state()
    result = {k: v for k, v in refine(image, layer, source="selection", cutout=True).items()
              if k != "cutout"}
    Gimp.displays_flush()
    after = state()
    press(window, "ctrl+z")
    undone = wait(before)
    state_undone = state()
    press(window, "ctrl+y")
    redone = wait(after)
    state_redone = state()
    image.clean_all()
    display.delete()
    record("undo_refine_matte", changed=after != before, undone=undone, redone=redone,
           before=before, after_undo=state_undone, after=after, after_redo=state_redone,
           **result)

def accept_dialog(title):
    """Press Return in the dialog titled `title` once it is up, as a user
    would press OK; returns the helper process (exit 0: pressed)."""
    return subprocess.Popen(["sh", "-c", "for i in $(seq 120); do w=$(xdotool search "
                             "--onlyvisible --name '^%s$' | tail -n 1); "
                             "if [ -n \"$w\" ]; then sleep 0.5; xdotool windowfocus --sync $w "
                             "key Return; exit 0; fi; sleep 0.25; done; exit 1" % title])


@check("gui")
def dialog():
    image = load("rgb8.png")
    display, window = show(image, "dialog_test")
    helper = accept_dialog("AI Upscale")
    result = plain(run("sharpfu-ai-upscale", image, image.get_layers(),
                       run_mode=Gimp.RunMode.INTERACTIVE))
    helper_status = helper.wait(timeout=60)
    size = [image.get_width(), image.get_height()]
    image.clean_all()
    display.delete()
    record("dialog", helper=helper_status, size=size, **result)


@check("gui")
def batch_dialog():
    # The defaults: AI Upscale 2x on every layer of this image.
    image = load("rgb8.png")
    display, window = show(image, "batch_dialog_test")
    helper = accept_dialog("AI Batch")
    result = batch(image, run_mode=Gimp.RunMode.INTERACTIVE)
    helper_status = helper.wait(timeout=60)
    size = [image.get_width(), image.get_height()]
    image.clean_all()
    display.delete()
    record("batch_dialog", helper=helper_status, size=size, **result)


def mnemonics(widget, found):
    """The access keys of every visible label under widget, but for those in
    menus and popovers (the Reset button's), which only work while open."""
    if not widget.get_visible() or isinstance(widget, (Gtk.Menu, Gtk.MenuItem, Gtk.Popover)):
        return found
    if isinstance(widget, Gtk.Label) and widget.get_use_underline():
        key = widget.get_mnemonic_keyval()
        if key != Gdk.KEY_VoidSymbol:
            found.append([Gdk.keyval_name(key).lower(), widget.get_label()])
    elif isinstance(widget, GimpUi.SpinScale):
        # A spin scale draws its own label and registers its access key with
        # the window (gtk_window_add_mnemonic), so there is no Gtk.Label to ask
        label = widget.get_label() or ""
        if "_" in label[:-1]:
            found.append([label[label.index("_") + 1].lower(), label])
    if isinstance(widget, Gtk.Container):
        for child in widget.get_children():
            mnemonics(child, found)
    return found


def radio_states(window, name):
    return {label: button.get_sensitive() for label, button in
            dialogs.options(window, name).items()}


@check("gui")
def dialog_fields():
    """The dialogs as the plug-in builds them (its own dialogs module),
    inspected before they are shown."""
    plugin_modules()
    import in_place
    from sharpfu_client.operations import PROCEDURES
    found = {}
    image = load("rgb8.png")
    layer = image.get_layers()[0]
    for name in ("sharpfu-ai-upscale", "sharpfu-ai-sharpen", "sharpfu-ai-deblur",
                 "sharpfu-batch", "sharpfu-refine-matte"):
        proc = PDB.lookup_procedure(name)
        config = proc.create_config()
        if name == "sharpfu-batch":
            config.set_property("image", image)
        size = None
        if name == "sharpfu-ai-upscale":
            def size(config):
                return in_place.result_size(image, layer, int(config.get_property("scale")))
        window = dialogs.build(proc, config, PROCEDURES[name], image, [layer], size)
        window.show_all()       # as run() does; the text field the dropdown replaced stays hidden
        entry = {"methods": window.sharpfu_methods.entries,
                 "keys": mnemonics(window, [])}
        if name != "sharpfu-refine-matte":
            steps = window.get_widget("adapt-steps", GObject.TYPE_NONE)
            entry["steps_sensitive"] = [steps.get_sensitive()]
            config.set_property("adapt", True)
            entry["steps_sensitive"].append(steps.get_sensitive())
        if name == "sharpfu-ai-upscale":
            entry["size"] = [window.sharpfu_size.label.get_text()]
            config.set_property("scale", "4")
            entry["size"].append(window.sharpfu_size.label.get_text())
            entry["methods_4x"] = window.sharpfu_methods.entries
        if name == "sharpfu-batch":
            config.set_property("op", "upscale")
            entry["scales_upscale"] = radio_states(window, "scale")
            config.set_property("op", "sharpen")
            entry["scales_sharpen"] = radio_states(window, "scale")
            entry["methods_sharpen"] = window.sharpfu_methods.entries
        if name == "sharpfu-refine-matte":
            entry["sources"] = radio_states(window, "source")
        if name == "sharpfu-ai-deblur":
            # Show estimated blur: greyed out unless the deblurrer estimates one
            show = window.get_widget("show-blur", GObject.TYPE_NONE)
            entry["show_blur_sensitive"] = [show.get_sensitive()]
            window.sharpfu_methods.combo.set_active_id("blind-deconvolution")
            entry["show_blur_sensitive"].append(show.get_sensitive())
        window.destroy()
        found[name] = entry
    image.delete()
    record("dialog_fields", procedures=found)


def plugin_modules():
    """The plug-in's own modules (dialogs, server_job, ...), importable here."""
    global dialogs, Gdk, GimpUi, GLib, Gtk
    folder = os.path.join(Gimp.directory(), "plug-ins", "sharpfu")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import dialogs
    from gi.repository import Gdk, GimpUi, GLib, Gtk
    dialogs.init()


def press_preview(name, image, layer, dump_as=None, **settings):
    """Build the plug-in's dialog for `name` with `settings`, press its
    Preview button and let GTK's main loop run until the answer is in;
    returns what the dialog showed, the before and after dumped to
    dump_as + ".before.raw" and ".after.raw" (their Frames' bytes)."""
    from sharpfu_client.operations import PROCEDURES
    proc = PDB.lookup_procedure(name)
    config = proc.create_config()
    for key, value in settings.items():
        config.set_property(key.replace("_", "-"), value)
    window = dialogs.build(proc, config, PROCEDURES[name], image, [layer])
    window.show_all()
    pane = window.sharpfu_preview
    texts, iterations = [], 0
    pane.button.clicked()
    deadline = time.time() + 300
    while time.time() < deadline:
        text = pane.status.get_text()
        if not texts or texts[-1] != text:
            texts.append(text)
        if not pane.busy:
            break
        GLib.MainContext.default().iteration(False)
        iterations += 1
        time.sleep(0.02)
    found = {"texts": texts, "iterations": iterations, "row_visible": pane.row.get_visible()}
    if pane.after is not None:
        crop = pane.crop
        found["target"] = [crop.target.x, crop.target.y, crop.target.width, crop.target.height]
        found["source"] = [crop.source.x, crop.source.y, crop.source.width, crop.source.height]
        for which, frame in (("before", pane.before), ("after", pane.after)):
            found[which] = [frame.width, frame.height, frame.channels, frame.format]
            if dump_as:
                dump("%s.%s.raw" % (dump_as, which), bytes(frame.data))
        found["images"] = [[shown.get_pixbuf().get_width(), shown.get_pixbuf().get_height()]
                           for shown in pane.images]
        found["captions"] = [caption.get_text() for caption in pane.captions]
        config.set_property("strength", 50.0)
        found["stale"] = [pane.status.get_text(), pane.row.get_sensitive()]
    window.destroy()
    return found


@check("gui")
def preview():
    """The Preview button in the filters' dialogs, and the filters' results
    on the same layers, for test_gimp.py to compare."""
    plugin_modules()
    found = {}
    # Upscale: the preview looks around the selection (the filter ignores it)
    image, layer = noise_image(512, 384, alpha=False)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 270, 180, 60, 40)
    found["upscale"] = press_preview("sharpfu-ai-upscale", image, layer, "upscale", scale="2",
                                     strength=70.0)
    # Sharpen at 2x: the deblurrer, then the upscaler. SharpFu's SPAN-32 by
    # name: on full-range noise the deblurrer's float output on a crop and on
    # the whole layer differ below a level, and the fine-tuned authors' SPAN
    # (the default) turns that into tens of levels; on photos it does not
    found["sharpen"] = press_preview("sharpfu-ai-sharpen", image, layer, "sharpen", scale="2",
                                     method="span")
    for procedure, strength, name, method in (
            ("sharpfu-ai-upscale", 70.0, "upscale_filter", ""),
            ("sharpfu-ai-upscale", 0.0, "upscale_plain", ""),
            ("sharpfu-ai-sharpen", 100.0, "sharpen_filter", "span")):
        result = run(procedure, image, [layer], scale="2", output="new-image", strength=strength,
                     method=method)
        dump(name + ".raw", raw(result["result_image"].get_layers()[0], "R'G'B' u8"))
        found[name] = plain(result)
    # Deblur at 1x: the filter sends the selection with context from (75, 13)
    image, layer = noise_image(400, 300, alpha=False)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 203, 141, 120, 100)
    found["deblur"] = press_preview("sharpfu-ai-deblur", image, layer, "deblur")
    dump("deblur_layer.raw", raw(layer, "R'G'B' u8"))
    found["deblur_filter"] = plain(run("sharpfu-ai-deblur", image, [layer]))
    dump("deblur_filter.raw", raw(layer, "R'G'B' u8"))
    # No server: said in words, in the dialog
    os.environ["SHARPFU_ENDPOINT"] = "tcp://127.0.0.1:9"
    try:
        found["no_server"] = press_preview("sharpfu-ai-deblur", image, layer)
    finally:
        del os.environ["SHARPFU_ENDPOINT"]
    record("preview", **found)


def noise_image(width, height=None, alpha=True):
    """A width x height (square by default) image of one layer of noise."""
    height = height or width
    image = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
    image.undo_disable()
    layer = Gimp.Layer.new(image, "noise", width, height, Gimp.ImageType.RGBA_IMAGE if alpha
                           else Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), "R'G'B'A u8" if alpha else "R'G'B' u8",
               os.urandom(width * height * (4 if alpha else 3)))
    buffer.flush()
    image.undo_enable()
    return image, layer


def cancel_check(name, image, call, job, done=()):
    """Click Cancel once the server has `job` (say "upscale 2400x2400"), and
    has done the job described by `done`, if given."""
    display, window = show(image, name)
    before = describe(image)
    geometry = dict(line.split("=") for line in
                    xdotool("getwindowgeometry", "--shell", window).splitlines())
    screen = PARAMS["screenshots"]  # noqa: F821
    subprocess.run(["cp", os.path.join(screen, "Xvfb_screen0"), path("before.xwd")], check=True)
    helper = subprocess.Popen([sys.executable if os.path.exists(sys.executable) else "python3",
                               path("press_cancel.py"), path("before.xwd"),
                               os.path.join(screen, "Xvfb_screen0"), geometry["X"],
                               geometry["Y"], geometry["WIDTH"], geometry["HEIGHT"],
                               PARAMS["server_log"], job] + list(done),  # noqa: F821
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_from = os.path.getsize(PARAMS["server_log"])  # noqa: F821
    result = call()
    helper_output = helper.communicate(timeout=60)[0]
    unchanged = describe(image) == before
    image.clean_all()
    display.delete()
    record(name, unchanged=unchanged, helper=helper_output, log_from=log_from,
           log_to=os.path.getsize(PARAMS["server_log"]), **result)  # noqa: F821


@check("gui")
def cancel():
    # A job long enough to press Cancel while the server works on it.
    image, layer = noise_image(2400)
    cancel_check("cancel", image, lambda: plain(run("sharpfu-ai-upscale", image, [layer])),
                 "upscale 2400x2400")


@check("gui")
def cancel_adapt():
    # Cancel while the server adapts (5000 steps: far longer than the click takes).
    image, layer = noise_image(128)
    cancel_check("cancel_adapt", image,
                 lambda: plain(run("sharpfu-ai-upscale", image, [layer], adapt=True,
                                   adapt_steps=5000)), "adapt 128x128")


@check("gui")
def cancel_batch():
    # The small top layer is done first, and its result waits for the big
    # one, which is cancelled: neither may reach the image.
    image, _ = noise_image(2400)
    image.undo_disable()
    add_layer(image, "small.png", None, (10, 6))
    image.undo_enable()
    cancel_check("cancel_batch", image,
                 lambda: batch(image, op="upscale", scale="2", target="layers"),
                 "upscale 2400x2400", ["upscale 24x16"])


@check("gui")
def progress_pace():
    """Every call the plug-in makes to GIMP's progress while a filter's job
    of 10 s or more runs on the CPU, timed: the filter's own job
    (server_job.run, as AI Upscale runs it) in this GIMP, with GIMP's
    progress functions wrapped. Last of the suite: the progress is this
    script's."""
    plugin_modules()
    import in_place
    import server_job
    real, calls = server_job.Gimp, []

    class Timed(object):
        def __getattr__(self, name):
            function = getattr(real, name)
            if not name.startswith("progress_"):
                return function

            def timed(*args):
                calls.append([round(time.time() - started, 3), name] + [
                    a if isinstance(a, (float, str)) else None for a in args])
                return function(*args)
            return timed
    server_job.Gimp = Timed()
    try:
        for side in (800, 1200, 1800):      # larger until a job takes 10 s
            image, layer = noise_image(side, alpha=False)
            frame = in_place.LayerChange(image, layer, 2).read()
            image.delete()
            del calls[:]
            started = time.time()
            result = server_job.run("upscale", [frame], {"scale": 2}, "AI Upscale", started)
            server_job.finish("AI Upscale", result.words.done(result), False)
            seconds = time.time() - started
            if seconds >= 10:
                break
    finally:
        server_job.Gimp = real
        # This script's own progress, which a plug-in's ends with it: left
        # open, a display's status bar would show it, and a click on its
        # Cancel would end the script
        Gimp.progress_end()
    record("progress_pace", side=side, seconds=round(seconds, 2), calls=calls)


for function in SUITES[PARAMS["suite"]]:  # noqa: F821
    if PARAMS.get("only") and function.__name__ not in PARAMS["only"]:  # noqa: F821
        continue    # a quick rerun of some checks
    try:
        function()
    except Exception:
        record(function.__name__, error=traceback.format_exc())
    for leftover in Gimp.get_images():
        leftover.clean_all()
        leftover.delete()
