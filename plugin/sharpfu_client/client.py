"""The SharpFu client: one ZeroMQ DEALER socket to the server.

Every plug-in and the CLI use it. It needs only Python's standard library
and pyzmq, because it runs inside GIMP's own Python (2.7 or 3.x).

    client = Client()
    result = client.run("upscale", [Frame(data, width, height, 4, "u8")],
                        {"scale": 2}, progress=lambda f, stage: ...)
    pixels = result.frame("image").data

A job's replies are told apart by their parent id, so one client can have
several jobs in flight (see `submit` and `wait`).
"""
from __future__ import absolute_import, division, print_function

import os
import time

import zmq

from . import config as config_module
from . import launcher, wire
from .errors import Cancelled, ConnectionLost, JobFailed, ServerUnavailable, SharpFuError, Timeout
from .shm import SegmentPool, default_directory

now = getattr(time, "monotonic", time.time)

CONNECT_TIMEOUT = 2.0     # seconds to wait for a running server's first answer
START_TIMEOUT = 120.0     # seconds a freshly started server may take to answer
JOB_TIMEOUT = 60.0        # seconds of silence after which the server counts as dead
                          # (it sends progress at least once a second)


def _nbytes(data):
    view = memoryview(data)
    # Python 3 has nbytes; 2.7's memoryview lacks it.
    if hasattr(view, "nbytes"):  # novermin
        return view.nbytes
    return len(view) * view.itemsize


class Frame(object):
    """Pixels and their geometry: rows top to bottom, channels interleaved,
    samples u8, u16 or f32 (little-endian). `data` is anything with the
    buffer protocol: bytes, bytearray, memoryview, a numpy array."""

    def __init__(self, data, width, height, channels, format="u8", name="image"):
        self.data = data
        self.width = int(width)
        self.height = int(height)
        self.channels = int(channels)
        self.format = format
        self.name = name
        if format not in wire.SAMPLE_BYTES:
            raise ValueError("format must be u8, u16 or f32, not %r" % (format,))
        if _nbytes(data) != self.nbytes:
            raise ValueError("frame %r holds %d bytes; %dx%dx%d %s needs %d" % (
                name, _nbytes(data), self.width, self.height, self.channels, format, self.nbytes))

    @property
    def nbytes(self):
        return self.width * self.height * self.channels * wire.SAMPLE_BYTES[self.format]

    def descriptor(self):
        return {"name": self.name, "width": self.width, "height": self.height,
                "channels": self.channels, "format": self.format}

    @classmethod
    def from_descriptor(cls, desc, data):
        return cls(data, desc["width"], desc["height"], desc["channels"], desc["format"], desc["name"])

    def __repr__(self):
        return "Frame(%r, %dx%dx%d %s)" % (self.name, self.width, self.height, self.channels, self.format)


class Result(object):
    """What a finished job returned: its frames and the server's header
    (`method` says which model or classical method produced it).

    With copy=False the frames may be views into shared memory that stay
    valid until release() (or until the Result is garbage-collected)."""

    def __init__(self, header, frames, lease=None, pool=None):
        self.header = header
        self.frames = frames
        self._lease = lease
        self._pool = pool

    @property
    def method(self):
        return self.header.get("method") or {}

    def frame(self, name):
        for frame in self.frames:
            if frame.name == name:
                return frame
        raise KeyError("the result has no frame named %r" % (name,))

    def release(self):
        if self._lease is not None:
            lease, self._lease = self._lease, None
            for frame in self.frames:
                frame.data = None
            self._pool.release(lease)

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass


