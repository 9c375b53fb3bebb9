"""The `matte` op with the trained refiner: its place in the catalog, frame
formats, tiling, the foreground frame, and a live server end to end."""
from __future__ import annotations

import numpy as np
import pytest

from enginekit import engine, make_job, run
from server.methods.mask_refiner import MaskRefiner, working_size
from sharpfu_client import Frame, wire

SCALE = {"u8": 255, "u16": 65535, "f32": 1.0}


def scene(h=120, w=160, fmt="u8", channels=3, seed=0):
    """A warm subject with a soft, strand-like fringe over a cool, textured
    background; the coarse mask is 4 px too large and has a hole."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    distance = np.hypot(yy - h / 2, xx - w / 2) - h / 3
    fringe = 0.5 + 0.5 * np.sin(np.arctan2(yy - h / 2, xx - w / 2) * 40)
    alpha = np.clip(0.5 - distance, 0, 1)
    alpha = np.maximum(alpha, np.clip(1 - distance / 6, 0, 1) * (distance > 0) * fringe * 0.8)
    fg = np.array([0.85, 0.55, 0.3]) + 0.05 * r.standard_normal((h, w, 3))
    bg = np.array([0.15, 0.3, 0.55]) + 0.08 * r.standard_normal((h, w, 3))
    image = np.clip(alpha[..., None] * fg + (1 - alpha[..., None]) * bg, 0, 1)
    if channels == 1:
        image = image.mean(2, keepdims=True)
    mask = (np.hypot(yy - h / 2, xx - w / 2) < h / 3 + 4).astype(np.float64)
    mask[h // 2 - 4:h // 2 + 4, w // 2 - 4:w // 2 + 4] = 0
    return to_format(image, fmt), to_format(mask[..., None], fmt), alpha


def to_format(values: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "f32":
        return values.astype("<f4")
    dtype = "u1" if fmt == "u8" else "<u2"
    return (values * SCALE[fmt] + 0.5).astype(dtype)


def test_the_refiner_is_the_default_and_the_classical_matte_stays():
    catalog = engine().catalog
    assert catalog.defaults()["matte"]["1"] == "mask-refiner"
    infos = {m["name"]: m for m in catalog.info()}
    assert infos["mask-refiner"]["kind"] == "network"
    assert infos["colour-line"]["kind"] == "classical"
    assert isinstance(catalog.pick("matte", None), MaskRefiner)


@pytest.mark.parametrize("fmt", ["u8", "u16", "f32"])
def test_formats_are_kept_and_the_matte_beats_the_mask(fmt):
    image, mask, truth = scene(fmt=fmt)
    alpha = run("matte", {}, image=image, mask=mask)
    assert alpha.shape == (120, 160, 1) and alpha.dtype == image.dtype
    values = alpha[..., 0] / SCALE[fmt]
    assert 0 <= values.min() and values.max() <= 1
    coarse = mask[..., 0] / SCALE[fmt]
    assert np.abs(values - truth).mean() < 0.6 * np.abs(coarse - truth).mean()


def test_grey_and_transparent_images_work():
    image, mask, truth = scene(channels=1)
    alpha = run("matte", {}, image=image, mask=mask)
    assert alpha.shape == (120, 160, 1)
    rgba, mask, _ = scene()
    rgba = np.concatenate([rgba, np.full(rgba.shape[:2] + (1,), 255, np.uint8)], 2)
    assert run("matte", {}, image=rgba, mask=mask).shape == (120, 160, 1)


@pytest.mark.slow
def test_tiled_equals_untiled():
    image, mask, _ = scene(300, 420, seed=1)
    whole = run("matte", {}, image=image, mask=mask).astype(int)
    tiled = run("matte", {"tile": 64}, image=image, mask=mask).astype(int)
    assert np.abs(whole - tiled).max() <= 1


def test_big_images_are_refined_at_the_working_size_and_come_back_full_size(monkeypatch):
    import server.methods.mask_refiner as mask_refiner
    monkeypatch.setattr(mask_refiner, "WORKING_PIXELS", 120 * 160)
    assert working_size(240, 320, mask_refiner.WORKING_PIXELS) == (120, 160)
    image, mask, truth = scene(240, 320, seed=2)
    seen = []
    real = MaskRefiner.refine

    def refine(self, image_lo, mask_lo, iterations=None):
        seen.append(tuple(image_lo.shape[-2:]))
        return real(self, image_lo, mask_lo, iterations)
    monkeypatch.setattr(MaskRefiner, "refine", refine)
    alpha = run("matte", {}, image=image, mask=mask)
    assert seen == [(120, 160)] and alpha.shape == (240, 320, 1)
    assert np.abs(alpha[..., 0] / 255 - truth).mean() < 0.6 * np.abs(mask[..., 0] / 255 - truth).mean()


def test_foreground_frame_is_free_of_the_old_background():
    image, mask, truth = scene(fmt="u16")
    job = make_job("matte", {"foreground": True}, image=image, mask=mask)
    results, info = engine().run(job, lambda f, s: None)
    assert [d["name"] for d, _, _ in results] == ["alpha", "foreground"]
    desc, fg, _ = results[1]
    assert fg.shape == (120, 160, 3) and fg.dtype == image.dtype and desc["format"] == "u16"
    band = (truth > 0.1) & (truth < 0.9)
    subject = np.array([0.85, 0.55, 0.3])
    before = np.abs(image[band] / 65535 - subject).mean()
    after = np.abs(fg[band] / 65535 - subject).mean()
    assert after < 0.6 * before
    solid = (truth == 0) | (truth == 1)
    alpha = results[0][1][..., 0]
    exact = solid & ((alpha == 0) | (alpha == 65535))
    assert np.array_equal(fg[exact], image[exact])    # outside the band, the image's own


def test_iterations_are_a_parameter_within_bounds():
    image, mask, _ = scene(64, 64)
    one = run("matte", {"iterations": 1}, image=image, mask=mask)
    assert one.shape == (64, 64, 1)
    with pytest.raises(wire.WireError):
        make_job("matte", {"iterations": 9}, image=image, mask=mask)


def test_the_classical_matte_still_runs_by_name():
    image, mask, truth = scene()
    job = make_job("matte", {"method": "colour-line", "foreground": True}, image=image, mask=mask)
    results, info = engine().run(job, lambda f, s: None)
    assert info["name"] == "colour-line" and len(results) == 2


@pytest.mark.slow
def test_cancel_stops_a_refine(monkeypatch):
    image, mask, _ = scene(300, 420)
    job = make_job("matte", {"tile": 64}, image=image, mask=mask)

    def report(fraction, stage):
        if fraction > 0.4:
            job.cancel.set()
    from server.tiling import Cancelled
    with pytest.raises(Cancelled):
        engine().run(job, report)


@pytest.mark.slow
def test_matte_through_a_live_server(server):
    image, mask, truth = scene(fmt="u8")
    frames = [Frame(image, 160, 120, 3, "u8", "image"), Frame(mask, 160, 120, 1, "u8", "mask")]
    seen = []
    with server.client() as client:
        status = client.status()
        assert status["defaults"]["matte"]["1"] == "mask-refiner"
        result = client.run("matte", frames, {"foreground": True},
                            progress=lambda f, s: seen.append(f))
    alpha = result.frame("alpha")
    assert (alpha.width, alpha.height, alpha.channels, alpha.format) == (160, 120, 1, "u8")
    values = np.frombuffer(bytes(alpha.data), np.uint8).reshape(120, 160) / 255
    assert np.abs(values - truth).mean() < 0.6 * np.abs(mask[..., 0] / 255 - truth).mean()
    fg = result.frame("foreground")
    assert (fg.width, fg.height, fg.channels, fg.format) == (160, 120, 3, "u8")
    assert seen == sorted(seen) and seen[-1] == 1.0


@pytest.mark.slow
def test_cli_writes_the_matte_and_a_cut_out(server, tmp_path):
    import subprocess
    import sys
    from sharpfu_cli import imageio
    image, mask, truth = scene()
    imageio.write(str(tmp_path / "photo.png"), imageio.Picture(image))
    imageio.write(str(tmp_path / "rough.png"), imageio.Picture(mask))
    done = subprocess.run(
        [sys.executable, "-m", "sharpfu_cli.main", "matte", str(tmp_path / "photo.png"),
         "--mask", str(tmp_path / "rough.png"), "-o", str(tmp_path / "alpha.png"),
         "--cutout", str(tmp_path / "cut.png"), "--bits", "16",
         "--config", str(server.config_path), "--no-autostart", "-q"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    alpha = imageio.read(str(tmp_path / "alpha.png")).pixels
    cut = imageio.read(str(tmp_path / "cut.png")).pixels
    assert alpha.shape == (120, 160, 1) and alpha.dtype == np.dtype("<u2")
    assert cut.shape == (120, 160, 4) and cut.dtype == np.dtype("<u2")
    assert np.array_equal(cut[..., 3:], alpha)
    band = (truth > 0.1) & (truth < 0.9)
    subject = np.array([0.85, 0.55, 0.3])
    assert np.abs(cut[..., :3][band] / 65535 - subject).mean() < \
        0.6 * np.abs(image[band] / 255 - subject).mean()
