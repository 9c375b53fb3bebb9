"""The `select` op (Select Subject): a subject finder (here the test double
tests/fake_subject.py, standing in for the ISNet network) sees the whole
picture once, at most SUBJECT_PIXELS; its soft mask comes back at the
image's size and format, refined by the matte's band solver unless refine is
off; transparent pixels are background; with no subject finder installed the
job is refused at once, naming the model to pull; cancelling stops it."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from enginekit import engine, make_job, run
from fake_subject import FakeSubject
from server import tiling
from server.jobs import JobError
from sharpfu_client import Frame

SCALE = {"u8": 255, "u16": 65535, "f32": 1.0}


@pytest.fixture
def fake():
    """The test double, offered by the tests' engine while a test runs."""
    method = FakeSubject()
    engine().catalog.add(method)
    yield method
    engine().catalog.remove(method.name)


def photo(h=96, w=128, fmt="u8", channels=3, seed=0):
    """A bright, textured disc (the subject) on a dark, textured backdrop;
    and its true coverage."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    truth = np.clip(h / 3 - np.hypot(yy - h / 2, xx - w / 2) + 0.5, 0, 1)
    fg = np.array([0.9, 0.75, 0.6]) + 0.04 * r.standard_normal((h, w, 3))
    bg = np.array([0.1, 0.2, 0.3]) + 0.04 * r.standard_normal((h, w, 3))
    image = np.clip(truth[..., None] * fg + (1 - truth[..., None]) * bg, 0, 1)
    if channels in (1, 2):
        image = image.mean(2, keepdims=True)
    if channels in (2, 4):
        image = np.concatenate([image, np.ones((h, w, 1))], 2)
    return to_format(image, fmt), truth


def deep_inside(h, w, margin=10):
    """Where the subject of photo() is, `margin` pixels in from its edge."""
    yy, xx = np.mgrid[0:h, 0:w]
    return h / 3 - np.hypot(yy - h / 2, xx - w / 2) > margin


def to_format(values, fmt):
    if fmt == "f32":
        return values.astype("<f4")
    return (values * SCALE[fmt] + 0.5).astype("u1" if fmt == "u8" else "<u2")


def describe(op_params, image):
    job = make_job("select", op_params, image=image)
    results, method = engine().run(job, lambda f, s: None)
    return results, method


def test_no_subject_finder_installed_is_refused_at_once_naming_the_model():
    image, _ = photo()
    before = image.copy()
    job = make_job("select", {}, image=image)
    for attempt in (engine().check, lambda j: engine().run(j, lambda f, s: None)):
        with pytest.raises(JobError) as caught:
            attempt(job)
        assert caught.value.code == "bad_params"
        assert "sharpfu models pull isnet-general" in caught.value.message
    with pytest.raises(JobError) as caught:     # a name, when none is installed, says so too
        engine().check(make_job("select", {"method": "isnet-general"}, image=image))
    assert "sharpfu models pull isnet-general" in caught.value.message
    assert np.array_equal(image, before)
    catalog = engine().catalog
    assert "select" not in catalog.defaults() and "select" not in catalog.choices()


def test_the_installed_finder_is_the_default_and_offered(fake):
    catalog = engine().catalog
    assert catalog.defaults()["select"] == {"1": "fake-subject"}
    assert catalog.choices()["select"] == {"1": ["fake-subject"]}
    with pytest.raises(JobError) as caught:
        engine().check(make_job("select", {"method": "laplacian"}, image=photo()[0]))
    assert caught.value.code == "bad_params"


@pytest.mark.parametrize("fmt", ["u8", "u16", "f32"])
def test_the_mask_has_the_image_size_and_format_and_one_channel(fake, fmt):
    image, truth = photo(fmt=fmt)
    results, method = describe({"refine": False}, image)
    assert [d["name"] for d, _, _ in results] == ["mask"]
    desc, mask, _ = results[0]
    assert mask.shape == (96, 128, 1) and mask.dtype == image.dtype
    assert (desc["width"], desc["height"], desc["channels"], desc["format"]) == (128, 96, 1, fmt)
    assert fake.calls == [(1, 3, 96, 128)]          # the whole picture, once
    values = mask[..., 0] / SCALE[fmt]
    assert 0 <= values.min() and values.max() <= 1
    assert values[truth == 1].mean() > 0.9 and values[truth == 0].mean() < 0.1
    assert method["name"] == "fake-subject"


def test_refine_off_is_the_finders_own_mask(fake):
    image, _ = photo(fmt="f32")
    mask = run("select", {"refine": False}, image=image)
    own = fake.subject(__import__("torch").from_numpy(image).permute(2, 0, 1)[None])
    assert np.abs(mask[..., 0] - own[0, 0].numpy()).max() < 1e-5


def test_refine_snaps_the_rough_mask_to_the_edge(fake):
    image, truth = photo(192, 256, seed=1)
    rough, rough_method = describe({"refine": False}, image)
    refined, method = describe({}, image)
    error = lambda mask: np.abs(mask[..., 0] / 255 - truth).mean()  # noqa: E731
    assert error(refined[0][1]) < 0.6 * error(rough[0][1]), (error(refined[0][1]),
                                                             error(rough[0][1]))
    assert method["name"] == "fake-subject+laplacian"
    assert [s["name"] for s in method["stages"]] == ["fake-subject", "laplacian"]
    assert rough_method["name"] == "fake-subject"


def test_grey_and_transparent_images_and_transparent_is_background(fake):
    grey, _ = photo(channels=1)
    assert run("select", {}, image=grey).shape == (96, 128, 1)
    rgba, truth = photo(channels=4)
    rgba[:, 64:, 3] = 0             # the right half of the subject is invisible
    rgba[:40, :64, 3] = 128         # the top left quarter half transparent
    for refine in (False, True):
        mask = run("select", {"refine": refine}, image=rgba)[..., 0].astype(int)
        assert (mask[:, 64:] == 0).all(), refine
        # (the finder is judged away from the invisible half, whose filled-in
        # colours it sees)
        deep = deep_inside(96, 128)
        assert np.abs(mask[:40, :52][deep[:40, :52]] - 128).max() <= 6, refine
        assert mask[40:, :52][deep[40:, :52]].min() >= 230, refine
    grey_alpha, _ = photo(channels=2, fmt="u16")
    assert run("select", {}, image=grey_alpha).shape == (96, 128, 1)


def test_a_large_photo_is_judged_shrunk_and_answered_full_size(fake, monkeypatch):
    import server.engine
    monkeypatch.setattr(server.engine, "SUBJECT_PIXELS", 48 * 64)
    image, truth = photo(192, 256)
    mask = run("select", {"refine": False}, image=image)
    assert fake.calls == [(1, 3, 48, 64)] and mask.shape == (192, 256, 1)
    assert np.abs(mask[..., 0] / 255 - truth).mean() < 0.1


def test_foreground_frame_on_request(fake):
    image, truth = photo(fmt="u16")
    results, _ = describe({"foreground": True}, image)
    assert [d["name"] for d, _, _ in results] == ["mask", "foreground"]
    desc, fg, _ = results[1]
    assert fg.shape == (96, 128, 3) and fg.dtype == image.dtype and desc["format"] == "u16"


def test_progress_rises_to_1_and_says_what_it_does(fake):
    reports = []
    run("select", {}, reports, image=photo()[0])
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("finding the subject" in s for _, s in reports)
    assert any("Closed-form matting" in s for _, s in reports)


def test_progress_moves_and_cancel_is_honoured_inside_the_network(fake, monkeypatch):
    import server.engine
    monkeypatch.setattr(server.engine, "SUBTILE_INTERVAL", 0.0)
    reports = []
    run("select", {}, reports, image=photo()[0])
    inside = [f for f, s in reports if "finding the subject" in s and 0 < f < 0.3]
    assert len(inside) >= 5, reports[:12]
    job = make_job("select", {}, image=photo()[0])

    def report(fraction, stage):
        if "finding the subject" in stage and fraction > 0:
            job.cancel.set()
    with pytest.raises(tiling.Cancelled):
        engine().run(job, report)
    assert len(fake.calls) == 2 and fake.finished == 1     # stopped within the call


def test_a_broken_answer_is_a_model_failure(fake):
    import torch
    fake.answer = torch.zeros(1, 1, 5, 5)
    with pytest.raises(JobError) as caught:
        run("select", {}, image=photo()[0])
    assert caught.value.code == "model_failed" and "shape" in caught.value.message
    fake.answer = torch.full((1, 1, 96, 128), float("nan"))
    with pytest.raises(JobError) as caught:
        run("select", {}, image=photo()[0])
    assert caught.value.code == "model_failed"


@pytest.mark.parametrize("refine", [False, True])
def test_cancel_stops_it(fake, refine):
    image, _ = photo(300, 420)
    job = make_job("select", {"refine": refine, "tile": 64}, image=image)
    seen = []

    def report(fraction, stage):
        seen.append(stage)
        if "subject found" in stage:
            job.cancel.set()
    with pytest.raises(tiling.Cancelled):
        engine().run(job, report)
    assert len(fake.calls) == 1 and not any("tile" in stage for stage in seen)
    # cancelled before it starts: the finder never runs
    job = make_job("select", {"refine": refine}, image=image)
    job.cancel.set()
    with pytest.raises(tiling.Cancelled):
        engine().run(job, lambda f, s: None)
    assert len(fake.calls) == 1


@pytest.mark.slow
def test_select_through_a_live_server(subject_server, server):
    image, truth = photo()
    seen = []
    with subject_server.client() as client:
        status = client.status()
        assert status["defaults"]["select"]["1"] == "fake-subject"
        assert "select" in status["ops"]
        result = client.run("select", [Frame(image, 128, 96, 3, "u8", "image")], {},
                            progress=lambda f, s: seen.append(f))
    mask = result.frame("mask")
    assert (mask.width, mask.height, mask.channels, mask.format) == (128, 96, 1, "u8")
    values = np.frombuffer(bytes(mask.data), np.uint8).reshape(96, 128) / 255
    assert np.abs(values - truth).mean() < 0.05
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert result.method["name"] == "fake-subject+laplacian"
    # a server without a subject finder refuses at once and says what to install
    from sharpfu_client import SharpFuError
    with server.client() as client:
        assert "select" not in client.status()["defaults"]
        with pytest.raises(SharpFuError) as caught:
            client.run("select", [Frame(image, 128, 96, 3, "u8", "image")], {})
    assert caught.value.code == "bad_params"
    assert "sharpfu models pull isnet-general" in caught.value.message


def sharpfu(server, *args):
    return subprocess.run([sys.executable, "-m", "sharpfu_cli.main"] + [str(a) for a in args]
                          + ["--config", str(server.config_path), "--no-autostart"],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_writes_the_mask_and_a_cut_out(subject_server, tmp_path):
    from sharpfu_cli import imageio
    image, truth = photo()
    imageio.write(str(tmp_path / "photo.png"), imageio.Picture(image))
    done = sharpfu(subject_server, "select", tmp_path / "photo.png", "-o", tmp_path / "mask.png",
                   "--cutout", tmp_path / "cut.png", "--bits", "16")
    assert done.returncode == 0, done.stderr
    assert "select used Test subject finder (bright is subject) (classical method, not AI) " \
           "then Closed-form matting" in done.stderr
    mask = imageio.read(str(tmp_path / "mask.png")).pixels
    cut = imageio.read(str(tmp_path / "cut.png")).pixels
    assert mask.shape == (96, 128, 1) and mask.dtype == np.dtype("<u2")
    assert cut.shape == (96, 128, 4) and np.array_equal(cut[..., 3:], mask)
    assert np.abs(mask[..., 0] / 65535 - truth).mean() < 0.05
    done = sharpfu(subject_server, "select", tmp_path / "photo.png", "-o", tmp_path / "rough.png",
                   "--no-refine", "--method", "fake-subject", "-q")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    rough = imageio.read(str(tmp_path / "rough.png")).pixels
    assert rough.shape == (96, 128, 1) and rough.dtype == np.uint8
    assert not np.array_equal(rough[..., 0].astype(int) * 257, mask[..., 0].astype(int))


@pytest.mark.slow
def test_cli_says_when_it_finds_no_subject(subject_server, tmp_path):
    from sharpfu_cli import imageio
    imageio.write(str(tmp_path / "dark.png"), imageio.Picture(np.full((40, 50, 3), 20, "u1")))
    done = sharpfu(subject_server, "select", tmp_path / "dark.png", "-o", tmp_path / "mask.png")
    assert done.returncode == 0 and "found no subject" in done.stderr, done.stderr
    assert imageio.read(str(tmp_path / "mask.png")).pixels.max() == 0


@pytest.mark.slow
def test_cli_without_a_subject_model_says_what_to_install(server, tmp_path):
    from sharpfu_cli import imageio
    imageio.write(str(tmp_path / "photo.png"), imageio.Picture(photo()[0]))
    done = sharpfu(server, "select", tmp_path / "photo.png", "-o", tmp_path / "mask.png")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "sharpfu models pull isnet-general" in done.stderr
    assert not (tmp_path / "mask.png").exists()
    status = sharpfu(server, "status")
    assert "select: " in status.stdout
    assert "none installed; install with: sharpfu models pull isnet-general" in status.stdout