class Job(object):
    """A job submitted to the server. `state` moves from "sent" to "queued",
    "running", and ends as "done", "failed" or "cancelled"."""

    def __init__(self, op, frames, params):
        self.op = op
        self.frames = frames
        self.params = params
        self.id = None
        self.state = "sent"
        self.fraction = 0.0
        self.stage = ""
        self.queue_position = None
        self.result = None
        self.error = None
        self.last_heard = now()
        self.cancel_sent = False
        self.on_progress = None   # called with (fraction, stage) for each progress message
        self.server = None        # the instance id of the server that has it
        self._lease = None

    @property
    def finished(self):
        return self.state in ("done", "failed", "cancelled")

    def fail(self, error, state="failed"):
        self.error = error
        self.state = state

    def apply(self, header, payloads):
        """Take in one reply to this job. Returns the error code of an error
        reply, for the caller to decide on (None otherwise)."""
        self.last_heard = now()
        self.server = header.get("server", self.server)
        kind = header["type"]
        if kind == "progress":
            self.fraction = float(header.get("fraction", self.fraction))
            self.stage = header.get("stage", self.stage)
            self.queue_position = header.get("queue_position")
            self.state = "queued" if self.queue_position else "running"
            if self.on_progress is not None:
                self.on_progress(self.fraction, self.stage)
        elif kind == "result":
            self.result = (header, payloads)
            self.state = "done"
        elif kind == "error":
            return header.get("code") or "internal"
        return None

    def fail_with(self, header):
        """End the job with the server's error reply."""
        if header.get("code") == "cancelled":
            self.fail(Cancelled(header.get("message")), "cancelled")
        else:
            self.fail(JobFailed(header.get("message"), header.get("code") or "internal",
                                header.get("detail")))


# Handshakes that fail because the two sides hold different keys (or one
# has none): the server refuses the credentials, or the mechanisms differ.
EVENT_HANDSHAKE_FAILED_AUTH = getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0x4000)
EVENT_HANDSHAKE_FAILED_PROTOCOL = getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0x2000)
REFUSED = (EVENT_HANDSHAKE_FAILED_AUTH, EVENT_HANDSHAKE_FAILED_PROTOCOL)


def authenticate(sock, key):
    """Present the key's PLAIN credentials when connecting (a server with a
    key turns away connections without them during the handshake)."""
    if key:
        sock.setsockopt(zmq.PLAIN_USERNAME, wire.CONNECT_USER)
        sock.setsockopt(zmq.PLAIN_PASSWORD, wire.connect_password(key))


def check_limits(server_status, job):
    """Refuse here what the server would refuse: a message over its size cap
    would not even be answered (ZeroMQ drops the connection)."""
    limits = (server_status or {}).get("limits") or {}
    max_pixels = limits.get("max_pixels")
    too_large = SharpFuError(
        "The image is larger than the SharpFu server accepts (%.1f megapixels at most). Work "
        "on a smaller region or raise max_megapixels in the server's configuration." % (
            (max_pixels or 0) / 1e6), "too_large")
    for frame in job.frames:
        if max_pixels and frame.width * frame.height > max_pixels:
            raise too_large
    max_bytes = limits.get("max_message_bytes")
    if max_bytes and max(f.nbytes for f in job.frames) > max_bytes:
        raise too_large


def _event_of(message):
    """The event number of a socket monitor message."""
    import struct
    return struct.unpack("=HI", bytes(message[0])[:6])[0]


class Waiting(object):
    """wait() and run() for anything with submit, poll, result and cancel
    (a Client, a cluster.Cluster)."""

    def wait(self, job, progress=None, cancelled=None, copy=True):
        """Wait for a job to end; returns its Result or raises.

        progress(fraction, stage) is called for every progress message;
        cancelled() is polled about ten times a second and cancels the job
        when it returns True."""
        if progress is not None:
            job.on_progress = progress
        while not job.finished:
            if cancelled is not None and not job.cancel_sent and cancelled():
                self.cancel(job)
            self.poll(0.1)
        return self.result(job, copy)

    def run(self, op, frames, params=None, progress=None, cancelled=None, copy=True):
        """Submit a job and wait for its result."""
        return self.wait(self.submit(op, frames, params), progress, cancelled, copy)


