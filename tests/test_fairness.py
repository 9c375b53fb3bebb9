"""A small job from one client is not starved by another client's flood of
tiny jobs, whether that client reads its replies or not."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from sharpfu_client import Frame, wire
from sharpfu_client.client import authenticate

pytestmark = pytest.mark.slow

KEY = "d4" * 32


def flood(endpoint, stop, reads, sent):
    """Tiny echo jobs as fast as one socket takes them; reading the replies
    or never reading them."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if not reads:
        sock.setsockopt(zmq.RCVHWM, 1)
        sock.setsockopt(zmq.RCVBUF, 4096)
    authenticate(sock, KEY.encode())
    sock.connect(endpoint)
    desc = {"name": "image", "width": 1, "height": 1, "channels": 3, "format": "u8"}
    while not stop.is_set():
        try:
            sock.send_multipart(wire.pack(wire.make_header("job", op="echo", params={},
                                                           frames=[desc]), [b"xyz"],
                                          KEY.encode()), zmq.NOBLOCK)
            sent[0] += 1
        except zmq.Again:
            time.sleep(0.001)
        while reads and sock.poll(0):
            sock.recv_multipart()
    sock.close()


def first_turn(client, image) -> int:
    """Run a small job; its place in the queue when it was accepted (1: it
    runs next). Timings would say the same, but not on a loaded machine."""
    job = client.submit("upscale", [Frame(image, 64, 64, 3)], {"scale": 2, "method": "lanczos"})
    places = []
    client.wait(job, progress=lambda fraction, stage: places.append(job.queue_position))
    return next((place for place in places if place), 1)


@pytest.mark.parametrize("reads", [True, False], ids=["reading", "not reading"])
def test_a_small_job_waits_little_behind_a_flood(fresh_server, reads):
    proc = fresh_server(key=KEY)
    stop, sent = threading.Event(), [0]
    thread = threading.Thread(target=flood, args=(proc.endpoint, stop, reads, sent))
    thread.start()
    try:
        time.sleep(4)   # the flood is in full swing
        image = np.zeros((64, 64, 3), np.uint8)
        with proc.client() as client:
            turns = [first_turn(client, image) for _ in range(3)]
    finally:
        stop.set()
        thread.join(30)
    assert sent[0] > 1000, "the flood did not flood"
    assert max(turns) <= 2, "the small job was queued behind %d jobs" % (max(turns) - 1)


def many_connections(endpoint, stop, sent, session):
    """One client's flood spread over a new connection per job (as a batch
    script starting one process per file would, sharing a session)."""
    context = zmq.Context.instance()
    sockets = []
    desc = {"name": "image", "width": 128, "height": 128, "channels": 3, "format": "u8"}
    while not stop.is_set():
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        authenticate(sock, KEY.encode())
        sock.connect(endpoint)
        sock.send_multipart(wire.pack(wire.make_header(
            "job", op="upscale", params={"scale": 2, "method": "lanczos"}, frames=[desc],
            session=session), [bytes(128 * 128 * 3)], KEY.encode()))
        sent[0] += 1
        sockets.append(sock)
        for other in sockets:
            while other.poll(0):
                other.recv_multipart()
        if len(sockets) > 300:
            sockets.pop(0).close()
    for sock in sockets:
        sock.close()


def test_a_clients_connections_share_one_turn(fresh_server):
    proc = fresh_server(key=KEY)
    stop, sent = threading.Event(), [0]
    thread = threading.Thread(target=many_connections,
                              args=(proc.endpoint, stop, sent, wire.new_id()))
    thread.start()
    try:
        time.sleep(8)   # far more jobs queued than the server can do
        image = np.zeros((64, 64, 3), np.uint8)
        with proc.client() as client:
            queued = client.status()["jobs"]["queued"]
            turn = first_turn(client, image)
    finally:
        stop.set()
        thread.join(60)
    assert queued > 10, "the flood did not outrun the server"
    assert turn <= 2, "the small job was queued behind %d of %d jobs" % (turn - 1, queued)
