"""Thousands of malformed messages against a live server: every one is
answered, none crashes or hangs it, and good work goes on afterwards."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings, strategies as st

from sharpfu_client import Frame, wire

pytestmark = pytest.mark.slow

values = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.sampled_from([2, 4, 1 << 40]),
                   st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 0.01),
                   st.text(max_size=8), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))

INPUTS = {"upscale": ["image"], "deblur": ["image"], "sharpen": ["image"],
          "matte": ["image", "mask"], "echo": ["image"]}
PARAMS = {"upscale": ["scale", "method", "tile"], "deblur": ["method", "tile"],
          "sharpen": ["scale", "method", "tile"], "matte": ["method", "tile"],
          "echo": ["delay", "steps"]}
GOOD_VALUES = {"scale": st.sampled_from([1, 2, 4]), "method": st.sampled_from([None, "lanczos",
               "unsharp", "colour-line", "/etc/passwd"]), "tile": st.sampled_from([0, 64, 100]),
               "delay": st.floats(0, 0.01), "steps": st.integers(1, 3)}


def nbytes(desc):
    return desc["width"] * desc["height"] * desc["channels"] * wire.SAMPLE_BYTES[desc["format"]]


@st.composite
def valid_jobs(draw):
    """A job the server should accept: the base that mutations start from."""
    op = draw(st.sampled_from(sorted(INPUTS)))
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    fmt = draw(st.sampled_from(["u8", "u16", "f32"]))
    frames = []
    for name in INPUTS[op]:
        channels = 1 if name == "mask" else draw(st.integers(1, 4))
        frames.append({"name": name, "width": width, "height": height, "channels": channels,
                       "format": fmt})
    params = {name: draw(GOOD_VALUES[name]) for name in PARAMS[op] if draw(st.booleans())}
    header = wire.make_header("job", op=op, params=params, frames=frames)
    payloads = [bytes(nbytes(d)) for d in frames]
    return header, payloads


def mutate(draw, header, payloads):
    kind = draw(st.sampled_from(["drop", "replace", "frame", "payloads", "poison", "extra_field",
                                 "type"]))
    if kind == "drop":
        header.pop(draw(st.sampled_from(sorted(header))), None)
    elif kind == "replace":
        header[draw(st.sampled_from(sorted(header)))] = draw(values)
    elif kind == "type":
        header["type"] = draw(st.sampled_from(list(wire.TYPES) + ["bogus"]))
        header["job"] = draw(st.one_of(values, st.just(header.get("id"))))
    elif kind == "extra_field":
        header.setdefault("params", {})
        if isinstance(header["params"], dict):
            header["params"][draw(st.sampled_from(["scale", "tile", "bogus", "delay", "method"]))] \
                = draw(values)
    elif kind == "frame" and isinstance(header.get("frames"), list) and any(
            isinstance(d, dict) for d in header["frames"]):
        desc = draw(st.sampled_from([d for d in header["frames"] if isinstance(d, dict)]))
        field = draw(st.sampled_from(["name", "width", "height", "channels", "format", "shm"]))
        desc[field] = draw(st.one_of(values, st.sampled_from(
            [0, 1 << 31, 5, "u32", {"segment": "sharpfu-" + "0" * 32, "offset": 0, "size": 3},
             {"segment": "../../etc/passwd", "offset": 0, "size": 3}])))
    elif kind == "payloads":
        change = draw(st.sampled_from(["fewer", "more", "short", "long"]))
        if change == "fewer":
            payloads[:] = payloads[:-1]
        elif change == "more":
            payloads.append(b"extra")
        elif payloads:
            index = draw(st.integers(0, len(payloads) - 1))
            payloads[index] = payloads[index][:-1] if change == "short" else payloads[index] + b"!"
    elif kind == "poison":
        frames = header.get("frames") if isinstance(header.get("frames"), list) else []
        for index, desc in enumerate(frames):
            if isinstance(desc, dict) and desc.get("format") == "f32" and payloads[index:]:
                payloads[index] = struct.pack("<f", draw(st.sampled_from(
                    [float("nan"), float("inf")]))) + payloads[index][4:]


@st.composite
def messages(draw):
    shape = draw(st.sampled_from(["random", "valid", "mutated", "mutated", "mutated", "mutated"]))
    if shape == "random":
        return draw(st.lists(st.binary(max_size=64), min_size=1, max_size=5))
    header, payloads = draw(valid_jobs())
    if shape == "mutated":
        for _ in range(draw(st.integers(1, 3))):
            mutate(draw, header, payloads)
    raw = json.dumps(header).encode()
    if draw(st.integers(0, 19)) == 0:
        raw = raw[:len(raw) // 2]   # truncated header
    return [wire.MAGIC, b"", raw] + payloads


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    from server.scratch import ServerProcess
    proc = ServerProcess(tmp_path_factory.mktemp("fuzz")).start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(proc.endpoint)
    yield proc, sock
    sock.close()
    proc.stop()


def answers(sock):
    """Every reply until a terminal one (or silence)."""
    replies = []
    while sock.poll(5000):
        header, _ = wire.unpack(sock.recv_multipart())
        replies.append(header)
        if header["type"] in ("status", "result", "error", "cancel"):
            return replies
    return replies


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(message=messages())
def test_every_malformed_message_is_answered(fuzz_target, message):
    proc, sock = fuzz_target
    sock.send_multipart(message)
    replies = answers(sock)
    assert replies, "no answer to %r" % (message[:3],)
    assert replies[-1]["type"] in ("status", "result", "error", "cancel")
    if replies[-1]["type"] == "error":
        assert replies[-1]["code"] in wire.ERRORS and replies[-1]["message"]
        assert replies[-1]["code"] not in ("internal", "model_failed"), replies[-1]
    assert proc.process.poll() is None


def test_good_work_goes_on_after_the_fuzzing(fuzz_target):
    proc, _ = fuzz_target
    image = np.arange(24 * 16 * 3, dtype=np.uint8).reshape(16, 24, 3)
    with proc.client() as client:
        out = client.run("upscale", [Frame(image, 24, 16, 3)], {"scale": 2})
        assert out.frame("image").width == 48
        assert client.status()["jobs"] == {"queued": 0, "running": 0, "held_bytes": 0}
    assert "Traceback" not in proc.log()
