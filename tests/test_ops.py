"""What each op does to pixels: formats, alpha, grey, errors, memory."""
import numpy as np
import pytest
import torch

from enginekit import engine, make_job, run
from server import pixels, tiling
from server.jobs import JobError
from server.methods.lanczos import Lanczos


def gradient(height, width, channels, dtype, top):
    y, x = np.mgrid[0:height, 0:width]
    values = (x * 3 + y * 5) / (width * 3 + height * 5)
    return np.repeat((values * top)[..., None], channels, 2).astype(dtype)


def test_u16_stays_16_bit_all_the_way():
    src = gradient(40, 50, 3, np.dtype("<u2"), 65535)
    out = run("upscale", {"scale": 2, "method": "lanczos"}, image=src)
    assert out.dtype == np.dtype("<u2") and out.shape == (80, 100, 3)
    # An 8-bit step anywhere would leave only multiples of 257.
    assert (out % 257 != 0).mean() > 0.9
    reference = Lanczos().forward(pixels.to_tensor(src, "u16", torch.device("cpu")), 2)
    reference = reference[0].permute(1, 2, 0).numpy().clip(0, 1) * 65535
    assert np.abs(out - reference).max() <= 0.5 + 1e-3


def test_f32_stays_float():
    src = gradient(30, 30, 4, np.float32, 1.0)
    src[..., 3] = 1.0
    out = run("sharpen", {"scale": 2}, image=src)
    assert out.dtype == np.float32 and out.shape == (60, 60, 4)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.dtype("<u2"), 65535)])
def test_alpha_is_kept_and_hidden_colour_does_not_bleed(dtype, top):
    src = np.zeros((48, 48, 4), dtype)
    src[..., 1] = top                        # hidden green garbage everywhere...
    src[12:36, 12:36] = (top, 0, 0, top)     # ...around an opaque red square
    out = run("upscale", {"scale": 2}, image=src)
    alpha = out[..., 3]
    assert (alpha[30:66, 30:66] == top).all()
    assert (alpha[:16] == 0).all() and (alpha[:, :16] == 0).all()
    visible = alpha > 0
    # Green never shows where anything is visible.
    assert out[..., 1][visible].max() <= top * 0.02


def test_grey_stays_grey_and_grey_alpha_keeps_alpha():
    grey = gradient(20, 30, 1, np.uint8, 255)
    assert run("upscale", {"scale": 4}, image=grey).shape == (80, 120, 1)
    grey_alpha = np.concatenate([grey, np.full_like(grey, 255)], 2)
    out = run("deblur", {}, image=grey_alpha)
    assert out.shape == (20, 30, 2) and (out[..., 1] == 255).all()


def test_nan_and_inf_are_refused():
    src = np.zeros((8, 8, 3), np.float32)
    src[3, 4, 1] = np.nan
    with pytest.raises(JobError) as caught:
        run("deblur", {}, image=src)
    assert caught.value.code == "bad_pixels"
    src[3, 4, 1] = np.inf
    with pytest.raises(JobError):
        run("deblur", {}, image=src)


def test_matte_snaps_a_sloppy_mask_to_the_edges():
    src = np.full((64, 64, 3), 30, np.uint8)
    src[16:48, 16:48] = 220
    truth = np.zeros((64, 64), np.float64)
    truth[16:48, 16:48] = 1
    coarse = np.zeros((64, 64, 1), np.uint8)
    coarse[13:51, 13:51] = 255               # 3 px too large all round
    # The classical method: on flat graphics like this the trained refiner
    # leaves a soft ramp inside the edge (docs/models/matting.md), so it is named.
    alpha = run("matte", {"method": "colour-line"}, image=src, mask=coarse)
    assert alpha.shape == (64, 64, 1) and alpha.dtype == np.uint8
    error_before = np.abs(coarse[..., 0] / 255 - truth).mean()
    error_after = np.abs(alpha[..., 0] / 255 - truth).mean()
    assert error_after < error_before / 2


def test_unknown_or_mismatched_method_is_a_bad_param():
    src = np.zeros((8, 8, 3), np.uint8)
    for op, method in (("upscale", "no-such-model"), ("deblur", "lanczos")):
        with pytest.raises(JobError) as caught:
            run(op, {"method": method}, image=src)
        assert caught.value.code == "bad_params"


