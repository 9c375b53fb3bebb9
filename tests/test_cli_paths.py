"""The sharpfu command line never writes over its inputs unless told to
(--in-place, then atomically), and refuses bad output paths and tile sizes
before any work: without even reaching a server."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from server.scratch import free_port
from sharpfu_cli import imageio
from sharpfu_cli.imageio import Picture

SHARPFU = [sys.executable, "-m", "sharpfu_cli.main"]


def environment() -> dict:
    env = dict(os.environ)
    for name in ("SHARPFU_CONFIG", "SHARPFU_ENDPOINT", "SHARPFU_KEY"):
        env.pop(name, None)
    return env


@pytest.fixture
def sharpfu(server):
    def run(*args):
        return subprocess.run(SHARPFU + [str(a) for a in args] + [
            "--config", str(server.config_path), "--no-autostart", "-q"],
            capture_output=True, text=True, env=environment(), timeout=120)
    return run


def offline(*args):
    """The CLI with no server anywhere: what it refuses, it refuses unaided."""
    return subprocess.run(SHARPFU + [str(a) for a in args] + [
        "--endpoint", "tcp://127.0.0.1:%d" % free_port(), "--no-autostart", "-q"],
        capture_output=True, text=True, env=environment(), timeout=120)


def image(path, height=24, width=32):
    pixels = np.random.default_rng(len(str(path))).integers(0, 256, (height, width, 3),
                                                              dtype=np.uint8)
    imageio.write(str(path), Picture(pixels))
    return path.read_bytes()


def test_output_over_the_input_is_refused(tmp_path):
    before = image(tmp_path / "a.png")
    result = offline("upscale", tmp_path / "a.png", "-o", tmp_path / "a.png")
    assert result.returncode == 2 and "--in-place" in result.stderr
    assert (tmp_path / "a.png").read_bytes() == before


def test_output_over_the_input_by_another_name_is_refused(tmp_path):
    before = image(tmp_path / "a.png")
    os.symlink(tmp_path / "a.png", tmp_path / "link.png")
    result = offline("upscale", tmp_path / "a.png", "-o", tmp_path / "link.png")
    assert result.returncode == 2 and "--in-place" in result.stderr
    assert (tmp_path / "a.png").read_bytes() == before


def test_a_folder_into_itself_is_refused(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    before = {name: image(folder / name) for name in ("a.png", "b.png")}
    result = offline("deblur", folder, "-o", folder)
    assert result.returncode == 2 and "--in-place" in result.stderr
    assert {name: (folder / name).read_bytes() for name in before} == before


def test_in_place_replaces_the_inputs_whole(sharpfu, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        image(folder / name)
    os.chmod(folder / "a.png", 0o640)
    result = sharpfu("upscale", folder, "--in-place")
    assert result.returncode == 0, result.stderr
    for name in ("a.png", "b.png"):
        assert imageio.read(str(folder / name)).size == (64, 48)
    assert sorted(os.listdir(folder)) == ["a.png", "b.png"]   # no temporary left
    assert os.stat(folder / "a.png").st_mode & 0o777 == 0o640   # the file's own mode kept


def test_in_place_with_the_same_output_is_allowed(sharpfu, tmp_path):
    image(tmp_path / "a.png")
    result = sharpfu("upscale", tmp_path / "a.png", "-o", tmp_path / "a.png", "--in-place")
    assert result.returncode == 0, result.stderr
    assert imageio.read(str(tmp_path / "a.png")).size == (64, 48)


def test_in_place_and_resume_do_not_mix(tmp_path):
    image(tmp_path / "a.png")
    assert offline("upscale", tmp_path / "a.png", "--in-place", "--resume").returncode == 2


def test_a_folder_into_a_file_name_is_refused_and_creates_nothing(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    image(folder / "a.png")
    result = offline("upscale", folder, "-o", tmp_path / "out.png")
    assert result.returncode == 2 and "folder" in result.stderr
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("where", ["missing/out.png", "file.txt/out.png", "out.bmp"])
def test_output_paths_are_checked_before_any_work(tmp_path, where):
    image(tmp_path / "a.png")
    (tmp_path / "file.txt").write_text("a file, not a folder")
    result = offline("upscale", tmp_path / "a.png", "-o", tmp_path / where)
    assert result.returncode == 1
    assert result.stderr.startswith("sharpfu: error: %s: " % (tmp_path / where))
    assert "server" not in result.stderr, "it went for the server before checking the path"


def test_matte_outputs_are_checked_before_any_work(tmp_path):
    image(tmp_path / "a.png")
    image(tmp_path / "mask.png")
    result = offline("matte", tmp_path / "a.png", "--mask", tmp_path / "mask.png", "-o",
                     tmp_path / "alpha.png", "--cutout", tmp_path / "missing" / "cut.png")
    assert result.returncode == 1 and "missing" in result.stderr
    assert "server" not in result.stderr


@pytest.mark.parametrize("tile", ["16385", "100000", "1", "63"])
def test_tile_sizes_are_checked_before_any_work(tmp_path, tile):
    image(tmp_path / "a.png")
    result = offline("upscale", tmp_path / "a.png", "-o", tmp_path / "b.png", "--tile", tile)
    assert result.returncode == 2 and "--tile" in result.stderr


def test_a_requested_tile_is_capped_like_an_automatic_one(monkeypatch):
    """--tile 16384 once bypassed the CPU's tile cap (7.4 GB RSS)."""
    import torch
    from server import device as devices
    from server import engine as engine_module
    import enginekit
    engine = enginekit.engine()
    job = enginekit.make_job("upscale", {"scale": 2, "tile": 16384},
                             image=np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setattr(devices, "memory", lambda device: (8 << 30, 16 << 30))
    assert engine.device == torch.device("cpu")
    assert engine._tile_size(job, 400.0) <= engine_module.CPU_TILE_LIMIT
    monkeypatch.setattr(devices, "memory", lambda device: (256 << 20, 16 << 30))
    side = engine._tile_size(job, 400.0)
    assert side * side * 400.0 <= 0.25 * (256 << 20) or side == engine_module.MIN_TILE
    small = enginekit.make_job("upscale", {"scale": 2, "tile": 128},
                               image=np.zeros((8, 8, 3), np.uint8))
    assert engine._tile_size(small, 400.0) == 128   # smaller tiles are the user's to ask
