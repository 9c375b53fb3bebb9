"""Jobs spread over several SharpFu servers (several GPU machines, say).

One DEALER socket connects to every server and ZeroMQ deals each job to the
next connected server in turn: its own load balancing, with ZMQ_IMMEDIATE so
that a server that is down is skipped rather than queued for. A Client per
server (sharing this session's id) carries status and cancel requests, since
the shared socket cannot choose a server.

A job whose server dies, or that no server acknowledged in time, or whose
server fell silent, is sent again under a new id, and ZeroMQ picks a live
server. Replies to the old id are ignored from then on, so each job ends
exactly once, however many servers fail on the way.

Pixels always travel inline here: shared memory only works with a server on
this machine, and a job may go to any of them.
"""
from __future__ import absolute_import, division, print_function

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import config as config_module
from . import wire
from .client import Client, Frame, Job, Result, Waiting, check_limits, now
from .errors import ConnectionLost, ServerUnavailable, SharpFuError

ACK_TIMEOUT = 10.0   # seconds for some server to acknowledge a job before it is sent again


def server_settings(config, endpoints=None):
    """[(endpoint, client settings)] from `endpoints` or the configuration's
    "servers" list, whose entries are endpoints or objects with an
    "endpoint" and their own CURVE keys (overriding the "client" section)."""
    base = config.get("client") or {}
    entries = endpoints or config.get("servers") or [config.get("endpoint")]
    servers = []
    for entry in entries:
        if isinstance(entry, dict):
            settings = dict(base)
            settings.update({k: v for k, v in entry.items() if k != "endpoint"})
            servers.append((entry["endpoint"], settings))
        else:
            servers.append((entry, dict(base)))
    return servers


