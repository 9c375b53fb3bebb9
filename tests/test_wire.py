"""The wire format: framing, signatures and descriptor checks."""
import json

import pytest

from sharpfu_client import wire
from sharpfu_client.wire import WireError

KEY = b"secret-key"


def test_pack_unpack_round_trip_with_signature():
    header = wire.make_header("job", op="upscale", params={"scale": 2}, frames=[])
    parts = wire.pack(header, [b"pixels"], KEY)
    assert parts[0] == wire.MAGIC and len(parts[1]) == 64
    got, payloads = wire.unpack(parts, KEY)
    assert got == header
    assert payloads == [b"pixels"]


def test_header_is_canonical_json():
    header = wire.make_header("status")
    raw = wire.pack(header)[2]
    assert json.loads(raw) == header
    assert raw == json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize("mutate, code", [
    (lambda p: [b"nope"] + p[1:], "bad_message"),
    (lambda p: p[:2], "bad_message"),
    (lambda p: p[:2] + [b"{not json"], "bad_header"),
    (lambda p: p[:2] + [b"[1, 2]"], "bad_header"),
    (lambda p: p[:2] + [b"\xff\xfe"], "bad_header"),
    (lambda p: [p[0], b"0" * 64] + p[2:], "bad_signature"),
    (lambda p: [p[0], b""] + p[2:], "bad_signature"),
])
def test_malformed_messages_raise_with_a_code(mutate, code):
    parts = wire.pack(wire.make_header("status"), (), KEY)
    with pytest.raises(WireError) as caught:
        wire.unpack(mutate(parts), KEY)
    assert caught.value.code == code
    assert caught.value.message


@pytest.mark.parametrize("fields, code", [
    ({"protocol": 2}, "unsupported_protocol"),
    ({"protocol": "1"}, "bad_header"),
    ({"protocol": True}, "bad_header"),
    ({"type": "explode"}, "unknown_type"),
    ({"type": 7}, "bad_header"),
    ({"id": ""}, "bad_header"),
    ({"id": "x" * 65}, "bad_header"),
    ({"parent": 12}, "bad_header"),
])
def test_header_fields_are_checked(fields, code):
    header = wire.make_header("status")
    header.update(fields)
    with pytest.raises(WireError) as caught:
        wire.unpack(wire.pack(header))
    assert caught.value.code == code


def test_error_names_the_offending_message():
    header = wire.make_header("status", protocol=9)
    with pytest.raises(WireError) as caught:
        wire.unpack(wire.pack(header))
    assert caught.value.msg_id == header["id"]


def frame(**fields):
    desc = {"name": "image", "width": 4, "height": 3, "channels": 4, "format": "u16"}
    desc.update(fields)
    return desc


def test_frame_size():
    assert wire.check_frame(frame(), 100) == 4 * 3 * 4 * 2


@pytest.mark.parametrize("fields, code", [
    ({"width": 0}, "bad_frame"),
    ({"height": -1}, "bad_frame"),
    ({"width": 2.5}, "bad_frame"),
    ({"width": True}, "bad_frame"),
    ({"channels": 5}, "bad_frame"),
    ({"format": "u32"}, "bad_frame"),
    ({"name": None}, "bad_frame"),
    ({"width": wire.MAX_SIDE + 1}, "bad_frame"),
    ({"width": 1000, "height": 1000}, "too_large"),
    ({"shm": {"segment": "../../etc/passwd", "offset": 0, "size": 96}}, "bad_frame"),
    ({"shm": {"segment": "sharpfu-" + "ab" * 16, "offset": -1, "size": 96}}, "bad_frame"),
    ({"shm": {"segment": "sharpfu-" + "ab" * 16, "offset": 0, "size": 95}}, "bad_frame"),
])
def test_bad_frames(fields, code):
    with pytest.raises(WireError) as caught:
        wire.check_frame(frame(**fields), max_pixels=10000)
    assert caught.value.code == code


def test_segment_names_cannot_be_paths():
    assert wire.is_segment_name("sharpfu-" + "0" * 32)
    for name in ("sharpfu-../x", "/dev/shm/sharpfu-" + "0" * 32, "sharpfu-" + "0" * 8,
                 "sharpfu-" + "A" * 32, "other-" + "0" * 32):
        assert not wire.is_segment_name(name)


def test_every_error_code_has_a_sentence():
    for code, sentence in wire.ERRORS.items():
        assert sentence.endswith(".") and len(sentence) > 20, code
