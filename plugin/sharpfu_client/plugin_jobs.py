"""What the GIMP plug-ins (3 and 2.10) say and send about a job, apart from
GIMP itself: both ship this library beside them. Python 2.7 and 3."""
from __future__ import absolute_import

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
