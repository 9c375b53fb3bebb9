"""What the plug-ins say (sharpfu_client.plugin_jobs, .methods, .layers):
progress in plain words that moves, the message at the end, the methods a
dialog offers, the size of a result. GIMP-independent; the real GIMP shows
them in tests/e2e/test_gimp.py."""
from __future__ import annotations

import json

import pytest

from sharpfu_client import Client, methods
from sharpfu_client.layers import ResultSize
from sharpfu_client.plugin_jobs import JobWords, method_words

STATUS = {
    "methods": [
        {"name": "lanczos", "kind": "classical", "title": "Lanczos-3 resampling",
         "ops": ["upscale", "sharpen"], "scales": [2, 4], "loaded": True},
        {"name": "unsharp", "kind": "classical", "title": "Unsharp mask",
         "ops": ["deblur", "sharpen"], "scales": [1], "loaded": True},
        {"name": "span", "kind": "network", "ops": ["sharpen", "upscale"], "scales": [2, 4],
         "title": "SPAN super-resolution (SharpFu-trained, 32 channels x 6 blocks)",
         "loaded": False},
        {"name": "span-adapted-0123456789ab", "kind": "network", "ops": ["upscale", "sharpen"],
         "scales": [2], "loaded": True, "adaptation": {"base": "span"},
         "title": "SPAN super-resolution (SharpFu-trained, 32 channels x 6 blocks), adapted"},
        {"name": "colour-line", "kind": "classical", "title": "Local colour-line matting",
         "ops": ["matte"], "scales": [1], "loaded": True}],
    "defaults": {"upscale": {"2": "span", "4": "span"}, "deblur": {"1": "unsharp"},
                 "sharpen": {"1": "unsharp", "2": "unsharp+span"}}}


class Job:
    def __init__(self, stage, fraction, queue_position=None):
        self.op, self.stage, self.fraction = "upscale", stage, fraction
        self.queue_position = queue_position


def test_progress_in_plain_words_from_the_first_second_to_the_last():
    now = [100.0]
    words = JobWords("upscale", STATUS, {"scale": 2}, clock=lambda: now[0])
    assert words.text(Job("queued", 0.0, 3)) == "Waiting for 2 other jobs to finish\u2026"
    assert words.text(Job("started", 0.0)) == "Loading the model, then enlarging\u2026"
    assert words.text(Job("loading SPAN super-resolution (SharpFu-trained, 32 channels x 6 "
                          "blocks)", 0.0)) == "Loading the model\u2026"
    assert words.text(Job("SPAN super-resolution: tile 1 of 4", 0.37)) == "Enlarging\u2026 37 %"
    now[0] += 2.5     # from 2 s on it counts the seconds: each heartbeat changes the text
    assert words.text(Job("SPAN super-resolution: tile 1 of 4", 0.37)) == \
        "Enlarging\u2026 37 % (2 s)"
    now[0] += 1.0
    assert words.text(Job("SPAN super-resolution: tile 1 of 4", 0.37)).endswith("(3 s)")
    assert words.text(Job("done", 1.0)) == "Putting the result back\u2026"
    # a method already in memory: no loading
    assert JobWords("upscale", STATUS, {"method": "lanczos", "scale": 2}).text(
        Job("started", 0.0)) == "Enlarging\u2026"
    assert JobWords("deblur", STATUS).text(Job("started", 0.0)) == "Removing blur\u2026"


def test_the_last_word_names_the_method_as_a_photographer_would():
    class Result:
        method = {"name": "unsharp+span", "kind": "mixed", "stages": STATUS["methods"][1:3]}
    now = [10.0]
    words = JobWords("sharpen", STATUS, {"scale": 2}, clock=lambda: now[0])
    now[0] += 5.24
    said = words.done(Result())
    assert said == ("Done in 5.2 s with Unsharp mask (a classical method, not AI), then the "
                    "AI model SPAN super-resolution.")
    assert method_words(STATUS["methods"][3]) == \
        "the AI model SPAN super-resolution, adapted to your images"


