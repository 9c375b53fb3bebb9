"""What the GIMP plug-ins (3 and 2.10) say and send about a job, apart from
GIMP itself: both ship this library beside them. Python 2.7 and 3."""
from __future__ import absolute_import

import struct
import time

from .layers import Refusal
from .operations import OPERATIONS

ELLIPSIS = u"\u2026"
CONNECTING = u"Starting SharpFu" + ELLIPSIS
STARTING_SERVER = u"Starting the SharpFu server (the first start takes a while)" + ELLIPSIS
PUTTING_BACK = u"Putting the result back" + ELLIPSIS
SHOW_SECONDS_AFTER = 2.0   # seconds; from then on the text counts them, so that it moves
BLUR_VIEW = 96             # pixels: about the side the estimated blur is shown at


def job_params(scale, method, strength=None):
    """A job's parameters: the scale where the op has one (None where it has
    not), the method when one is named, the strength (in percent) when it
    is not all (servers before strength know no such param)."""
    found = {} if scale is None else {"scale": scale}
    method = (method or "").strip()
    if method:
        found["method"] = method
    if strength is not None and strength < 100:
        found["strength"] = max(0.0, strength / 100.0)
    return found


def blur_params(params, op, blur_size, show_blur):
    """A deblurring filter's blur fields added to its job's `params`: the
    largest blur to look for (0, automatic, is not sent) and whether the
    estimated kernel comes back. Ops without them are left as they are."""
    if "kernel_size" not in OPERATIONS[op].params:
        return params
    if blur_size:
        params["kernel_size"] = int(blur_size)
    if show_blur:
        params["kernel"] = True
    return params


