"""The matting networks (models/matte_refiner.py, models/guided_upsampler.py)
as code, the training data recipe and foreground estimation; the shipped
weights are tested in test_matte_weights.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import guided_upsampler, matte_refiner
from server.methods.foreground import estimate_foreground, linear_to_srgb, srgb_to_linear
from server.methods.mask_refiner import Upsampling
from training import composites as matte_data

rng = np.random.default_rng(5)
PARAMETER_RANGE = (100_000, 600_000)


def disk(h: int, w: int, cy: float, cx: float, r: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return (r + 0.5 - torch.hypot(yy - cy, xx - cx)).clamp(0, 1)[None, None]


def composite_scene(h=96, w=128, seed=0):
    """A textured subject with a soft edge over another texture, and its alpha."""
    g = torch.Generator().manual_seed(seed)
    alpha = disk(h, w, h / 2, w / 2, h / 3)
    fg = 0.7 + 0.15 * F.avg_pool2d(torch.rand(1, 3, h, w, generator=g), 5, 1, 2) * \
        torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    bg = 0.2 + 0.2 * F.avg_pool2d(torch.rand(1, 3, h, w, generator=g), 5, 1, 2) * \
        torch.tensor([0.2, 0.6, 1.0]).view(1, 3, 1, 1)
    image = linear_to_srgb(alpha * srgb_to_linear(fg) + (1 - alpha) * srgb_to_linear(bg))
    return image, alpha


# -- the refiner ---------------------------------------------------------------

def test_refiner_gives_every_pass_at_the_input_size():
    model = matte_refiner.MatteRefiner().eval()
    count = matte_refiner.parameters(model)
    assert PARAMETER_RANGE[0] <= count <= PARAMETER_RANGE[1]
    image, mask = torch.rand(2, 3, 48, 64), (torch.rand(2, 1, 48, 64) > 0.5).float()
    with torch.no_grad():
        passes = model(image, mask, iterations=4)
    assert len(passes) == 5
    for p in passes:
        assert p["alpha"].shape == (2, 1, 48, 64) and p["alpha"].dtype == torch.float32
        assert 0 <= p["alpha"].min() and p["alpha"].max() <= 1
        assert p["settled"].dtype == torch.bool


@pytest.mark.slow
def test_sparse_passes_equal_the_dense_ones():
    torch.manual_seed(0)
    model = matte_refiner.MatteRefiner().eval()
    # Untrained, every confidence would be 0.5: give the last layer weights
    # so confidences vary, and a threshold that settles about 70% at once.
    torch.nn.init.normal_(model.step.out.weight, std=0.05)
    image = torch.rand(1, 3, 96, 160)
    mask = disk(96, 160, 48, 80, 30)
    with torch.no_grad():
        first = model(image, mask, iterations=1, sparse=False)[1]["confidence"]
        model.settle.fill_(float(torch.quantile(first.flatten(), 0.3)))
        dense = model(image, mask, iterations=3, sparse=False)
        sparse = model(image, mask, iterations=3, sparse=True)
    assert 0.5 < dense[1]["settled"].float().mean() < 0.95
    for d, s in zip(dense, sparse):
        assert torch.equal(d["settled"], s["settled"])
        assert (d["alpha"] - s["alpha"]).abs().max() < 1e-5


# -- the upsampler ---------------------------------------------------------------

def random_upsampler() -> guided_upsampler.GuidedUpsampler:
    """Untrained, with a detail step that does something (its last layer
    starts at zero)."""
    torch.manual_seed(4)
    model = guided_upsampler.GuidedUpsampler().eval()
    torch.nn.init.normal_(model.detail[-1].weight, std=0.3)
    return model


def tiled(model, image, alpha_lo, image_lo, tile):
    """The upsampler through the server's tiler, as the matte op runs it."""
    upsampling = Upsampling(model, alpha_lo, image_lo, tuple(image.shape[-2:]))
    frame = np.ascontiguousarray(image[0].permute(1, 2, 0).numpy())
    out = upsampling.whole(frame, torch.device("cpu"), tile)
    assert out.min() >= 0
    return out, upsampling.counts


