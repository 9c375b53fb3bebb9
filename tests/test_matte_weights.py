"""The shipped matting weights: records, loading, and what the trained
refiner and upsampler do."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import guided_upsampler, matte_refiner, registry
from server.methods.foreground import linear_to_srgb
from test_matte_models import composite_scene, disk, tiled


def shipped(role: str) -> registry.Weights:
    found = [w for w in registry.shipped() if w.record.get("method") == "mask-refiner"
             and w.record.get("role") == role]
    assert found, "no shipped matte %s in %s" % (role, registry.WEIGHTS_DIR)
    return found[0]


@pytest.fixture(scope="module")
def refiner() -> matte_refiner.MatteRefiner:
    return shipped("refiner").load()


@pytest.fixture(scope="module")
def upsampler() -> guided_upsampler.GuidedUpsampler:
    return shipped("upsampler").load()


# -- the refiner ---------------------------------------------------------------

def test_settled_pixels_never_change(refiner):
    image, alpha = composite_scene()
    mask = (F.max_pool2d(alpha, 9, 1, 4) > 0.5).float()     # 4 px too large
    with torch.no_grad():
        passes = refiner(image, mask, iterations=4)
    for before, after in zip(passes[1:], passes[2:]):
        assert bool((after["settled"] >= before["settled"]).all())
        kept = before["settled"]
        assert torch.equal(after["alpha"][kept], before["alpha"][kept])
    # Confident pixels settle, far from the edge far more than near it, and
    # the settled ones are right.
    settled = passes[-1]["settled"]
    far = F.max_pool2d(((alpha > 0.02) & (alpha < 0.98)).float(), 25, 1, 12) == 0
    assert settled.float().mean() > 0.1
    assert settled[far].float().mean() > 5 * settled[~far].float().mean()
    error = (passes[-1]["alpha"] - alpha).abs()
    assert error[settled].mean() < 0.1 * error[~settled].mean()


def test_refiner_improves_a_sloppy_mask(refiner):
    image, alpha = composite_scene()
    mask = (F.max_pool2d(alpha, 11, 1, 5) > 0.5).float()    # 5 px too large all round
    with torch.no_grad():
        out = refiner(image, mask)[-1]["alpha"]
    assert (out - alpha).abs().mean() < (mask - alpha).abs().mean() / 2


@pytest.mark.slow
def test_output_follows_the_mask_where_the_image_is_ambiguous(refiner):
    # A flat, noisy grey picture has no edge to snap to: the matte must be the
    # mask's shape wherever the mask puts it.
    g = torch.Generator().manual_seed(1)
    image = 0.5 + 0.02 * torch.randn(1, 3, 96, 128, generator=g)
    for cx in (40, 88):
        mask = disk(96, 128, 48, cx, 25)
        with torch.no_grad():
            out = refiner(image.clamp(0, 1), mask)[-1]["alpha"]
        inside, outside = mask > 0.99, mask < 0.01
        assert out[inside].mean() > 0.8 and out[outside].mean() < 0.2
        union = ((out > 0.5) | (mask > 0.5)).sum()
        assert ((out > 0.5) & (mask > 0.5)).sum() / union > 0.85


# -- the upsampler ---------------------------------------------------------------

def test_upsampler_sharper_than_bilinear_at_an_edge(upsampler):
    # A hard, straight subject edge, shrunk 4x: guided by the full-resolution
    # image, the edge comes back closer to the truth than bilinear brings it.
    image, alpha = composite_scene(128, 128, seed=3)
    hard = (alpha > 0.5).float()
    image = linear_to_srgb(hard * 0.8 + (1 - hard) * 0.05).expand(1, 3, -1, -1).contiguous()
    alpha_lo, image_lo = F.avg_pool2d(hard, 4), F.avg_pool2d(image, 4)
    guided, _ = tiled(upsampler, image, alpha_lo, image_lo, 1000)
    bilinear = F.interpolate(alpha_lo, scale_factor=4, mode="bilinear", align_corners=False)
    assert (guided - hard).abs().sum() < 0.7 * (bilinear - hard).abs().sum()


# -- shipped weights ---------------------------------------------------------------

@pytest.mark.parametrize("role, architecture", [("refiner", "matte-refiner"),
                                                ("upsampler", "guided-upsampler")])
def test_shipped_weights_have_records_and_load(role, architecture):
    weights = shipped(role)
    record = weights.record
    assert record["architecture"] == architecture and record["ops"] == ["matte"]
    assert record["source"] == "trained by SharpFu's scripts/train_matte.py"
    for key in ("commands", "data", "git", "device", "training_seconds", "steps"):
        assert key in record["training"], key
    assert set(record["training"]["data"]["validation_photos"]).isdisjoint(
        record["training"]["data"]["training_photos"])
    assert weights.path.stat().st_size < 4 * 2 ** 20
    loaded = registry.load(weights.path)
    assert loaded.architecture.name == architecture
    assert loaded.params == record["hyper_parameters"]




def test_shipped_upsampler_tiles_show_no_seams(upsampler):
    image, alpha = composite_scene(160, 200, seed=4)
    alpha_lo = F.interpolate(alpha, size=(40, 50), mode="area")
    image_lo = F.interpolate(image, size=(40, 50), mode="area")
    whole, _ = tiled(upsampler, image, alpha_lo, image_lo, 1000)
    parts, counts = tiled(upsampler, image, alpha_lo, image_lo, 48)
    assert counts["computed"] > 1
    assert (parts - whole).abs().max() < 1 / 255