class Client(Waiting):
    """A connection to one SharpFu server.

    endpoint, key and the way to start a server come from the configuration
    (config.load), unless given here. `beside` is a plug-in's own folder,
    searched for sharpfu.json first."""

    def __init__(self, endpoint=None, config=None, config_path=None, beside=None,
                 timeout=None, connect_timeout=CONNECT_TIMEOUT, start_timeout=START_TIMEOUT,
                 autostart=True, use_shm=True, context=None):
        self.config = config if config is not None else config_module.load(config_path, beside)
        self.endpoint = endpoint or self.config.get("endpoint") or config_module.DEFAULT_ENDPOINT
        self.key = config_module.key_bytes(self.config)
        client_config = self.config.get("client") or {}
        self.timeout = float(timeout or client_config.get("timeout") or JOB_TIMEOUT)
        self.connect_timeout = connect_timeout
        self.start_timeout = start_timeout
        self.autostart = autostart
        self.use_shm = use_shm and config_module.is_local_endpoint(self.endpoint)
        self.session = wire.new_id()
        self.server_status = None
        self._context = context or zmq.Context.instance()
        self._socket = None
        self._monitor = None
        self._jobs = {}
        self._replies = {}
        self._pool = None
        self._unsigned_replies = False   # a server answered, but not with our key
        self._refused = False            # a server turned this client's key away

    # -- connection ---------------------------------------------------------

    def _open_socket(self):
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        client_config = self.config.get("client") or {}
        if client_config.get("curve_server_public_file"):
            self._set_curve(sock, client_config)
        else:
            authenticate(sock, self.key)
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | EVENT_HANDSHAKE_FAILED_AUTH
                                                | EVENT_HANDSHAKE_FAILED_PROTOCOL)
        sock.connect(self.endpoint)
        self._socket = sock

    def _set_curve(self, sock, client_config):
        import zmq.auth
        server_public, _ = zmq.auth.load_certificate(client_config["curve_server_public_file"])
        secret_file = client_config.get("curve_secret_file")
        if not secret_file:
            raise SharpFuError("The configuration names the server's CURVE key but not this "
                               "client's key pair (client.curve_secret_file).", "bad_params")
        public, secret = zmq.auth.load_certificate(secret_file)
        if secret is None:
            raise SharpFuError("%s holds no secret key." % secret_file, "bad_params")
        sock.curve_serverkey = server_public
        sock.curve_publickey = public
        sock.curve_secretkey = secret

    def _reset_socket(self):
        """After a lost connection: a fresh socket, so that nothing queued for
        the old server reaches a new one."""
        self._close_socket()
        self._open_socket()

    def _close_socket(self):
        if self._socket is not None:
            try:
                self._socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(0)
            self._socket.close(0)
            self._socket = self._monitor = None

    def connect(self, on_start=None):
        """Make sure a server answers, starting one if allowed. Returns its
        status. on_start(endpoint), if given, is called before a server is
        started, so that a user can be told why this takes a while."""
        if self._socket is None:
            self._open_socket()
        try:
            return self.status(timeout=self.connect_timeout)
        except (Timeout, ConnectionLost):
            pass
        if (self._unsigned_replies or self._refused) and (
                self.config.get("client") or {}).get("curve_server_public_file"):
            raise SharpFuError(
                "The SharpFu server at %s refuses this client's CURVE keys: its "
                "curve_clients_dir must hold this client's public certificate, and "
                "curve_server_public_file must be that server's." % self.endpoint, "bad_signature")
        if self._unsigned_replies or self._refused:
            raise SharpFuError(
                "The SharpFu server at %s answers, but holds another key than this client "
                "(or none, or CURVE keys): they use different configurations. Run install.py "
                "again, or give both the same 'key'." % self.endpoint, "bad_signature")
        if not self.autostart:
            raise ServerUnavailable(launcher.unreachable(self.config, self.endpoint))
        if not config_module.is_local_endpoint(self.endpoint):
            raise ServerUnavailable("The SharpFu server at %s does not answer. It runs on another "
                                    "machine, so it cannot be started from here." % self.endpoint)
        if on_start is not None:
            on_start(self.endpoint)
        return self._start_server()

    def _start_server(self):
        try:
            process, log = launcher.start(self.config, self.endpoint)
        except ValueError:
            raise ServerUnavailable(launcher.unreachable(self.config, self.endpoint))
        except OSError as exc:
            # The details (errno, paths) are for the log; the user gets what to do.
            launcher.note_in_log("could not start the server: %s" % exc)
            raise ServerUnavailable(launcher.unreachable(
                self.config, self.endpoint, "SharpFu could not start its server."))
        deadline = now() + self.start_timeout
        while now() < deadline:
            try:
                return self.status(timeout=0.5)
            except (Timeout, ConnectionLost):
                pass
            if process.poll() is not None:
                try:  # another client may have started one at the same moment
                    return self.status(timeout=1.0)
                except (Timeout, ConnectionLost):
                    raise ServerUnavailable(launcher.unreachable(
                        self.config, self.endpoint, "The SharpFu server stopped right after "
                        "starting."))
        raise ServerUnavailable(launcher.unreachable(
            self.config, self.endpoint, "The SharpFu server did not answer within %d s of "
            "starting." % self.start_timeout))

    def close(self):
        for job in list(self._jobs.values()):
            if not job.finished:
                try:
                    self.cancel(job)
                except SharpFuError:
                    pass
        self._close_socket()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- requests -----------------------------------------------------------

    def _send(self, header, payloads=()):
        if self._socket is None:
            self._open_socket()
        self._socket.send_multipart(wire.pack(header, payloads, self.key), copy=False)

    def _request(self, header, timeout):
        """Send a status or cancel request and wait for its direct answer."""
        self._replies[header["id"]] = None
        self._send(header)
        deadline = now() + timeout
        try:
            while self._replies[header["id"]] is None:
                left = deadline - now()
                if left <= 0:
                    raise Timeout("The SharpFu server at %s did not answer within %.0f s." % (
                        self.endpoint, timeout))
                self._pump(min(left, 0.1))
            return self._replies[header["id"]]
        finally:
            self._replies.pop(header["id"], None)

    def status(self, timeout=None):
        """The server's status: version, device, memory, models and limits."""
        reply = self._request(wire.make_header("status", session=self.session),
                              timeout or self.timeout)
        if reply["type"] == "error":
            raise JobFailed(reply.get("message"), reply.get("code"))
        self.server_status = reply.get("status") or {}
        return self.server_status

    def submit(self, op, frames, params=None):
        """Send a job; returns its Job at once. Connects (and starts a server)
        first when needed."""
        if self.server_status is None:
            self.connect()
        job = Job(op, list(frames), dict(params or {}))
        check_limits(self.server_status, job)
        self._send_job(job)
        return job

    def _shm_pool(self):
        if not self.use_shm:
            return None
        if self._pool is None:
            offered = (self.server_status or {}).get("shm") or {}
            directory = offered.get("dir")
            # The server's marker file is there only when this client sees the
            # server's own shared memory (not, say, from inside a sandbox).
            marker = os.path.join(directory or "", offered.get("marker") or "")
            if not directory or directory != default_directory() or not os.path.isfile(marker) \
                    or not os.access(directory, os.W_OK):
                self.use_shm = False
                return None
            self._pool = SegmentPool(directory)
        return self._pool

    def _send_job(self, job):
        header = wire.make_header("job", op=job.op, params=job.params, session=self.session,
                                  frames=[f.descriptor() for f in job.frames])
        payloads = [f.data for f in job.frames]
        if self._lease_for(job):
            offset = 0
            for desc, frame in zip(header["frames"], job.frames):
                job._lease.write(offset, frame.data)
                desc["shm"] = job._lease.ref(offset, frame.nbytes)
                offset += frame.nbytes
            payloads = []
            if job._lease.size > offset:
                header["reply_shm"] = job._lease.ref(offset, job._lease.size - offset)
        if job.id is not None:
            self._jobs.pop(job.id, None)
        job.id = header["id"]
        job.last_heard = now()
        self._jobs[job.id] = job
        self._send(header, payloads)

    def _lease_for(self, job):
        """Give the job a segment for its inputs and, where /dev/shm has room,
        its result; False when the pixels must travel inline."""
        pool = self._shm_pool()
        if pool is None:
            return False
        inputs = sum(f.nbytes for f in job.frames)
        scale = job.params.get("scale", 1) if isinstance(job.params.get("scale"), int) else 1
        reply = max(f.nbytes for f in job.frames) * scale * scale
        if job._lease is not None and job._lease.size >= inputs + reply:
            return True
        self._release_lease(job)
        # A small or full /dev/shm (Docker gives 64 MB): the result comes
        # inline, or everything does.
        for size in (inputs + reply, inputs):
            try:
                job._lease = pool.acquire(size)
                return True
            except (OSError, IOError, ValueError):
                continue
        return False

    def cancel(self, job):
        """Ask the server to stop a job. The job then ends as cancelled (or
        done, when it finished first)."""
        if job.finished or job.cancel_sent:
            return
        job.cancel_sent = True
        self._send(wire.make_header("cancel", job=job.id, session=self.session))

    def poll(self, timeout):
        """Handle replies for up to `timeout` seconds, and fail the jobs whose
        server has been silent for longer than the client's timeout. For
        callers with several jobs in flight: check `job.finished` afterwards."""
        self._pump(timeout)
        silent = [job for job in self._jobs.values()
                  if not job.finished and now() - job.last_heard > self.timeout]
        for job in silent:
            job.fail(Timeout(
                "The SharpFu server stopped answering for %.0f s while working on this "
                "image. Your image is unchanged." % self.timeout))
        if silent:
            self._reset_socket()

    def result(self, job, copy=True):
        """A finished job's Result; raises its error if it failed."""
        self._jobs.pop(job.id, None)
        job.on_progress = None
        if job.state != "done":
            self._release_lease(job)
            raise job.error
        return self._collect(job, copy)

    # -- replies ------------------------------------------------------------

    def _pump(self, timeout):
        """Handle whatever arrives within `timeout` seconds."""
        if self._socket is None:
            self._open_socket()
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        events = dict(poller.poll(int(timeout * 1000)))
        if self._monitor in events:
            event = self._monitor.recv_multipart()
            if _event_of(event) in REFUSED:
                self._refused = True   # no connection was made: nothing is lost
                return
            self._connection_lost()
            return
        while self._socket is not None and self._socket.poll(0, zmq.POLLIN):
            parts = self._socket.recv_multipart(copy=False)
            try:
                header, payloads = wire.unpack(parts, self.key)
            except wire.WireError as error:
                # Not trusted: ignored, but remembered so that connect() can
                # say why no answer counts.
                self._unsigned_replies = self._unsigned_replies or error.code == "bad_signature"
                continue
            self._dispatch(header, payloads)

    def _connection_lost(self):
        lost = [job for job in self._jobs.values() if not job.finished]
        for job in lost:
            job.fail(ConnectionLost(
                "The SharpFu server went away while working on this image (it may have crashed or "
                "run out of memory; see %s). Your image is unchanged." % launcher.log_path()))
        self.server_status = None
        self._reset_socket()

    def _dispatch(self, header, payloads):
        parent = header.get("parent")
        if parent in self._replies and header["type"] in ("status", "cancel", "error"):
            self._replies[parent] = header
            return
        job = self._jobs.get(parent)
        if job is None or job.finished:
            return  # a late reply to a job that already ended here
        code = job.apply(header, payloads)
        if code == "shm_unavailable":
            self.use_shm = False
            self._release_lease(job)
            self._send_job(job)  # the same job again, pixels inline
        elif code is not None:
            job.fail_with(header)

    def _release_lease(self, job):
        if job._lease is not None:
            self._pool.release(job._lease)
            job._lease = None

    def _collect(self, job, copy):
        header, payloads = job.result
        frames = []
        inline = iter(payloads)
        for desc in header.get("frames") or []:
            ref = desc.get("shm")
            if ref is not None:
                if job._lease is None or ref.get("segment") != job._lease.name:
                    raise SharpFuError("The server answered with memory this client does not own.",
                                       "bad_message")
                # reading pages a truncated file no longer has kills the
                # process (SIGBUS), so the file's size is checked first
                if not job._lease.intact():
                    self._release_lease(job)
                    raise SharpFuError("The shared memory holding the result was cut short "
                                       "by another program; run the job again.",
                                       "shm_unavailable")
                data = job._lease.view(ref["offset"], ref["size"])
            else:
                part = next(inline)
                data = part.buffer if hasattr(part, "buffer") else part
            if copy and not isinstance(data, bytes):
                data = memoryview(data).tobytes()
            frames.append(Frame.from_descriptor(desc, data))
        if copy or job._lease is None:
            self._release_lease(job)
            return Result(header, frames)
        lease, job._lease = job._lease, None
        return Result(header, frames, lease, self._pool)
