"""AI Select Subject in real GIMPs, 3.0 and 3.2: registered under Select,
replacing the selection with the server's soft mask (the same as `sharpfu
select` on the same pixels), as the layer's mask with a cut-out instead,
for a layer off the canvas's corner, and undone by one Ctrl+Z.

The server needs a subject finder. With `fake` it runs the test double
tests/fake_subject.py (tests/fake_subject_server.py), so these checks need
no model; with `isnet-general` it serves the real network from a models
folder that has it (SHARPFU_E2E_MODELS, else the user's own,
~/.config/sharpfu/models), and those checks are skipped, saying so, where it
is not installed. One GIMP start per version and server, the GUI one (under
Xvfb) when the tools are there, else headless without the undo check.
Run them with `pytest -m gimp tests/e2e/test_gimp_select.py`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gimp_runner import VERSIONS, has_gui_tools, locate  # noqa: E402
from server.scratch import ServerProcess  # noqa: E402
from sharpfu_cli import imageio  # noqa: E402

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHECKS = (HERE / "gimp_checks.py").read_text()
FAKE_SERVER = REPO / "tests" / "fake_subject_server.py"
REAL = "isnet-general"
TIMEOUT = 900


def real_models() -> Path:
    """A models folder that may hold the real subject network (the tests'
    own XDG_CONFIG_HOME is a scratch folder, so not that one's)."""
    return Path(os.environ.get("SHARPFU_E2E_MODELS")
                or os.path.expanduser("~/.config/sharpfu/models"))


def subject_image() -> np.ndarray:
    """A bright, textured disc on a dark, textured backdrop, 64x48."""
    rng = np.random.default_rng(18)
    yy, xx = np.mgrid[0:48, 0:64]
    inside = np.clip(16 - np.hypot(yy - 24, xx - 32) + 0.5, 0, 1)[..., None]
    fg = 225 + rng.integers(-20, 21, (48, 64, 3))
    bg = 40 + rng.integers(-30, 31, (48, 64, 3))
    return np.clip(inside * fg + (1 - inside) * bg + 0.5, 0, 255).astype("u1")


@pytest.fixture(scope="module", params=[(v, s) for v in VERSIONS for s in ("fake", REAL)],
                ids=["gimp-%s-%s" % (v, s) for v in VERSIONS for s in ("fake", REAL)])
def gimp(request, tmp_path_factory):
    version, finder = request.param
    settings = {"device": "cpu"}
    if finder == REAL:
        from models.store import Store
        folder = real_models()
        if REAL not in Store(folder).names():
            pytest.skip("!!! AI SELECT SUBJECT WITH THE REAL NETWORK NOT CHECKED IN GIMP %s: "
                        "no '%s' in %s (install it with 'sharpfu models pull %s', or name a "
                        "models folder that has it in SHARPFU_E2E_MODELS); the checks with the "
                        "test double ran !!!" % (version, REAL, folder, REAL))
        settings["models_dir"] = str(folder)
    gimp = locate(version, tmp_path_factory.mktemp("gimp-settings"))
    gimp.hold()
    try:
        gimp.finder = finder
        gimp.server = ServerProcess(gimp.workdir("server"), key="5e1e" * 16,
                                    server_settings=settings,
                                    program=FAKE_SERVER if finder == "fake" else None).start()
        with gimp.server.client() as client:
            defaults = client.status()["defaults"]
        assert "select" in defaults, "the server offers no subject finder: %r" % defaults
        gimp.config = tmp_path_factory.mktemp("plugin-config") / "config.json"
        gimp.config.write_text(json.dumps({"endpoint": gimp.server.endpoint,
                                           "key": gimp.server.key, "server_command": None}))
        done = subprocess.run([sys.executable, str(REPO / "install.py"), "--plugin-only",
                               "--plugin-dir", str(gimp.plugins), "--config-from",
                               str(gimp.config)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        yield gimp
    finally:
        if getattr(gimp, "server", None) is not None:
            gimp.server.stop()
        gimp.clean_up()


@pytest.fixture(scope="module")
def checked(gimp):
    """The "select" suite, in one GIMP start."""
    work = gimp.workdir("select")
    imageio.write(str(work / "subject.png"), imageio.Picture(subject_image()))
    gui = has_gui_tools(gimp)
    params = {"results": work / "results.jsonl", "work": work, "suite": "select",
              "server_log": gimp.server.log_path, "gui": gui}
    run = gimp.run(CHECKS, params, gui=gui, timeout=TIMEOUT)
    run.work, run.gui = work, gui
    return run


def cli_mask(gimp, tmp_path, *options) -> np.ndarray:
    imageio.write(str(tmp_path / "subject.png"), imageio.Picture(subject_image()))
    done = subprocess.run([sys.executable, "-m", "sharpfu_cli.main", "select",
                           str(tmp_path / "subject.png"), "-o", str(tmp_path / "mask.png"),
                           "--config", str(gimp.server.config_path), "--no-autostart", "-q"]
                          + list(options), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return imageio.read(str(tmp_path / "mask.png")).pixels[..., 0].astype(int)


def raw(run, name, shape) -> np.ndarray:
    return np.fromfile(run.work / name, "u1").reshape(shape).astype(int)


def test_select_subject_is_registered_under_select(checked):
    record = checked["select_registration"]
    assert record["found"], "sharpfu-select-subject is not registered"
    assert record["label"] == "AI Select S_ubject\u2026"
    assert record["menu"] == ["<Image>/Select"]
    assert record["arguments"] == ["run-mode", "image", "drawables", "result", "refine",
                                   "cutout", "method"]
    assert record["returns"] == ["cutout-layer", "method-used"]


def test_the_selection_becomes_the_subject(checked, gimp, tmp_path):
    record = checked["select_replaces_the_selection"]
    assert record["status"] == "success", record
    finder = "fake-subject" if gimp.finder == "fake" else REAL
    assert record["method"] == finder + "+laplacian"
    assert record["layers"] == 1 and record["channels"] == [] and not record["mask"]
    assert record["layer_unchanged"]
    selection = raw(checked, "select_selection.raw", (48, 64))
    # the server's mask for the same pixels, as the CLI writes it
    expected = cli_mask(gimp, tmp_path)
    assert np.abs(selection - expected).max() <= 1      # GIMP's own encoding of masks
    assert selection[:10, :10].max() <= 8               # the old selection is gone
    if gimp.finder == "fake":
        assert selection[24, 32] >= 247 and selection[0, 0] == 0


def test_or_the_layer_mask_with_a_cut_out(checked, gimp, tmp_path):
    record = checked["select_as_layer_mask_with_a_cut_out"]
    assert record["status"] == "success", record
    assert record["has_mask"] and record["selection_empty"]
    assert record["cutout"] == {"name": "Background (cut-out)", "has_alpha": True,
                                "size": [64, 48], "position": 0}, record["cutout"]
    assert np.abs(raw(checked, "select_mask.raw", (48, 64))
                  - cli_mask(gimp, tmp_path, "--no-refine")).max() <= 1


def test_a_layer_off_the_corner_is_selected_where_it_lies(checked, gimp, tmp_path):
    record = checked["select_offset_layer"]
    assert record["status"] == "success", record
    assert record["channels"] == []
    selection = raw(checked, "select_offset.raw", (64, 96))
    assert selection[:, :64].max() == 0 and selection[:8].max() == 0 \
        and selection[56:].max() == 0
    # what lies on the canvas is the left half of the mask of the whole layer
    assert np.abs(selection[8:56, 64:] - cli_mask(gimp, tmp_path)[:, :32]).max() <= 1


def test_a_layer_without_a_subject_is_refused_and_left_alone(checked):
    record = checked["select_finds_nothing"]
    assert record["status"] == "execution-error", record
    assert "found no subject in layer 'Plain'" in record["message"]
    assert record["unchanged"]


def test_one_ctrl_z_brings_the_old_selection_back(checked):
    record = checked["undo_select_subject"]
    if record.get("skipped"):
        pytest.skip("!!! GIMP %s: UNDO OF AI SELECT SUBJECT NOT CHECKED: %s !!!"
                    % (checked.gimp.version, record["skipped"]))
    assert record["status"] == "success", record
    assert record["changed"]
    assert record["undone"], "after one Ctrl+Z: %r, before: %r" % (record["after_undo"],
                                                                   record["before"])
    assert record["redone"], "after Ctrl+Y: %r, after: %r" % (record["after_redo"],
                                                              record["after"])
