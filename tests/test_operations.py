"""The one table of operations (sharpfu_client.operations): the server's op
specs, the GIMP 2.10 registrations and the GIMP 3 procedures all come from
it. (tests/e2e/test_gimp.py checks the GIMP 3 procedures that a real GIMP
registered against it.)"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from server import ops
from sharpfu_client import operations
from sharpfu_client.operations import (BATCH, COMMON, FILTERS, OPERATIONS, PROCEDURES,
                                       REFINE_MATTE, SELECT_SUBJECT, gimp2_label, plain)
from sharpfu_client.wire import WireError

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugin" / "sharpfu_gimp2"
GIMP3 = ROOT / "plugin" / "sharpfu" / "sharpfu.py"


def test_the_server_reads_the_table_itself():
    assert ops.OPS is OPERATIONS
    assert list(OPERATIONS) == ["upscale", "deblur", "sharpen", "matte", "select", "echo",
                                "adapt"]
    runners = {name: op.runner for name, op in OPERATIONS.items()}
    assert runners == {"upscale": "image", "deblur": "image", "sharpen": "image",
                       "matte": "matte", "select": "select", "echo": "echo", "adapt": "adapt"}
    for op in OPERATIONS.values():
        assert callable(op.check_params) and op.inputs and isinstance(op.max_frames, int)
        described = op.describe()
        assert described["inputs"] == list(op.inputs)
        assert set(described["params"]) == set(op.common) | set(op.params)


def test_params_are_checked_as_declared():
    upscale = OPERATIONS["upscale"]
    assert upscale.check_params({}, "m") == {"method": None, "tile": 0, "scale": 2,
                                             "strength": 1.0}
    assert upscale.check_params({"scale": 4, "method": "lanczos"}, "m")["scale"] == 4
    for bad, words in (({"scale": 3}, "must be one of 2, 4"), ({"scale": True}, "an integer"),
                       ({"tile": -1}, "between 0 and 16384"), ({"size": 2}, "Unknown option"),
                       ({"method": 5}, "a string or null")):
        with pytest.raises(WireError) as caught:
            upscale.check_params(bad, "m")
        assert caught.value.code == "bad_params" and words in caught.value.message
    echo = OPERATIONS["echo"]
    assert echo.check_params({"delay": 1}, "m")["delay"] == 1.0
    with pytest.raises(WireError):
        echo.check_params({"delay": float("nan")}, "m")
    assert OPERATIONS["sharpen"].scales == (1, 2, 4) and OPERATIONS["deblur"].scales == (1,)


def test_every_parameter_of_a_gimp_operation_has_a_field_in_its_dialog():
    """What a GIMP user can set: every param of the ops GIMP offers, but
    the tile size (the server picks it from free memory)."""
    mapped = {}
    for procedure in PROCEDURES.values():
        for argument in procedure.arguments:
            if argument.param:
                mapped.setdefault(argument.param, []).append((procedure.name, argument))
    for procedure in FILTERS + [REFINE_MATTE, SELECT_SUBJECT]:
        op = OPERATIONS[procedure.op]
        for name in list(op.params) + ["method"]:
            key = (None, name) if name in COMMON else (op.name, name)
            assert key in mapped, (procedure.name, name)
            assert any(argument.name in [a.name for a in procedure.arguments]
                       for _, argument in mapped[key]), (procedure.name, name)
    # and each field takes its values from the param
    for (op_name, name), uses in mapped.items():
        spec = (COMMON if op_name is None else OPERATIONS[op_name].all_params())[name]
        for procedure, argument in uses:
            assert argument.label and argument.help, (procedure, argument.name)
            if argument.kind == "choice":
                assert argument.nicks == [str(c) for c in spec.choices], (procedure, name)
                assert argument.default == str(spec.default)
            elif argument.kind == "int":
                assert (argument.minimum, argument.maximum, argument.default) == (
                    spec.minimum, spec.maximum, spec.default), (procedure, name)
            elif argument.kind == "bool":
                assert argument.default == spec.default
            elif argument.kind == "percent":
                assert (argument.minimum, argument.maximum, argument.default) == (
                    spec.minimum * 100, spec.maximum * 100, spec.default * 100)
    assert PROCEDURES["sharpfu-ai-upscale"].argument("scale").nicks == ["2", "4"]


def test_batch_offers_the_scales_of_its_filters():
    scale = BATCH.argument("scale")
    every = sorted({s for f in FILTERS for s in OPERATIONS[f.op].scales})
    assert scale.nicks == [str(s) for s in every]
    assert scale.default == str(OPERATIONS["upscale"].params["scale"].default)
    assert scale.only_if == ("op", ["upscale", "sharpen"])
    assert BATCH.argument("op").nicks == [f.op for f in FILTERS]
    assert "AI Upscale: 2 or 4" in scale.help and "AI Deblur: not used" in scale.help
    assert gimp2_label(scale) == "Scal_e (AI Upscale: 2x or 4x; AI Sharpen: any; AI Deblur: " \
                                 "not used)"


@pytest.fixture
def gimp2(monkeypatch):
    """The GIMP 2.10 plug-in, registered with the gimpfu double."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "gimpfu_double"))
    monkeypatch.syspath_prepend(str(PLUGIN))
    import gimpfu
    gimpfu.reset()
    gimpfu.registered.clear()
    spec = importlib.util.spec_from_file_location("sharpfu_gimp2", PLUGIN / "sharpfu_gimp2.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return gimpfu


def test_the_gimp_2_10_registrations_are_the_table(gimp2):
    registered = gimp2.registered
    assert sorted(registered) == sorted("python-fu-" + name for name in PROCEDURES)
    for procedure in PROCEDURES.values():
        entry = registered["python-fu-" + procedure.name]
        assert entry["label"] == plain(procedure.gimp2_value("label"))
        assert entry["blurb"] == plain(procedure.gimp2_value("blurb"))
        assert entry["menu"] == procedure.gimp2_value("menus")[0]
        arguments = procedure.gimp2_arguments()
        params = entry["params"][2:]      # after the image and drawable
        assert [p[1] for p in params] == [a.name for a in arguments]
        for param, argument in zip(params, arguments):
            assert param[2] == gimp2_label(argument)
            if argument.kind == "choice":
                assert param[0] == gimp2.PF_RADIO and param[3] == argument.default
                assert [nick for _, nick in param[4]] == argument.nicks
                assert [label for label, _ in param[4]] == [plain(c.label)
                                                            for c in argument.choices]
        assert [r[1] for r in entry["results"]] == [r.name for r in procedure.gimp2_returns()]


def test_the_gimp_3_plugin_declares_nothing_of_its_own():
    """No labels, choices or menu paths in the GIMP 3 plug-in: it reads the
    table (its real registration is checked in tests/e2e/test_gimp.py)."""
    source = GIMP3.read_text()
    for text in ("_Scale", "_Result", "<Image>/", "AI _", "add_menu_path(\"", "Gimp.Choice.new()"):
        if text == "Gimp.Choice.new()":
            assert source.count(text) == 1      # in the one function that builds them
        else:
            assert text not in source, text
    assert "PROCEDURES" in source


def access_key(label):
    return label[label.index("_") + 1].lower() if "_" in label else None


def test_every_field_has_its_own_access_key():
    for procedure in PROCEDURES.values():
        assert procedure.label.count("_") == 1, procedure.name
        keys = [access_key(a.label) for a in procedure.arguments if a.in_dialog]
        assert None not in keys, (procedure.name, keys)
        assert len(set(keys)) == len(keys), (procedure.name, keys)
        assert not set(keys) & set(operations.BUTTON_KEYS), (procedure.name, keys)
        for argument in procedure.arguments:
            assert argument.label.count("_") <= 1, (procedure.name, argument.name)


def test_the_table_stays_python_2_compatible_in_its_words():
    # GIMP 2.10 gets ASCII; the table's typographic characters all have a plain form.
    for procedure in PROCEDURES.values():
        for text in (procedure.label, procedure.blurb, procedure.help):
            plain(text).encode("ascii")
    assert plain(u"AI _Upscale\u2026") == "AI _Upscale..."
    assert operations.scale_label(1) == u"1\u00d7 (same size)"


def test_the_unreachable_server_message_says_what_to_do(monkeypatch, tmp_path):
    from sharpfu_client import launcher
    config = {"server_command": ["/opt/shar pfu/.venv/bin/sharpfu-server"],
              "_path": str(tmp_path / "sharpfu.json")}
    monkeypatch.delenv("FLATPAK_ID", raising=False)
    monkeypatch.delenv("SNAP", raising=False)
    told = launcher.unreachable(config, "tcp://127.0.0.1:5599")
    assert told.startswith("No SharpFu server answers. Start it in a terminal with: "
                           "'/opt/shar pfu/.venv/bin/sharpfu-server' --endpoint "
                           "tcp://127.0.0.1:5599 --config %s" % (tmp_path / "sharpfu.json"))
    assert launcher.log_path() in told and "sandbox" not in told
    monkeypatch.setenv("FLATPAK_ID", "org.gimp.GIMP")
    told = launcher.unreachable({"server_command": None}, "tcp://127.0.0.1:5599")
    assert "Flatpak sandbox" in told and "outside the sandbox" in told
    assert "install.py" in told and "sharpfu-server" in told


def test_blur_fields_become_params_and_the_kernel_a_picture():
    import struct
    from sharpfu_client.plugin_jobs import BLUR_VIEW, blur_params, blur_view
    assert blur_params({}, "deblur", 0, False) == {}
    assert blur_params({}, "sharpen", 41, True) == {"kernel_size": 41, "kernel": True}
    assert blur_params({}, "upscale", 41, True) == {}
    weights = [0.0, 0.1, 0.0,
               0.0, 0.4, 0.0,
               0.0, 0.5, 0.0]
    data, width, height = blur_view(struct.pack("<9f", *weights), 3, 3, 3)
    zoom = BLUR_VIEW // 3
    assert (width, height) == (3 * zoom, 3 * zoom) and len(data) == width * height * 3
    pixel = lambda row, column: data[(row * zoom * width + column * zoom) * 3]  # noqa: E731
    assert pixel(2, 1) == 255 and pixel(1, 1) == round(255 * 0.8) and pixel(0, 0) == 0
    grey, width, height = blur_view(struct.pack("<f", 1.0), 1, 1, 1)
    assert grey == b"\xff" * (BLUR_VIEW * BLUR_VIEW)
