"""Adaptation to the user's images: the pairs, the training and its
safeguard, the adapt op on the engine, and adapted networks in later jobs."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from enginekit import make_job
from sharpfu_client.wire import WireError
from models import registry
from server import tiling
from server.adaptation import AdaptedMethod, fit, low_rank, pairs as internal_pairs
from server.engine import Engine
from server.jobs import JobError
from server.settings import Settings
from training import degradations
from training.degradations import BlurRecipe, ThumbnailRecipe

FAST = dict(steps=40, checks=4)
DOWNSCALE_X2 = internal_pairs.Downscale(2, ThumbnailRecipe())


def shipped_x2():
    weights = next(w for w in registry.shipped()
                   if w.record["method"] == "span" and w.spec.scale == 2)
    return weights, weights.load()


def shipped_pairs(weights) -> internal_pairs.Downscale:
    """The pairs the shipped x2 upscaler adapts on: its own training recipe."""
    return internal_pairs.Downscale(2, ThumbnailRecipe.of(weights.record))


def text_image(seed: int = 0, size: int = 160) -> np.ndarray:
    """Dark glyphs on light paper, drawn at 4x and reduced: sharp edges the
    shipped network (trained on photos) has seen little of."""
    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (size * 4, size * 4), (245, 242, 235))
    draw = ImageDraw.Draw(canvas)
    face = ImageFont.load_default(44)
    for row in range(0, size * 4, 56):
        text = "".join(chr(c) for c in rng.integers(65, 91, 14))
        draw.text((8, row), text, font=face, fill=(20, 20, 30))
    return np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS))


def test_the_recipe_is_the_one_the_weights_finished_training_with():
    weights, _ = shipped_x2()
    last = weights.record["training"]["data"]["recipe_changes"][-1]["recipe"]
    recipe = ThumbnailRecipe.of(weights.record)
    assert recipe.blur == last["blur"] and recipe.jpeg == last["jpeg"]
    assert recipe.noise_sigma == tuple(last["noise_sigma"])
    assert ThumbnailRecipe.of({}) == ThumbnailRecipe()


def test_pairs_hold_out_a_strip_never_trained_on():
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 200:] = 255            # the held-out strip is the right quarter or more
    pairs = internal_pairs.Pairs([image], DOWNSCALE_X2, 16, seed=1)
    assert pairs.held_out
    (region,) = pairs.train
    assert region.left + region.width <= 300 - 75
    low, high = pairs.batch(6)
    assert low.shape == (6, 3, 16, 16) and high.shape == (6, 3, 32, 32)
    check_low, check_high = pairs.check
    assert check_high.shape[1:] == (3, 32, 32)
    assert float(check_high.min()) > 0.99     # only white: cut from the strip
    # Too small for a strip: everything trains, and the check says so.
    small = internal_pairs.Pairs([np.zeros((40, 40, 3), np.uint8)], DOWNSCALE_X2, 16,
                                 seed=1)
    assert not small.held_out
    with pytest.raises(ValueError):
        internal_pairs.Pairs([np.zeros((20, 20, 3), np.uint8)], DOWNSCALE_X2, 16, seed=1)


@pytest.mark.slow
def test_adaptation_improves_the_internal_pairs_of_a_synthetic_image():
    weights, model = shipped_x2()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    outcome = fit.adapt(model, [text_image(1), text_image(2)], shipped_pairs(weights),
                        fit.Settings(**FAST))
    assert outcome.accepted, outcome.reason
    assert outcome.after > outcome.before + 0.05
    assert outcome.held_out and outcome.state is not None
    assert outcome.curve[0] == (0, round(outcome.before, 3))
    # the shipped network itself is untouched
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # and the kept weights do score what the outcome says on the check pairs
    adapted = registry.build(outcome.state).model
    pairs = internal_pairs.Pairs([text_image(1), text_image(2)], shipped_pairs(weights), 32,
                                 seed=0)
    assert fit.evaluate(adapted, pairs.check) == pytest.approx(outcome.after, abs=1e-3)


@pytest.mark.slow
def test_the_safeguard_rejects_a_harmful_adaptation():
    weights, model = shipped_x2()
    # A learning rate a thousand times too high wrecks the network at once;
    # the held-out check must notice and keep the shipped one.
    outcome = fit.adapt(model, [text_image(3)], shipped_pairs(weights),
                        fit.Settings(steps=12, checks=3, learning_rate=1.0))
    assert not outcome.accepted
    assert outcome.state is None and outcome.after == outcome.before
    assert min(db for _, db in outcome.curve[1:]) < outcome.before - 1.0
    assert "shipped network is kept" in outcome.reason


@pytest.mark.slow
def test_adaptation_stops_when_cancelled():
    weights, model = shipped_x2()
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(tiling.Cancelled):
        fit.adapt(model, [text_image(4)], shipped_pairs(weights), fit.Settings(steps=200),
                  cancelled=cancelled)
    assert len(calls) == 4


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(Settings(device="cpu", models_dir=str(tmp_path_factory.mktemp("models"))))


def adapt_job(engine, params=None, *images):
    job = make_job("adapt", {"steps": 40, **(params or {})},
                   **{"sample%d" % k: image for k, image in enumerate(images)})
    engine.check(job)
    reports = []
    frames, method = engine.run(job, lambda f, s: reports.append((f, s)))
    assert frames == []
    return job.outcome["adaptation"], method, reports


@pytest.mark.slow
def test_adapt_op_makes_a_model_that_upscale_and_sharpen_use(engine):
    image = text_image(5)
    outcome, method, reports = adapt_job(engine, {"save": True}, image, text_image(6))
    assert outcome["accepted"], outcome["reason"]
    name = outcome["model"]
    assert name.startswith("span-adapted-") and method["name"] == name
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and len(fractions) > 40
    assert any("adapting: step 40 of 40" in s for _, s in reports)
    adapted = engine.catalog.methods[name]
    assert isinstance(adapted, AdaptedMethod)
    assert engine.catalog.defaults()["upscale"]["2"] == "span-tuned"   # never a default

    low = image[:64, :64]
    shipped_job = make_job("upscale", {"scale": 2, "method": "span"}, image=low)
    shipped, info = engine.run(shipped_job, lambda f, s: None)
    assert info["name"] == "span"
    ours_job = make_job("upscale", {"scale": 2, "method": name}, image=low)
    ours, info = engine.run(ours_job, lambda f, s: None)
    assert info["name"] == name and info["adaptation"]["accepted"]
    assert ours[0][1].shape == (128, 128, 3)
    assert np.abs(ours[0][1].astype(int) - shipped[0][1].astype(int)).mean() > 0.05
    sharpen = make_job("sharpen", {"scale": 2, "method": name}, image=low)
    _, info = engine.run(sharpen, lambda f, s: None)
    assert [stage["name"] for stage in info["stages"]][-1] == name
    with pytest.raises(JobError):
        engine.check(make_job("upscale", {"scale": 4, "method": name}, image=low))
    with pytest.raises(JobError):
        engine.check(make_job("sharpen", {"scale": 1, "method": name}, image=low))

    # asked again: answered from the cache, at once
    again, _, _ = adapt_job(engine, {"save": True}, image, text_image(6))
    assert again["cached"] and again["model"] == name

    # saved, and offered by a server started later
    saved = engine.adapter.folder / (name + ".safetensors")
    assert outcome["saved"] == str(saved) and saved.is_file()
    record = json.loads(saved.with_suffix(".json").read_text())
    assert record["base"] == "span" and record["adaptation"]["accepted"]
    later = Engine(Settings(device="cpu", models_dir=str(engine.adapter.folder.parent)))
    assert name in later.catalog.methods
    job = make_job("upscale", {"scale": 2, "method": name}, image=low)
    result, _ = later.run(job, lambda f, s: None)
    assert np.array_equal(result[0][1], ours[0][1])


def test_clean_images_get_pairs_without_jpeg(engine, monkeypatch):
    seen = []

    def fake_adapt(model, samples, degradation, settings, progress, cancelled):
        seen.append(degradation.recipe)
        raise tiling.Cancelled()   # the recipe is all this test needs

    monkeypatch.setattr(fit, "adapt", fake_adapt)
    image = text_image(9, 96)
    for compressed in (True, False):
        job = make_job("adapt", {"steps": 10, "compressed": compressed}, sample0=image)
        with pytest.raises(tiling.Cancelled):
            engine.run(job, lambda f, s: None)
    weights, _ = shipped_x2()
    assert seen[0] == ThumbnailRecipe.of(weights.record) and seen[0].jpeg > 0
    assert seen[1] == dataclasses.replace(seen[0], jpeg=0.0)


def test_adapt_refuses_what_cannot_adapt(engine):
    image = text_image(7, 96)
    for params in ({"method": "lanczos"}, ):
        with pytest.raises(JobError) as error:
            engine.check(make_job("adapt", {"steps": 10, **params}, sample0=image))
        assert error.value.code == "bad_params"
    no_folder = Engine(Settings(device="cpu"))
    with pytest.raises(JobError) as error:
        no_folder.check(make_job("adapt", {"save": True}, sample0=image))
    assert "models folder" in error.value.message


@pytest.mark.slow
def test_adapt_cancelled_through_the_engine(engine):
    job = make_job("adapt", {"steps": 500}, sample0=text_image(8, 128))
    methods = set(engine.catalog.methods)

    def report(fraction, stage):
        if "step 3 of" in stage:
            job.cancel.set()

    with pytest.raises(tiling.Cancelled):
        engine.run(job, report)
    assert set(engine.catalog.methods) == methods     # nothing left behind


# -- the deblurrer ----------------------------------------------------------------

def shipped_deblurrer():
    weights = next(w for w in registry.shipped() if w.architecture.name == "mimo-unet")
    return weights, weights.load()


def high_frequency(pixels: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels: what blur takes."""
    return float((pixels[..., 1:, :] - pixels[..., :-1, :]).abs().mean()
                 + (pixels[..., :, 1:] - pixels[..., :, :-1]).abs().mean())


