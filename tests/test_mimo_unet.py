"""MIMO-UNet deblurring: the official layout, the models folder users fill,
the shipped weights, padding and tiling."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from PIL import Image

from enginekit import engine, make_job, run
from models import mimo_unet, registry
from models.architectures import mimo_unet as mimo_unet_arch
from models.loading import WeightsError
from models.span import SPAN
from models.store import Store
from server import tiling
from server.engine import Engine
from server.methods import blind_deconvolution, network
from server.methods.network import NetworkMethod, shipped_methods
from server.settings import Settings
from training import metrics
from training.degradations import BLUR_CASES

DATA = Path(__file__).resolve().parent / "data"
FACE = DATA / "grace_hopper_face.png"     # a crop of a held-out photo (data/README.md)

# Names and shapes of the authors' state dicts, one "name (shape)" line per
# tensor, hashed: computed from the official models/MIMOUNet.py
# (github.com/chosj95/MIMO-UNet), so a renamed or reshaped layer fails here.
OFFICIAL = {(32, 8): (6_807_171, 244,
                      "cb3dd97d72e7b0c223281a64e44f8f3784e75ebdc590b240eeda0251cd6cbcaa"),
            (32, 20): (16_107_651, 532,
                       "d991b9c9cf64a40b9ae6e7aa5adcf096e1dd2290dfc452b92705b1909e306632")}


def fingerprint(state: dict) -> str:
    lines = "\n".join("%s %s" % (k, tuple(v.shape)) for k, v in state.items())
    return hashlib.sha256(lines.encode()).hexdigest()


def small_network(channels=8, blocks=1, seed=0) -> mimo_unet.MIMOUNet:
    torch.manual_seed(seed)
    return mimo_unet.MIMOUNet(channels, blocks).eval()


def save_official(model: torch.nn.Module, path: Path) -> Path:
    """As the authors' release saves it: a dict whose 'model' is the state dict."""
    torch.save({"model": model.state_dict()}, path)
    return path


# -- the official layout ---------------------------------------------------------

@pytest.mark.parametrize("size", sorted(OFFICIAL))
def test_paper_sizes_have_the_official_names_shapes_and_parameter_counts(size):
    parameters, tensors, digest = OFFICIAL[size]
    with torch.device("meta"):
        model = mimo_unet.MIMOUNet(*size)
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert len(state) == tensors and fingerprint(state) == digest
    assert mimo_unet_arch.detect(state) == {"channels": size[0], "blocks": size[1]}
    assert mimo_unet_arch.flavour(*size) == {8: "MIMO-UNet", 20: "MIMO-UNet+"}[size[1]]


def test_key_names_and_shapes_of_the_release():
    """A few names and shapes read off the authors' models/MIMOUNet.py and
    models/layers.py, spelled out (the fingerprint above covers them all)."""
    with torch.device("meta"):
        state = mimo_unet.MIMOUNet(32, 8).state_dict()
    expected = {
        "feat_extract.0.main.0.weight": (32, 3, 3, 3),
        "feat_extract.1.main.0.weight": (64, 32, 3, 3),           # stride 2
        "feat_extract.3.main.0.weight": (128, 64, 4, 4),          # transposed: (in, out, k, k)
        "feat_extract.5.main.0.bias": (3,),
        "Encoder.2.layers.7.main.1.main.0.weight": (128, 128, 3, 3),
        "Decoder.0.layers.0.main.0.main.0.weight": (128, 128, 3, 3),
        "Convs.0.main.0.weight": (64, 128, 1, 1),
        "ConvsOut.1.main.0.weight": (3, 64, 3, 3),
        "AFFs.0.conv.0.main.0.weight": (32, 224, 1, 1),
        "AFFs.1.conv.1.main.0.weight": (64, 64, 3, 3),
        "FAM2.merge.main.0.weight": (64, 64, 3, 3),
        "SCM1.main.0.main.0.weight": (32, 3, 3, 3),
        "SCM1.main.3.main.0.weight": (125, 64, 1, 1),
        "SCM2.conv.main.0.weight": (64, 64, 1, 1),
    }
    assert {k: tuple(state[k].shape) for k in expected} == expected
    assert not any(k.startswith("drop") for k in state)


