"""SharpFu wire protocol, version 1: message framing, headers and signatures.

docs/PROTOCOL.md is the specification; this module is its reference
implementation, shared by the client library (which runs inside GIMP's own
Python, 2.7 or 3.x) and by the server. It therefore uses only the standard
library and the common subset of Python 2.7 and 3.

A message is one ZeroMQ multipart message:

    [MAGIC, signature, header JSON, pixel frame, pixel frame, ...]

(the server's ROUTER socket sees the client's routing identity in front).
"""
from __future__ import absolute_import, division, print_function

import calendar
import collections
import hashlib
import hmac
import json
import re
import time
import uuid

MAGIC = b"sharpfu"
PROTOCOL = 1
SUPPORTED_PROTOCOLS = (1,)

# Message types. Requests: status, job, cancel. Replies: status, cancel,
# progress, result, error.
TYPES = ("status", "job", "progress", "result", "error", "cancel")

# Sample formats: name -> bytes per sample. Multi-byte samples are
# little-endian; f32 is IEEE 754 binary32.
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}
CHANNEL_COUNTS = (1, 2, 3, 4)  # grey, grey+alpha, RGB, RGBA

MAX_SIDE = 524288          # GIMP's own limit on an image side
MAX_ID_LENGTH = 64
MAX_HEADER_BYTES = 1 << 20
MIN_SESSION_LENGTH = 16
REPLAY_WINDOW = 120.0      # seconds a signed message's date may be from the receiver's clock
REPLAY_RECORD = 1 << 16    # signatures remembered (jupyter_client keeps as many)
_ID_CHARACTERS = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_")

# Every error code the server or the client library can produce, each with a
# sentence a user can act on. The server may send a more specific sentence.
ERRORS = {
    "bad_message": "The request was not a SharpFu message. Update the plug-in and the server to the same version.",
    "bad_header": "The request header was malformed. Update the plug-in and the server to the same version.",
    "bad_signature": "The request was not signed with the server's key. Check that the plug-in and the server use the same SharpFu configuration.",
    "unsupported_protocol": "The server speaks another version of the SharpFu protocol. Update the plug-in and the server to the same version.",
    "unknown_type": "The server does not understand this kind of request. Update the server.",
    "unknown_op": "The server does not know this operation. Update the server.",
    "bad_params": "An option of the request is not valid.",
    "bad_frame": "The pixel data did not match its description.",
    "bad_pixels": "The image contains invalid pixel values (NaN or infinity). Fix or flatten those pixels first.",
    "too_large": "The image is larger than the server accepts. Work on a smaller region or raise the server's pixel limit.",
    "server_busy": "The server has too much work queued. Wait for the current jobs to finish and try again.",
    "unknown_job": "There is no such job on the server; it may have finished already.",
    "shm_unavailable": "The server cannot see this client's shared memory; the pixels will be sent over the socket instead.",
    "cancelled": "The job was cancelled.",
    "out_of_memory": "The server ran out of memory, even with the smallest tiles. Close other programs, use a smaller image, or run the server on the CPU.",
    "model_failed": "The model failed on this image. See the server log for details.",
    "internal": "The server hit an internal error. See the server log for details.",
    "shutting_down": "The server is shutting down. Try again in a moment.",
    # Produced by the client library, never sent by the server.
    "server_unavailable": "The SharpFu server is not running and could not be started.",
    "connection_lost": "The connection to the SharpFu server was lost while it was working. Your image is unchanged.",
    "timeout": "The SharpFu server did not answer in time. Your image is unchanged.",
}

try:  # Python 2
    string_types = (str, unicode)  # noqa: F821  # novermin
    integer_types = (int, long)  # noqa: F821  # novermin
except NameError:  # Python 3
    string_types = (str,)
    integer_types = (int,)


class WireError(Exception):
    """A message that breaks the protocol. `msg_id` is the offending
    message's id when it could be read, so that the error reply can name it
    as its parent."""

    def __init__(self, code, message=None, msg_id=None):
        Exception.__init__(self, message or ERRORS[code])
        self.code = code
        self.message = message or ERRORS[code]
        self.msg_id = msg_id


def new_id():
    return uuid.uuid4().hex


def utc_now():
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%06dZ" % int(now % 1 * 1e6)


_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,6})?Z$")


def parse_date(text):
    """Seconds since the epoch of a header's ISO 8601 UTC `date`, or None."""
    match = _DATE.match(text) if isinstance(text, string_types) else None
    if match is None:
        return None
    try:
        seconds = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return seconds + float(match.group(2) or 0)


def make_header(msg_type, parent=None, **fields):
    """A header dict with the fields every message carries."""
    header = {
        "protocol": PROTOCOL,
        "id": new_id(),
        "parent": parent,
        "type": msg_type,
        "date": utc_now(),
    }
    header.update(fields)
    return header


def sign(key, header_bytes):
    """HMAC-SHA256 of the header bytes, hex; empty when no key is set.

    Pixel frames are not signed: the header fixes their number and sizes, and
    hashing gigabytes would cost more than moving them."""
    if not key:
        return b""
    return hmac.new(key, header_bytes, hashlib.sha256).hexdigest().encode("ascii")


