"""The GIMP 2.10 plug-in (plugin/sharpfu_gimp2) against the gimpfu double
(tests/gimpfu_double) and a real SharpFu server: registration, the pixel
round trip, undo grouping, progress and the error paths.

No GIMP 2.10 with Python runs on these machines, so the double is all these
tests see of GIMP 2.10 (README.md says so)."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from sharpfu_client import Client, Frame

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugin" / "sharpfu_gimp2"
sys.path.insert(0, str(Path(__file__).resolve().parent / "gimpfu_double"))
sys.path.insert(0, str(PLUGIN))

import gimpfu  # noqa: E402
from gimpfu import (GRAY, GRAY_IMAGE, GRAYA_IMAGE, INDEXED, RGB, RGB_IMAGE,  # noqa: E402
                    RGBA_IMAGE, RUN_INTERACTIVE, RUN_NONINTERACTIVE, Image, make_layer, pdb)

NAMES = ["python-fu-sharpfu-ai-sharpen", "python-fu-sharpfu-ai-upscale",
         "python-fu-sharpfu-ai-deblur", "python-fu-sharpfu-refine-matte",
         "python-fu-sharpfu-batch", "python-fu-sharpfu-select-subject"]
CHANNELS = {RGB_IMAGE: 3, RGBA_IMAGE: 4, GRAY_IMAGE: 1, GRAYA_IMAGE: 2}
rng = np.random.default_rng(11)


@pytest.fixture
def plugin(server, monkeypatch):
    """The plug-in, freshly registered with the double, talking to the test server."""
    monkeypatch.setenv("SHARPFU_CONFIG", str(server.config_path))
    gimpfu.reset()
    gimpfu.registered.clear()
    spec = importlib.util.spec_from_file_location("sharpfu_gimp2", PLUGIN / "sharpfu_gimp2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pixels(width, height, channels):
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


def picture(width=40, height=30, kind=RGBA_IMAGE, offsets=(0, 0), base=RGB):
    """An image with a background layer and, above it, the layer to work on."""
    image = Image(width + 10, height + 8, base)
    layer = make_layer(image, "subject", width, height, kind,
                       pixels(width, height, CHANNELS[kind]).tobytes(), offsets)
    background_kind = GRAY_IMAGE if base == GRAY else RGB_IMAGE
    make_layer(image, "background", image.width, image.height, background_kind,
               pixels(image.width, image.height, CHANNELS[background_kind]).tobytes())
    return image, layer


def layer_array(layer):
    return np.frombuffer(bytes(layer.pixels), np.uint8).reshape(layer.height, layer.width,
                                                                layer.bpp)


def server_answer(server, op, frames, params=None, name="image"):
    with Client(endpoint=server.endpoint, config_path=str(server.config_path),
                autostart=False) as client:
        result = client.run(op, frames, params or {})
    found = result.frame(name)
    return np.frombuffer(bytes(found.data), np.uint8).reshape(found.height, found.width,
                                                              found.channels)


def frame_of(array, name="image"):
    height, width, channels = array.shape
    return Frame(array.tobytes(), width, height, channels, "u8", name)


def select(image, x, y, width, height):
    sel = image.selection
    for row in range(y, y + height):
        sel.pixels[row * sel.width + x:row * sel.width + x + width] = b"\xff" * width


def unreachable_config(tmp_path):
    path = tmp_path / "nowhere.json"
    path.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:9", "key": "",
                                "server_command": None}))
    return path


# -- registration ------------------------------------------------------------------------------

def test_registration_names_menus_and_arguments(plugin):
    assert sorted(gimpfu.registered) == sorted(NAMES)
    installed = {name: (menu, label, params, results)
                 for name, menu, label, params, results in gimpfu.queried}
    assert sorted(installed) == sorted(NAMES)          # gimpfu renamed nothing
    labels = {name: label for name, (_, label, _, _) in installed.items()}
    assert labels == {NAMES[0]: "AI _Sharpen...", NAMES[1]: "AI _Upscale...",
                      NAMES[2]: "AI _Deblur...", NAMES[3]: "AI Refine _Matte...",
                      NAMES[4]: "AI _Batch...", NAMES[5]: "AI Select S_ubject..."}
    for name, (menu, _, params, _) in installed.items():
        assert menu == ("<Image>/Select" if name == NAMES[5] else "<Image>/Filters/Enhance")
        assert [p[1] for p in params[:3]] == ["run-mode", "image", "drawable"]
        assert params[-1][1] == "high-bit-depth-as-8-bit", name
        assert "method" in [p[1] for p in params]
    upscale = gimpfu.registered[NAMES[1]]
    scale = [p for p in upscale["params"] if p[1] == "scale"][0]
    assert scale[0] == gimpfu.PF_RADIO and scale[3] == "2"
    assert [value for _, value in scale[4]] == ["2", "4"]
    sharpen_scale = [p for p in gimpfu.registered[NAMES[0]]["params"] if p[1] == "scale"][0]
    assert sharpen_scale[3] == "1" and [v for _, v in sharpen_scale[4]] == ["1", "2", "4"]
    assert [p[1] for p in gimpfu.registered[NAMES[2]]["params"]] == [
        "image", "drawable", "method", "high-bit-depth-as-8-bit"]
    assert [r[1] for r in upscale["results"]] == ["result-image", "method-used"]
    batch = gimpfu.registered[NAMES[4]]
    assert [p[1] for p in batch["params"]] == [
        "image", "drawable", "op", "scale", "method", "target", "input-folder",
        "output-folder", "high-bit-depth-as-8-bit"]
    assert [r[1] for r in batch["results"]] == ["done", "notes"]
    select = gimpfu.registered[NAMES[5]]
    assert [p[1] for p in select["params"]] == [
        "image", "drawable", "result", "refine", "method", "high-bit-depth-as-8-bit"]
    assert [r[1] for r in select["results"]] == ["method-used"]


# -- the pixel round trip ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", [RGB_IMAGE, RGBA_IMAGE, GRAY_IMAGE, GRAYA_IMAGE],
                         ids=["rgb", "rgba", "grey", "grey-alpha"])
def test_deblur_changes_only_the_selection_as_one_undo_step(plugin, server, kind):
    base = GRAY if kind in (GRAY_IMAGE, GRAYA_IMAGE) else RGB
    image, layer = picture(kind=kind, offsets=(6, 4), base=base)
    select(image, 10, 8, 20, 12)                      # image coordinates
    before, original = image.snapshot(), layer_array(layer).copy()
    status, values = gimpfu.run(NAMES[2], RUN_NONINTERACTIVE, image, layer, "", 0)
    assert status == "success", values
    assert values[0] is image and values[1]
    # The layer went to the server whole here (the selection's context reaches
    # its edges); the answer lands inside the selection only.
    wanted = server_answer(server, "deblur", [frame_of(original)])
    after = layer_array(layer)
    inside = (slice(4, 16), slice(4, 24))             # layer coordinates: minus the offsets
    assert np.array_equal(after[inside], wanted[inside])
    outside = np.ones(after.shape[:2], bool)
    outside[inside] = False
    assert np.array_equal(after[outside], original[outside])
    assert not np.array_equal(after[inside], original[inside])
    assert layer.offsets == (6, 4)
    assert image.steps() == 1 and image.unsaved_writes == []
    image.undo()
    assert image.snapshot() == before


def test_the_selection_context_is_cropped_away(plugin, server):
    image, layer = picture(width=300, height=200, kind=RGB_IMAGE)
    original = layer_array(layer).copy()
    select(image, 150, 100, 10, 10)
    # A classical method by name: a network would take long on a CPU.
    assert gimpfu.run(NAMES[2], RUN_NONINTERACTIVE, image, layer, "unsharp", 0)[0] == "success"
    sent = gimpfu.calls[[c[0] for c in gimpfu.calls].index("drawable.get_pixel_rgn")][1]
    assert sent == ("subject", 22, 0, 266, 200, False, False)   # 128 pixels around, clipped
    wanted = server_answer(server, "deblur", [frame_of(original[0:200, 22:288])],
                           {"method": "unsharp"})
    assert np.array_equal(layer_array(layer)[100:110, 150:160], wanted[100:110, 128:138])


def test_upscale_scales_the_image_with_the_model_in_the_active_layer(plugin, server):
    image, layer = picture(kind=RGBA_IMAGE, offsets=(5, 3))
    background = image.layers[1]
    before, original = image.snapshot(), layer_array(layer).copy()
    status, values = gimpfu.run(NAMES[1], RUN_INTERACTIVE, image, layer, "2", "in-place", "", 0)
    assert status == "success" and values[0] is image
    assert (image.width, image.height) == (100, 76)
    assert (layer.width, layer.height, layer.offsets) == (80, 60, (10, 6))
    assert np.array_equal(layer_array(layer), server_answer(
        server, "upscale", [frame_of(original)], {"scale": 2}))
    assert (background.width, background.height) == (100, 76)   # GIMP's own interpolation
    assert image.steps() == 1 and image.unsaved_writes == []
    assert ("gimp.displays_flush", ()) in gimpfu.calls
    image.undo()
    assert image.snapshot() == before


@pytest.mark.slow
def test_result_as_a_new_image_leaves_this_one_alone(plugin, server):
    image, layer = picture(kind=RGB_IMAGE, offsets=(2, 2))
    before, original = image.snapshot(), layer_array(layer).copy()
    status, values = gimpfu.run(NAMES[0], RUN_INTERACTIVE, image, layer, "2", "new-image", "",
                                0)
    assert status == "success"
    new = values[0]
    assert new is not image and gimpfu.displays == [new]
    assert (new.width, new.height) == (80, 60) and new.steps() == 0
    assert new.layers[0].offsets == (0, 0)
    assert np.array_equal(layer_array(new.layers[0]), server_answer(
        server, "sharpen", [frame_of(original)], {"scale": 2}))
    assert image.snapshot() == before and image.steps() == 0


def test_progress_follows_the_server(plugin):
    image, layer = picture()
    gimpfu.run(NAMES[1], RUN_NONINTERACTIVE, image, layer, "4", "in-place", "", 0)
    assert gimpfu.progress[0][0] == "init"
    fractions = [value for kind, value in gimpfu.progress if kind == "update"]
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
    texts = [value for kind, value in gimpfu.progress if kind == "text"]
    assert "AI Upscale: Enlarging..." in texts or "AI Upscale: Loading the model, then " \
        "enlarging..." in texts, texts
    # the last word stays: how long it took and what made it, in plain words
    assert re.match(r"AI Upscale: Done in \d+\.\d s with (the AI model|.*classical)", texts[-1]), \
        texts[-1]
    assert "channels" not in texts[-1] and "blocks" not in texts[-1]


def test_undo_group_surrounds_every_change(plugin):
    image, layer = picture()
    gimpfu.run(NAMES[2], RUN_NONINTERACTIVE, image, layer, "", 0)
    names = [name for name, _ in gimpfu.calls]
    start = names.index("pdb.gimp_image_undo_group_start")
    end = names.index("pdb.gimp_image_undo_group_end")
    assert start < names.index("drawable.merge_shadow") < end
    assert names.count("pdb.gimp_image_undo_group_start") == 1


# -- Refine Matte ------------------------------------------------------------------------------

def test_refine_matte_turns_the_selection_into_the_layer_mask(plugin, server):
    image, layer = picture(kind=RGB_IMAGE, offsets=(4, 2))
    select(image, 10, 6, 20, 16)
    before, original = image.snapshot(), layer_array(layer).copy()
    status, values = gimpfu.run(NAMES[3], RUN_NONINTERACTIVE, image, layer, "", 0)
    assert status == "success" and values[0]
    coarse = np.zeros((30, 40, 1), np.uint8)
    coarse[4:20, 6:26] = 255
    wanted = server_answer(server, "matte", [frame_of(original), frame_of(coarse, "mask")],
                           name="alpha")
    assert layer.mask is not None
    assert np.array_equal(layer_array(layer.mask), wanted)
    assert np.array_equal(layer_array(layer), original)
    assert image.steps() == 1 and image.unsaved_writes == []
    image.undo()
    assert image.snapshot() == before and layer.mask is None


def test_refine_matte_replaces_an_existing_mask(plugin, server):
    image, layer = picture(kind=RGBA_IMAGE)
    mask = pdb.gimp_layer_create_mask(layer, gimpfu.ADD_MASK_BLACK)
    mask.pixels[:] = np.where(np.arange(40 * 30) % 40 < 20, 255, 0).astype(np.uint8).tobytes()
    layer.mask, mask.layer = mask, layer
    before, coarse = image.snapshot(), layer_array(mask).copy()
    status, _ = gimpfu.run(NAMES[3], RUN_NONINTERACTIVE, image, mask, "", 0)   # the mask active
    assert status == "success"
    wanted = server_answer(server, "matte", [frame_of(layer_array(layer)),
                                             frame_of(coarse, "mask")], name="alpha")
    assert layer.mask is mask and np.array_equal(layer_array(mask), wanted)
    assert image.steps() == 1 and image.unsaved_writes == []
    image.undo()
    assert image.snapshot() == before


def test_refine_matte_without_mask_or_selection_says_what_to_do(plugin):
    image, layer = picture()
    before = image.snapshot()
    status, _ = gimpfu.run(NAMES[3], RUN_INTERACTIVE, image, layer, "", 0)
    assert status == "success"
    assert "rough mask" in gimpfu.messages[-1] and image.snapshot() == before


# -- Select Subject ----------------------------------------------------------------------------

@pytest.fixture
def subject_plugin(plugin, subject_server, monkeypatch):
    """The plug-in talking to a server with a subject finder (the test double)."""
    monkeypatch.setenv("SHARPFU_CONFIG", str(subject_server.config_path))
    return plugin


def subject_picture(offsets=(4, 2)):
    """A bright square on a dark ground, as the layer to work on."""
    image, layer = picture(kind=RGB_IMAGE, offsets=offsets)
    array = np.full((30, 40, 3), 30, np.uint8)
    array[6:24, 10:30] = 220
    layer.pixels = bytearray(array.tobytes())
    return image, layer


def test_select_subject_replaces_the_selection_in_one_undo_step(subject_plugin, subject_server):
    image, layer = subject_picture(offsets=(30, 2))      # 20 of its 40 columns off the canvas
    select(image, 0, 0, 10, 10)                          # an old selection
    before, original = image.snapshot(), layer_array(layer).copy()
    status, values = gimpfu.run(NAMES[5], RUN_NONINTERACTIVE, image, layer, "selection", 1, "",
                                0)
    assert status == "success" and values == ("fake-subject+laplacian",)
    wanted = server_answer(subject_server, "select", [frame_of(original)], name="mask")
    selection = layer_array(image.selection)
    assert np.array_equal(selection[2:32, 30:50], wanted[:, :20])
    assert selection[:, :30].max() == 0 and selection[32:].max() == 0
    assert image.channels == [] and layer.mask is None
    assert np.array_equal(layer_array(layer), original)
    assert image.steps() == 1 and image.unsaved_writes == []
    image.undo()
    assert image.snapshot() == before


def test_select_subject_as_the_layer_mask_replaces_an_old_one(subject_plugin, subject_server):
    image, layer = subject_picture()
    pdb.gimp_layer_add_mask(layer, pdb.gimp_layer_create_mask(layer, gimpfu.ADD_MASK_WHITE))
    del image.undo_stack[:]              # the set-up is not what is undone
    select(image, 0, 0, 10, 10)          # the whole mask changes all the same
    before, original = image.snapshot(), layer_array(layer).copy()
    status, _ = gimpfu.run(NAMES[5], RUN_NONINTERACTIVE, image, layer, "mask", 0, "", 0)
    assert status == "success"
    wanted = server_answer(subject_server, "select", [frame_of(original)], {"refine": False},
                           name="mask")
    assert layer.mask is not None and np.array_equal(layer_array(layer.mask), wanted)
    assert image.steps() == 1 and image.unsaved_writes == []
    image.undo()
    assert image.snapshot() == before


def test_select_subject_that_finds_nothing_says_so_and_changes_nothing(subject_plugin):
    image, layer = subject_picture()
    layer.pixels = bytearray(len(layer.pixels))       # all dark: the finder sees no subject
    select(image, 0, 0, 10, 10)
    before = image.snapshot()
    status, _ = gimpfu.run(NAMES[5], RUN_INTERACTIVE, image, layer, "selection", 1, "", 0)
    assert status == "success"
    assert "found no subject in layer 'subject'" in gimpfu.messages[-1]
    assert image.snapshot() == before and image.steps() == 0


def test_select_subject_without_a_subject_model_says_what_to_install(plugin):
    image, layer = subject_picture()
    before = image.snapshot()
    status, _ = gimpfu.run(NAMES[5], RUN_INTERACTIVE, image, layer, "selection", 1, "", 0)
    assert status == "success"      # the user was told
    assert "sharpfu models pull isnet-general" in gimpfu.messages[-1]
    assert image.snapshot() == before and image.steps() == 0


# -- failures leave the image as it was --------------------------------------------------------

def test_unreachable_server_is_told_and_changes_nothing(plugin, monkeypatch, tmp_path):
    monkeypatch.setenv("SHARPFU_CONFIG", str(unreachable_config(tmp_path)))
    image, layer = picture()
    before = image.snapshot()
    status, values = gimpfu.run(NAMES[1], RUN_INTERACTIVE, image, layer, "2", "in-place", "", 0)
    assert status == "success" and values == (image, "")      # the user was told; no traceback
    assert len(gimpfu.messages) == 1
    assert gimpfu.messages[0].startswith("AI Upscale: No SharpFu server answers")
    assert image.snapshot() == before and image.steps() == 0
    # A script's call fails, so that the script can tell.
    status, error = gimpfu.run(NAMES[1], RUN_NONINTERACTIVE, image, layer, "2", "in-place", "",
                               0)
    assert status == "execution-error" and "No SharpFu server answers" in str(error)
    assert image.snapshot() == before and image.steps() == 0


def test_server_error_is_told_and_changes_nothing(plugin):
    image, layer = picture()
    select(image, 0, 0, 10, 10)
    before = image.snapshot()
    status, error = gimpfu.run(NAMES[2], RUN_NONINTERACTIVE, image, layer, "no-such-model", 0)
    assert status == "execution-error"
    assert gimpfu.messages and "no-such-model" in gimpfu.messages[-1]
    assert image.snapshot() == before and image.steps() == 0
    assert "pdb.gimp_image_undo_group_start" not in [name for name, _ in gimpfu.calls]


def test_high_bit_depth_needs_consent(plugin):
    image, layer = picture()
    image.precision = gimpfu.PRECISION_U16_GAMMA
    before = image.snapshot()
    status, _ = gimpfu.run(NAMES[2], RUN_NONINTERACTIVE, image, layer, "", 0)
    assert status == "execution-error" and "8 bits" in gimpfu.messages[-1]
    assert image.snapshot() == before
    assert gimpfu.run(NAMES[2], RUN_NONINTERACTIVE, image, layer, "", 1)[0] == "success"
    assert image.snapshot() != before


def test_indexed_images_and_groups_are_refused_in_plain_words(plugin):
    image, layer = picture(base=INDEXED)
    status, _ = gimpfu.run(NAMES[2], RUN_NONINTERACTIVE, image, layer, "", 0)
    assert status == "execution-error" and "Image > Mode > RGB" in gimpfu.messages[-1]
    image, layer = picture()
    layer.layers = []
    gimpfu.run(NAMES[2], RUN_NONINTERACTIVE, image, layer, "", 0)
    assert "layer group" in gimpfu.messages[-1]


def test_a_wrong_scale_is_refused(plugin):
    image, layer = picture()
    status, _ = gimpfu.run(NAMES[1], RUN_NONINTERACTIVE, image, layer, "3", "in-place", "", 0)
    assert status == "calling-error"      # not one of the radio's values: GIMP refuses it


# -- AI Batch ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_batch_on_every_layer_is_one_undo_step_and_skips_text(plugin, server):
    image, layer = picture(kind=RGB_IMAGE)
    text = make_layer(image, "caption", 12, 6, RGBA_IMAGE, pixels(12, 6, 4).tobytes())
    text.text = True
    before = image.snapshot()
    originals = {lay.name: layer_array(lay).copy() for lay in image.layers}
    status, values = gimpfu.run(NAMES[4], RUN_NONINTERACTIVE, image, layer, "deblur", "2", "",
                                "layers", "", "", 0)
    assert status == "success", values
    assert values[0] == 2 and "caption" in values[1] and "text layer" in values[1]
    for lay in image.layers:
        if lay.name == "caption":
            assert np.array_equal(layer_array(lay), originals["caption"])
        else:
            assert np.array_equal(layer_array(lay), server_answer(
                server, "deblur", [frame_of(originals[lay.name])]))
    assert image.steps() == 1 and image.unsaved_writes == []
    image.undo()
    assert image.snapshot() == before


@pytest.mark.slow
def test_batch_on_every_open_image(plugin):
    first, layer = picture()
    second, _ = picture(kind=GRAY_IMAGE, base=GRAY)
    status, values = gimpfu.run(NAMES[4], RUN_NONINTERACTIVE, first, layer, "upscale", "2", "",
                                "images", "", "", 0)
    assert status == "success" and values[0] == 4
    assert (first.width, second.width) == (100, 100)
    assert first.steps() == second.steps() == 1


def test_batch_on_a_folder(plugin, server, tmp_path):
    source, destination = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    photo = pixels(24, 16, 3)
    (source / "a.ppm").write_bytes(b"P6\n24 16\n255\n" + photo.tobytes())
    (source / "broken.ppm").write_bytes(b"not an image")
    status, error = gimpfu.run(NAMES[4], RUN_NONINTERACTIVE, None, None, "upscale", "2", "",
                               "folder", str(source), str(destination), 0)
    assert status == "execution-error"            # broken.ppm failed: the script is told
    assert "broken.ppm: GIMP cannot open it" in gimpfu.messages[-1]
    assert "1 file done" in gimpfu.messages[-1]
    saved = (destination / "a.ppm").read_bytes()
    assert saved[len(saved) - 48 * 32 * 3:] == server_answer(
        server, "upscale", [frame_of(photo)], {"scale": 2}).tobytes()
    assert not (destination / "broken.ppm").exists()
    assert all(not image.valid for image in gimpfu.images)       # every file closed


def test_batch_refuses_the_input_folder_as_output(plugin, tmp_path):
    status, _ = gimpfu.run(NAMES[4], RUN_INTERACTIVE, None, None, "deblur", "1", "", "folder",
                           str(tmp_path), str(tmp_path), 0)
    assert status == "success" and "replace the originals" in gimpfu.messages[-1]
