"""What the GIMP plug-ins (3 and 2.10) say and send about a job, apart from
GIMP itself: both ship this library beside them. Python 2.7 and 3."""
from __future__ import absolute_import

from .layers import Refusal

STAGES = {"queued": "waiting for other jobs to finish", "started": "starting", "done": "done"}


def job_params(scale, method):
    """A job's parameters: the scale where the op has one (None where it has
    not), and the method when one is named."""
    found = {} if scale is None else {"scale": scale}
    method = (method or "").strip()
    if method:
        found["method"] = method
    return found


def stage_text(job):
    """The server's stage of a job, in words for the progress bar."""
    if job.stage == "queued" and job.queue_position:
        return "waiting for other jobs to finish (place %d in the queue)" % job.queue_position
    return STAGES.get(job.stage, job.stage)


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
