"""Shared memory for the pixels of local jobs.

On one machine a ZeroMQ socket moves pixels at a small fraction of memory
bandwidth (every byte is copied through the kernel twice), so a local client
puts its pixels into a segment of shared memory and sends only their
description. The client owns every segment: it creates it, the server maps
it by name (a fixed prefix plus hex digits, never a path) and writes the
result into the reply region, and the client removes it. Segments are reused
from job to job because first-touching fresh pages costs more than copying
into warm ones.

A client can be killed (GIMP kills a plug-in whose progress bar is
cancelled) and leave segments behind, in RAM until the next reboot. The
server therefore removes the segments of a client that vanished in the
middle of a job, and every client, when it starts, removes segments left by
clients that are gone: the creator's pid is the first 8 hex digits of a name.
"""
from __future__ import absolute_import, division, print_function

import errno
import mmap
import os
import sys
import time
import uuid

from .wire import SEGMENT_PREFIX

MIB = 1 << 20
STALE_AFTER = 600   # seconds unused before a dead client's segment is removed


def default_directory():
    """Where segments live: tmpfs on Linux. Other systems use the socket."""
    if sys.platform.startswith("linux") and os.path.isdir("/dev/shm"):
        return "/dev/shm"
    return None


def segment_name(pid=None):
    """The prefix, the creator's pid as 8 hex digits, 32 random hex digits."""
    return "%s%08x%s" % (SEGMENT_PREFIX, (os.getpid() if pid is None else pid) & 0xffffffff,
                         uuid.uuid4().hex)


def creator_alive(name):
    """False only when the pid in a segment's name surely runs no process."""
    try:
        os.kill(int(name[len(SEGMENT_PREFIX):len(SEGMENT_PREFIX) + 8], 16), 0)
    except (ValueError, OverflowError):
        return True
    except OSError as error:
        return error.errno != errno.ESRCH
    return True


def remove_stale(directory, now=None):
    """Remove this user's segments whose creator is gone and which nobody has
    written to for STALE_AFTER seconds (the age guards against a pid seen
    from another pid namespace). Returns the names removed."""
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(SEGMENT_PREFIX) or creator_alive(name):
            continue
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
            if info.st_uid == os.geteuid() and now - info.st_mtime > STALE_AFTER:
                os.unlink(path)
                removed.append(name)
        except OSError:
            pass
    return removed


class Segment(object):
    """One segment, mapped read-write into this process."""

    def __init__(self, directory, size):
        self.name = segment_name()
        self.path = os.path.join(directory, self.name)
        self.size = size
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        except Exception:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)

    def write(self, offset, data):
        view = memoryview(data)
        if sys.version_info[0] < 3:
            self._map[offset:offset + len(view) * view.itemsize] = view.tobytes()
        else:
            if view.format != "B" or view.ndim != 1:  # novermin
                view = view.cast("B")
            self._map[offset:offset + len(view)] = view

    def view(self, offset, size):
        """The bytes at offset: a zero-copy memoryview on Python 3, a copy on 2.7
        (whose mmap has no new-style buffer)."""
        if sys.version_info[0] < 3:
            return self._map[offset:offset + size]
        return memoryview(self._map)[offset:offset + size]

    def close(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:
            self._map.close()
        except BufferError:
            pass  # a caller still holds a view; the mapping goes with it


class SegmentPool(object):
    """Segments for jobs in flight, and a few idle ones kept for reuse."""

    def __init__(self, directory, keep_bytes=2048 * MIB):
        self.directory = directory
        self.keep_bytes = keep_bytes
        self._idle = []
        remove_stale(directory)

    def acquire(self, size):
        fitting = [s for s in self._idle if s.size >= size]
        if fitting:
            segment = min(fitting, key=lambda s: s.size)
            self._idle.remove(segment)
            return segment
        # Round up so that slightly larger images reuse the segment.
        rounded = max(MIB, (size + size // 8 + MIB - 1) // MIB * MIB)
        return Segment(self.directory, rounded)

    def release(self, segment):
        self._idle.append(segment)
        self._idle.sort(key=lambda s: -s.size)
        kept, total = [], 0
        for idle in self._idle:
            if total + idle.size <= self.keep_bytes and len(kept) < 4:
                kept.append(idle)
                total += idle.size
            else:
                idle.close()
        self._idle = kept

    def close(self):
        for segment in self._idle:
            segment.close()
        self._idle = []