def test_blur_recipe_is_the_deblurrers_own():
    weights, _ = shipped_deblurrer()
    trained = weights.record["training"]["data"]["recipe"]
    recipe = BlurRecipe.of(weights.record)
    assert recipe.shake == trained["shake"] and recipe.motion_length == tuple(
        trained["motion_length"])
    assert BlurRecipe.of(None) == BlurRecipe()


def test_largest_radius_bounds_every_kernel_drawn():
    recipe = BlurRecipe()
    reach = degradations.largest_radius(recipe)
    rng = np.random.default_rng(3)
    sides = [degradations.random_kernel(rng, recipe)[0].shape[0] for _ in range(300)]
    assert max(sides) // 2 <= reach
    assert max(sides) // 2 >= reach - 6       # and it is not wildly loose


def test_reblur_pairs_are_blurred_copies_of_the_half_size_image():
    degradation = internal_pairs.Reblur(BlurRecipe(sharp=0.0, noise=0.0, jpeg=0.0))
    image = text_image(11, 320)
    pairs = internal_pairs.Pairs([image], degradation, 24, seed=2)
    # cut from the image reduced to 160 px: a strip of it held out
    assert pairs.images[0].shape == (160, 160, 3) and pairs.held_out
    low, high = pairs.batch(8)
    assert low.shape == high.shape == (8, 3, 24, 24)
    assert high_frequency(low) < 0.8 * high_frequency(high)
    # same colours on average: the kernels sum to one and are centred
    assert float((low.mean((2, 3)) - high.mean((2, 3))).abs().max()) < 0.03
    # an identity kernel gives the target back exactly
    identity = internal_pairs.Reblur(BlurRecipe(
        shake=0, linear=0, defocus=0, gaussian=0, sharp=1, noise=0, jpeg=0))
    low, high = internal_pairs.Pairs([image], identity, 24, seed=2).batch(4)
    assert torch.equal(low, high)
    with pytest.raises(ValueError, match="at least"):
        internal_pairs.Pairs([image[:100, :100]], degradation, 24, seed=2)