def test_registry_knows_mimo_unet(tmp_path):
    model = small_network(8, 2)
    architecture, params = registry.detect(model.state_dict())
    assert architecture.name == "mimo-unet" and params == {"channels": 8, "blocks": 2}
    rebuilt = registry.load(save_official(model, tmp_path / "MIMO-UNet.pkl")).model
    x = torch.rand(1, 3, 20, 28)
    with torch.inference_mode():
        assert torch.equal(rebuilt(x), model.restore(x))
    spec = architecture.spec(**params)
    assert spec.multiple == 1 and spec.alignment == 4   # it pads itself, by reflection


@pytest.mark.slow
def test_official_checkpoint_round_trips_strictly_through_weights_only_load(tmp_path):
    model = small_network(32, 8, seed=1)
    path = save_official(model, tmp_path / "MIMO-UNet.pkl")
    found = registry.load(path)
    loaded, params = found.model, found.params
    assert params == {"channels": 32, "blocks": 8}
    original = model.state_dict()
    assert list(loaded.state_dict()) == list(original)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x)[-1])


def test_dataparallel_prefix_and_safetensors_are_accepted(tmp_path):
    from safetensors.torch import save_file
    model = small_network()
    state = model.state_dict()
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, tmp_path / "dp.pth")
    save_file(state, str(tmp_path / "ours.safetensors"))
    for name in ("dp.pth", "ours.safetensors"):
        assert registry.load(tmp_path / name).params == {"channels": 8, "blocks": 1}


def test_weights_that_only_look_like_mimo_unet_are_refused(tmp_path):
    state = small_network().state_dict()
    assert mimo_unet_arch.detect(SPAN(2, 16, 2).state_dict()) is None
    uneven = {k: v for k, v in small_network(8, 2).state_dict().items()
              if not k.startswith("Decoder.2.layers.1.")}
    with pytest.raises(WeightsError, match="differ in depth"):
        mimo_unet_arch.detect(uneven)
    state["FAM1.merge.main.0.weight"] = torch.zeros(32, 16, 3, 3)
    torch.save({"model": state}, tmp_path / "odd.pkl")
    with pytest.raises(WeightsError, match="do not fit"):
        registry.load(tmp_path / "odd.pkl")


def test_the_three_outputs_are_residuals_at_quarter_half_and_full_size():
    model = small_network()
    for parameter in model.parameters():
        torch.nn.init.zeros_(parameter)
    x = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(4))
    quarter, half, full = model(x)
    assert quarter.shape == (2, 3, 6, 10) and half.shape == (2, 3, 12, 20)
    # with every weight zero, each output is its input at that size
    assert torch.equal(full, x) and torch.equal(half, x[..., ::2, ::2])
    assert torch.equal(quarter, x[..., ::4, ::4])


@pytest.mark.slow
def test_theoretical_reach_matches_the_gradient():
    """theoretical_radius is exact: the gradient of one output pixel reaches
    that far and no further (weights made positive so no ReLU closes)."""
    model = mimo_unet.MIMOUNet(8, 1).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.rand_like(parameter) * 0.3)
    radius = mimo_unet_arch.theoretical_radius(1)
    side = (2 * radius + 40) // 4 * 4
    x = torch.rand(1, 3, side, side, dtype=torch.float64, requires_grad=True)
    reach = 0
    for centre in range(side // 2, side // 2 + 4):
        gradient, = torch.autograd.grad(model(x)[-1][0, :, centre, centre].sum(), x)
        where = torch.nonzero(gradient[0].abs().sum(0))
        reach = max(reach, int((where - centre).abs().max()))
    assert reach == radius == 45
    assert mimo_unet_arch.theoretical_radius(8) == 241
    assert mimo_unet_arch.theoretical_radius(20) == 577


# -- padding ----------------------------------------------------------------------

def test_sides_must_be_multiples_of_4_and_restore_pads_by_reflection():
    model = small_network()
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 3, 30, 32))
    x = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        restored = model.restore(x)
        by_hand = model(torch.nn.functional.pad(x, (0, 3, 0, 3), mode="reflect"))[-1]
        assert restored.shape == x.shape
        assert torch.equal(restored, by_hand[..., :37, :53])
        assert torch.equal(model.restore(x[..., :36, :52]), model(x[..., :36, :52])[-1])
        for shape in ((1, 1), (2, 3), (3, 2), (5, 4)):
            tiny = torch.rand(1, 3, *shape)
            assert model.restore(tiny).shape == tiny.shape


