# Runs INSIDE GIMP 3 as a python-fu-eval batch script, with PARAMS prepended
# by gimp_runner: {"results": JSON-lines file, "suite": which checks to run,
# "work": the folder with the test images}. Each check records what it saw;
# test_gimp.py judges it. A check that raises is recorded with its traceback
# and the others still run, so one GIMP start covers the whole suite.
import hashlib
import json
import os
import subprocess
import sys
import time
import traceback

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

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
        config.set_property(name, value)
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


def plain(result):
    return {k: v for k, v in result.items() if k != "result_image"}


def raw(drawable, fmt):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE))


def describe(image):
    """Everything Ctrl+Z must restore: size, precision, and each layer's
    geometry and pixels in its own format."""
    digest = hashlib.sha256()
    layers = []
    for layer in image.get_layers():
        _, x, y = layer.get_offsets()
        layers.append([layer.get_name(), x, y, layer.get_width(), layer.get_height()])
        digest.update(raw(layer, None))
    return {"width": image.get_width(), "height": image.get_height(),
            "precision": image.get_precision().value_nick, "layers": layers,
            "pixels": digest.hexdigest()}


def dump(name, data):
    with open(path(name), "wb") as out:
        out.write(data)


# -- headless: results compared with the CLI's ----------------------------------------------------

@check("headless")
def registration():
    found = {}
    for name in ("sharpfu-ai-sharpen", "sharpfu-ai-upscale", "sharpfu-ai-deblur"):
        proc = PDB.lookup_procedure(name)
        found[name] = None if proc is None else {
            "label": proc.get_menu_label(), "menu": list(proc.get_menu_paths()),
            "arguments": [a.name for a in proc.get_arguments()],
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


def wait_for(image, wanted, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if describe(image) == wanted:
            return True
        time.sleep(0.25)
    return False


def undo_check(name, image, procedure, **arguments):
    display, window = show(image, name)
    before = describe(image)
    result = plain(run(procedure, image, image.get_layers(), **arguments))
    Gimp.displays_flush()
    after = describe(image)
    press(window, "ctrl+z")
    undone = wait_for(image, before)
    state_undone = describe(image)
    press(window, "ctrl+y")
    redone = wait_for(image, after)
    image.clean_all()
    display.delete()
    record(name, changed=after != before, undone=undone, redone=redone, before=before,
           after_undo=state_undone, **result)


@check("gui")
def undo_upscale():
    undo_check("undo_upscale", load("rgb8.png"), "sharpfu-ai-upscale")


@check("gui")
def undo_deblur_selection():
    image = load("rgba8.png")
    image.undo_disable()              # the selection is set-up, not part of what is undone
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 6, 6, 30, 24)
    Gimp.Selection.feather(image, 4.0)
    image.undo_enable()
    undo_check("undo_deblur_selection", image, "sharpfu-ai-deblur")


@check("gui")
def dialog():
    image = load("rgb8.png")
    display, window = show(image, "dialog_test")
    # Accept the dialog with Return once it is up, as a user would press OK.
    helper = subprocess.Popen(["sh", "-c", "for i in $(seq 120); do w=$(xdotool search "
                               "--onlyvisible --name '^AI Upscale$' | tail -n 1); "
                               "if [ -n \"$w\" ]; then sleep 0.5; xdotool windowfocus --sync $w "
                               "key Return; exit 0; fi; sleep 0.25; done; exit 1"])
    result = plain(run("sharpfu-ai-upscale", image, image.get_layers(),
                       run_mode=Gimp.RunMode.INTERACTIVE))
    helper_status = helper.wait(timeout=60)
    size = [image.get_width(), image.get_height()]
    image.clean_all()
    display.delete()
    record("dialog", helper=helper_status, size=size, **result)


@check("gui")
def cancel():
    # A job long enough to press Cancel while the server works on it.
    side = 2400
    image = Gimp.Image.new(side, side, Gimp.ImageBaseType.RGB)
    image.undo_disable()
    layer = Gimp.Layer.new(image, "noise", side, side, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, side, side), "R'G'B'A u8", os.urandom(side * side * 4))
    buffer.flush()
    image.undo_enable()
    display, window = show(image, "cancel_test")
    before = describe(image)
    geometry = dict(line.split("=") for line in
                    xdotool("getwindowgeometry", "--shell", window).splitlines())
    screen = PARAMS["screenshots"]  # noqa: F821
    subprocess.run(["cp", os.path.join(screen, "Xvfb_screen0"), path("before.xwd")], check=True)
    helper = subprocess.Popen([sys.executable if os.path.exists(sys.executable) else "python3",
                               path("press_cancel.py"), path("before.xwd"),
                               os.path.join(screen, "Xvfb_screen0"), geometry["X"],
                               geometry["Y"], geometry["WIDTH"], geometry["HEIGHT"],
                               PARAMS["server_log"], "upscale %dx%d" % (side, side)],  # noqa: F821
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result = plain(run("sharpfu-ai-upscale", image, [layer]))
    helper_output = helper.communicate(timeout=60)[0]
    unchanged = describe(image) == before
    image.clean_all()
    display.delete()
    record("cancel", unchanged=unchanged, helper=helper_output, **result)


for function in SUITES[PARAMS["suite"]]:  # noqa: F821
    try:
        function()
    except Exception:
        record(function.__name__, error=traceback.format_exc())
    for leftover in Gimp.get_images():
        leftover.clean_all()
        leftover.delete()