@pytest.mark.slow
def test_adapting_the_deblurrer_makes_a_model_deblur_and_sharpen_use(engine):
    image = text_image(12, 400)
    outcome, method, _ = adapt_job(engine, {"task": "deblur", "steps": 20, "compressed": False},
                                   image)
    assert outcome["task"] == "deblur" and outcome["base"] == "mimo-unet-small"
    assert outcome["scale"] == 1 and outcome["held_out"]
    # seeded: twenty steps do beat the shipped weights on this page's pairs
    assert outcome["accepted"], outcome["reason"]
    name = outcome["model"]
    assert name.startswith("mimo-unet-small-adapted-") and method["name"] == name
    adapted = engine.catalog.methods[name]
    assert set(adapted.ops) == {"deblur", "sharpen"} and adapted.scales == (1,)
    assert engine.catalog.defaults()["deblur"]["1"] != name   # never a default
    blurry = image[:70, :90]
    result, info = engine.run(make_job("deblur", {"method": name}, image=blurry),
                              lambda f, s: None)
    assert info["name"] == name and result[0][1].shape == blurry.shape
    _, info = engine.run(make_job("sharpen", {"scale": 2, "method": name}, image=blurry),
                         lambda f, s: None)
    assert [stage["name"] for stage in info["stages"]] == [
        name, engine.catalog.defaults()["upscale"]["2"]]


