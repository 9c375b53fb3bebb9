"""The adapt op through a live server: protocol errors, cancel, the client
library's samples, and `sharpfu upscale --adapt` end to end."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from sharpfu_client import Cancelled, Frame, JobFailed
from sharpfu_client.adapt import adapt, crop, sample_tiles
from sharpfu_cli import imageio
from sharpfu_cli.imageio import Picture
from test_adapt import text_image
from test_cli import ok, run_cli

pytestmark = pytest.mark.slow   # adaptation through live servers

rng = np.random.default_rng(5)


def frame(array, name="sample"):
    height, width, channels = array.shape
    fmt = {np.dtype("u1"): "u8", np.dtype("<u2"): "u16", np.dtype("<f4"): "f32"}[array.dtype]
    return Frame(np.ascontiguousarray(array), width, height, channels, fmt, name)


def refused(client, frames, params, code):
    with pytest.raises(JobFailed) as error:
        client.run("adapt", frames, params)
    assert error.value.code == code, error.value.message
    return error.value.message


def test_bad_adapt_requests_are_refused_before_any_work(server):
    sample = frame(text_image(1, 96))
    with server.client() as client:
        message = refused(client, [frame(text_image(1, 96), "image")], {}, "bad_frame")
        assert "sample" in message
        refused(client, [sample] * 33, {}, "bad_frame")
        message = refused(client, [frame(np.zeros((40, 90, 3), np.uint8))], {}, "bad_frame")
        assert "64 pixels" in message
        refused(client, [frame(np.zeros((100, 100, 3), np.uint8))], {"scale": 4}, "bad_frame")
        refused(client, [sample], {"tile": 256}, "bad_params")
        refused(client, [sample], {"scale": 3}, "bad_params")
        refused(client, [sample], {"steps": 5}, "bad_params")
        message = refused(client, [sample], {"method": "lanczos"}, "bad_params")
        assert "classical" in message
        refused(client, [sample], {"method": "no-such-model"}, "bad_params")
        big = frame(np.zeros((3000, 3000, 1), np.uint8))
        refused(client, [big, big], {}, "too_large")
        nan = np.full((96, 96, 3), np.nan, "<f4")
        refused(client, [frame(nan)], {"steps": 10}, "bad_pixels")
        with pytest.raises(JobFailed) as error:
            client.run("upscale", [frame(text_image(1, 32), "image")],
                       {"method": "span-adapted-000000000000"})
        assert error.value.code == "bad_params"
        assert client.status()["jobs"]["queued"] == 0


def test_a_running_adaptation_is_cancelled(server):
    with server.client() as client:
        job = client.submit("adapt", [frame(text_image(2, 128))], {"steps": 5000})
        stages = []

        def cancelled():
            return any(s.startswith("adapting: step") for s in stages)

        with pytest.raises(Cancelled):
            client.wait(job, lambda fraction, stage: stages.append(stage), cancelled)
        status = client.status()
    assert status["jobs"]["running"] == 0
    assert not any(m["name"].startswith("span-adapted-") and m.get("adaptation", {}).get(
        "steps") == 5000 for m in status["methods"])


def test_sample_tiles_are_exact_crops_spread_over_the_images():
    arrays = [rng.integers(0, 65536, (300, 200, 4)).astype("<u2"),
              rng.integers(0, 256, (120, 500, 3)).astype("u1")]
    frames = [frame(a, "image") for a in arrays]
    tile = crop(frames[0], 10, 20, 30, 40)
    assert np.array_equal(np.frombuffer(tile.data, "<u2").reshape(40, 30, 4),
                          arrays[0][20:60, 10:40])
    tiles = sample_tiles(frames, tiles=5, side=100)
    assert [(t.width, t.height) for t in tiles] == [(100, 100), (100, 100), (100, 100),
                                                    (100, 100), (100, 100)]
    middle = np.frombuffer(tiles[0].data, "<u2").reshape(100, 100, 4)
    assert np.array_equal(middle, arrays[0][100:200, 50:150])
    assert all(t.name == "sample" for t in tiles)
    # a frame smaller than a tile goes in whole, once
    small = sample_tiles([frame(arrays[1][:50, :60], "image")], tiles=4, side=100)
    assert [(t.width, t.height) for t in small] == [(60, 50)]


@pytest.mark.slow
def test_client_adapts_then_upscales_with_the_adapted_model(server):
    images = [frame(text_image(k, 160), "image") for k in (3, 4)]
    with server.client() as client:
        seen = []
        adaptation = adapt(client, sample_tiles(images), steps=40,
                           progress=lambda f, s: seen.append(f))
        assert seen and seen == sorted(seen) and seen[-1] == 1.0
        assert adaptation.accepted, adaptation.reason
        assert "accepted" in adaptation.describe()
        result = client.run("upscale", [images[0]], {"scale": 2, "method": adaptation.model})
        assert result.method["name"] == adaptation.model
        assert result.frame("image").width == 320
        names = [m["name"] for m in client.status()["methods"]]
        assert adaptation.model in names


def write_pages(tmp_path, count: int, seed: int, side: int):
    """tmp_path/in holding page0.png... : text pages, side px square."""
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(count):
        imageio.write(str(folder / ("page%d.png" % k)), Picture(text_image(seed + k, side)))
    return folder


@pytest.mark.slow
def test_cli_upscale_adapt_end_to_end(server, tmp_path):
    folder, out = write_pages(tmp_path, 3, 10, 160), tmp_path / "out"
    done = ok(run_cli("upscale", folder, "-o", out, "--adapt", "--adapt-steps", "40",
                      "--config", server.config_path, "--no-autostart", timeout=600))
    assert sorted(p.name for p in out.iterdir()) == ["page0.png", "page1.png", "page2.png"]
    assert Image.open(out / "page0.png").size == (320, 320)
    said = done.stderr
    match = re.search(r"adaptation (accepted|rejected): internal-pair PSNR ([\d.]+) -> ([\d.]+) "
                      r"dB \(([+-][\d.]+) dB\) on (\d+) sample", said)
    assert match, said
    assert "3 written" in said and "images/s" in said
    assert "(no lossy files among them)" in said     # PNGs: pairs without JPEG
    if match.group(1) == "accepted":
        assert float(match.group(3)) > float(match.group(2))
        assert re.search(r"upscale used SPAN .*adapted to", said), said
    # resumed: nothing left to do, so no adaptation either
    again = ok(run_cli("upscale", folder, "-o", out, "--adapt", "--resume", "--adapt-steps", "40",
                       "--config", server.config_path, "--no-autostart", timeout=600))
    assert "adapting" not in again.stderr


@pytest.mark.slow
def test_cli_deblur_adapt_end_to_end(server, tmp_path):
    # Pages of 400 px: the deblurrer's pairs are cut at half size, and one
    # 512 px tile per page takes the whole page.
    folder, out = write_pages(tmp_path, 2, 20, 400), tmp_path / "out"
    done = ok(run_cli("deblur", folder, "-o", out, "--adapt", "--adapt-steps", "10",
                      "--config", server.config_path, "--no-autostart", timeout=600))
    said = done.stderr
    assert "adapting the deblurrer to 2 tile(s) of 2 image(s)" in said, said
    assert re.search(r"adaptation (accepted|rejected): internal-pair PSNR", said), said
    assert sorted(p.name for p in out.iterdir()) == ["page0.png", "page1.png"]
    assert Image.open(out / "page0.png").size == (400, 400)
    # sharpen at 1x has no upscaler: it adapts the deblurrer too (and its
    # adaptation is the same request, answered from the server's cache)
    again = ok(run_cli("sharpen", folder, "-o", tmp_path / "sharp", "--scale", "1", "--adapt",
                       "--adapt-steps", "10", "--config", server.config_path, "--no-autostart",
                       timeout=600))
    assert "adapting the deblurrer" in again.stderr and "from the server's cache" in again.stderr
    # low-rank adapters are another request: not the cached one
    low_rank = ok(run_cli("deblur", folder, "-o", tmp_path / "low", "--adapt", "--adapt-low-rank",
                          "--adapt-steps", "10", "--config", server.config_path, "--no-autostart",
                          timeout=600))
    assert "adapting the deblurrer" in low_rank.stderr
    assert "from the server's cache" not in low_rank.stderr, low_rank.stderr
