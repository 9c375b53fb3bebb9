"""Mapping clients' shared-memory segments (see sharpfu_client/shm.py).

A request names a segment, never a path: the name must be the fixed prefix
plus hex digits, and the segment must be a regular file in the shared-memory
folder owned by the server's own user. Mappings are cached while their
segment lives, because mapping afresh would fault in every page again.

The server also keeps an empty marker segment, named in its status, by
which a client tells whether it sees the server's shared memory at all, and
it removes the segments of clients that vanish in the middle of a job.
"""
from __future__ import annotations

import mmap
import os
import stat
from collections import OrderedDict

from sharpfu_client.shm import default_directory, segment_name
from sharpfu_client.wire import WireError, is_segment_name

CACHE_ENTRIES = 16


class SegmentMapper:
    def __init__(self, directory: str | None = None):
        self.directory = directory if directory is not None else default_directory()
        self._cache: OrderedDict[str, tuple[tuple, mmap.mmap]] = OrderedDict()
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
        """Keep the marker young: clients remove old segments of dead pids,
        and a pid may look dead from another pid namespace."""
        if self.marker is not None:
            try:
                os.utime(os.path.join(self.directory, self.marker))
            except OSError:
                pass

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
        self.sweep()

    def exists(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.directory, name))

    def view(self, ref: dict, msg_id: str) -> memoryview:
        """A writable view of ref's bytes. Raises WireError."""
        name = ref["segment"]
        if not self.available or not is_segment_name(name):
            raise WireError("shm_unavailable", msg_id=msg_id)
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            raise WireError("shm_unavailable", msg_id=msg_id)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                raise WireError("shm_unavailable", "The shared memory segment is not this "
                                "server's user's.", msg_id)
            end = ref["offset"] + ref["size"]
            if end > info.st_size:
                raise WireError("bad_frame", "The frame reaches past the end of its shared "
                                "memory segment.", msg_id)
            identity = (info.st_dev, info.st_ino, info.st_size)
            cached = self._cache.get(name)
            if cached is None or cached[0] != identity:
                if cached is not None:
                    self._forget(name)
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                self._cache[name] = (identity, mmap.mmap(fd, info.st_size, flags=flags))
            self._cache.move_to_end(name)
        finally:
            os.close(fd)
        self.sweep(limit=CACHE_ENTRIES)
        return memoryview(self._cache[name][1])[ref["offset"]:end]

    def _forget(self, name: str) -> bool:
        identity, mapping = self._cache[name]
        try:
            mapping.close()
        except BufferError:
            return False  # a job still uses it; try again on the next sweep
        del self._cache[name]
        return True

    def sweep(self, limit: int = 0) -> None:
        """Unmap segments their client has removed, and the oldest beyond
        `limit` (0: only the removed ones)."""
        for name in list(self._cache):
            try:
                info = os.stat(os.path.join(self.directory, name))
                alive = (info.st_dev, info.st_ino, info.st_size) == self._cache[name][0]
            except OSError:
                alive = False
            if not alive:
                self._forget(name)
        while limit and len(self._cache) > limit:
            if not self._forget(next(iter(self._cache))):
                break

    def close(self) -> None:
        for name in list(self._cache):
            self._forget(name)
        if self.marker is not None:
            self.remove([self.marker])