def blur_view(weights, width, height, channels):
    """An estimated blur kernel (its weights: `width` x `height` float32,
    little-endian, as the 'kernel' frame holds them) as 8-bit pixels to look
    at: the largest weight white, each weight a square of whole pixels so
    that the picture is about BLUR_VIEW wide, grey repeated into `channels`.
    Returns (bytes, width, height)."""
    values = struct.unpack("<%df" % (width * height), bytes(weights))
    top = max(values) if len(values) else 0.0
    zoom = max(1, BLUR_VIEW // max(1, width, height))
    out = bytearray()
    for row in range(height):
        line = bytearray()
        for value in values[row * width:(row + 1) * width]:
            level = int(round(255.0 * min(1.0, max(0.0, value / top)))) if top > 0 else 0
            line.extend(bytearray([level]) * (zoom * channels))
        out.extend(bytes(line) * zoom)
    return bytes(out), width * zoom, height * zoom


def method_words(method):
    """The method that made a result, in words for a photographer: what it
    is called, whether it is AI, never its channel or block counts."""
    stages = method.get("stages")
    if stages:
        return u", then ".join(method_words(stage) for stage in stages)
    title = method.get("title") or method.get("name") or u"an unknown method"
    short = title.split(u" (")[0].split(u",")[0].strip()
    if method.get("adaptation"):
        short += u", adapted to your images"
    if method.get("kind") == "network":
        return u"the AI model %s" % short
    return u"%s (a classical method, not AI)" % short


def needs_loading(status, op, params):
    """Whether the job's network is still to be loaded (the server loads a
    model on first use), as the server's status says."""
    status = status or {}
    methods = dict((m.get("name"), m) for m in status.get("methods") or [])
    name = (params or {}).get("method")
    if not name:
        scale = (params or {}).get("scale") or 1
        name = ((status.get("defaults") or {}).get(op) or {}).get(str(scale)) or ""
    return any(methods.get(part, {}).get("kind") == "network" and
               not methods.get(part, {}).get("loaded", True) for part in name.split("+"))


class JobWords(object):
    """What the progress bar says about one job, in plain words, from the
    first second to the last: waiting, loading the model, the work with its
    percentage, putting the result back. After SHOW_SECONDS_AFTER it also
    counts the seconds (the server's heartbeat comes every second), so that
    a long tile never leaves the text standing still."""

    def __init__(self, op, status=None, params=None, clock=time.time):
        self.doing = OPERATIONS[op].doing
        self.loading = needs_loading(status, op, params)
        self.clock = clock
        self.began = clock()

    def seconds(self):
        return self.clock() - self.began

    def text(self, job):
        """The words for a Job (its stage, fraction and place in the queue)."""
        return self.words(job.stage, job.fraction, job.queue_position)

    def words(self, stage, fraction, queue_position=None):
        stage, fraction = stage or "", fraction or 0.0
        if stage == "queued" and (queue_position or 0) > 1:
            return u"Waiting for %d other jobs to finish%s" % (queue_position - 1, ELLIPSIS)
        if stage == "done" or fraction >= 1.0:
            return PUTTING_BACK
        if stage.startswith("loading "):        # the server says when it loads a model
            self.loading = False
            text = u"Loading the model"
        elif stage in ("", "queued", "started") and self.loading:
            text = u"Loading the model, then %s" % self.doing.lower()
        elif "out of memory" in stage:
            text = u"Short of memory, trying smaller pieces"
        else:
            text = self.doing
        text += ELLIPSIS
        if fraction > 0:
            text += u" %d %%" % int(fraction * 100)
        if self.seconds() >= SHOW_SECONDS_AFTER:
            text += u" (%d s)" % self.seconds()
        return text

    def done(self, result, note=u""):
        """The message that stays at the end: how long, and what made it."""
        return u"Done in %.1f s with %s%s." % (self.seconds(), method_words(result.method), note)


def adaptation_note(adaptation):
    """A word on an adaptation, for the message at the end."""
    if adaptation.accepted:
        return u"the model was first adapted to your images"
    return u"adapting the model brought no gain, so the usual one was used"


def stage_text(job):
    """The server's stage of a job, in words for the progress bar (for a
    caller that keeps no JobWords)."""
    return JobWords(job.op).text(job)


# -- AI Batch ------------------------------------------------------------------

LISTED = 10       # notes spelled out in a batch's summary; the rest are counted

# Errors every later job of a batch would meet too: they stop it.
FATAL = ("server_unavailable", "connection_lost", "timeout", "bad_params", "unknown_op",
         "bad_signature", "bad_message", "bad_header", "unsupported_protocol", "shutting_down")


class BatchFailed(Refusal):
    """The batch ran, but not all of it worked: `message` sums it up."""


class BatchStopped(BatchFailed):
    """An error every later job would meet too."""


class BatchReport(object):
    """How a batch went: `done` (layers, or files for a folder), `failures`
    and `notes` (layers left as they were, and why), and the summary the
    user sees at the end."""

    def __init__(self, target):
        self.unit = "file" if target == "folder" else "layer"
        self.done = 0
        self.failures = []
        self.notes = []

    def note(self, label, why):
        self.notes.append("%s: left as it is, %s" % (label, why))

    def summary(self):
        """Counts, then what failed and what was left alone, on one line."""
        counts = ["%d %s%s done" % (self.done, self.unit, "" if self.done == 1 else "s")]
        if self.failures:
            counts.append("%d failed" % len(self.failures))
        if self.notes:
            counts.append("%d left as they were" % len(self.notes))
        told = listing(self.failures + self.notes)
        return ", ".join(counts) + (": " + told if told else "") + "."

    def stopped(self, message):
        """The error for a batch an error stopped, with how far it got."""
        return BatchFailed("%s AI Batch stopped there; %s" % (message, self.summary()))


def listing(entries):
    """The first LISTED entries, one after another, and how many more there are."""
    told = [entry.rstrip(".") for entry in entries[:LISTED]]
    if len(entries) > LISTED:
        told.append("and %d more" % (len(entries) - LISTED))
    return "; ".join(told)