CONNECT_USER = b"sharpfu"


def connect_password(key):
    """The ZeroMQ PLAIN password of a client holding `key`: derived from it,
    so that the key itself never travels. A server with a key lets in only
    connections that present it, before they can send a single message."""
    return hmac.new(key, b"sharpfu connect 1", hashlib.sha256).hexdigest().encode("ascii")


def encode_header(header):
    return json.dumps(header, sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def pack(header, payloads=(), key=b""):
    """The multipart message for `header` followed by `payloads`."""
    header_bytes = encode_header(header)
    return [MAGIC, sign(key, header_bytes), header_bytes] + list(payloads)


def _bytes(part):
    # zmq.Frame when received with copy=False, bytes otherwise.
    return part.bytes if hasattr(part, "bytes") else bytes(part)


def unpack(parts, key=b""):
    """Check framing, signature and the common header fields.

    Returns (header, payload_parts). Raises WireError. Anything specific to a
    message type (an op's parameters, frame sizes) is checked by the caller.
    """
    if len(parts) < 3 or _bytes(parts[0]) != MAGIC:
        raise WireError("bad_message", "The message does not start with the SharpFu magic frame "
                        "and a header; is this a SharpFu client?")
    signature = _bytes(parts[1])
    header_bytes = _bytes(parts[2])
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise WireError("bad_header", "The header is larger than 1 MiB.")
    non_finite = []
    try:
        header = json.loads(header_bytes.decode("utf-8"),
                            parse_constant=lambda name: non_finite.append(name),
                            parse_float=lambda text: _finite_float(text, non_finite))
    except (ValueError, UnicodeDecodeError):
        raise WireError("bad_header", "The header is not valid UTF-8 JSON.")
    if not isinstance(header, dict):
        raise WireError("bad_header", "The header must be a JSON object.")
    msg_id = header.get("id")
    if not isinstance(msg_id, string_types) or not 0 < len(msg_id) <= MAX_ID_LENGTH:
        raise WireError("bad_header", "The header needs an 'id': a string of 1 to 64 characters.")
    msg_id = str(msg_id)
    if key and not hmac.compare_digest(sign(key, header_bytes), signature):
        raise WireError("bad_signature", msg_id=msg_id)
    if non_finite:
        # JSON has no NaN or infinity; Python's parser would take them (and
        # 1e999 as infinity), and a limit compared with NaN is never exceeded.
        raise WireError("bad_header", "The header holds a number that is not finite (%s)."
                        % non_finite[0], msg_id)
    version = header.get("protocol")
    if not isinstance(version, integer_types) or isinstance(version, bool):
        raise WireError("bad_header", "The header needs 'protocol': an integer.", msg_id)
    if version not in SUPPORTED_PROTOCOLS:
        raise WireError("unsupported_protocol",
                        "This server speaks SharpFu protocol %s, not %r. Update the plug-in and the "
                        "server to the same version." % (
                            ", ".join(str(v) for v in SUPPORTED_PROTOCOLS), version), msg_id)
    msg_type = header.get("type")
    if not isinstance(msg_type, string_types):
        raise WireError("bad_header", "The header needs 'type': a string.", msg_id)
    if msg_type not in TYPES:
        raise WireError("unknown_type", "Unknown message type %r." % (msg_type,), msg_id)
    parent = header.get("parent")
    if parent is not None and not (isinstance(parent, string_types) and len(parent) <= MAX_ID_LENGTH):
        raise WireError("bad_header", "'parent' must be null or a message id.", msg_id)
    session = header.get("session")
    if session is not None and not is_session_id(session):
        raise WireError("bad_header", "'session' must be a random id of %d to %d letters, digits, "
                        "'-' or '_'." % (MIN_SESSION_LENGTH, MAX_ID_LENGTH), msg_id)
    return header, list(parts[3:])


def _finite_float(text, non_finite):
    value = float(text)
    if value - value != 0.0:   # infinity or NaN (math.isfinite is not in Python 2.7)
        non_finite.append(text)
    return value


def is_session_id(session):
    """Session ids prove, with a job id, who may cancel a job: they must be
    long enough to be unguessable and plain enough to log."""
    return (isinstance(session, string_types)
            and MIN_SESSION_LENGTH <= len(session) <= MAX_ID_LENGTH
            and all(c in _ID_CHARACTERS for c in session))


class ReplayGuard(object):
    """Takes each signed message once, and only while its date is within
    REPLAY_WINDOW seconds of this clock, so that a recorded message cannot be
    sent again (as jupyter_client's session keeps a digest history).

    Signatures are remembered for twice the window (a message dated at the
    window's end is still acceptable one window after it arrived). At most
    `capacity` are kept; when an old one must make room, messages dated at
    or before it are refused from then on, so a flood can shrink the window
    but never reopen it."""

    def __init__(self, window=REPLAY_WINDOW, capacity=REPLAY_RECORD):
        self.window = window
        self.capacity = capacity
        self._seen = {}                        # signature -> message date
        self._order = collections.deque()      # (time taken, date, signature)
        self._floor = float("-inf")            # no date at or before this is taken

    def __len__(self):
        return len(self._seen)

    def check(self, header, signature, now=None):
        """Raises WireError for a replayed, stale or undated message; else
        records it."""
        now = time.time() if now is None else now
        msg_id = header.get("id")
        date = parse_date(header.get("date"))
        if date is None:
            raise WireError("bad_header", "A signed message needs 'date': its ISO 8601 UTC time "
                            "of sending, such as 2025-01-31T12:00:00.000000Z.", msg_id)
        signature = bytes(signature)
        while self._order and now - self._order[0][0] > 2 * self.window:
            del self._seen[self._order.popleft()[2]]
        if abs(now - date) > self.window or date <= self._floor:
            raise WireError("bad_signature", "The message is dated %s, more than %d s from the "
                            "receiver's clock: it is a recording sent again, or one of the two "
                            "clocks is wrong." % (header.get("date"), self.window), msg_id)
        if signature in self._seen:
            raise WireError("bad_signature", "This signed message was received before; a message "
                            "is taken only once.", msg_id)
        self._seen[signature] = date
        self._order.append((now, date, signature))
        if len(self._order) > self.capacity:
            _, old_date, old = self._order.popleft()
            del self._seen[old]
            self._floor = max(self._floor, old_date)


def frame_nbytes(desc):
    return desc["width"] * desc["height"] * desc["channels"] * SAMPLE_BYTES[desc["format"]]


def check_frame(desc, max_pixels, msg_id=None):
    """Validate one frame descriptor (not its bytes). Returns its size in bytes."""
    if not isinstance(desc, dict):
        raise WireError("bad_frame", "Each frame descriptor must be a JSON object.", msg_id)
    for field in ("width", "height", "channels"):
        value = desc.get(field)
        if not isinstance(value, integer_types) or isinstance(value, bool):
            raise WireError("bad_frame", "Frame field %r must be an integer." % field, msg_id)
    if not isinstance(desc.get("format"), string_types) or desc["format"] not in SAMPLE_BYTES:
        raise WireError("bad_frame", "Frame 'format' must be one of u8, u16, f32.", msg_id)
    if not isinstance(desc.get("name"), string_types):
        raise WireError("bad_frame", "Each frame needs a 'name'.", msg_id)
    width, height = desc["width"], desc["height"]
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise WireError("bad_frame", "Frame size %sx%s is outside 1..%d pixels per side." % (
            width, height, MAX_SIDE), msg_id)
    if desc["channels"] not in CHANNEL_COUNTS:
        raise WireError("bad_frame", "Frames have 1, 2, 3 or 4 channels, not %s." % desc["channels"], msg_id)
    if width * height > max_pixels:
        raise WireError("too_large", "The image has %.1f megapixels; this server accepts at most %.1f. "
                        "Work on a smaller region or raise the server's max_megapixels." % (
                            width * height / 1e6, max_pixels / 1e6), msg_id)
    shm = desc.get("shm")
    if shm is not None:
        if not isinstance(shm, dict):
            raise WireError("bad_frame", "Frame 'shm' must be an object.", msg_id)
        check_shm_ref(shm, msg_id)
        if shm["size"] != frame_nbytes(desc):
            raise WireError("bad_frame", "Shared-memory frame size does not match its description.", msg_id)
    return frame_nbytes(desc)


MAX_SHM_OFFSET = 1 << 48   # past any segment a machine can hold


def check_shm_ref(ref, msg_id=None):
    """A reference into a client's shared-memory segment: {segment, offset,
    size, token}; the token proves the client made the segment (section 5)."""
    segment = ref.get("segment")
    if not isinstance(segment, string_types) or not is_segment_name(segment):
        raise WireError("bad_frame", "Shared-memory segment names look like 'sharpfu-' followed by hex digits.", msg_id)
    for field in ("offset", "size"):
        value = ref.get(field)
        if not isinstance(value, integer_types) or isinstance(value, bool) or not 0 <= value <= MAX_SHM_OFFSET:
            raise WireError("bad_frame", "Shared-memory %r must be an integer from 0 to 2^48." % field, msg_id)
    token = ref.get("token")
    if token is not None and not (isinstance(token, string_types) and len(token) == 32
                                  and all(c in _HEX for c in token)):
        raise WireError("bad_frame", "A shared-memory 'token' is 32 lower-case hex digits.", msg_id)


SEGMENT_PREFIX = "sharpfu-"
_HEX = set("0123456789abcdef")


def is_segment_name(name):
    """Segment names are a fixed prefix plus 16 to 64 lower-case hex digits,
    so that a request can never name a path."""
    rest = name[len(SEGMENT_PREFIX):]
    return (name.startswith(SEGMENT_PREFIX) and 16 <= len(rest) <= 64
            and all(c in _HEX for c in rest))