# -- the models folder -----------------------------------------------------------

class Evil:
    """A pickle that runs code when loaded freely: it touches a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def fill_folder(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    save_official(small_network(), folder / "My Deblurrer.pkl")
    marker = folder.parent / "pwned"
    torch.save({"model": Evil(marker)}, folder / "evil.pkl")
    (folder / "broken.pth").write_bytes(b"\x80\x02 this is no checkpoint")
    (folder / "empty.pt").write_bytes(b"")
    torch.save({"model": SPAN(2, 16, 2).state_dict()}, folder / "span-x2.pth")
    (folder / "README.txt").write_text("downloaded from the MIMO-UNet page")
    (folder / "sub").mkdir()
    save_official(small_network(), folder / "sub" / "nested.pkl")
    return marker


def test_the_models_folder_offers_what_it_recognises_and_skips_the_rest(tmp_path, caplog):
    marker = fill_folder(tmp_path / "models")
    with caplog.at_level(logging.INFO, logger="sharpfu.models"):
        served = Engine(Settings(device="cpu", models_dir=str(tmp_path / "models")))
    assert not marker.exists(), "a checkpoint was unpickled freely"
    methods = {m["name"]: m for m in served.status()["methods"]}
    assert "My Deblurrer" in methods and "nested" not in methods
    info = methods["My Deblurrer"]
    assert info["kind"] == "network" and info["source"] == "user checkpoint My Deblurrer.pkl"
    assert info["ops"] == ["deblur", "sharpen"] and info["weights"]["1"]["parameters"] == 88_291
    # users bring upscalers too (issue 16): SharpFu's SPAN weights are one
    assert methods["span-x2"]["ops"] == ["upscale", "sharpen"] and methods["span-x2"]["scales"] == [2]
    skipped = {r.getMessage().split(":")[1].split()[-1]: r for r in caplog.records
               if "skipping" in r.getMessage()}
    assert set(skipped) == {"evil.pkl", "broken.pth", "empty.pt", "README.txt"}
    assert "empty" in skipped["empty.pt"].getMessage()
    assert "cannot be loaded safely" in skipped["evil.pkl"].getMessage()
    assert skipped["README.txt"].levelno == logging.INFO
    assert skipped["evil.pkl"].levelno == logging.WARNING

    src = np.array(Image.open(FACE).convert("RGB"))[:45, :50]
    job = make_job("deblur", {"method": "My Deblurrer"}, image=src)
    results, used = served.run(job, lambda fraction, stage: None)
    assert used["name"] == "My Deblurrer" and results[0][1].shape == src.shape
    job = make_job("sharpen", {"method": "My Deblurrer", "scale": 2}, image=src)
    results, used = served.run(job, lambda fraction, stage: None)
    assert used["stages"][0]["name"] == "My Deblurrer" and results[0][1].shape == (90, 100, 3)


def test_a_missing_or_odd_models_folder_is_no_error(tmp_path):
    assert Store(tmp_path / "nowhere").models() == []
    (tmp_path / "file").write_text("")
    assert Store(tmp_path / "file").models() == []
    assert Engine(Settings(device="cpu", models_dir="")).catalog.store is None


def test_names_never_collide(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("unsharp.pkl", "deblur.pkl", "deblur.pth"):
        save_official(small_network(), folder / name)
    assert [m.name for m in Store(folder).models()] == ["deblur", "deblur.pth", "unsharp"]
    # a name a built-in method has goes to the file's whole name
    methods = Engine(Settings(device="cpu", models_dir=str(folder))).catalog.methods
    assert methods["unsharp"].kind == "classical"
    assert methods["unsharp.pkl"].source == "user checkpoint unsharp.pkl"


@pytest.mark.slow
def test_deblur_prefers_mimo_unet_plus_then_mimo_unet_then_ours(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    # The paper's sizes, as users download them, under names that do not say so.
    save_official(small_network(32, 8), folder / "a.pkl")
    served = Engine(Settings(device="cpu", models_dir=str(folder)))
    assert served.status()["defaults"]["deblur"] == {"1": "a"}
    save_official(small_network(32, 20), folder / "b.pkl")
    served = Engine(Settings(device="cpu", models_dir=str(folder)))
    candidates = [m.name for m in served.catalog.candidates("deblur")]
    # SharpFu's own deblurrers (blind deconvolution too), best first
    shipped = sorted(shipped_deblurrers() + blind_deconvolution.shipped(), key=lambda m: -m.rank())
    ahead = [m.name for m in shipped if m.rank() > 0]
    behind = [m.name for m in shipped if m.name not in ahead]
    assert candidates == ["b", "a"] + ahead + ["unsharp"] + behind
    assert served.status()["defaults"]["sharpen"]["2"] == "b+" + served.catalog.pick(
        "upscale", None, 2).name


def record_with(network: float, blurry: float, unsharp: float | None = None) -> dict:
    case = {"network": network, "blurry_input": blurry}
    if unsharp is not None:
        case["unsharp"] = unsharp
    return {"validation": {"measure": "PSNR", "gaussian-2": dict(case, network=network + 1),
                           "motion-15": case}}


def test_shipped_weights_rank_above_the_unsharp_mask_only_if_their_record_says_they_beat_it():
    """Weights no better than the blurry input, or than the unsharp mask,
    on any validation case stay below the classical method; a user's
    checkpoint (no record) above SharpFu's own."""
    def rank(record):
        weights = registry.Weights(mimo_unet_arch.ARCHITECTURE, {"channels": 8, "blocks": 1},
                                   path=Path("x.safetensors"), record=record)
        return network.preference(weights)

    assert rank(record_with(25.0, 24.0, 24.5)) > 0
    assert rank(record_with(25.0, 24.0)) > 0
    assert rank(record_with(24.0, 24.0, 23.0)) < 0
    assert rank(record_with(24.4, 24.0, 24.5)) < 0
    assert rank({"validation": {}}) < 0
    assert rank(None) > rank(record_with(25.0, 24.0, 24.5))


