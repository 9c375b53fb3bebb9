"""A bounded stress test of a live, signed server, run by CI: hostile and
unlucky traffic of every kind issue 20 found, interleaved, for a fixed number
of messages. The server must answer what deserves an answer, never crash,
and stay within a memory bound; good work goes on afterwards.
docs/SECURITY.md records its figures."""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import psutil
import pytest
import zmq

from sharpfu_client import Frame, shm, wire
from sharpfu_client.client import authenticate

pytestmark = pytest.mark.slow

KEY = "e5" * 32
ROUNDS = 100                # each round sends every kind below once or more
MALFORMED_PER_ROUND = 400
RSS_BOUND_MB = 400          # over the idle server's resident memory


class Peak:
    def __init__(self, pid):
        self.process = psutil.Process(pid)
        self.before = self.peak = self.process.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while not self.stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return


def socket(endpoint, key=KEY, **options):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    if key:
        authenticate(sock, key.encode())
    sock.connect(endpoint)
    return sock


def malformed(rng, n):
    """One message a buggy or hostile key holder might send."""
    desc = {"name": "image", "width": 4, "height": 4, "channels": 3, "format": "u8"}
    kind = n % 10
    if kind == 0:
        return [os.urandom(int(rng.integers(0, 64))) for _ in range(int(rng.integers(1, 5)))]
    if kind == 1:   # not signed
        return wire.pack(wire.make_header("status"))
    if kind == 2:   # NaN and a one-letter session
        raw = b'{"protocol":1,"id":"n%d","type":"job","op":"echo","params":{"delay":NaN}}' % n
        return [wire.MAGIC, wire.sign(KEY.encode(), raw), raw]
    if kind == 3:
        return wire.pack(wire.make_header("status", session="x"), (), KEY.encode())
    if kind == 4:   # stale date
        return wire.pack(dict(wire.make_header("status"), date="2001-01-01T00:00:00Z"), (),
                         KEY.encode())
    if kind == 5:   # someone else's segment, no token
        ref = {"segment": shm.segment_name(), "offset": 0, "size": 48}
        return wire.pack(wire.make_header("job", op="echo", params={}, frames=[
            dict(desc, shm=ref)]), (), KEY.encode())
    if kind == 6:   # huge floats
        big = np.full((4, 4, 3), 1e38, "<f4")
        return wire.pack(wire.make_header("job", op="upscale", params={"method": "lanczos"},
                                          frames=[dict(desc, format="f32")]), [big.tobytes()],
                         KEY.encode())
    if kind == 7:   # sizes that do not match
        return wire.pack(wire.make_header("job", op="echo", params={}, frames=[desc]),
                         [b"short"], KEY.encode())
    if kind == 8:   # an absurd frame
        return wire.pack(wire.make_header("job", op="upscale", params={}, frames=[
            dict(desc, width=524288, height=524288)]), [b""], KEY.encode())
    return wire.pack(wire.make_header("cancel", job="nothing"), (), KEY.encode())


def answers(sock, count, codes, timeout=10.0):
    """Reads replies until `count` final ones (anything but progress, which
    a server may drop for a client behind on its reading) have come, tallying
    each by its error code, or its type when it is no error."""
    got, deadline = 0, time.monotonic() + timeout
    while got < count and sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        header, _ = wire.unpack(sock.recv_multipart(), KEY.encode())
        code = header.get("code") if header["type"] == "error" else header["type"]
        codes[code] = codes.get(code, 0) + 1
        got += code != "progress"
    return got


