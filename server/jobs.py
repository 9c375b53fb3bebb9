"""A job as the server holds it, from the moment it is accepted until its
result or error has been sent."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import pixels


class JobError(Exception):
    """Ends a job with an error reply: a wire.ERRORS code and a sentence for the user."""

    def __init__(self, code: str, message: str | None = None):
        from sharpfu_client.wire import ERRORS
        super().__init__(message or ERRORS[code])
        self.code = code
        self.message = message or ERRORS[code]


@dataclass(eq=False)
class Job:
    id: str
    client: bytes
    op: str
    params: dict
    inputs: dict                      # frame name -> (descriptor, read-only array)
    held_bytes: int = 0               # inline bytes this job keeps in server memory
    reply_ref: dict | None = None     # the client's shared memory for the result
    input_refs: dict = field(default_factory=dict)   # frame name -> its shared-memory ref
    segments: object = None           # shm.Segments, for input_refs and reply_ref
    session: str | None = None        # the client's session id, if it sent one
    outcome: dict = field(default_factory=dict)   # result fields besides frames (adapt's report)
    received: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    state: str = "queued"             # queued, running, finished
    # Kept by the broker thread only:
    fraction: float = 0.0
    stage: str = "queued"
    seq: int = 0
    last_sent: float = 0.0
    orphaned: bool = False            # its client went away; send nothing more
    _reply_used: int = 0
    _reply_planned: list = field(default_factory=list)

    @property
    def flow(self) -> tuple:
        """Whose turn this job takes in the fair queue and whose limits it
        counts against: its client's session, so that one client's many
        connections (a Cluster, a script starting a process per file that
        shares a session) count as one; the connection when it sent none."""
        return ("session", self.session) if self.session else ("connection", self.client)

    def load_inputs(self) -> None:
        """Copy the frames that wait in the client's shared memory into our
        own, now that the job runs (queued jobs hold none of it). Raises
        JobError when a segment changed under the job."""
        from .shm import SegmentError
        for name, ref in self.input_refs.items():
            desc, array = self.inputs[name]
            if array is not None:
                continue
            array = np.empty((desc["height"], desc["width"], desc["channels"]),
                             pixels.DTYPES[desc["format"]])
            try:
                self.segments.read(ref, array)
            except SegmentError as error:
                raise JobError(error.code, error.message) from None
            array.flags.writeable = False
            self.inputs[name] = (desc, array)

    def allocate(self, desc: dict) -> tuple[np.ndarray, dict | None]:
        """A writable array for one result frame, and the place in the
        client's shared memory it will be copied to (None: sent inline)."""
        nbytes = desc["width"] * desc["height"] * desc["channels"] * \
            pixels.DTYPES[desc["format"]].itemsize
        shape = (desc["height"], desc["width"], desc["channels"])
        array = np.empty(shape, pixels.DTYPES[desc["format"]])
        ref = None
        if self.reply_ref is not None and self._reply_used + nbytes <= self.reply_ref["size"]:
            ref = dict(self.reply_ref, offset=self.reply_ref["offset"] + self._reply_used,
                       size=nbytes)
            self._reply_used += nbytes
            self._reply_planned.append(ref)
        return array, ref

    def deliver(self, frames: list) -> list:
        """Copy the result frames meant for the client's shared memory there;
        those that cannot be written (the segment shrank, /dev/shm is full)
        go inline instead. Frames that point at the job's own input (echo)
        are there already."""
        delivered = []
        for desc, array, ref in frames:
            if ref is not None and any(ref is planned for planned in self._reply_planned):
                if not self.segments.write(ref, array):
                    ref = None
            delivered.append((desc, array, _public(ref)))
        return delivered


def _public(ref: dict | None) -> dict | None:
    """A reference as the reply carries it: the client knows its own token."""
    return None if ref is None else {k: ref[k] for k in ("segment", "offset", "size")}


FORMATS = {np.dtype("u1"): "u8", np.dtype("<u2"): "u16", np.dtype("<f4"): "f32"}


def local_job(op: str, params: dict | None = None, **frames: np.ndarray) -> Job:
    """A job made in-process from (h, w, c) arrays, its parameters checked
    as the broker checks a client's: for running the engine without a
    server (benchmarks, tests)."""
    from .ops import OPS
    inputs = {}
    for name, array in frames.items():
        height, width, channels = array.shape
        inputs[name] = ({"name": name, "width": width, "height": height, "channels": channels,
                         "format": FORMATS[array.dtype]}, array)
    return Job(id="local", client=b"local", op=op,
               params=OPS[op].check_params(params or {}, "local"), inputs=inputs)