@pytest.mark.slow
def test_the_cli_names_a_user_checkpoint(tmp_path, fresh_server):
    from test_cli import run_cli
    folder = tmp_path / "models"
    folder.mkdir()
    save_official(small_network(), folder / "handshake.pkl")
    proc = fresh_server(server_settings={"models_dir": str(folder)})
    status = run_cli("status", "--config", proc.config_path, "--no-autostart")
    assert status.returncode == 0, status.stderr
    line = next(l for l in status.stdout.splitlines() if l.strip().startswith("handshake"))
    assert "trained network" in line and "user checkpoint handshake.pkl" in line
    Image.open(FACE).convert("RGB").save(tmp_path / "in.png")
    done = run_cli("deblur", tmp_path / "in.png", "-o", tmp_path / "out.png", "--method",
                   "handshake", "--config", proc.config_path, "--no-autostart")
    assert done.returncode == 0, done.stderr
    assert "handshake" in done.stderr or "MIMO-UNet" in done.stderr
    assert Image.open(tmp_path / "out.png").size == (96, 96)


# -- tiling -------------------------------------------------------------------------

@given(length=st.integers(1, 5000), tile=st.integers(64, 2048), margin=st.integers(0, 80),
       align=st.sampled_from([1, 2, 4, 8]))
def test_aligned_plans_cover_the_axis_with_pairwise_overlaps(length, tile, margin, align):
    overlap = tiling.overlap_for(margin)
    tile = max(tile, tiling.min_tile(margin, align))
    axis = tiling.plan_axis(length, tile, overlap, align)
    assert axis.starts[0] == 0 and axis.starts[-1] + axis.size == length
    assert axis.size <= tile or axis.size == length
    assert all(start % align == 0 for start in axis.starts)
    for a, b in zip(axis.starts, axis.starts[1:]):
        assert b > a and a + axis.size - b >= overlap
    for a, c in zip(axis.starts, axis.starts[2:]):
        assert a + axis.size <= c


