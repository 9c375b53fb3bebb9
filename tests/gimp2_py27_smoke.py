"""Run by test_gimp2_py27.py under a real Python 2.7, as GIMP 2.10's Python:
the GIMP 2.10 plug-in, against the gimpfu double and a live server, must
work there (byte strings in pixel regions and messages), not merely parse.

    python2.7 gimp2_py27_smoke.py PLUGIN_FILE
"""
from __future__ import print_function

import imp
import os
import sys

import gimpfu
from gimpfu import RGB, RGBA_IMAGE, RUN_INTERACTIVE, RUN_NONINTERACTIVE, Image, make_layer

from sharpfu_client import Client, Frame

plugin_file = sys.argv[1]
imp.load_source("sharpfu_gimp2", plugin_file)
assert "python-fu-sharpfu-ai-upscale" in gimpfu.registered

width, height = 20, 14
data = bytes(bytearray((i * 7 + i // 3) % 256 for i in range(width * height * 4)))
image = Image(26, 18, RGB)
layer = make_layer(image, "subject \xc3\xa9t\xc3\xa9", width, height, RGBA_IMAGE, data, (3, 2))
before = image.snapshot()

client = Client(autostart=False)
wanted = client.run("upscale", [Frame(data, width, height, 4, "u8")], {"scale": 2})
wanted = wanted.frame("image").data
client.close()

status, values = gimpfu.run("python-fu-sharpfu-ai-upscale", RUN_INTERACTIVE, image, layer, "2",
                            "in-place", "", 0)
assert status == "success", values
assert type(values[1]) is str and values[1], values
assert bytes(layer.pixels) == wanted, "the layer does not hold the server's pixels"
assert (image.width, image.height, layer.offsets) == (52, 36, (6, 4))
assert image.steps() == 1 and image.unsaved_writes == []
image.undo()
assert image.snapshot() == before

# The selection, Refine Matte, and a server error whose message comes back as unicode.
image.selection.pixels[5 * 26 + 5:5 * 26 + 15] = b"\xff" * 10
status, values = gimpfu.run("python-fu-sharpfu-ai-deblur", RUN_NONINTERACTIVE, image, layer, "",
                            0)
assert status == "success", values
status, values = gimpfu.run("python-fu-sharpfu-refine-matte", RUN_NONINTERACTIVE, image, layer,
                            "", 0)
assert status == "success" and layer.mask is not None, values
status, error = gimpfu.run("python-fu-sharpfu-ai-deblur", RUN_NONINTERACTIVE, image, layer,
                           u"no-such-model-\u00e9", 0)
assert status == "execution-error", error
assert "no-such-model" in gimpfu.messages[-1] and type(gimpfu.messages[-1]) is str

nowhere = os.path.join(os.path.dirname(os.environ["SHARPFU_CONFIG"]), "nowhere.json")
with open(nowhere, "w") as handle:
    handle.write('{"endpoint": "tcp://127.0.0.1:9", "server_command": null}')
os.environ["SHARPFU_CONFIG"] = nowhere
status, error = gimpfu.run("python-fu-sharpfu-ai-deblur", RUN_INTERACTIVE, image, layer, "", 0)
assert status == "success" and "No SharpFu server answers" in gimpfu.messages[-1], error
print("ok", sys.version_info[0], sys.version_info[1])
