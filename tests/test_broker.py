"""The broker in this process, with an engine double: failures that a live
server cannot be made to show on purpose."""
from __future__ import annotations

import threading

import pytest
import zmq

from server.scratch import free_port
from server.broker import Broker
from server.settings import Settings
from sharpfu_client import wire


class BrokenEngine:
    """Accepts nothing: its check raises what a bug would."""
    device = "cpu"

    def check(self, job):
        raise RuntimeError("a bug in the engine")

    def status(self):
        return {"device": {"type": "cpu"}, "methods": [], "defaults": {}}


@pytest.fixture
def broker():
    context = zmq.Context()
    settings = Settings(endpoint="tcp://127.0.0.1:%d" % free_port())
    running = Broker(settings, BrokenEngine(), context)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(settings.endpoint)
    yield running, sock
    sock.close()
    running.stop()
    thread.join(10)
    context.term()


def test_an_internal_error_names_the_request_it_answers(broker):
    _, sock = broker
    header = wire.make_header("job", op="echo", params={}, frames=[
        {"name": "image", "width": 1, "height": 1, "channels": 1, "format": "u8"}])
    sock.send_multipart(wire.pack(header, [b"\0"]))
    assert sock.poll(5000)
    reply, _ = wire.unpack(sock.recv_multipart())
    assert (reply["type"], reply["code"]) == ("error", "internal")
    assert reply["parent"] == header["id"]   # else the client waits for its whole timeout