def test_the_methods_a_dialog_offers():
    assert methods.choices(STATUS, "upscale", 2) == [
        ("", "Best available: SPAN super-resolution (AI)"),
        ("span", "SPAN super-resolution (AI)"),
        ("span-adapted-0123456789ab", "SPAN super-resolution, adapted to your images (AI)"),
        ("lanczos", "Lanczos-3 resampling (classical, not AI)")]
    # at 4x the adapted 2x network is no choice
    assert [value for value, _ in methods.choices(STATUS, "upscale", 4)] == [
        "", "span", "lanczos"]
    # AI Sharpen takes a deblurrer or an upscaler for its scale; at 1x only a deblurrer
    assert [value for value, _ in methods.choices(STATUS, "sharpen", 1)] == ["", "unsharp"]
    assert methods.choices(STATUS, "sharpen", 2)[0] == (
        "", "Best available: Unsharp mask (classical, not AI), then SPAN super-resolution (AI)")
    assert methods.choices(None, "deblur") == [("", "Best available")]


@pytest.mark.slow
def test_the_methods_of_a_real_server(server):
    with Client(endpoint=server.endpoint, config_path=str(server.config_path),
                autostart=False) as client:
        status = client.connect()
    for op, scale in (("upscale", 2), ("upscale", 4), ("deblur", 1), ("sharpen", 1),
                      ("matte", 1)):
        offered = [value for value, _ in methods.choices(status, op, scale)]
        installed = {m["name"] for m in status["methods"]
                     if op in m["ops"] and scale in m["scales"]}
        if op == "sharpen":   # a deblurrer is AI Sharpen's first stage
            installed = {m["name"] for m in status["methods"] if "deblur" in m["ops"]}
        assert offered[0] == "" and sorted(offered[1:]) == sorted(installed)
        # the server's order, best first: the default opens the list
        assert offered[1:] == status["choices"][op][str(scale)]
        assert offered[1] == status["defaults"][op][str(scale)].split("+")[0]


def test_the_status_is_cached_briefly_and_a_stale_one_serves_without_a_server(tmp_path):
    path = str(tmp_path / "cache.json")
    asked, now = [], [1000.0]

    def ask():
        asked.append(now[0])
        return dict(STATUS, server={"pid": 1})
    assert methods.cached_status("tcp://a", ask, lambda: now[0], path)["defaults"]
    now[0] += 10
    methods.cached_status("tcp://a", ask, lambda: now[0], path)
    assert len(asked) == 1                          # fresh: not asked again
    now[0] += methods.CACHE_SECONDS
    methods.cached_status("tcp://a", ask, lambda: now[0], path)
    assert len(asked) == 2
    assert "server" not in json.load(open(path))["status"]
    now[0] += 1000
    assert methods.cached_status("tcp://a", lambda: None, lambda: now[0], path) is not None
    assert methods.cached_status("tcp://other", lambda: None, lambda: now[0], path) is None


def test_the_size_of_a_result_and_when_it_is_too_large():
    small = ResultSize(2560, 1708, 2560 * 1708 * 4)
    assert small.words() == "2560 \u00d7 1708 pixels (4.4 megapixels), 17 MB"
    assert small.too_large(free=10 ** 10) is None
    assert "only 1.0 MB is free" in small.too_large(free=10 ** 6)
    big = ResultSize(8400, 8000, 8400 * 8000 * 3)
    assert big.too_large().startswith("The result would be 8400 \u00d7 8000 pixels "
                                      "(67 megapixels), more than the 64 megapixels")


def test_blur_fields_follow_the_deblurrer_that_would_run():
    status = {"methods": [
        {"name": "mimo-unet-small", "kind": "network", "ops": ["deblur", "sharpen"],
         "scales": [1]},
        {"name": "blind-deconvolution", "kind": "mixed", "ops": ["deblur", "sharpen"],
         "scales": [1], "extra_frames": ["kernel"]},
        {"name": "span", "kind": "network", "ops": ["sharpen", "upscale"], "scales": [2, 4]}],
        "defaults": {"deblur": {"1": "mimo-unet-small"},
                     "sharpen": {"2": "mimo-unet-small+span"}}}
    assert methods.estimates_blur(status, "deblur", 1, "") is False
    assert methods.estimates_blur(status, "deblur", 1, "blind-deconvolution") is True
    assert methods.estimates_blur(status, "sharpen", 2, "blind-deconvolution") is True
    # a named upscaler leaves the deblurring stage to the server's default
    assert methods.estimates_blur(status, "sharpen", 2, "span") is False
    assert methods.estimates_blur(None, "deblur", 1, "") is None
