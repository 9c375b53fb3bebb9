"""The sharpfu command line, run as a subprocess against a live server."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from server.scratch import free_port
from sharpfu_cli import imageio, main as cli_main
from sharpfu_cli.imageio import Picture

SHARPFU = [sys.executable, "-m", "sharpfu_cli.main"]
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
rng = np.random.default_rng(11)


def environment() -> dict:
    env = dict(os.environ)
    for name in ("SHARPFU_CONFIG", "SHARPFU_ENDPOINT", "SHARPFU_KEY"):
        env.pop(name, None)
    return env


def run_cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(SHARPFU + [str(a) for a in args], capture_output=True, text=True,
                          env=environment(), timeout=timeout)


@pytest.fixture
def sharpfu(server):
    """Runs the CLI against the shared test server, never starting another."""
    def run(*args, **kwargs):
        return run_cli(*args, "--config", server.config_path, "--no-autostart", **kwargs)
    return run


def image(path, fmt="u8", channels=3, height=48, width=64, **metadata) -> np.ndarray:
    if fmt == "f32":
        pixels = rng.random((height, width, channels), dtype=np.float32)
    else:
        dtype = imageio.DTYPES[fmt]
        pixels = rng.integers(0, np.iinfo(dtype).max + 1, (height, width, channels)).astype(dtype)
    imageio.write(str(path), Picture(pixels, **metadata))
    return pixels


def ok(result):
    assert result.returncode == 0, result.stderr
    return result


def said_method(server, op, scale=1):
    """The line the CLI must print: the server's default method for op and
    scale, in the words for its kind."""
    with server.client() as client:
        status = client.status()
    methods = {m["name"]: m for m in status["methods"]}
    words = {"classical": "classical method, not AI", "network": "AI model"}
    return " then ".join("%s (%s)" % (methods[name]["title"], words[methods[name]["kind"]])
                         for name in status["defaults"][op][str(scale)].split("+"))


# -- the ops ------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_output_size(sharpfu, server, tmp_path, scale):
    image(tmp_path / "in.png")
    result = ok(sharpfu("upscale", tmp_path / "in.png", "-o", tmp_path / "out.png",
                        "--scale", scale))
    assert imageio.read(str(tmp_path / "out.png")).pixels.shape == (48 * scale, 64 * scale, 3)
    assert "upscale used " + said_method(server, "upscale", scale) in result.stderr


def test_upscale_defaults_to_2x_and_quiet_says_nothing(sharpfu, tmp_path):
    image(tmp_path / "in.png")
    result = ok(sharpfu("upscale", tmp_path / "in.png", "-o", tmp_path / "out.png", "-q"))
    assert imageio.read(str(tmp_path / "out.png")).pixels.shape == (96, 128, 3)
    assert result.stderr == ""


def test_deblur_keeps_the_size(sharpfu, server, tmp_path):
    image(tmp_path / "in.jpg")
    result = ok(sharpfu("deblur", tmp_path / "in.jpg", "-o", tmp_path / "out.jpg"))
    assert imageio.read(str(tmp_path / "out.jpg")).pixels.shape == (48, 64, 3)
    assert "deblur used " + said_method(server, "deblur") in result.stderr
    result = ok(sharpfu("deblur", tmp_path / "in.jpg", "-o", tmp_path / "out2.jpg",
                        "--method", "unsharp"))
    assert "(classical method, not AI)" in result.stderr


def test_strength_zero_leaves_the_picture_as_it_was(sharpfu, tmp_path):
    pixels = image(tmp_path / "in.png")
    ok(sharpfu("deblur", tmp_path / "in.png", "-o", tmp_path / "out.png", "--strength", "0%"))
    assert np.array_equal(imageio.read(str(tmp_path / "out.png")).pixels, pixels)
    refused = sharpfu("deblur", tmp_path / "in.png", "-o", tmp_path / "x.png", "--strength", "2")
    assert refused.returncode == 2 and "between 0 and 1" in refused.stderr


def test_deblur_saves_the_kernel_it_estimated(sharpfu, tmp_path):
    image(tmp_path / "in.png")
    result = ok(sharpfu("deblur", tmp_path / "in.png", "-o", tmp_path / "out.png",
                        "--method", "blind-deconvolution", "--kernel-size", "8",
                        "--save-kernel", tmp_path / "kernel.png"))
    kernel = imageio.read(str(tmp_path / "kernel.png")).pixels
    # 8 is made odd; at most that, at least one pixel; its largest weight white
    assert kernel.dtype == np.dtype("<u2") and kernel.shape[2] == 1
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.shape[0] <= 9 and kernel.max() == 65535
    assert "kernel written to" in result.stderr
    assert imageio.read(str(tmp_path / "out.png")).pixels.shape == (48, 64, 3)


def test_kernel_options_are_checked(sharpfu, tmp_path):
    image(tmp_path / "in.png")
    refused = sharpfu("deblur", tmp_path / "in.png", "-o", tmp_path / "x.png",
                      "--kernel-size", "500")
    assert refused.returncode == 2 and "between 0 (automatic) and 99" in refused.stderr
    refused = sharpfu("deblur", tmp_path / "in.png", "-o", tmp_path / "x.png",
                      "--save-kernel", tmp_path / "kernel.jpg")
    assert refused.returncode == 2 and ".png" in refused.stderr
    # a method that estimates no kernel cannot save one: refused before it runs
    refused = sharpfu("deblur", tmp_path / "in.png", "-o", tmp_path / "x.png",
                      "--method", "unsharp", "--save-kernel", tmp_path / "kernel.png")
    assert refused.returncode != 0 and "kernel" in refused.stderr
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "kernel.png").exists()


@pytest.mark.parametrize("scale", [1, 2])
def test_sharpen_scales(sharpfu, tmp_path, scale):
    image(tmp_path / "in.png")
    ok(sharpfu("sharpen", tmp_path / "in.png", "-o", tmp_path / "out.png", "--scale", scale))
    assert imageio.read(str(tmp_path / "out.png")).pixels.shape == (48 * scale, 64 * scale, 3)


def test_method_and_tile_reach_the_server(sharpfu, tmp_path):
    image(tmp_path / "in.png")
    ok(sharpfu("upscale", tmp_path / "in.png", "-o", tmp_path / "out.png", "--method",
               "lanczos", "--tile", 64))
    result = sharpfu("upscale", tmp_path / "in.png", "-o", tmp_path / "bad.png",
                     "--method", "no-such-method")
    assert result.returncode == 1
    assert result.stderr.startswith("sharpfu: error: %s: " % (tmp_path / "in.png"))
    assert "no-such-method" in result.stderr and not (tmp_path / "bad.png").exists()


# -- matte --------------------------------------------------------------------

def matte_inputs(tmp_path, mask_size=(64, 48)):
    pixels = np.zeros((48, 64, 3), "u1")
    pixels[:, 32:] = 230
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    mask = np.zeros(mask_size[::-1], "u1")
    mask[:, 30:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")


@pytest.mark.parametrize("bits, mode", [(8, "L"), (16, "I;16")])
def test_matte_writes_a_one_channel_png(sharpfu, tmp_path, bits, mode):
    matte_inputs(tmp_path)
    args = ["matte", tmp_path / "photo.png", "--mask", tmp_path / "mask.png",
            "-o", tmp_path / "alpha.png"]
    result = ok(sharpfu(*args + (["--bits", bits] if bits == 16 else [])))
    with Image.open(tmp_path / "alpha.png") as alpha:
        assert alpha.mode == mode and alpha.size == (64, 48)
    pixels = imageio.read(str(tmp_path / "alpha.png")).pixels
    assert pixels.dtype == (np.uint8 if bits == 8 else np.dtype("<u2"))
    top = 255 if bits == 8 else 65535
    assert pixels[:, :10].max() == 0 and pixels[:, -10:].min() == top
    # the default is the classical band solver, and the CLI says it is not AI
    assert "matte used" in result.stderr and "(classical method, not AI)" in result.stderr


def test_matte_takes_the_alpha_of_a_plain_colour_mask(tmp_path):
    mask = np.zeros((4, 6, 4), "u1")
    mask[..., :3] = 255
    mask[:, 3:, 3] = 200
    assert cli_main.mask_channel(mask)[..., 0].tolist() == [[0, 0, 0, 200, 200, 200]] * 4
    rgb = np.array([[[255, 0, 0], [255, 255, 255]]], "u1")
    assert cli_main.mask_channel(rgb)[..., 0].tolist() == [[76, 255]]


def test_matte_refuses_masks_of_another_size(sharpfu, tmp_path):
    matte_inputs(tmp_path, mask_size=(32, 24))
    result = sharpfu("matte", tmp_path / "photo.png", "--mask", tmp_path / "mask.png",
                     "-o", tmp_path / "alpha.png")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "same size" in result.stderr
    assert "32x24" in result.stderr and "64x48" in result.stderr
    assert not (tmp_path / "alpha.png").exists()


# -- bit depth, channels, metadata ---------------------------------------------

@pytest.mark.parametrize("name, fmt, channels", [("deep.png", "u16", 3), ("deep.tif", "u16", 4),
                                                 ("float.tif", "f32", 3),
                                                 ("grey.png", "u8", 1)])
def test_format_and_channels_are_kept(sharpfu, tmp_path, name, fmt, channels):
    image(tmp_path / name, fmt, channels)
    ok(sharpfu("upscale", tmp_path / name, "-o", tmp_path / ("out_" + name)))
    out = imageio.read(str(tmp_path / ("out_" + name)))
    assert out.format == fmt and out.pixels.shape == (96, 128, channels)


def test_grey_png_stays_a_grey_png(sharpfu, tmp_path):
    Image.fromarray(rng.integers(0, 256, (48, 64), dtype=np.uint8)).save(tmp_path / "g.png")
    ok(sharpfu("deblur", tmp_path / "g.png", "-o", tmp_path / "out.png"))
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "L"


def test_alpha_is_kept_where_it_is_flat(sharpfu, tmp_path):
    pixels = rng.integers(0, 256, (48, 64, 4), dtype=np.uint8)
    pixels[:, :32, 3] = 255
    pixels[:, 32:, 3] = 0
    Image.fromarray(pixels, "RGBA").save(tmp_path / "rgba.png")
    ok(sharpfu("upscale", tmp_path / "rgba.png", "-o", tmp_path / "out.png"))
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA"
        alpha = np.asarray(out)[..., 3]
    # Away from the edge (Lanczos-3 reaches 3 input pixels), alpha is untouched.
    assert (alpha[:, :56] == 255).all() and (alpha[:, 72:] == 0).all()


def test_icc_profile_survives_the_cli(sharpfu, tmp_path):
    image(tmp_path / "deep.png", "u16", 3, icc=SRGB)
    image(tmp_path / "photo.jpg", "u8", 3, icc=SRGB)
    ok(sharpfu("upscale", tmp_path / "deep.png", "-o", tmp_path / "deep_out.png"))
    ok(sharpfu("deblur", tmp_path / "photo.jpg", "-o", tmp_path / "photo_out.jpg"))
    assert imageio.read(str(tmp_path / "deep_out.png")).icc == SRGB
    with Image.open(tmp_path / "photo_out.jpg") as out:
        assert out.info["icc_profile"] == SRGB


def test_16_bit_to_jpeg_is_converted_with_a_note(sharpfu, tmp_path):
    image(tmp_path / "deep.tif", "u16", 3)
    result = ok(sharpfu("deblur", tmp_path / "deep.tif", "-o", tmp_path / "out.jpg", "-q"))
    assert imageio.read(str(tmp_path / "out.jpg")).format == "u8"
    assert result.stderr.count("\n") == 1 and "8 bits" in result.stderr


# -- batches and failures --------------------------------------------------------

def test_batch_on_a_folder_goes_on_past_a_damaged_file(sharpfu, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    image(folder / "a.png")
    image(folder / "b.tif", "u16", 1)
    image(folder / "c.png")
    data = (folder / "c.png").read_bytes()
    (folder / "c.png").write_bytes(data[:len(data) // 2])
    (folder / "notes.txt").write_text("not an image, and not an image name")
    result = sharpfu("upscale", folder, "-o", tmp_path / "out")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [line for line in errors if line.startswith("sharpfu: error: %s: "
                                                                  % (folder / "c.png"))]
    assert len(errors) == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.tif"]   # nothing partial
    assert imageio.read(str(tmp_path / "out" / "b.tif")).pixels.shape == (96, 128, 1)
    assert result.stderr.count("upscale used") == 1


@pytest.mark.slow
def test_several_files_into_an_existing_folder(sharpfu, tmp_path):
    image(tmp_path / "a.png")
    image(tmp_path / "b.webp")
    (tmp_path / "out").mkdir()
    ok(sharpfu("deblur", tmp_path / "a.png", tmp_path / "b.webp", "-o", tmp_path / "out"))
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.webp"]


def test_single_file_into_an_existing_folder(sharpfu, tmp_path):
    image(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    ok(sharpfu("deblur", tmp_path / "a.png", "-o", tmp_path / "out"))
    assert os.listdir(tmp_path / "out") == ["a.png"]


def test_missing_input_fails_on_one_line(sharpfu, tmp_path):
    result = sharpfu("upscale", tmp_path / "nothere.png", "-o", tmp_path / "out.png")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("sharpfu: error: %s: " % (tmp_path / "nothere.png"))


def test_usage_errors_exit_2(sharpfu, tmp_path):
    image(tmp_path / "a.png")
    assert run_cli("upscale", tmp_path / "a.png").returncode == 2      # no -o
    assert run_cli("upscale", tmp_path / "a.png", "-o", "x.png", "--scale", "3").returncode == 2
    result = sharpfu("upscale", tmp_path / "a.png", tmp_path / "a.png", "-o", tmp_path / "a.png")
    assert result.returncode == 2


def test_unwritable_output_fails_cleanly(sharpfu, tmp_path):
    image(tmp_path / "a.png")
    result = sharpfu("deblur", tmp_path / "a.png", "-o", tmp_path / "no" / "such" / "out.png")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "sharpfu: error: %s: cannot write" % (tmp_path / "no" / "such" / "out.png") \
        in result.stderr


def test_ctrl_c_cancels_the_job_on_the_server(sharpfu, server, tmp_path):
    Image.fromarray(rng.integers(0, 256, (1200, 1200, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    seen = len(server.log())
    process = subprocess.Popen(
        SHARPFU + [str(a) for a in ("upscale", tmp_path / "big.png", "-o", tmp_path / "out.png",
                                    "--scale", 4, "--tile", 64, "--config", server.config_path,
                                    "--no-autostart")],
        stderr=subprocess.PIPE, text=True, env=environment())
    deadline = time.monotonic() + 30
    while "upscale 1200x1200" not in server.log()[seen:]:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert stderr.splitlines()[-1] == "sharpfu: cancelled"
    assert not (tmp_path / "out.png").exists()
    deadline = time.monotonic() + 10
    while "cancelled by its client" not in server.log()[seen:]:
        assert time.monotonic() < deadline, server.log()[seen:]
        time.sleep(0.05)


# -- status and autostart --------------------------------------------------------

def test_status_describes_the_methods(sharpfu, server):
    text = ok(sharpfu("status")).stdout
    assert server.endpoint in text and "GiB" in text
    for op in ("upscale", "deblur", "sharpen", "matte"):
        assert op + ":" in text
    with server.client() as client:
        kinds = {m["kind"] for m in client.status()["methods"]}
    assert ("classical method, not AI" in text) == ("classical" in kinds)
    assert ("trained network" in text) == ("network" in kinds)
    raw = json.loads(ok(sharpfu("status", "--json")).stdout)
    assert raw["server"]["endpoint"] == server.endpoint


def test_no_server_and_no_autostart_fails(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:%d" % free_port()}))
    result = run_cli("status", "--config", config, "--no-autostart")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("sharpfu: error: No SharpFu server answers")


def test_the_cli_supplies_a_server_command(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:%d" % free_port()}))
    args = cli_main.build_parser().parse_args(["status", "--config", str(config)])
    client = cli_main.open_client(args)
    assert client.config["server_command"] == [sys.executable, "-m", "server"]
    assert client.config["_path"] == str(config)


@pytest.mark.slow
def test_autostart(tmp_path):
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "endpoint": endpoint, "key": "feedface" * 8,
        "server_command": [sys.executable, "-m", "server"],
        # should this test fail before it stops the server, the server goes by itself
        "client": {"autostart_idle_exit": 120}}))
    image(tmp_path / "in.png")
    pid = None
    try:
        result = run_cli("upscale", tmp_path / "in.png", "-o", tmp_path / "out.png",
                         "--config", config)
        assert result.returncode == 0, result.stderr
        assert "starting one" in result.stderr
        assert imageio.read(str(tmp_path / "out.png")).pixels.shape == (96, 128, 3)
        status = json.loads(ok(run_cli("status", "--json", "--config", config,
                                       "--no-autostart")).stdout)
        assert status["server"]["endpoint"] == endpoint
        pid = status["server"]["pid"]
    finally:
        if pid is None:
            status = run_cli("status", "--json", "--config", config, "--no-autostart")
            if status.returncode == 0:
                pid = json.loads(status.stdout)["server"]["pid"]
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_gone(pid)


def wait_gone(pid: int, timeout: float = 30.0) -> None:
    """The server is no child of ours: poll until it has exited (or is a
    zombie waiting for whoever adopted it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    raise AssertionError("server %d did not exit after SIGTERM" % pid)
