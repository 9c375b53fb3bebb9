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


def test_each_op_lists_its_methods_best_first_and_both_commands_print_it(spandrel, tmp_path,
                                                                         capsys):
    """status["choices"]: per op and scale, the methods a job may name, the
    default first; `sharpfu models list` prints the same lines as `sharpfu
    status` (sharpfu_cli.main.describe_choices of the same status)."""
    from server.ops import OPS
    from sharpfu_cli import main as cli_main
    from sharpfu_cli import models_cmd
    from sharpfu_client import methods
    store = Store(tmp_path / "models")
    add(store, tmp_path, "tiny-span-x4", span(4))
    engine = Engine(Settings(device="cpu", models_dir=str(store.folder)))
    status = engine.status()
    for op, scales in status["defaults"].items():
        for scale, chain in scales.items():
            assert status["choices"][op][scale][0] == chain.split("+")[0], (op, scale)
    upscalers = status["choices"]["upscale"]["2"]
    assert "tiny-span-x4" in upscalers and upscalers[-1] == "lanczos"
    # installed community models rank below SharpFu's validated networks
    assert upscalers.index("span") < upscalers.index("tiny-span-x4")
    assert status["choices"]["sharpen"]["1"] == status["choices"]["deblur"]["1"]
    assert "tiny-span-x4" in status["choices"]["sharpen"]["4"]
    assert [m["name"] for m in methods.ranked(status, "upscale", 4)] == \
        status["choices"]["upscale"]["4"]
    # an old server's status (no choices) still gives the default first
    old = {k: v for k, v in status.items() if k != "choices"}
    assert methods.ranked(old, "upscale", 2)[0]["name"] == status["defaults"]["upscale"]["2"]

    config = tmp_path / "config.json"
    config.write_text('{"endpoint": "tcp://127.0.0.1:9", "key": "%s"}' % ("ab" * 32))
    assert models_cmd.main(["models", "--config", str(config), "--models-dir",
                            str(store.folder), "list"]) == 0
    printed = capsys.readouterr().out
    assert "none is running" in printed
    listed = printed.split("best first (", 1)[1].split("\n", 1)[1]
    status["ops"] = {name: spec.describe() for name, spec in OPS.items()}   # as the broker adds
    assert listed.strip() == "\n".join(cli_main.describe_choices(status)).strip()


@pytest.mark.slow
def test_the_running_server_lists_a_model_added_meanwhile(spandrel, tmp_path, fresh_server):
    """`sharpfu models add` while the server runs: the next `sharpfu status`
    offers it, and `sharpfu models list` prints the same methods per op,
    asked of that server."""
    from test_cli import run_cli
    folder = tmp_path / "models"
    proc = fresh_server(server_settings={"models_dir": str(folder)})
    path = tmp_path / "tiny.safetensors"
    save_file(span(4).state_dict(), str(path))
    added = run_cli("models", "--config", proc.config_path, "add", path, "--name", "tiny-x4")
    assert added.returncode == 0, added.stderr
    status = run_cli("status", "--config", proc.config_path, "--no-autostart")
    assert status.returncode == 0, status.stderr
    listed = run_cli("models", "--config", proc.config_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert "as the server at" in listed.stdout
    per_op = status.stdout[status.stdout.index("\nupscale"):].strip()
    assert per_op in listed.stdout
    line = next(l for l in per_op.splitlines() if l.strip().startswith("tiny-x4"))
    assert "[2x, 4x]" in line and "trained network" in line


def test_adaptation_takes_sharpfu_architectures_and_says_why_not_community_ones(spandrel,
                                                                              tmp_path):
    from models import registry
    from models.span_official import SPANOfficial
    from server.jobs import JobError
    store = Store(tmp_path / "models")
    add(store, tmp_path, "tiny-span-x4", span(4))              # spandrel's SPAN layout
    torch.manual_seed(0)
    official = SPANOfficial(4, 8)
    save_file(official.state_dict(), str(tmp_path / "folded.safetensors"))
    store.add(tmp_path / "folded.safetensors", name="folded-x4")
    assert registry.load(store.weights_path("folded-x4")).architecture.name == "span-official"
    engine = Engine(Settings(device="cpu", models_dir=str(store.folder)))
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)

    def check(method, scale):
        engine.check(make_job("adapt", {"method": method, "scale": scale}, sample0=image))

    check("folded-x4", 4)                                       # SharpFu's architecture
    with pytest.raises(JobError, match="community model .*adapt one of them instead"):
        check("tiny-span-x4", 4)
    with pytest.raises(JobError, match="makes 2x from its 4x weights"):
        check("folded-x4", 2)
