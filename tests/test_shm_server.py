"""The server and clients' shared memory under hostile or unlucky
conditions: a segment cut short under a queued job, a /dev/shm too small for
the result (Docker's 64 MB), a sparse segment, another client's segment
named in a request, and leftovers of clients that died."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

from server.scratch import ROOT
from sharpfu_client import Frame, JobFailed, shm, wire

KEY = "5a" * 32
rng = np.random.default_rng(5)


def pixels(height, width, channels=4):
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


@pytest.fixture
def signed_server(fresh_server):
    return fresh_server(key=KEY)


def final_reply(sock, timeout=30.0):
    deadline = time.monotonic() + timeout
    while sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        header, payloads = wire.unpack(sock.recv_multipart(), KEY.encode())
        if header["type"] in ("result", "error"):
            return header, payloads
    raise AssertionError("no result or error")


@pytest.mark.parametrize("cut_to", ["nothing", "the input only"])
def test_a_segment_cut_short_under_a_queued_job_does_not_kill_the_server(signed_server, cut_to):
    image = pixels(256, 256)
    with signed_server.client() as client:
        busy = client.submit("echo", [Frame(pixels(8, 8), 8, 8, 4)], {"delay": 1.0, "steps": 2})
        job = client.submit("upscale", [Frame(image, 256, 256, 4)],
                            {"scale": 2, "method": "lanczos"})
        assert job._lease is not None, "the job should go through shared memory"
        deadline = time.monotonic() + 10
        while job.state != "queued" and time.monotonic() < deadline:   # accepted, waiting
            client._pump(0.02)
        assert job.state == "queued"
        os.truncate(job._lease.path, 0 if cut_to == "nothing" else image.nbytes)
        client.wait(busy)
        try:
            result = client.wait(job)
        except JobFailed as error:   # a clear error is as good as a result
            assert error.code in ("bad_frame", "shm_unavailable"), error
        else:
            out = np.frombuffer(result.frame("image").data, np.uint8)
            assert out.size == 512 * 512 * 4 and out.any()
        assert client.status()["jobs"]["running"] == 0
    assert signed_server.process.poll() is None, signed_server.log()[-2000:]


def test_a_sparse_segment_commits_no_memory_in_the_server(signed_server):
    """A reply region of 1 GiB that nobody wrote is a hole: the server must
    not fault it in (the audit saw 2 GB allocated for a 2 GB segment)."""
    image = pixels(64, 64)
    server = psutil.Process(signed_server.process.pid)
    token = wire.new_id()
    path = os.path.join("/dev/shm", shm.segment_name(token=token))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, 1 << 30)            # sparse: no page behind it yet
        os.pwrite(fd, image.tobytes(), 0)
        with signed_server.client() as client:
            client.run("echo", [Frame(image, 64, 64, 4)], copy=True)   # warm up the paths
            before = server.memory_info().rss
            ref = {"segment": os.path.basename(path), "offset": 0, "size": image.nbytes,
                   "token": token}
            reply = dict(ref, offset=image.nbytes, size=(1 << 30) - image.nbytes)
            desc = {"name": "image", "width": 64, "height": 64, "channels": 4, "format": "u8",
                    "shm": ref}
            sock = signed_server.raw_socket()
            sock.send_multipart(wire.pack(wire.make_header(
                "job", op="upscale", params={"scale": 2, "method": "lanczos"}, frames=[desc],
                reply_shm=reply), (), KEY.encode()))
            header, _ = final_reply(sock)
            sock.close()
            peak = server.memory_info().rss
        assert header["type"] == "result", header
        assert header["frames"][0]["shm"]["offset"] == image.nbytes   # written in place
        assert os.fstat(fd).st_blocks * 512 < 64 << 20, "the hole was filled"
    finally:
        os.close(fd)
        os.unlink(path)
    assert peak - before < 256 << 20, "server RSS grew by %d MB" % ((peak - before) >> 20)


def another_clients_segment(directory, image):
    """A segment another client made and filled, as it would for a job."""
    segment = shm.Segment(directory, 1 << 20)
    segment.write(0, image)
    return segment


def test_a_request_cannot_read_another_clients_segment(signed_server):
    secret = pixels(32, 32)
    with signed_server.client() as victim:
        victim.status()
        segment = another_clients_segment(victim._shm_pool().directory, secret)
        sock = signed_server.raw_socket()
        for token in (None, "0" * 32, wire.new_id()):
            ref = {"segment": segment.name, "offset": 0, "size": secret.nbytes}
            if token is not None:
                ref["token"] = token
            header = wire.make_header("job", op="upscale", params={"scale": 2,
                                      "method": "lanczos"}, frames=[dict(
                                          name="image", width=32, height=32, channels=4,
                                          format="u8", shm=ref)])
            sock.send_multipart(wire.pack(header, (), KEY.encode()))
            reply, payloads = final_reply(sock)
            assert reply["type"] == "error" and reply["code"] == "shm_unavailable", reply
            assert not payloads
        sock.close()
        segment.close()


def test_a_request_cannot_overwrite_or_unlink_another_clients_segment(signed_server):
    secret = pixels(32, 32)
    with signed_server.client() as victim:
        victim.status()
        segment = another_clients_segment(victim._shm_pool().directory, secret)
        sock = signed_server.raw_socket()
        reply_ref = {"segment": segment.name, "offset": 0, "size": 1 << 20,
                     "token": wire.new_id()}
        header = wire.make_header("job", op="echo", params={"delay": 2, "steps": 2}, frames=[
            dict(name="image", width=32, height=32, channels=4, format="u8")],
            reply_shm=reply_ref)
        sock.send_multipart(wire.pack(header, [np.zeros_like(secret).tobytes()],
                                      KEY.encode()))
        if sock.poll(3000):
            reply, _ = wire.unpack(sock.recv_multipart(), KEY.encode())
        sock.close()   # gone mid-job: the server cleans up what this client named
        time.sleep(3)
        victim.status()
        assert os.path.exists(segment.path), "another client's segment was unlinked"
        assert bytes(segment.view(0, secret.nbytes)) == secret.tobytes(), "it was overwritten"
        segment.close()


def test_segments_open_to_others_are_refused(signed_server):
    image = pixels(16, 16)
    with signed_server.client() as client:
        client.status()
        segment = shm.Segment(client._shm_pool().directory, 1 << 20)
        segment.write(0, image)
        os.chmod(segment.path, 0o644)
        ref = {"segment": segment.name, "offset": 0, "size": image.nbytes,
               "token": getattr(segment, "token", "0" * 32)}
        header = wire.make_header("job", op="echo", params={}, frames=[dict(
            name="image", width=16, height=16, channels=4, format="u8", shm=ref)])
        sock = signed_server.raw_socket()
        sock.send_multipart(wire.pack(header, (), KEY.encode()))
        reply, _ = final_reply(sock)
        sock.close()
        segment.close()
    assert reply["type"] == "error" and reply["code"] == "shm_unavailable"


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leftover(age):
    path = os.path.join("/dev/shm", shm.segment_name(dead_pid()))
    with open(path, "wb") as handle:
        handle.write(b"\0" * 4096)
    os.chmod(path, 0o600)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_leftovers_of_dead_clients_are_swept_at_start_and_soon_after(fresh_server):
    before = leftover(shm.STALE_AFTER + 5)
    young = leftover(0)
    proc = fresh_server()
    assert not os.path.exists(before), "a stale segment survived the server's start"
    assert os.path.exists(young), "a young segment may belong to a client in another namespace"
    later = leftover(shm.STALE_AFTER + 5)
    deadline = time.monotonic() + 3 * 10 + 5
    while os.path.exists(later) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not os.path.exists(later), "a stale segment survived the periodic sweep"
    os.unlink(young)
    proc.stop()


SMALL_SHM = textwrap.dedent("""
    import os, subprocess, sys, time
    import numpy as np
    from sharpfu_client import Client, Frame, shm
    sys.path.insert(0, sys.argv[3])
    from server.scratch import ServerProcess
    from pathlib import Path
    if sys.argv[2] == "unreserved" and hasattr(shm, "reserve"):
        shm.reserve = lambda fd, size: None     # a client that does not reserve its pages
    proc = ServerProcess(Path(sys.argv[1]), key="ab" * 32).start()
    try:
        image = np.random.default_rng(1).integers(0, 256, (600, 600, 4), dtype=np.uint8)
        with proc.client() as client:
            result = client.run("upscale", [Frame(image, 600, 600, 4)],
                                {"scale": 2, "method": "lanczos"})
            out = np.frombuffer(result.frame("image").data, np.uint8)
            assert out.size == 1200 * 1200 * 4, out.size
            print("result", client.use_shm, flush=True)
    finally:
        code = proc.stop()
        print("server", code, flush=True)
        if code not in (0, None):
            print(proc.log()[-3000:])
