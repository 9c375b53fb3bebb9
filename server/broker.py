"""The broker: the one thread that owns the ROUTER socket.

It reads and checks every request, queues jobs, answers status and cancel
requests itself (so they are never stuck behind a long job), forwards the
worker's progress and results, sends a heartbeat for every job at least once
a second, and notices clients that have gone away: with ROUTER_MANDATORY a
send to a vanished peer fails with EHOSTUNREACH, and that client's jobs are
dropped.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque

import psutil
import zmq

from sharpfu_client import __version__, wire
from sharpfu_client.wire import WireError

from . import protocol, security
from .engine import Engine
from .jobs import Job, JobError
from .ops import OPS
from .queue import FairQueue
from .shm import SWEEP_INTERVAL, Segments
from .worker import WAKE_ENDPOINT, Event, Worker

log = logging.getLogger("sharpfu.broker")

BACKLOG_GIVE_UP = 30.0   # seconds a result may wait for a client that does not read
SEND_HWM = 8             # replies ZeroMQ queues for one client before refusing more
BACKLOG_LIMIT = 1000     # replies waiting for one client before it counts as gone
BACKLOG_REFUSE = 1.0     # seconds replies may wait before the client's new jobs are refused
REJECTIONS_LOGGED = 20   # rejected requests logged one by one per REJECTION_WINDOW seconds
REJECTION_WINDOW = 5.0


class Broker:
    def __init__(self, settings, engine: Engine, context: zmq.Context | None = None):
        self.settings = settings
        self.engine = engine
        self.key = settings.key
        self.context = context or zmq.Context.instance()
        self.queue = FairQueue()
        self.jobs: dict[tuple[bytes, str], Job] = {}
        self.held_bytes = 0
        self.started = time.time()
        # Names this server process in every reply, so that a client spread
        # over several servers knows which one holds each of its jobs.
        self.instance = wire.new_id()
        self.last_activity = time.monotonic()
        self._stop = False
        # Results and errors a client's full pipe did not take yet, in order:
        # client -> [(time queued, header, payloads, bytes)]. They count
        # against max_held_bytes like queued inputs.
        self._backlog: dict[bytes, deque] = {}
        self.backlog_bytes = 0
        # Shared-memory segments each client has named, removed if it vanishes.
        self.client_segments: dict[bytes, set[str]] = {}
        self._last_segment_check = self._last_sweep = time.monotonic()
        self._authenticator = None
        self.replay_guard = wire.ReplayGuard()
        # A flood of bad requests is summed up, not logged line by line.
        self._rejections = {"since": time.monotonic(), "logged": 0, "more": 0}

        use_curve = security.check_endpoint(settings)
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, settings.max_message_bytes)
        # A client that stops reading fills its pipe after a few replies;
        # what follows waits in the backlog, where it is counted and bounded.
        self.router.setsockopt(zmq.SNDHWM, SEND_HWM)
        if use_curve:
            self._authenticator = security.enable_curve(self.context, self.router, settings)
        elif self.key:
            self._authenticator = security.enable_plain(self.context, self.router, self.key)
        if settings.endpoint.startswith("ipc://"):
            os.umask(0o077)   # the socket file: this user only
        self.router.bind(settings.endpoint)
        self.wake = self.context.socket(zmq.PULL)
        self.wake.bind(WAKE_ENDPOINT)
        self.worker = Worker(engine, self.queue, self.context)
        # Only once listening: a refused or duplicate start leaves no marker.
        self.segments = Segments()
        swept = self.segments.sweep()
        if swept:
            log.info("removed %d shared-memory segment(s) of processes that are gone",
                     len(swept))

    # -- main loop ------------------------------------------------------------

    def serve_forever(self) -> None:
        self.worker.start()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.wake, zmq.POLLIN)
        log.info("sharpfu-server %s listening on %s (device: %s)", __version__,
                 self.settings.endpoint, self.engine.device)
        last_housekeeping = 0.0
        try:
            while not self._stop:
                events = dict(poller.poll(20 if self._backlog else 250))
                if self.router in events:
                    self._read_requests()
                if self.wake in events:
                    while self.wake.poll(0):
                        self.wake.recv()
                self._drain_events()
                now = time.monotonic()
                if self._backlog:
                    self._flush_backlog(now)
                if now - last_housekeeping >= 0.25:
                    last_housekeeping = now
                    self._housekeeping(now)
        finally:
            self._shutdown()

    def stop(self) -> None:
        self._stop = True

    def _read_requests(self) -> None:
        for _ in range(64):   # then let the worker's events through
            try:
                parts = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.last_activity = time.monotonic()
            client = parts[0].bytes
            msg_id = None
            try:
                header, payloads = wire.unpack(parts[1:], self.key)
                msg_id = header["id"]
                if self.key:
                    self.replay_guard.check(header, parts[2].bytes)
                size = sum(len(part) for part in parts[1:])
                if size > self.settings.max_message_bytes:
                    # ZMQ_MAXMSGSIZE caps each part; this caps them together.
                    raise WireError("bad_message", "The message holds %d bytes; this server "
                                    "takes at most %d in one message (limits.max_message_bytes)."
                                    % (size, self.settings.max_message_bytes), msg_id)
                self._handle(client, header, payloads)
            except WireError as error:
                self._log_rejection(client, error)
                self._send_error(client, error.msg_id or msg_id, error.code, error.message)
            except Exception:  # noqa: BLE001 - one bad request must not stop the server
                log.exception("unexpected failure handling a request from %s", client.hex())
                # With its parent id, so that the client fails the job now
                # instead of waiting for its whole timeout.
                self._send_error(client, msg_id, "internal", wire.ERRORS["internal"])

    def _log_rejection(self, client: bytes, error: WireError) -> None:
        counts = self._rejections
        if counts["logged"] < REJECTIONS_LOGGED:
            counts["logged"] += 1
            log.info("rejected a request from %s: %s (%s)", client.hex(), error.code,
                     error.message)
        else:
            counts["more"] += 1

    def _sum_up_rejections(self, now: float) -> None:
        counts = self._rejections
        if now - counts["since"] < REJECTION_WINDOW:
            return
        if counts["more"]:
            log.info("%d more requests rejected in the last %.0f s", counts["more"],
                     now - counts["since"])
        self._rejections = {"since": now, "logged": 0, "more": 0}

    def _handle(self, client: bytes, header: dict, payloads: list) -> None:
        kind = header["type"]
        if kind == "status":
            if payloads:
                raise WireError("bad_message", "A status request carries no frames.", header["id"])
            self._send(client, wire.make_header("status", header["id"], status=self.status()))
        elif kind == "job":
            self._accept_job(client, header, payloads)
        elif kind == "cancel":
            self._cancel(client, header)
        else:
            raise WireError("unknown_type", "Clients send status, job or cancel requests, not %r."
                            % kind, header["id"])

    # -- requests -------------------------------------------------------------

    def _accept_job(self, client: bytes, header: dict, payloads: list) -> None:
        msg_id = header["id"]
        if self._stop:
            raise WireError("shutting_down", msg_id=msg_id)
        if (client, msg_id) in self.jobs:
            raise WireError("bad_header", "A job with this id is already in progress.", msg_id)
        waiting = self._backlog.get(client)
        if waiting and time.monotonic() - waiting[0][0] > BACKLOG_REFUSE:
            raise WireError("server_busy", "This client has not read the replies it was sent; "
                            "read them before sending more jobs.", msg_id)
        job = protocol.parse_job(header, payloads, client, self.settings, self.segments)
        # Results still waiting to be read count too: a client that does not
        # read gets no more memory than one that waits for its jobs.
        unread = sum(1 for entry in waiting or () if entry[1]["type"] == "result")
        if unread + sum(1 for other in self.jobs.values() if other.flow == job.flow) \
                >= self.settings.max_jobs_per_client:
            raise WireError("server_busy", "This client already has %d jobs queued; wait for "
                            "some to finish." % self.settings.max_jobs_per_client, msg_id)
        try:
            self.engine.check(job)
        except JobError as error:
            raise WireError(error.code, error.message, msg_id)
        if self.held_bytes + self.backlog_bytes + job.held_bytes > self.settings.max_held_bytes:
            raise WireError("server_busy", msg_id=msg_id)
        self.held_bytes += job.held_bytes
        segments = {ref["segment"] for ref in job.input_refs.values()}
        if job.reply_ref is not None:
            segments.add(job.reply_ref["segment"])
        if segments:
            self.client_segments.setdefault(client, set()).update(segments)
        self.jobs[(client, msg_id)] = job
        self.queue.put(job)
        image = next(iter(job.inputs.values()))[0]
        log.info("job %s: %s %dx%d %s x%d %s queued for client %s", msg_id[:8], job.op,
                 image["width"], image["height"], image["format"], image["channels"],
                 "via shared memory" if job.reply_ref or job.input_refs else "inline",
                 client.hex())
        self._progress(job, 0.0, "queued")

    def _cancel(self, client: bytes, header: dict) -> None:
        job_id = protocol.parse_cancel(header)
        job = self.jobs.get((client, job_id))
        session = header.get("session")
        if job is None and isinstance(session, str) and session:
            # Another connection of the same client session (one socket
            # spread over several servers, another to cancel on each): the
            # random job id and session id together prove ownership.
            job = next((j for (c, i), j in self.jobs.items()
                        if i == job_id and j.session == session), None)
        self._send(client, wire.make_header("cancel", header["id"], job=job_id,
                                            found=job is not None))
        if job is None:
            return
        log.info("job %s: cancelled by its client", job_id[:8])
        job.cancel.set()
        if self.queue.remove(job):
            self._finish(job, "error", code="cancelled", message="The job was cancelled.")

    # -- what goes out --------------------------------------------------------

    def _send(self, client: bytes, header: dict, payloads: list = ()) -> None:
        """Send without ever blocking the loop. A result or error that finds
        the client's pipe full waits in the backlog (behind any older one); a
        progress message is dropped (the next one supersedes it)."""
        header.setdefault("server", self.instance)
        final = header["type"] not in ("progress",)
        if client in self._backlog:
            self._flush(client, time.monotonic())
        if client in self._backlog:
            if final:
                self._defer(client, header, payloads)
            return
        parts = [client] + wire.pack(header, payloads, self.key)
        try:
            self.router.send_multipart(parts, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            if final:
                self._defer(client, header, payloads)
        except zmq.ZMQError as error:
            if error.errno != zmq.EHOSTUNREACH:
                raise
            self._client_gone(client)

    def _defer(self, client: bytes, header: dict, payloads: list) -> None:
        waiting = self._backlog.setdefault(client, deque())
        if len(waiting) >= BACKLOG_LIMIT:
            log.info("client %s does not read its replies; dropping it", client.hex())
            self._client_gone(client)
            return
        nbytes = sum(memoryview(p).nbytes for p in payloads)
        waiting.append((time.monotonic(), header, list(payloads), nbytes))
        self.backlog_bytes += nbytes

    def _flush_backlog(self, now: float) -> None:
        for client in list(self._backlog):
            self._flush(client, now)

    def _flush(self, client: bytes, now: float) -> None:
        """Send what waits for a client, oldest first, while its pipe takes it."""
        waiting = self._backlog[client]
        while waiting:
            queued_at, header, payloads, nbytes = waiting[0]
            try:
                self.router.send_multipart([client] + wire.pack(header, payloads, self.key),
                                           zmq.NOBLOCK, copy=False)
            except zmq.Again:
                if now - queued_at > BACKLOG_GIVE_UP:
                    log.info("client %s has not read its replies for %.0f s; dropping it",
                             client.hex(), BACKLOG_GIVE_UP)
                    self._client_gone(client)
                return
            except zmq.ZMQError as error:
                if error.errno != zmq.EHOSTUNREACH:
                    raise
                self._client_gone(client)
                return
            waiting.popleft()
            self.backlog_bytes -= nbytes
        self._backlog.pop(client, None)

    def _send_error(self, client: bytes, parent: str | None, code: str, message: str) -> None:
        self._send(client, wire.make_header("error", parent, code=code, message=message))

    def _progress(self, job: Job, fraction: float, stage: str) -> None:
        job.fraction = max(job.fraction, min(1.0, fraction))
        job.stage = stage
        job.seq += 1
        job.last_sent = time.monotonic()
        fields = {"fraction": job.fraction, "stage": stage, "seq": job.seq}
        if job.state == "queued":
            fields["queue_position"] = self.queue.position(job)
        self._send(job.client, wire.make_header("progress", job.id, **fields))

    def _drain_events(self) -> None:
        events: list[Event] = []
        while True:
            try:
                events.append(self.worker.events.get_nowait())
            except Exception:   # queue.Empty
                break
        for index, event in enumerate(events):
            job = event.job
            if job.orphaned:
                if event.kind in ("result", "error"):
                    self._release(job)
                continue
            if event.kind == "started":
                self._progress(job, job.fraction, "started")
            elif event.kind == "progress":
                later = events[index + 1:]
                if any(e.job is job and e.kind == "progress" for e in later):
                    continue   # superseded by a newer one in this batch
                self._progress(job, event.fraction, event.stage)
            elif event.kind == "result":
                self._finish(job, "result", frames=event.frames, method=event.method,
                             elapsed=event.elapsed)
            else:
                self._finish(job, "error", code=event.code, message=event.message)

    def _finish(self, job: Job, kind: str, frames=(), method=None, elapsed=0.0,
                code="", message="") -> None:
        if kind == "result":
            if job.fraction < 1.0 or job.stage != "done":
                self._progress(job, 1.0, "done")
            descs, payloads = [], []
            for desc, array, ref in frames:
                if ref is not None:
                    descs.append(dict(desc, shm=ref))
                else:
                    descs.append(dict(desc))
                    payloads.append(array)
            header = wire.make_header("result", job.id, op=job.op, frames=descs, method=method,
                                      elapsed=round(elapsed, 4), device=str(self.engine.device),
                                      **job.outcome)
            log.info("job %s: done in %.2f s by %s", job.id[:8], elapsed, method.get("name"))
        else:
            header = wire.make_header("error", job.id, code=code, message=message)
            log.info("job %s: %s (%s)", job.id[:8], code, message)
        self._send(job.client, header, payloads if kind == "result" else ())
        self._release(job)

    def _release(self, job: Job) -> None:
        """Forget a job and everything it holds."""
        if self.jobs.pop((job.client, job.id), None) is not None:
            self.held_bytes -= job.held_bytes
        job.state = "finished"
        job.inputs = {}

    def _client_gone(self, client: bytes) -> None:
        mine = [job for (c, _), job in self.jobs.items() if c == client]
        if mine:
            log.info("client %s went away; dropping its %d job(s)", client.hex(), len(mine))
        for job in mine:
            job.orphaned = True
            job.cancel.set()
            if self.queue.remove(job) or job.state == "finished":
                self._release(job)
        for _, _, _, nbytes in self._backlog.pop(client, ()):
            self.backlog_bytes -= nbytes
        # Its shared memory would otherwise stay in RAM until the next reboot.
        self.segments.remove(self.client_segments.pop(client, ()))

    def _housekeeping(self, now: float) -> None:
        for job in list(self.jobs.values()):
            if not job.orphaned and now - job.last_sent >= self.settings.heartbeat:
                self._progress(job, job.fraction, job.stage)
        self._sum_up_rejections(now)
        if now - self._last_sweep > SWEEP_INTERVAL:
            self._last_sweep = now
            in_use = {ref["segment"] for job in self.jobs.values()
                      for ref in list(job.input_refs.values()) + [job.reply_ref] if ref}
            swept = self.segments.sweep(keep=in_use)
            if swept:
                log.info("removed %d shared-memory segment(s) of processes that are gone",
                         len(swept))
        if now - self._last_segment_check > 60:
            self._last_segment_check = now
            self.segments.touch_marker()
            for client in list(self.client_segments):   # forget what clients removed
                self.client_segments[client] = {
                    name for name in self.client_segments[client] if self.segments.exists(name)}
                if not self.client_segments[client]:
                    del self.client_segments[client]
        if self.jobs:
            self.last_activity = now
        elif self.settings.idle_exit and now - self.last_activity > self.settings.idle_exit:
            log.info("no work for %.0f s; exiting (idle_exit)", self.settings.idle_exit)
            self._stop = True

    # -- status and shutdown ----------------------------------------------------

    def status(self) -> dict:
        engine = self.engine.status()
        running = sum(1 for job in self.jobs.values() if job.state == "running")
        return {
            "server": {"name": "sharpfu-server", "version": __version__,
                       "instance": self.instance,
                       "protocols": list(wire.SUPPORTED_PROTOCOLS), "pid": os.getpid(),
                       "uptime": round(time.time() - self.started, 1),
                       "endpoint": self.settings.endpoint, "signed": bool(self.key)},
            "device": engine["device"],
            "methods": engine["methods"],
            "defaults": engine["defaults"],
            "choices": engine["choices"],
            "ops": {name: spec.describe() for name, spec in OPS.items()},
            "limits": {"max_pixels": self.settings.max_pixels,
                       "max_message_bytes": self.settings.max_message_bytes,
                       "max_jobs_per_client": self.settings.max_jobs_per_client},
            "shm": ({"dir": self.segments.directory, "marker": self.segments.marker}
                    if self.segments.available else None),
            "jobs": {"queued": len(self.queue), "running": running,
                     "held_bytes": self.held_bytes + self.backlog_bytes},
            "memory": {"rss": psutil.Process().memory_info().rss},
        }

    def _shutdown(self) -> None:
        log.info("shutting down")
        self.worker.stopping = True
        self.queue.close()
        for job in list(self.jobs.values()):
            job.cancel.set()
        self.worker.join(timeout=30)
        self._drain_events()
        for job in list(self.jobs.values()):
            if not job.orphaned:
                self._send_error(job.client, job.id, "shutting_down", wire.ERRORS["shutting_down"])
            self._release(job)
        self.segments.close()
        self.router.close(0)
        self.wake.close(0)
        if self._authenticator is not None:
            self._authenticator.stop()

