"""Clients' shared-memory segments (see sharpfu_client/shm.py), read and
written through file descriptors.

The server never maps a client's segment: a mapping dies with SIGBUS when
its pages go away (the client truncates the file, or a small /dev/shm has
no page to give), taking the whole server with it. A read through the file
descriptor instead comes back short, and a write fails with ENOSPC, and
both are answered: the job ends with an error, or its result goes inline.
Reading a hole of a sparse segment commits no memory either.

A request names a segment, never a path: the prefix plus hex digits, a
regular file in the shared-memory folder, owned by the server's own user,
open to nobody else (mode 0600), and the request must carry the token whose
digest the name holds, which only the client that made it knows.

The server also keeps an empty marker segment, named in its status, by
which a client tells whether it sees the server's shared memory at all, and
removes segments left behind: those of a client that vanished mid-job, and
(at start and every SWEEP_INTERVAL seconds) those of processes that are gone.
"""
from __future__ import annotations

import os
import stat

import numpy as np

from sharpfu_client.shm import default_directory, proves, remove_stale, segment_name
from sharpfu_client.wire import WireError, is_segment_name

SWEEP_INTERVAL = 10.0    # seconds between sweeps for dead processes' segments
CHUNK = 1 << 30          # bytes per read or write call (Linux moves at most 2 GiB - 4 KiB)


class SegmentError(Exception):
    """A segment that changed under a job; `code` is a wire error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Segments:
    def __init__(self, directory: str | None = None):
        self.directory = directory if directory is not None else default_directory()
        self.marker = None
        if self.directory is not None:
            self.marker = segment_name()
            try:
                os.close(os.open(os.path.join(self.directory, self.marker),
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except OSError:
                self.directory = self.marker = None   # no shared memory, then

    @property
    def available(self) -> bool:
        return self.directory is not None

    def touch_marker(self) -> None:
        """Keep the marker young: sweeps remove old segments of dead pids,
        and a pid may look dead from another pid namespace."""
        if self.marker is not None:
            try:
                os.utime(os.path.join(self.directory, self.marker))
            except OSError:
                pass

    # -- checking, reading, writing -------------------------------------------

    def _open(self, ref: dict, flags: int) -> tuple[int, os.stat_result]:
        """An fd of a segment the request has proved it owns, and its stat.
        Raises SegmentError."""
        name, token = ref.get("segment"), ref.get("token")
        if not self.available or not isinstance(name, str) or not is_segment_name(name):
            raise SegmentError("shm_unavailable", "This server has no such shared memory.")
        if not isinstance(token, str) or not proves(name, token):
            raise SegmentError("shm_unavailable", "The request does not prove that its client "
                               "made this shared memory segment (its token is missing or wrong); "
                               "send the pixels inline.")
        try:
            fd = os.open(os.path.join(self.directory, name),
                         flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            raise SegmentError("shm_unavailable", "The shared memory segment cannot be opened.")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() \
                or info.st_mode & 0o077:
            os.close(fd)
            raise SegmentError("shm_unavailable", "The shared memory segment is not private to "
                               "this server's user (mode 0600, same owner).")
        return fd, info

    def check(self, ref: dict, msg_id: str) -> None:
        """Refuse at once a reference the request cannot use. Raises WireError."""
        try:
            fd, info = self._open(ref, os.O_RDONLY)
        except SegmentError as error:
            raise WireError(error.code, error.message, msg_id)
        os.close(fd)
        if ref["offset"] + ref["size"] > info.st_size:
            raise WireError("bad_frame", "The frame reaches past the end of its shared memory "
                            "segment.", msg_id)

    def read(self, ref: dict, out: np.ndarray) -> None:
        """Copy ref's bytes into `out`. Raises SegmentError when the segment
        is gone or now shorter."""
        fd, _ = self._open(ref, os.O_RDONLY)
        try:
            view = memoryview(out).cast("B")
            done = 0
            while done < len(view):
                got = os.preadv(fd, [view[done:done + CHUNK]], ref["offset"] + done)
                if got <= 0:
                    raise SegmentError("bad_frame", "The shared memory segment was cut short "
                                       "while the job waited; its pixels are not all there.")
                done += got
        finally:
            os.close(fd)

    def write(self, ref: dict, array: np.ndarray) -> bool:
        """Copy `array` to ref's place; False when that cannot be done (the
        segment shrank or vanished, or /dev/shm has no room): the result
        then goes inline."""
        try:
            fd, info = self._open(ref, os.O_WRONLY)
        except SegmentError:
            return False
        try:
            view = memoryview(np.ascontiguousarray(array)).cast("B")
            if ref["offset"] + len(view) > info.st_size:
                return False   # never grow a segment its client shrank
            done = 0
            while done < len(view):
                done += os.pwritev(fd, [view[done:done + CHUNK]], ref["offset"] + done)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    # -- cleaning up ----------------------------------------------------------

    def remove(self, names) -> None:
        """Unlink segments of a client that is gone (only this user's, and
        only names of the segment pattern)."""
        for name in names:
            if not is_segment_name(name):
                continue
            path = os.path.join(self.directory, name)
            try:
                if os.lstat(path).st_uid == os.geteuid():
                    os.unlink(path)
            except OSError:
                pass

    def sweep(self, keep=()) -> list[str]:
        """Remove segments of processes that are gone, but not those in use."""
        if not self.available:
            return []
        return remove_stale(self.directory, keep=set(keep) | {self.marker})

    def exists(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.directory, name))

    def close(self) -> None:
        if self.marker is not None:
            self.remove([self.marker])
            self.marker = None
