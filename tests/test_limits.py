"""Limits that hold before the server commits memory: peers without the key
are turned away in the handshake, a message is limited across all its
parts, and a client that stops reading loses its jobs, not the server's
memory."""
from __future__ import annotations

import threading
import time

import psutil
import pytest
import zmq

from sharpfu_client import wire
from sharpfu_client.client import authenticate

KEY = "c3" * 32


class PeakRss:
    """Samples a process's resident memory in a thread while in use."""

    def __init__(self, pid):
        self.process = psutil.Process(pid)
        self.before = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self):
        return (self.peak - self.before) / 1e6


def raw_socket(endpoint, key=None, rcvhwm=None):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if key is not None:
        authenticate(sock, key)
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
        sock.setsockopt(zmq.RCVBUF, 4096)
    sock.connect(endpoint)
    return sock


def test_a_peer_without_the_key_cannot_make_the_server_buffer_anything(fresh_server):
    proc = fresh_server(key=KEY)
    sock = raw_socket(proc.endpoint)
    desc = {"name": "image", "width": 5000, "height": 5000, "channels": 4, "format": "u8"}
    header = wire.make_header("job", op="echo", params={}, frames=[desc])
    with PeakRss(proc.process.pid) as rss:
        sock.send_multipart(wire.pack(header, [bytes(100 << 20)] * 3))   # 300 MB, unsigned
        answered = sock.poll(4000)
    sock.close()
    assert not answered
    assert rss.growth_mb < 60, "the server buffered %.0f MB for a stranger" % rss.growth_mb
    with proc.client() as client:   # and it goes on serving those with the key
        assert client.status()["server"]["signed"]


def test_a_message_is_limited_across_all_its_parts(fresh_server):
    """ZMQ_MAXMSGSIZE caps each part; the server caps their sum too."""
    proc = fresh_server(key=KEY, server_settings={"max_megapixels": 0.05})
    with proc.client() as client:
        limit = client.status()["limits"]["max_message_bytes"]
    sock = raw_socket(proc.endpoint, KEY.encode())
    part = bytes(limit // 2)
    desc = {"name": "image", "width": 100, "height": 100, "channels": 4, "format": "u8"}
    header = wire.make_header("job", op="echo", params={}, frames=[desc])
    sock.send_multipart(wire.pack(header, [part] * 3, KEY.encode()))
    assert sock.poll(5000)
    reply, _ = wire.unpack(sock.recv_multipart(), KEY.encode())
    sock.close()
    assert (reply["type"], reply["code"], reply["parent"]) == ("error", "bad_message",
                                                               header["id"])
    assert "bytes" in reply["message"]


@pytest.mark.slow
def test_a_client_that_stops_reading_loses_its_jobs_not_the_servers_memory(fresh_server):
    proc = fresh_server(key=KEY)
    sock = raw_socket(proc.endpoint, KEY.encode(), rcvhwm=1)
    desc = {"name": "image", "width": 1024, "height": 512, "channels": 4, "format": "u8"}
    frame = bytes(1024 * 512 * 4)    # 2 MB: the echo result holds as much
    sent = 0
    with PeakRss(proc.process.pid) as rss:
        deadline = time.monotonic() + 20
        while sent < 400 and time.monotonic() < deadline:
            header = wire.make_header("job", op="echo", params={}, frames=[desc])
            try:
                sock.send_multipart(wire.pack(header, [frame], KEY.encode()), zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                time.sleep(0.01)
        time.sleep(2)
    sock.close()
    # 400 jobs of 2 MB: the old server kept every unread result (800 MB).
    assert sent >= 200
    assert rss.growth_mb < 300, "server RSS grew by %.0f MB" % rss.growth_mb
    with proc.client() as client:
        deadline = time.monotonic() + 60
        while client.status()["jobs"]["held_bytes"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert client.status()["jobs"] == {"queued": 0, "running": 0, "held_bytes": 0}


def test_a_flood_of_bad_requests_writes_a_bounded_log(fresh_server):
    proc = fresh_server(key=KEY)
    sock = raw_socket(proc.endpoint, KEY.encode())
    answered = 0
    for batch in range(30):
        for n in range(100):
            sock.send_multipart([wire.MAGIC, b"", b'{"id": "x%d"}' % n])
        while answered < 100 * (batch + 1) and sock.poll(5000):
            sock.recv_multipart()
            answered += 1
    sock.close()
    assert answered == 3000
    deadline = time.monotonic() + 10
    while "more requests rejected" not in proc.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = proc.log()
    assert log.count("rejected a request") <= 60, log.count("rejected a request")
    assert "more requests rejected" in log
