"""The server over real ZeroMQ sockets on loopback: transport, progress,
cancel, several clients, and servers or clients that die mid-job."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import zmq

from sharpfu_client import Cancelled, Client, ConnectionLost, Frame, JobFailed, Timeout, wire

rng = np.random.default_rng(3)


def random_frame(height, width, channels, fmt, name="image"):
    if fmt == "f32":
        array = rng.standard_normal((height, width, channels)).astype("<f4")
    else:
        dtype = "u1" if fmt == "u8" else "<u2"
        array = rng.integers(0, np.iinfo(dtype).max + 1, (height, width, channels)).astype(dtype)
    return Frame(array, width, height, channels, fmt, name), array


@pytest.mark.parametrize("use_shm", [False, True], ids=["inline", "shm"])
@pytest.mark.parametrize("fmt, channels", [("u8", 4), ("u8", 1), ("u16", 3), ("f32", 2)])
def test_round_trip_is_bit_exact(server, use_shm, fmt, channels):
    frame, array = random_frame(97, 131, channels, fmt)
    with server.client(use_shm=use_shm) as client:
        result = client.run("echo", [frame])
        assert client.use_shm == use_shm
    out = result.frame("image")
    assert (out.width, out.height, out.channels, out.format) == (131, 97, channels, fmt)
    assert bytes(out.data) == array.tobytes()


@pytest.mark.slow
def test_results_through_shared_memory_equal_inline_ones(server):
    frame, _ = random_frame(70, 90, 4, "u16")
    results = []
    for use_shm in (True, False):
        with server.client(use_shm=use_shm) as client:
            result = client.run("sharpen", [frame], {"scale": 2})
            assert result.frame("image").nbytes == 140 * 180 * 4 * 2
            results.append(bytes(result.frame("image").data))
    assert results[0] == results[1]


def test_zero_copy_result_stays_valid_until_released(server):
    frame, array = random_frame(64, 64, 4, "u8")
    with server.client() as client:
        result = client.run("echo", [frame], copy=False)
        assert isinstance(result.frame("image").data, memoryview)
        second = client.run("echo", [random_frame(64, 64, 4, "u8")[0]])
        assert bytes(result.frame("image").data) == array.tobytes()
        assert second.frame("image").data != array.tobytes()
        result.release()


@pytest.mark.slow
def test_progress_arrives_in_order_and_ends_at_one(server):
    frame, _ = random_frame(300, 400, 3, "u8")
    seen = []
    with server.client() as client:
        client.run("upscale", [frame], {"scale": 2, "tile": 128},
                   progress=lambda fraction, stage: seen.append((fraction, stage)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and seen[-1][1] == "done"
    assert sum("tile" in stage for _, stage in seen) >= 4


def test_status_tells_what_is_classical(server):
    with server.client() as client:
        status = client.status()
    assert status["server"]["protocols"] == [1]
    assert status["device"]["type"] == "cpu" and status["device"]["memory_free"] > 0
    kinds = {m["name"]: m["kind"] for m in status["methods"]}
    assert kinds["lanczos"] == "classical"
    assert set(status["ops"]) >= {"upscale", "deblur", "sharpen", "matte"}
    assert status["defaults"]["upscale"]["2"] in kinds
    assert status["limits"]["max_pixels"] > 0


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met within %.0f s" % timeout)


def test_cancel_ends_a_running_job_and_frees_its_memory(server):
    frame, _ = random_frame(2000, 3000, 4, "u8")   # 24 MB held by the server
    with server.client(use_shm=False) as client:
        job = client.submit("echo", [frame], {"delay": 30, "steps": 300})
        wait_for(lambda: client.status()["jobs"]["running"] == 1)
        assert client.status()["jobs"]["held_bytes"] >= frame.nbytes
        started = time.monotonic()
        client.cancel(job)
        with pytest.raises(Cancelled):
            client.wait(job)
        assert time.monotonic() - started < 5
        jobs = wait_for(lambda: (lambda j: j if j["running"] == 0 else None)(
            client.status()["jobs"]))
        assert jobs == {"queued": 0, "running": 0, "held_bytes": 0}


def test_cancel_a_queued_job(server):
    with server.client() as client:
        first = client.submit("echo", [random_frame(8, 8, 3, "u8")[0]], {"delay": 2, "steps": 20})
        second = client.submit("echo", [random_frame(8, 8, 3, "u8")[0]])
        client.cancel(second)
        with pytest.raises(Cancelled):
            client.wait(second)
        assert client.wait(first).frame("image").width == 8


def test_two_clients_at_once_get_their_own_results(server):
    results, errors = {}, []

    def work(name, seed):
        try:
            array = np.random.default_rng(seed).integers(0, 256, (120, 90, 4), dtype=np.uint8)
            with server.client() as client:
                for _ in range(3):
                    out = client.run("echo", [Frame(array, 90, 120, 4)], {"delay": 0.3})
                    assert bytes(out.frame("image").data) == array.tobytes()
            results[name] = True
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n, s)) for n, s in (("a", 1), ("b", 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and results == {"a": True, "b": True}


def test_a_single_job_is_not_starved_by_a_batch(server):
    with server.client() as batch_client, server.client() as single_client:
        batch = [batch_client.submit("echo", [random_frame(8, 8, 1, "u8")[0]], {"delay": 0.4})
                 for _ in range(6)]
        time.sleep(0.2)
        single = single_client.submit("echo", [random_frame(8, 8, 1, "u8")[0]], {"delay": 0.4})
        single_client.wait(single)
        finished = 0
        for job in batch:
            batch_client._pump(0)
            finished += job.finished
        assert finished <= 2, "the single job waited behind the whole batch"
        for job in batch:
            batch_client.wait(job)


def test_server_killed_mid_job_gives_an_error_within_the_timeout(fresh_server):
    proc = fresh_server()
    frame, _ = random_frame(16, 16, 3, "u8")
    with proc.client(timeout=10) as client:
        job = client.submit("echo", [frame], {"delay": 30, "steps": 300})
        wait_for(lambda: client._pump(0.05) or job.state == "running")
        proc.kill()
        started = time.monotonic()
        with pytest.raises((ConnectionLost, Timeout)) as caught:
            client.wait(job)
        assert time.monotonic() - started < 10 + 1
        assert "unchanged" in caught.value.message


def test_a_vanished_client_has_its_job_and_shared_memory_dropped(server):
    script = textwrap.dedent("""
        import os, sys, time
        from sharpfu_client import Client, Frame
        client = Client(endpoint=sys.argv[1], config_path=sys.argv[2], autostart=False)
        job = client.submit("echo", [Frame(b"x" * (3 << 20), 1024, 1024, 3)],
                            {"delay": 60, "steps": 600})
        while job.state != "running":
            client._pump(0.05)
        print("running", job._lease.name if job._lease else "inline", flush=True)
        os._exit(0)   # gone without a word, as GIMP kills a cancelled plug-in
    """)
    child = subprocess.run([sys.executable, "-c", script, server.endpoint,
                            str(server.config_path)], capture_output=True, text=True, timeout=60)
    state, segment = child.stdout.split()
    assert state == "running", child.stderr
    assert segment.startswith("sharpfu-"), "the job should have gone through shared memory"
    with server.client() as client:
        wait_for(lambda: client.status()["jobs"]["running"] == 0, timeout=5)
    assert "went away" in server.log()
    wait_for(lambda: not os.path.exists("/dev/shm/" + segment), timeout=5)


def test_shared_memory_needs_the_servers_marker(server):
    with server.client() as client:
        status = client.status()
        assert os.path.isfile(os.path.join(status["shm"]["dir"], status["shm"]["marker"]))
        client.server_status = dict(status, shm=dict(status["shm"], marker="sharpfu-" + "0" * 40))
        client.run("echo", [random_frame(4, 4, 3, "u8")[0]])
        assert not client.use_shm   # as from a sandbox with its own /dev/shm


def raw_socket(server):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    return sock


def ask(sock, parts, timeout=5.0):
    sock.send_multipart(parts)
    if not sock.poll(int(timeout * 1000)):
        raise AssertionError("no answer")
    return wire.unpack(sock.recv_multipart())[0]


def test_wrong_key_is_refused_and_answered(server):
    sock = raw_socket(server)
    header = wire.make_header("status")
    reply = ask(sock, wire.pack(header, (), b"not the key"))
    assert reply["type"] == "error" and reply["code"] == "bad_signature"
    assert reply["parent"] == header["id"]
    sock.close()


def test_limits_are_enforced_before_any_work(fresh_server):
    proc = fresh_server(server_settings={"max_megapixels": 0.01})
    with proc.client() as client:
        status = client.status()
        assert status["limits"]["max_pixels"] == 10000
        with pytest.raises(JobFailed) as caught:   # input fits, 4x output does not
            client.run("upscale", [random_frame(40, 40, 3, "u8")[0]], {"scale": 4})
        assert caught.value.code == "too_large"
        with pytest.raises(Exception) as caught:   # refused by the client library already
            client.run("upscale", [random_frame(200, 200, 3, "u8")[0]], {"scale": 2})
        assert caught.value.code == "too_large"


def test_a_message_over_the_size_cap_drops_only_that_connection(fresh_server):
    proc = fresh_server(server_settings={"max_megapixels": 0.01})
    sock = raw_socket(proc)
    desc = {"name": "image", "width": 100, "height": 100, "channels": 4, "format": "u8"}
    header = wire.make_header("job", op="echo", params={}, frames=[desc])
    sock.send_multipart(wire.pack(header, [b"\0" * (300 * 1024 * 1024 // 100)]))
    assert not sock.poll(1000), "an oversized message must not be answered"
    sock.close()
    with proc.client() as client:   # the server still serves everyone else
        assert client.run("echo", [random_frame(8, 8, 3, "u8")[0]]).frame("image").width == 8


def test_ipc_endpoint(fresh_server, tmp_path):
    proc = fresh_server(endpoint="ipc://%s/sharpfu.sock" % tmp_path)
    with proc.client() as client:
        frame, array = random_frame(10, 10, 3, "u16")
        assert bytes(client.run("echo", [frame]).frame("image").data) == array.tobytes()


def test_a_client_with_another_key_is_told_why(server, tmp_path):
    import json
    config = json.loads(server.config_path.read_text())
    config["key"] = "f" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(config))
    with Client(endpoint=server.endpoint, config_path=str(other), autostart=False) as client:
        with pytest.raises(Exception) as caught:
            client.connect()
    assert caught.value.code == "bad_signature" and "key" in caught.value.message
