"""Batches on the command line: jobs in flight, resume, summary, and several
servers with one killed mid-batch."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from sharpfu_cli import imageio
from sharpfu_cli.imageio import Picture

SHARPFU = [sys.executable, "-m", "sharpfu_cli.main"]


def make_inputs(folder, count, height=48, width=64):
    rng = np.random.default_rng(5)
    folder.mkdir()
    for index in range(count):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        imageio.write(str(folder / ("img%02d.png" % index)), Picture(pixels))
    return sorted(os.listdir(folder))


def cli(*args, timeout=300):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARPFU_")}
    return subprocess.run(SHARPFU + [str(a) for a in args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.slow
def test_jobs_resume_and_summary(server, tmp_path):
    names = make_inputs(tmp_path / "in", 6)
    common = ["--config", server.config_path, "--no-autostart"]
    first = cli("upscale", tmp_path / "in", "-o", tmp_path / "out", "--jobs", 3, *common)
    assert first.returncode == 0, first.stderr
    assert sorted(os.listdir(tmp_path / "out")) == names
    assert "6 written in" in first.stderr and "images/s" in first.stderr
    assert "output MP/s" in first.stderr
    os.remove(tmp_path / "out" / names[2])
    stamp = os.path.getmtime(tmp_path / "out" / names[0])
    again = cli("upscale", tmp_path / "in", "-o", tmp_path / "out", "--resume", *common)
    assert again.returncode == 0, again.stderr
    assert "1 written, 5 skipped (already there)" in again.stderr
    assert os.path.getmtime(tmp_path / "out" / names[0]) == stamp   # left alone
    assert sorted(os.listdir(tmp_path / "out")) == names


@pytest.mark.slow
def test_several_servers_one_killed_mid_batch(fresh_server, tmp_path):
    servers = [fresh_server() for _ in range(3)]
    names = make_inputs(tmp_path / "in", 12, 256, 256)
    reference = tmp_path / "reference"
    # Fixed tiles, so that every server computes the very same pixels.
    options = ["--scale", 4, "--tile", 256, "--config", servers[0].config_path]
    done = cli("sharpen", tmp_path / "in", "-o", reference, "--endpoint", servers[0].endpoint,
               "--no-autostart", "-q", *options)
    assert done.returncode == 0, done.stderr

    endpoints = [arg for s in servers for arg in ("--endpoint", s.endpoint)]
    batch = subprocess.Popen(SHARPFU + [str(a) for a in ["sharpen", tmp_path / "in", "-o",
                                                           tmp_path / "out"] + endpoints
                                        + options],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def busy(log):   # holds a job it has not finished
        return log.count("queued for client") > log.count(": done in")

    deadline = time.monotonic() + 120
    while not ((tmp_path / "out").exists() and os.listdir(tmp_path / "out")
               and busy(servers[1].log())):
        assert time.monotonic() < deadline and batch.poll() is None, batch.communicate()
        time.sleep(0.02)
    servers[1].kill()   # mid-batch, mid-job
    out, err = batch.communicate(timeout=300)
    assert batch.returncode == 0, err
    assert "12 written in" in err
    assert sorted(os.listdir(tmp_path / "out")) == names     # nothing extra, nothing partial
    for name in names:
        got = imageio.read(str(tmp_path / "out" / name)).pixels
        assert np.array_equal(got, imageio.read(str(reference / name)).pixels), name
    assert all("queued for client" in s.log() for s in servers), "every server got work"
    assert busy(servers[1].log()), "the killed server's unfinished jobs were taken over"


@pytest.mark.slow
def test_status_lists_every_server(fresh_server, tmp_path):
    servers = [fresh_server() for _ in range(2)]
    servers[1].kill()
    done = cli("status", "--endpoint", servers[0].endpoint, "--endpoint", servers[1].endpoint,
               "--config", servers[0].config_path)
    assert done.returncode == 0, done.stderr
    assert servers[0].endpoint in done.stdout
    assert "%s: not answering" % servers[1].endpoint in done.stdout
