"""Replay protection for signed messages: a message is taken once, and only
while its date is near the receiver's clock (as jupyter_client's session
keeps a digest history)."""
from __future__ import annotations

import time

import pytest

from sharpfu_client import wire
from sharpfu_client.wire import ReplayGuard, WireError

KEY = b"0123456789abcdef" * 4   # the shared test server's key (conftest.py)


def signed_status(date=None):
    header = wire.make_header("status")
    if date is not None:
        header["date"] = date
    parts = wire.pack(header, (), KEY)
    return header, parts


def date_of(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".000000Z"


def check(guard, parts, now=None):
    header, _ = wire.unpack(parts, KEY)
    guard.check(header, parts[1], now)
    return header


def test_a_message_is_taken_once():
    guard = ReplayGuard()
    _, parts = signed_status()
    check(guard, parts)
    with pytest.raises(WireError) as caught:
        check(guard, parts)
    assert caught.value.code == "bad_signature" and "before" in caught.value.message


@pytest.mark.parametrize("offset", [-3600, -wire.REPLAY_WINDOW - 5, wire.REPLAY_WINDOW + 5])
def test_a_message_dated_outside_the_window_is_refused(offset):
    guard = ReplayGuard()
    _, parts = signed_status(date_of(time.time() + offset))
    with pytest.raises(WireError) as caught:
        check(guard, parts)
    assert caught.value.code == "bad_signature" and "clock" in caught.value.message


@pytest.mark.parametrize("date", [None, "yesterday", 12, "2024-13-45T99:00:00Z"])
def test_a_signed_message_needs_a_readable_date(date):
    header = wire.make_header("status")
    if date is None:
        del header["date"]
    else:
        header["date"] = date
    parts = wire.pack(header, (), KEY)
    with pytest.raises(WireError) as caught:
        check(ReplayGuard(), parts)
    assert caught.value.code == "bad_header" and caught.value.msg_id == header["id"]


def test_the_record_is_bounded_and_never_lets_an_evicted_message_back_in():
    guard = ReplayGuard(capacity=8)
    now = time.time()
    sent = [signed_status(date_of(now - 50 + k))[1] for k in range(20)]
    for k, parts in enumerate(sent):
        check(guard, parts, now)
    assert len(guard) == 8
    for parts in sent:   # every one of them, remembered or evicted, is refused now
        with pytest.raises(WireError):
            check(guard, parts, now)


def test_old_entries_expire():
    guard = ReplayGuard()
    now = time.time()
    check(guard, signed_status(date_of(now))[1], now)
    check(guard, signed_status(date_of(now + 3 * wire.REPLAY_WINDOW))[1],
          now + 3 * wire.REPLAY_WINDOW)
    assert len(guard) == 1


def test_the_server_refuses_a_replayed_request(server):
    sock = server.raw_socket()
    header, parts = signed_status()
    replies = []
    for _ in range(2):
        sock.send_multipart(parts)
        assert sock.poll(5000)
        replies.append(wire.unpack(sock.recv_multipart(), KEY)[0])
    sock.close()
    assert replies[0]["type"] == "status"
    assert (replies[1]["type"], replies[1]["code"]) == ("error", "bad_signature")
    assert replies[1]["parent"] == header["id"]
