"""The worker thread: takes jobs from the fair queue one at a time and runs
them on the device. It never touches the socket; what it has to say goes to
the broker as events."""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import zmq

from . import device as devices
from . import pixels, tiling
from .engine import Engine
from .jobs import Job, JobError
from .queue import FairQueue

log = logging.getLogger("sharpfu.worker")

WAKE_ENDPOINT = "inproc://sharpfu-wake"


@dataclass
class Event:
    kind: str                   # "started", "progress", "result" or "error"
    job: Job
    fraction: float = 0.0
    stage: str = ""
    frames: list = field(default_factory=list)
    method: dict = field(default_factory=dict)
    elapsed: float = 0.0
    code: str = ""
    message: str = ""


class Worker(threading.Thread):
    def __init__(self, engine: Engine, jobs: FairQueue, context: zmq.Context):
        super().__init__(name="sharpfu-worker", daemon=True)
        self.engine = engine
        self.jobs = jobs
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._context = context
        self._wake = None
        self.stopping = False

    def _emit(self, event: Event) -> None:
        self.events.put(event)
        try:
            self._wake.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # a wake-up is already pending; the broker drains all events

    def run(self) -> None:
        self._wake = self._context.socket(zmq.PUSH)
        self._wake.setsockopt(zmq.LINGER, 0)
        self._wake.setsockopt(zmq.SNDHWM, 1)   # one pending wake-up is enough
        self._wake.connect(WAKE_ENDPOINT)
        try:
            while not self.stopping:
                job = self.jobs.get(timeout=0.25)
                if job is not None:
                    self._run(job)
        finally:
            self._wake.close(0)

    def _run(self, job: Job) -> None:
        start = time.monotonic()
        self._emit(Event("started", job))
        if job.cancel.is_set():
            self._emit(Event("error", job, code="cancelled", message="The job was cancelled."))
            return

        def report(fraction: float, stage: str) -> None:
            self._emit(Event("progress", job, fraction=fraction, stage=stage))

        try:
            job.load_inputs()
            check_inputs(job)
            frames, method = self.engine.run(job, report)
            check_results(job, frames)
            frames = job.deliver(frames)
        except tiling.Cancelled:
            self._emit(Event("error", job, code="cancelled", message="The job was cancelled."))
        except JobError as error:
            self._emit(Event("error", job, code=error.code, message=error.message))
        except Exception as error:  # noqa: BLE001 - a failing model must not stop the server
            if devices.is_out_of_memory(error):
                devices.release_cached(self.engine.device)
                self._emit(Event("error", job, code="out_of_memory",
                                 message=JobError("out_of_memory").message))
            else:
                log.exception("job %s (%s) failed", job.id, job.op)
                self._emit(Event("error", job, code="model_failed",
                                 message="The %s operation failed: %s. See the server log for "
                                         "details." % (job.op, error)))
        else:
            self._emit(Event("result", job, frames=frames, method=method,
                             elapsed=time.monotonic() - start))


def check_inputs(job: Job) -> None:
    """Float samples the models can work on, or a clear bad_pixels."""
    for desc, array in job.inputs.values():
        bad = pixels.out_of_range(array)
        if bad is None:
            continue
        if bad != bad or bad == float("inf"):
            raise JobError("bad_pixels", "Frame %r contains NaN or infinite values. Replace them "
                           "(e.g. flatten or clamp the layer) and try again." % desc["name"])
        raise JobError("bad_pixels", "Frame %r has float samples as large as %.3g; SharpFu "
                       "takes float images within ±%g (nominally 0 to 1). Clamp or normalise "
                       "the layer first." % (desc["name"], bad, pixels.MAX_FLOAT_SAMPLE))


def check_results(job: Job, frames) -> None:
    """Never send a float result with NaN or infinity in it."""
    for desc, array, _ in frames:
        if not pixels.is_finite(array):
            raise JobError("model_failed", "The %s operation produced invalid values (NaN or "
                           "infinity) for frame %r; nothing was returned. See the server log."
                           % (job.op, desc["name"]))
