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
    reply_region: memoryview | None = None   # the client's shared memory for the result
    reply_ref: dict | None = None
    input_refs: dict = field(default_factory=dict)   # frame name -> its shared-memory ref
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

    def allocate(self, desc: dict) -> tuple[np.ndarray, dict | None]:
        """A writable array for one result frame: in the client's shared
        memory when it fits there, else in our own memory (sent inline)."""
        nbytes = desc["width"] * desc["height"] * desc["channels"] * \
            pixels.DTYPES[desc["format"]].itemsize
        if self.reply_region is not None and self._reply_used + nbytes <= len(self.reply_region):
            start = self._reply_used
            self._reply_used += nbytes
            array = pixels.as_array(self.reply_region[start:start + nbytes], desc)
            ref = {"segment": self.reply_ref["segment"],
                   "offset": self.reply_ref["offset"] + start, "size": nbytes}
            return array, ref
        shape = (desc["height"], desc["width"], desc["channels"])
        return np.empty(shape, pixels.DTYPES[desc["format"]]), None


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
