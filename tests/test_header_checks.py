"""Header values the server must refuse before it acts on them: numbers
that are not finite, and session ids that cannot be the random ids the
protocol asks for."""
import pytest

from sharpfu_client import wire
from sharpfu_client.wire import WireError

KEY = b"k" * 64


def signed(raw):
    return [wire.MAGIC, wire.sign(KEY, raw), raw]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
def test_non_finite_numbers_in_a_header_are_refused(number):
    raw = (b'{"protocol":1,"id":"abc","parent":null,"type":"job","op":"echo",'
           b'"params":{"delay":' + number + b'},"frames":[]}')
    with pytest.raises(WireError) as caught:
        wire.unpack(signed(raw), KEY)
    assert caught.value.code == "bad_header"
    assert caught.value.msg_id == "abc"   # the error reply can still name its parent


@pytest.mark.parametrize("session", ["x", "", "a" * 15, "a" * 65, 12, ["a" * 32],
                                     "abc def ghi jkl mno", "é" * 20, "a" * 31 + "\n"])
def test_malformed_session_ids_are_refused(session):
    header = wire.make_header("status", session=session)
    with pytest.raises(WireError) as caught:
        wire.unpack(wire.pack(header, (), KEY), KEY)
    assert caught.value.code == "bad_header"
    assert caught.value.msg_id == header["id"]


@pytest.mark.parametrize("session", ["0123456789abcdef", wire.new_id(), "A-b_c" * 4, "f" * 64])
def test_session_ids_of_16_to_64_id_characters_pass(session):
    header = wire.make_header("status", session=session)
    assert wire.unpack(wire.pack(header, (), KEY), KEY)[0]["session"] == session