def test_out_of_memory_halves_the_tile_and_keeps_progress_monotonic(monkeypatch):
    real = Lanczos.forward
    sizes = []

    def forward(self, x, scale):
        sizes.append(x.shape[-1])
        if x.shape[-1] > 100:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, x, scale)

    monkeypatch.setattr(Lanczos, "forward", forward)
    src = gradient(300, 300, 3, np.uint8, 255)
    reports = []
    out = run("upscale", {"scale": 2, "tile": 400, "method": "lanczos"}, reports, image=src)
    expected = run("upscale", {"scale": 2, "tile": 64, "method": "lanczos"}, image=src)
    assert np.abs(out.astype(int) - expected).max() <= 1
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("out of memory" in stage for _, stage in reports)


def test_out_of_memory_at_the_smallest_tile_is_an_error(monkeypatch):
    def forward(self, x, scale):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Lanczos, "forward", forward)
    with pytest.raises(JobError) as caught:
        run("upscale", {"scale": 2, "tile": 512, "method": "lanczos"},
            image=gradient(600, 600, 3, np.uint8, 255))
    assert caught.value.code == "out_of_memory"


@pytest.mark.slow
def test_cancel_stops_between_tiles():
    job = make_job("upscale", {"scale": 2, "tile": 64, "method": "lanczos"},
                   image=gradient(300, 300, 3, np.uint8, 255))
    seen = []

    def report(fraction, stage):
        seen.append(fraction)
        if len(seen) == 3:
            job.cancel.set()

    with pytest.raises(tiling.Cancelled):
        engine().run(job, report)
    assert len(seen) == 3


def test_fill_transparent_leaves_visible_pixels_alone():
    src = np.zeros((50, 60, 4), np.uint8)
    src[..., 2] = 200                      # hidden blue
    src[20:30, 25:35] = (10, 250, 10, 128)  # half-transparent green
    filled = pixels.fill_transparent(src, "u8")
    assert filled is not src
    assert (filled[20:30, 25:35] == src[20:30, 25:35]).all()
    hidden = filled[src[..., 3] == 0]
    assert (hidden[:, 3] == 0).all()
    assert np.abs(hidden[:, :3].astype(int) - (10, 250, 10)).max() <= 1
    opaque = np.full((5, 5, 2), 255, np.uint8)
    assert pixels.fill_transparent(opaque, "u8") is opaque


def photo_like(height, width, seed=3):
    rng = np.random.default_rng(seed)
    base = gradient(height, width, 3, np.float64, 200)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("op, params", [("upscale", {"scale": 2}), ("sharpen", {"scale": 2}),
                                        ("deblur", {})])
def test_strength_mixes_the_result_with_the_plain_one(op, params):
    src = photo_like(40, 56)
    full = run(op, params, image=src).astype(float)
    plain = run(op, dict(params, strength=0.0), image=src)
    if op == "deblur":
        assert np.array_equal(plain, src)        # 0: the layer unchanged, exactly
    else:
        lanczos = run("upscale", {"scale": 2, "method": "lanczos"}, image=src)
        assert np.array_equal(plain, lanczos)    # 0: the plain resampling, exactly
    half = run(op, dict(params, strength=0.5), image=src).astype(float)
    assert np.abs(full - plain).mean() > 1.0
    assert np.abs(half - (plain + full) / 2).max() <= 1.0    # halfway, to the rounding
    job = make_job(op, dict(params, strength=0.5), image=src)
    _, described = engine().run(job, lambda f, s: None)
    assert described["strength"] == 0.5


def test_strength_outside_0_to_1_is_refused():
    from sharpfu_client.wire import WireError
    for value in (-0.1, 1.5):
        with pytest.raises(WireError):
            make_job("upscale", {"strength": value}, image=np.zeros((8, 8, 3), np.uint8))


def test_progress_moves_inside_a_tile(monkeypatch):
    """A tile the CPU works on for seconds must not leave the progress bar
    still: every layer that finishes counts (reported every half second
    here made every report)."""
    import server.engine
    monkeypatch.setattr(server.engine, "SUBTILE_INTERVAL", 0.0)
    reports = []
    run("upscale", {"scale": 2, "tile": 200}, reports, image=photo_like(180, 380))
    tiles = [r for r in reports if r[1].endswith("tile 1 of 2") or r[1].endswith("tile 2 of 2")]
    inside = [f for f, _ in tiles if 0.0 < f < 0.5]
    assert len(inside) >= 5, reports[:8]
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
