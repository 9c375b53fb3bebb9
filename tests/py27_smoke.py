"""Run by test_client_py27.py under a real Python 2.7 (as in GIMP 2.10):
the client library must work there, not merely parse."""
from __future__ import print_function

import array
import sys

from sharpfu_client import Cancelled, Client, Frame
from sharpfu_client.adapt import crop, sample_tiles

endpoint, config_path = sys.argv[1], sys.argv[2]
client = Client(endpoint=endpoint, config_path=config_path, autostart=False)
status = client.connect()
assert status["server"]["protocols"] == [1], status

pixels = bytes(bytearray(range(256)) * 12)          # 32 x 24 RGBA u8
for use_shm in (True, False):
    client.use_shm = use_shm
    result = client.run("echo", [Frame(pixels, 32, 24, 4, "u8")])
    assert result.frame("image").data == pixels, "round trip differs"

samples = array.array("H", range(0, 65535, 97)[:16 * 16 * 1])
seen = []
result = client.run("upscale", [Frame(samples.tostring(), 16, 16, 1, "u16")], {"scale": 2},
                    progress=lambda fraction, stage: seen.append(fraction))
image = result.frame("image")
assert (image.width, image.height, image.format) == (32, 32, "u16")
assert len(image.data) == 32 * 32 * 2 and seen[-1] == 1.0

# Adaptation samples are cut in pure Python (GIMP 2.10 has no numpy).
tile = crop(Frame(pixels, 32, 24, 4, "u8"), 3, 2, 5, 4)
assert (tile.width, tile.height, tile.name) == (5, 4, "sample")
assert tile.data == b"".join(pixels[(y * 32 + 3) * 4:(y * 32 + 8) * 4] for y in range(2, 6))
assert [t.width for t in sample_tiles([Frame(pixels, 32, 24, 4, "u8")], 3, 16)] == [16] * 3

job = client.submit("echo", [Frame(pixels, 32, 24, 4, "u8")], {"delay": 20, "steps": 200})
try:
    client.wait(job, cancelled=lambda: True)
    raise AssertionError("not cancelled")
except Cancelled:
    pass
client.close()
print("ok", sys.version_info[0], sys.version_info[1])