def test_deblur_adaptation_refuses_a_classical_deblurrer(engine):
    with pytest.raises(JobError) as error:
        engine.check(make_job("adapt", {"task": "deblur", "method": "unsharp"},
                              sample0=text_image(13, 256)))
    assert error.value.code == "bad_params" and "classical" in error.value.message
    with pytest.raises(JobError) as error:
        engine.check(make_job("adapt", {"task": "deblur", "method": "span"},
                              sample0=text_image(13, 256)))
    assert error.value.code == "bad_params"


def test_an_adapted_deblurrer_is_never_the_default(engine, monkeypatch):
    # Even when the shipped deblurrer ranks under the unsharp mask (weights
    # that did not validate), its adapted copy must not become the default.
    base = engine.catalog.methods["mimo-unet-small"]
    monkeypatch.setattr(base, "preference", -1.0)
    # nor the measured default deblurrer above them all
    monkeypatch.setattr(engine.catalog.methods["blind-deconvolution"], "preference", -1.0)
    record = {"adaptation": {"gain": 0.1, "reason": "test"}, "samples": 1}
    adapted = AdaptedMethod("mimo-unet-small-adapted-test", base, 1, record, state={})
    monkeypatch.setitem(engine.catalog.methods, adapted.name, adapted)
    assert engine.catalog.defaults()["deblur"]["1"] == "unsharp"
    assert adapted.rank() < base.rank()


# -- low-rank adapters ------------------------------------------------------------

@pytest.mark.slow
def test_low_rank_adapters_start_at_the_shipped_network_and_merge_exactly():
    _, model = shipped_x2()
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
    adapted = fit._copy(model)
    params = low_rank.attach(adapted, 4)
    assert sum(p.numel() for p in params) < 0.2 * sum(p.numel() for p in model.parameters())
    assert all(not p.requires_grad for n, p in adapted.named_parameters()
               if n.endswith(".conv.weight"))
    with torch.no_grad():
        assert torch.equal(adapted(x), before)         # U starts at zero
        for param in params:
            param.add_(0.01 * torch.randn_like(param))
        changed = adapted(x)
    assert (changed - before).abs().max() > 1e-3
    state = low_rank.merged_state(adapted)
    assert set(state) == set(model.state_dict())       # the network's own names
    plain = registry.build(state).model
    with torch.no_grad():
        assert torch.allclose(plain(x), changed, atol=1e-5)


@pytest.mark.slow
def test_low_rank_adaptation_keeps_a_plain_network():
    weights, model = shipped_x2()
    outcome = fit.adapt(model, [text_image(1), text_image(2)], shipped_pairs(weights),
                        fit.Settings(trainable="low-rank", learning_rate=5e-3, **FAST))
    assert outcome.accepted, outcome.reason         # seeded: forty steps gain here
    assert set(outcome.state) == set(model.state_dict())
    adapted = registry.build(outcome.state).model
    pairs = internal_pairs.Pairs([text_image(1), text_image(2)], shipped_pairs(weights), 32,
                                 seed=0)
    assert fit.evaluate(adapted, pairs.check) == pytest.approx(outcome.after, abs=1e-3)


@pytest.mark.slow
def test_adapt_op_trains_low_rank_adapters_when_asked(engine):
    images = (text_image(1), text_image(2))
    outcome, method, _ = adapt_job(engine, {"trainable": "low-rank"}, *images)
    assert outcome["accepted"], outcome["reason"]
    full, _, _ = adapt_job(engine, {}, *images)
    assert outcome["model"] != full["model"]          # a different request, a different name
    adapted = engine.catalog.methods[outcome["model"]]
    assert adapted.record["settings"]["trainable"] == "low-rank"
    assert adapted.record["settings"]["learning_rate"] == pytest.approx(
        fit.Settings().learning_rate * fit.LOW_RANK_RATE_FACTOR)
    result, info = engine.run(make_job("upscale", {"scale": 2, "method": outcome["model"]},
                                       image=images[0][:40, :40]), lambda f, s: None)
    assert info["name"] == outcome["model"] and result[0][1].shape == (80, 80, 3)
    with pytest.raises(WireError, match="must be one of all, low-rank"):
        make_job("adapt", {"trainable": "some"}, sample0=images[0])