@pytest.mark.slow
def test_upsampler_tiles_show_no_seams():
    upsampler = random_upsampler()
    image, alpha = composite_scene(320, 420, seed=2)
    alpha_lo, image_lo = F.interpolate(alpha, size=(91, 120), mode="area"), \
        F.interpolate(image, size=(91, 120), mode="area")
    whole, counts = tiled(upsampler, image, alpha_lo, image_lo, 1000)
    assert counts == {"computed": 1, "skipped": 0}
    for tile in (80, 97):
        parts, counts = tiled(upsampler, image, alpha_lo, image_lo, tile)
        assert counts["skipped"] > 0 and counts["computed"] > 0
        assert (parts - whole).abs().max() < 1 / 255


def test_upsampler_leaves_settled_regions_exact():
    upsampler = random_upsampler()
    image = torch.rand(1, 3, 64, 64)
    for value in (0.0, 1.0):
        alpha_lo = torch.full((1, 1, 16, 16), value)
        out, counts = tiled(upsampler, image, alpha_lo, F.avg_pool2d(image, 4), 32)
        assert counts["computed"] == 0 and bool((out == value).all())


# -- training data ---------------------------------------------------------------

def test_mattes_are_hard_the_way_real_ones_are():
    r = np.random.default_rng(7)
    soft_fractions = []
    for _ in range(6):
        alpha = matte_data.make_matte(r, 160, 160)
        assert alpha.dtype == np.float32 and 0 <= alpha.min() and alpha.max() <= 1
        assert (alpha > 0.99).any() and (alpha < 0.01).any()
        soft_fractions.append(((alpha > 0.02) & (alpha < 0.98)).mean())
    # partial opacity exists (strands, blur, glass) but does not dominate
    assert 0.01 < np.mean(soft_fractions) < 0.5


def test_composites_blend_in_linear_light_and_masks_are_rough():
    r = np.random.default_rng(8)
    alpha = np.full((4, 4), 0.5, np.float32)
    white, black = np.ones((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float32)
    # half of white's light: sRGB 0.735, not 0.5
    assert np.allclose(matte_data.composite(alpha, white, black), 0.7354, atol=1e-3)
    alpha = matte_data.make_matte(r, 128, 128)
    masks = [matte_data.coarse_mask(r, alpha) for _ in range(8)]
    errors = [np.abs(m - alpha).mean() for m in masks]
    assert all(m.shape == alpha.shape for m in masks) and min(errors) > 0.002


def test_lasso_masks_have_their_holes_filled():
    ring = np.zeros((40, 40), np.float32)
    ring[5:35, 5:35] = 1
    ring[15:25, 15:25] = 0
    assert matte_data.fill_holes(ring)[5:35, 5:35].min() == 1
    assert matte_data.fill_holes(ring)[:5].max() == 0


# -- foreground colours -------------------------------------------------------------

def test_foreground_estimation_removes_the_old_background_halo():
    h, w = 64, 96
    x = torch.arange(w).float().view(1, 1, 1, w).expand(1, 1, h, w)
    alpha = ((60 - x) / 24).clamp(0, 1)                      # a 24 px soft edge
    red = torch.tensor([0.85, 0.15, 0.1]).view(1, 3, 1, 1).expand(1, 3, h, w)
    green = torch.tensor([0.1, 0.75, 0.2]).view(1, 3, 1, 1).expand(1, 3, h, w)
    image = linear_to_srgb(alpha * srgb_to_linear(red) + (1 - alpha) * srgb_to_linear(green))
    band = ((alpha > 0.05) & (alpha < 0.95)).expand(1, 3, h, w)
    naive = (image - red)[band].abs().mean()
    estimated = (estimate_foreground(image, alpha) - red)[band].abs().mean()
    assert naive > 0.1 and estimated < 0.01