class Cluster(Waiting):
    """The Client interface (submit, poll, result, cancel, close, and
    Waiting's wait and run) over several servers."""

    def __init__(self, endpoints=None, config=None, config_path=None, timeout=None,
                 ack_timeout=ACK_TIMEOUT, context=None):
        self.config = config if config is not None else config_module.load(config_path)
        self.key = config_module.key_bytes(self.config)
        self.servers = server_settings(self.config, endpoints)
        self.endpoints = [endpoint for endpoint, _ in self.servers]
        self.session = wire.new_id()
        self.ack_timeout = ack_timeout
        self._context = context or zmq.Context.instance()
        self.controls = {}
        for endpoint, settings in self.servers:
            control = Client(endpoint=endpoint, config=dict(self.config, client=settings),
                             timeout=timeout, autostart=False, use_shm=False,
                             context=self._context)
            control.session = self.session
            self.controls[endpoint] = control
        self.timeout = self.controls[self.endpoints[0]].timeout
        self.instances = {}      # server instance id -> endpoint
        self.server_status = None
        self._jobs = {}
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.IMMEDIATE, 1)
        for endpoint, settings in self.servers:
            if settings.get("curve_server_public_file"):
                # CURVE keys are taken per connect: each server may have its own.
                self.controls[endpoint]._set_curve(self._socket, settings)
            self._socket.connect(endpoint)
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    # -- servers --------------------------------------------------------------

    def statuses(self, timeout=None):
        """[(endpoint, status dict or the SharpFuError met)], one per server."""
        found = []
        for endpoint in self.endpoints:
            try:
                status = self.controls[endpoint].status(timeout=timeout or 3.0)
                self.instances[status["server"]["instance"]] = endpoint
                found.append((endpoint, status))
            except SharpFuError as error:
                found.append((endpoint, error))
        return found

    def connect(self):
        """Check that at least one server answers; returns the first status."""
        answered = [status for _, status in self.statuses() if isinstance(status, dict)]
        if not answered:
            raise ServerUnavailable("None of the SharpFu servers answers: %s."
                                    % ", ".join(self.endpoints))
        # The strictest limits of all, since a job may go to any server.
        limits = {}
        for status in answered:
            for name, value in (status.get("limits") or {}).items():
                limits[name] = min(limits.get(name, value), value)
        self.server_status = dict(answered[0], limits=limits)
        return self.server_status

    # -- jobs -----------------------------------------------------------------

    def submit(self, op, frames, params=None):
        if self.server_status is None:
            self.connect()
        job = Job(op, list(frames), dict(params or {}))
        job.attempts = 0
        check_limits(self.server_status, job)
        self._send_job(job)
        return job

    def _send_job(self, job):
        if job.attempts > len(self.endpoints):
            job.fail(ConnectionLost("The job failed on every SharpFu server it was sent to (%d "
                                    "tries)." % job.attempts))
            return
        job.attempts += 1
        header = wire.make_header("job", op=job.op, params=job.params, session=self.session,
                                  frames=[f.descriptor() for f in job.frames])
        self._jobs.pop(job.id, None)
        job.id, job.server, job.state = header["id"], None, "sent"
        job.sent_at = job.last_heard = now()
        self._jobs[job.id] = job
        parts = wire.pack(header, [f.data for f in job.frames], self.key)
        deadline = now() + self.timeout
        while True:
            try:
                self._socket.send_multipart(parts, zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:   # no server connected at the moment
                if now() > deadline:
                    job.fail(ServerUnavailable("No SharpFu server was reachable for %.0f s: %s."
                                               % (self.timeout, ", ".join(self.endpoints))))
                    return
                self._pump(0.1)

    def poll(self, timeout):
        """As Client.poll: replies, fail-over and silence, for up to `timeout` s."""
        self._pump(timeout)
        moment = now()
        for job in list(self._jobs.values()):
            if job.finished:
                continue
            unacknowledged = job.server is None and moment - job.sent_at > self.ack_timeout
            if unacknowledged or moment - job.last_heard > self.timeout:
                self._send_job(job)

    def result(self, job, copy=True):
        self._jobs.pop(job.id, None)
        job.on_progress = None
        if job.state != "done":
            raise job.error
        header, payloads = job.result
        frames = [Frame.from_descriptor(desc, part.bytes if copy else part.buffer)
                  for desc, part in zip(header.get("frames") or [], payloads)]
        return Result(header, frames)

    def cancel(self, job):
        """Cancel through the server that has the job (all of them while
        that is not known yet)."""
        if job.finished or job.cancel_sent:
            return
        job.cancel_sent = True
        endpoint = self.instances.get(job.server)
        for control in ([self.controls[endpoint]] if endpoint else self.controls.values()):
            try:
                control._send(wire.make_header("cancel", job=job.id, session=self.session))
            except zmq.ZMQError:
                pass

    def close(self):
        for job in list(self._jobs.values()):
            self.cancel(job)
        for control in self.controls.values():
            control.close()
        self._socket.disable_monitor()
        self._monitor.close(0)
        self._socket.close(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- replies --------------------------------------------------------------

    def _pump(self, timeout):
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        events = dict(poller.poll(int(timeout * 1000)))
        if self._monitor in events:
            event = parse_monitor_message(self._monitor.recv_multipart())
            endpoint = event.get("endpoint")
            if isinstance(endpoint, bytes):
                endpoint = endpoint.decode("utf-8", "replace")
            self._server_lost(endpoint)
        while self._socket.poll(0, zmq.POLLIN):
            try:
                header, payloads = wire.unpack(self._socket.recv_multipart(copy=False), self.key)
            except wire.WireError:
                continue
            job = self._jobs.get(header.get("parent"))
            if job is None or job.finished:
                continue
            code = job.apply(header, payloads)
            if code in ("shutting_down", "server_busy"):
                self._send_job(job)   # another server may take it
            elif code is not None:
                job.fail_with(header)

    def _server_lost(self, endpoint):
        """Send again every unfinished job that server held."""
        lost = set(i for i, e in self.instances.items() if e == endpoint)
        for job in list(self._jobs.values()):
            # A server this client has not met (one restarted since) may be
            # the lost one too: sending such a job again costs work, never a
            # second result.
            held_there = job.server in lost or (job.server is not None
                                                 and job.server not in self.instances)
            if not job.finished and held_there:
                self._send_job(job)
