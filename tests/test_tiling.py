"""Tiling: the plan, the blend weights, and tiled results equal to untiled ones."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from enginekit import run
from server import tiling

rng = np.random.default_rng(7)


@given(length=st.integers(1, 5000), tile=st.integers(64, 2048), margin=st.integers(0, 40))
def test_plan_covers_the_axis_with_pairwise_overlaps(length, tile, margin):
    overlap = tiling.overlap_for(margin)
    tile = max(tile, tiling.min_tile(margin))
    axis = tiling.plan_axis(length, tile, overlap)
    assert axis.starts[0] == 0 and axis.starts[-1] + axis.size == length
    assert axis.size <= tile or axis.size == length
    for a, b in zip(axis.starts, axis.starts[1:]):
        assert b > a and a + axis.size - b >= overlap      # enough shared context
    for a, c in zip(axis.starts, axis.starts[2:]):
        assert a + axis.size <= c                          # never three tiles on one pixel


@settings(max_examples=60)
@given(length=st.integers(1, 3000), tile=st.integers(64, 1024), margin=st.integers(0, 20),
       scale=st.sampled_from([1, 2, 4]))
def test_weights_sum_to_one_and_skip_the_margins(length, tile, margin, scale):
    overlap = tiling.overlap_for(margin)
    tile = max(tile, tiling.min_tile(margin))
    axis = tiling.plan_axis(length, tile, overlap)
    total = np.zeros(length * scale)
    for k, start in enumerate(axis.starts):
        weights = tiling.axis_weights(axis, k, scale, margin)
        if k > 0:
            assert not weights[:margin * scale].any()
        if k < axis.count - 1:
            assert not weights[len(weights) - margin * scale:].any()
        total[start * scale:(start + axis.size) * scale] += weights
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def image(shape, dtype):
    if dtype == np.float32:
        return rng.random(shape, dtype=np.float32)
    top = np.iinfo(dtype).max
    return rng.integers(0, top + 1, shape, dtype=np.int64).astype(dtype)


CASES = [
    ("upscale", {"scale": 2, "method": "lanczos"}, (61, 83, 4), np.uint8),
    ("upscale", {"scale": 4, "method": "lanczos"}, (110, 97, 3), np.dtype("<u2")),
    ("upscale", {"scale": 2, "method": "lanczos"}, (120, 150, 1), np.float32),
    # the classical deblurrer, whose margin lets these small images make
    # many tiles; the MIMO-UNet networks' tiling: tests/test_mimo_unet.py
    ("deblur", {"method": "unsharp"}, (150, 177, 2), np.uint8),
    # Unsharp mask, then the default upscaler (a network once one is shipped).
    ("sharpen", {"scale": 2, "method": "unsharp"}, (300, 310, 3), np.uint8),
]


@pytest.mark.parametrize("op, params, shape, dtype", CASES)
def test_tiled_equals_untiled(op, params, shape, dtype):
    src = image(shape, dtype)
    whole = run(op, dict(params, tile=4096), image=src)
    reports = []
    tiled = run(op, dict(params, tile=64), reports, image=src)
    assert tiled.shape == whole.shape and tiled.dtype == whole.dtype
    full = 1.0 if dtype == np.float32 else float(np.iinfo(dtype).max)
    assert np.abs(tiled.astype(np.float64) - whole).max() / full <= 1 / 255
    tile_reports = [r for r in reports if "tile" in r[1]]
    assert len(tile_reports) > 1, "expected progress per tile"


def test_tiled_matte_equals_untiled():
    src = image((80, 90, 3), np.uint8)
    mask = (rng.random((80, 90, 1)) > 0.5).astype(np.uint8) * 255
    whole = run("matte", {"tile": 4096}, image=src, mask=mask)
    tiled = run("matte", {"tile": 72}, image=src, mask=mask)
    assert whole.shape == (80, 90, 1)
    assert np.abs(tiled.astype(int) - whole).max() <= 1