def shipped_deblurrers() -> list[NetworkMethod]:
    return [m for m in shipped_methods() if m.task == "deblur"]


def shipped_method() -> NetworkMethod:
    methods = shipped_deblurrers()
    assert methods, "no shipped MIMO-UNet weights in models/weights/"
    return methods[0]


@pytest.mark.slow
def test_tiled_equals_untiled_with_the_shipped_network():
    """Within 1/255 with the margin the method states, at the smallest tile
    the tiler allows for it, on a photo (not noise: the margin is where a
    trained network's response to a tile edge has died down on pictures)."""
    method = shipped_method()
    photo = np.array(Image.open(FACE).convert("RGB"))
    tile = tiling.min_tile(method.margin, method.alignment)
    # two tiles each way, on sides that are not multiples of 4
    height, width = tile + tile // 3 + 1, tile + tile // 5 + 3
    repeats = -(-max(height, width) // photo.shape[0])
    src = np.tile(photo, (repeats, repeats, 1))[:height, :width]
    src = BLUR_CASES["motion-15"].apply(src)
    whole = run("deblur", {"tile": 4096, "method": method.name}, image=src)
    reports = []
    tiled = run("deblur", {"tile": tile, "method": method.name}, reports, image=src)
    assert len([r for r in reports if "tile" in r[1]]) == 4
    assert np.abs(tiled.astype(int) - whole).max() <= 1


@pytest.mark.slow
def test_only_shifts_by_multiples_of_4_leave_the_output_unchanged():
    """Why tiles start on multiples of 4: the nearest-neighbour halving takes
    the even pixels, so an input cropped by 1 column sees the other half of
    them at 1/2 size and its result differs all over, while one cropped by
    4 gives the same result wherever the crop's edge is out of reach."""
    model = small_network(8, 1)
    radius = mimo_unet_arch.theoretical_radius(1)
    photo = np.tile(np.array(Image.open(FACE).convert("RGB")), (2, 2, 1))
    x = torch.from_numpy(BLUR_CASES["gaussian-2"].apply(photo)).permute(2, 0, 1)[None]
    x = x.float() / 255
    with torch.inference_mode():
        whole = model.restore(x)
        shifted4 = model.restore(x[..., 4:])
        shifted1 = model.restore(x[..., 1:])
    inner = slice(radius, -radius)
    same4 = (shifted4[..., inner, inner] - whole[..., inner, 4 + radius:-radius]).abs().max()
    same1 = (shifted1[..., inner, inner] - whole[..., inner, 1 + radius:-radius]).abs().max()
    assert same4.item() < 1e-6 and same1.item() > 1 / 255


# -- the shipped weights ------------------------------------------------------------

def test_shipped_weights_have_a_record_and_rank_as_it_says():
    method = shipped_method()
    weights = method.weights[1]
    record = weights.record
    for key in ("name", "architecture", "hyper_parameters", "parameters", "ops", "title",
                "description", "source", "training", "validation"):
        assert key in record, key
    for key in ("commands", "data", "git", "device", "training_seconds", "steps"):
        assert key in record["training"], key
    for case in BLUR_CASES:
        assert {"network", "blurry_input", "unsharp"} <= set(record["validation"][case]), case
    assert record["source"] == "trained by SharpFu's scripts/train_deblur.py"
    assert record["parameters"] == sum(p.numel() for p in weights.load().parameters())
    assert weights.path.stat().st_size < 8 * 2 ** 20
    status = engine().status()
    # the best-ranked of SharpFu's deblurrers (blind deconvolution too), if
    # it ranks above the unsharp mask
    best = max(shipped_deblurrers() + blind_deconvolution.shipped(), key=lambda m: m.rank())
    default = best.name if best.rank() > 0 else "unsharp"
    assert status["defaults"]["deblur"] == {"1": default}
    assert status["defaults"]["sharpen"]["2"].startswith(default + "+")
    listed = {m["name"]: m for m in status["methods"]}[method.name]
    assert listed["source"] == record["source"] and listed["kind"] == "network"


@pytest.mark.parametrize("case, min_gain_db", [("gaussian-2", 1.0), ("motion-15", 0.1),
                                               ("motion-15+noise", 0.1)])
def test_the_shipped_network_beats_the_blurry_input_on_a_held_out_face(case, min_gain_db):
    """An untrained network returns its input (a gain of 0) and broken or
    mismatched weights do worse; the shipped ones gained 1.84, 0.20 and
    0.20 dB on this face when trained (small on motion blur: CPU training,
    docs/models/mimo-unet.md)."""
    sharp = np.array(Image.open(FACE).convert("RGB"))
    blurry = BLUR_CASES[case].apply(sharp)
    out = run("deblur", {"method": shipped_method().name}, image=blurry)
    ours, before = metrics.psnr(out, sharp), metrics.psnr(blurry, sharp)
    assert ours >= before + min_gain_db, (ours, before)


def test_half_precision_stays_close_to_full_precision():
    """The server runs networks in fp16 on GPUs; on the CPU the same
    arithmetic shows whether activations overflow or the result drifts."""
    method = shipped_method()
    sharp = np.array(Image.open(FACE).convert("RGB"))
    x = torch.from_numpy(BLUR_CASES["motion-15"].apply(sharp)).permute(2, 0, 1)[None]
    x = x.float() / 255
    outputs = {}
    for dtype in (torch.float32, torch.float16):
        method.load(torch.device("cpu"), dtype)
        with torch.inference_mode():
            outputs[dtype] = method.forward(x, 1)
    method.load(torch.device("cpu"), torch.float32)
    half = outputs[torch.float16]
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - outputs[torch.float32]).abs().max().item() < 2 / 255