""")


def can_mount_tmpfs():
    if not shutil.which("unshare") or not sys.platform.startswith("linux"):
        return False
    done = subprocess.run(["unshare", "-rm", "sh", "-c",
                           "mount -t tmpfs -o size=1m tmpfs /dev/shm"], capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs unshare -rm to mount a small tmpfs")
@pytest.mark.parametrize("client_kind", ["reserved", "unreserved"])
def test_a_small_dev_shm_falls_back_to_inline_frames(tmp_path, client_kind):
    """In a mount namespace whose /dev/shm holds 4 MB: the input (1.4 MB) fits,
    the 2x result (5.8 MB) does not."""
    script = tmp_path / "small_shm.py"
    script.write_text(SMALL_SHM)
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=4m tmpfs /dev/shm && exec "$@"',
         "sh", sys.executable, str(script), str(tmp_path / "server"), client_kind,
         str(ROOT / "tests")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert "result" in done.stdout, done.stdout + done.stderr
    assert "server 0" in done.stdout, done.stdout + done.stderr


def test_a_client_does_not_reuse_a_segment_cut_short(tmp_path):
    pool = shm.SegmentPool(str(tmp_path))
    segment = pool.acquire(1 << 20)
    pool.release(segment)
    os.truncate(segment.path, 0)
    again = pool.acquire(1 << 20)
    assert again is not segment and again.intact()
    again.write(0, bytes(1 << 20))   # would be SIGBUS in the old mapping
    pool.release(again)
    pool.close()
