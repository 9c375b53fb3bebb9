"""Shared-memory segments left behind by dead clients are removed."""
import os
import subprocess
import sys
import time

from sharpfu_client import shm


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def make(directory, name, age):
    path = os.path.join(directory, name)
    with open(path, "wb") as handle:
        handle.write(b"\0" * 16)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_only_old_segments_of_dead_creators_are_removed(tmp_path):
    gone = dead_pid()
    stale = make(tmp_path, shm.segment_name(gone), shm.STALE_AFTER + 60)
    recent = make(tmp_path, shm.segment_name(gone), 5)
    alive = make(tmp_path, shm.segment_name(os.getpid()), shm.STALE_AFTER + 60)
    other = make(tmp_path, "not-a-segment", shm.STALE_AFTER + 60)
    removed = shm.remove_stale(str(tmp_path))
    assert removed == [os.path.basename(stale)]
    assert not os.path.exists(stale)
    assert all(os.path.exists(p) for p in (recent, alive, other))


def test_segment_names_carry_the_creator_and_pass_the_wire_check():
    from sharpfu_client.wire import is_segment_name
    name = shm.segment_name()
    assert is_segment_name(name)
    assert int(name[len("sharpfu-"):len("sharpfu-") + 8], 16) == os.getpid()
    assert shm.creator_alive(name)
    assert not shm.creator_alive(shm.segment_name(dead_pid()))


def test_a_pool_cleans_up_when_it_starts(tmp_path):
    stale = make(tmp_path, shm.segment_name(dead_pid()), shm.STALE_AFTER + 1)
    pool = shm.SegmentPool(str(tmp_path))
    segment = pool.acquire(1000)
    assert not os.path.exists(stale)
    assert os.path.exists(segment.path)
    pool.release(segment)
    pool.close()
    assert not os.path.exists(segment.path)