# -- install.py --add-model ------------------------------------------------------------

def add_model(tmp_path: Path, path: Path):
    import os
    import subprocess
    import sys
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    return subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent /
                                               "install.py"),
                           "--venv", sys.prefix, "--add-model", str(path)],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_install_adds_a_recognised_checkpoint_and_refuses_the_rest(tmp_path):
    """install.py --add-model is `sharpfu models add`: the file is installed
    in the models folder with its record, under a name without spaces."""
    downloads = tmp_path / "downloads"
    marker = fill_folder(downloads)
    folder = tmp_path / "config" / "sharpfu" / "models"
    done = add_model(tmp_path, downloads / "My Deblurrer.pkl")
    assert done.returncode == 0, done.stderr
    assert "MIMO-UNet, 8 channels x 1 blocks" in done.stdout and "'My-Deblurrer'" in done.stdout
    assert Store(folder).load("My-Deblurrer").state_dict().keys() == \
        small_network().state_dict().keys()
    again = add_model(tmp_path, downloads / "My Deblurrer.pkl")
    assert again.returncode == 0 and "installed already" in again.stdout
    for name, why in (("evil.pkl", "cannot be loaded safely"), ("broken.pth", "safely"),
                      ("README.txt", "not a weights file"), ("missing.pkl", "is not a file")):
        refused = add_model(tmp_path, downloads / name)
        assert refused.returncode != 0 and why in refused.stderr, (name, refused.stderr)
    assert not marker.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["My-Deblurrer.json",
                                                        "My-Deblurrer.safetensors"]
    (downloads / "other").mkdir()
    save_official(small_network(seed=3), downloads / "other" / "My Deblurrer.pkl")
    clash = add_model(tmp_path, downloads / "other" / "My Deblurrer.pkl")
    assert clash.returncode != 0 and "installed already" in clash.stderr
