"""Installed models as the server's methods (server/methods/network.py, NetworkMethod):
offered under their names, picked up while the server runs, tiled exactly
where their reach is known, 4x models also serving 2x."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from enginekit import make_job
from models import community
from models.store import Store
from server.engine import Engine
from server.settings import Settings


@pytest.fixture(scope="module")
def spandrel():
    return community.spandrel()


def add(store: Store, tmp_path, name: str, model) -> None:
    path = tmp_path / (name + ".safetensors")
    save_file(model.state_dict(), str(path))
    store.add(path, name=name)


def span(scale):
    from spandrel.architectures.SPAN import SPAN
    torch.manual_seed(scale)
    model = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.3)
    return model


def test_installed_models_become_methods_while_the_server_runs(spandrel, tmp_path):
    store = Store(tmp_path / "models")
    engine = Engine(Settings(device="cpu", models_dir=str(store.folder)))
    names = {m["name"] for m in engine.status()["methods"]}
    add(store, tmp_path, "tiny-span-x4", span(4))
    methods = {m["name"]: m for m in engine.status()["methods"]}
    assert set(methods) - names == {"tiny-span-x4"}
    # served as SharpFu's own networks are: named for upscale, and for
    # sharpen's upscaling stage
    assert methods["tiny-span-x4"]["scales"] == [2, 4] and methods["tiny-span-x4"]["ops"] == \
        ["upscale", "sharpen"]
    image = (np.random.default_rng(0).random((40, 36, 3)) * 255).astype(np.uint8)
    for scale in (2, 4):
        job = make_job("upscale", {"scale": scale, "method": "tiny-span-x4"}, image=image)
        results, info = engine.run(job, lambda f, s: None)
        assert results[0][1].shape == (40 * scale, 36 * scale, 3)
        assert info["name"] == "tiny-span-x4"
    store.remove("tiny-span-x4")
    # loaded: it stays until the server restarts; an unloaded one goes at once
    add(store, tmp_path, "tiny-span-x2", span(2))
    assert "tiny-span-x2" in {m["name"] for m in engine.status()["methods"]}
    store.remove("tiny-span-x2")
    assert "tiny-span-x2" not in {m["name"] for m in engine.status()["methods"]}


def test_span_tiles_are_exact(spandrel, tmp_path):
    store = Store(tmp_path / "models")
    add(store, tmp_path, "tiny-span-x2", span(2))
    image = (np.random.default_rng(1).random((150, 130, 3)) * 255).astype(np.uint8)

    def run(tile):
        engine = Engine(Settings(device="cpu", models_dir=str(store.folder), tile=tile))
        job = make_job("upscale", {"scale": 2, "method": "tiny-span-x2"}, image=image)
        return engine.run(job, lambda f, s: None)[0][0][1].astype(int)

    whole, tiled = run(0), run(64)
    assert np.abs(whole - tiled).max() <= 1


def test_a_store_model_cannot_take_a_builtin_name(spandrel, tmp_path):
    store = Store(tmp_path / "models")
    add(store, tmp_path, "lanczos", span(2))
    engine = Engine(Settings(device="cpu", models_dir=str(store.folder)))
    assert engine.catalog.methods["lanczos"].kind == "classical"
