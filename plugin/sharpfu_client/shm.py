"""Shared memory for the pixels of local jobs.

On one machine a ZeroMQ socket moves pixels at a small fraction of memory
bandwidth (every byte is copied through the kernel twice), so a local client
puts its pixels into a segment of shared memory and sends only their
description. The client owns every segment: it creates it (mode 0600, its
pages reserved up front, so that a full /dev/shm fails here and not as a
SIGBUS later), the server reads and writes it through a file descriptor
(never a mapping a truncation could pull away), and the client removes it.
Segments are reused from job to job because first-touching fresh pages
costs more than copying into warm ones.

A segment's name is the prefix, the creator's pid and a hash of a random
token that only the creator knows and sends with each request: the server
opens a segment only for a request that proves it made it, so no other
client can read, overwrite or have the server unlink it.

A client can be killed (GIMP kills a plug-in whose progress bar is
cancelled) and leave segments behind, in RAM until the next reboot. The
server therefore removes the segments of a client that vanished in the
middle of a job, and the server (at start and every few seconds) and every
client (when it starts) remove segments left by processes that are gone:
the creator's pid is the first 8 hex digits of a name.
"""
from __future__ import absolute_import, division, print_function

import errno
import hashlib
import mmap
import os
import sys
import time
import uuid

from .wire import SEGMENT_PREFIX

MIB = 1 << 20
STALE_AFTER = 60    # seconds unused before a dead process's segment is removed


def default_directory():
    """Where segments live: tmpfs on Linux. Other systems use the socket."""
    if sys.platform.startswith("linux") and os.path.isdir("/dev/shm"):
        return "/dev/shm"
    return None


def token_digest(token):
    """The 32 hex digits a segment's name carries for its token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()[:32]


def segment_name(pid=None, token=None):
    """The prefix, the creator's pid as 8 hex digits, and 32 hex digits: the
    digest of the creator's secret token (random when none is given)."""
    digest = token_digest(token) if token is not None else uuid.uuid4().hex
    return "%s%08x%s" % (SEGMENT_PREFIX, (os.getpid() if pid is None else pid) & 0xffffffff,
                         digest)


def proves(name, token):
    """Whether `token` is the one a segment of this name was made with."""
    return len(name) == len(SEGMENT_PREFIX) + 40 and name[-32:] == token_digest(token)


def reserve(fd, size):
    """Give the segment its pages now: on a full or small /dev/shm this
    raises OSError (ENOSPC) here, where the job can still go inline, instead
    of killing whoever first touches a page that cannot be had (SIGBUS)."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)  # novermin
        return
    info = os.fstatvfs(fd)   # Python 2.7: no fallocate; a check is the next best
    if info.f_bavail * info.f_frsize < size:
        raise OSError(errno.ENOSPC, "not enough shared memory for %d bytes" % size)


def creator_alive(name):
    """False only when the pid in a segment's name surely runs no process."""
    try:
        os.kill(int(name[len(SEGMENT_PREFIX):len(SEGMENT_PREFIX) + 8], 16), 0)
    except (ValueError, OverflowError):
        return True
    except OSError as error:
        return error.errno != errno.ESRCH
    return True


def remove_stale(directory, now=None, keep=()):
    """Remove this user's segments whose creator is gone and which nobody has
    written to for STALE_AFTER seconds (the age guards against a pid seen
    from another pid namespace), except the names in `keep`. Returns the
    names removed."""
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(SEGMENT_PREFIX) or name in keep or creator_alive(name):
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
    """One segment, mapped read-write into this process. `token` proves to
    the server that this process made it; it never leaves this client but
    in its own requests."""

    def __init__(self, directory, size):
        self.token = uuid.uuid4().hex
        self.name = segment_name(token=self.token)
        self.path = os.path.join(directory, self.name)
        self.size = size
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)   # whatever the umask: the server refuses anything wider
            os.ftruncate(fd, size)
            reserve(fd, size)
            self._map = mmap.mmap(fd, size)
        except Exception:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)

    def intact(self):
        """Whether the file still has all the pages this mapping expects."""
        try:
            return os.stat(self.path).st_size >= self.size
        except OSError:
            return False

    def ref(self, offset, size):
        """The request's reference to `size` bytes at `offset`."""
        return {"segment": self.name, "offset": offset, "size": size, "token": self.token}

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
        for segment in [s for s in self._idle if not s.intact()]:
            self._idle.remove(segment)   # cut short by someone: touching it would be SIGBUS
            segment.close()
        fitting = [s for s in self._idle if s.size >= size]
        if fitting:
            segment = min(fitting, key=lambda s: s.size)
            self._idle.remove(segment)
            return segment
        # Round up so that slightly larger images reuse the segment.
        rounded = max(MIB, (size + size // 8 + MIB - 1) // MIB * MIB)
        try:
            return Segment(self.directory, rounded)
        except (OSError, IOError):
            # Short of shared memory: the idle segments make room, and the
            # exact size may still fit. Raises OSError when it does not.
            self.close()
            return Segment(self.directory, size)

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