def test_bounded_stress(fresh_server):
    proc = fresh_server(key=KEY)
    endpoint = proc.endpoint
    rng = np.random.default_rng(20)
    peak = Peak(proc.process.pid)
    sent = {"malformed": 0, "status": 0, "replays": 0, "unread jobs": 0, "good jobs": 0,
            "unauthenticated bytes": 0, "strangers turned away before sending": 0,
            "truncated segments": 0}
    answered, codes = 0, {}
    reader = socket(endpoint)
    sleeper = socket(endpoint, RCVHWM=1, RCVBUF=4096)   # never reads a reply
    image = np.zeros((64, 64, 3), np.uint8)
    started = time.monotonic()
    with proc.client() as good:
        for round_ in range(ROUNDS):
            for n in range(MALFORMED_PER_ROUND):
                reader.send_multipart(malformed(rng, n))
            sent["malformed"] += MALFORMED_PER_ROUND
            status = wire.pack(wire.make_header("status"), (), KEY.encode())
            reader.send_multipart(status)
            reader.send_multipart(status)           # the same signed message again
            sent["status"] += 1
            sent["replays"] += 1
            answered += answers(reader, MALFORMED_PER_ROUND + 2, codes)
            if round_ % 4 == 1:   # a stranger offers 32 MB: turned away in the handshake
                # Its send may block for good once the refused handshake has
                # torn its only connection down, hence the send timeout
                stranger = socket(endpoint, key=None, SNDTIMEO=2000)
                try:
                    stranger.send_multipart([wire.MAGIC, b"", b"{}", bytes(32 << 20)])
                    sent["unauthenticated bytes"] += 32 << 20
                except zmq.Again:
                    sent["strangers turned away before sending"] += 1
                assert not stranger.poll(100)
                stranger.close()
            for _ in range(16):
                try:
                    sleeper.send_multipart(wire.pack(wire.make_header(
                        "job", op="echo", params={}, frames=[{"name": "image", "width": 512,
                                                              "height": 512, "channels": 4,
                                                              "format": "u8"}]),
                        [bytes(512 * 512 * 4)], KEY.encode()), zmq.NOBLOCK)
                    sent["unread jobs"] += 1
                except zmq.Again:
                    break
            job = good.submit("upscale", [Frame(image, 64, 64, 3)], {"scale": 2,
                                                                    "method": "lanczos"})
            if job._lease is not None and round_ % 4 == 0:
                os.truncate(job._lease.path, 0)      # cut short under the queued job
                sent["truncated segments"] += 1
            try:
                good.wait(job)
            except Exception as error:               # noqa: BLE001 - a clear error is fine
                assert getattr(error, "code", "") in ("bad_frame", "shm_unavailable"), error
            sent["good jobs"] += 1
        result = good.run("upscale", [Frame(image, 64, 64, 3)], {"scale": 2})
        assert result.frame("image").width == 128
        sent["good jobs"] += 1
    seconds = time.monotonic() - started
    peak.stop.set()
    for sock in (reader, sleeper):
        sock.close()
    crashes = 0 if proc.process.poll() is None else 1
    messages = sum(sent[k] for k in ("malformed", "status", "replays", "unread jobs", "good jobs"))
    figures = dict(sent, messages=messages, answered=answered, codes=codes,
                   seconds=round(seconds, 1),
                   idle_rss_mb=round(peak.before / 1e6), peak_rss_mb=round(peak.peak / 1e6),
                   crashes=crashes)
    print("\nstress figures: " + json.dumps(figures))
    assert crashes == 0, proc.log()[-3000:]
    assert answered == ROUNDS * (MALFORMED_PER_ROUND + 2)
    # Each malformed message and each replay refused with its own code; the
    # first of each status pair answered.
    each = ROUNDS * MALFORMED_PER_ROUND // 10
    codes.pop("progress", None)   # the float jobs' "queued", when not dropped
    assert codes == {"bad_message": each, "bad_signature": 2 * each + ROUNDS,
                     "bad_header": 2 * each, "shm_unavailable": each, "bad_pixels": each,
                     "bad_frame": each, "too_large": each, "cancel": each, "status": ROUNDS}
    assert (peak.peak - peak.before) / 1e6 < RSS_BOUND_MB, figures
    assert "Traceback" not in proc.log()
