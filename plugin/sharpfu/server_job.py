"""SharpFu jobs from inside GIMP, with GIMP's progress bar fed by the server.

Cancelling: the Cancel button next to GIMP's progress bar does not reach a
Python plug-in. GIMP asks the plug-in to quit and, 10 ms later, kills it
(SIGKILL), so nothing here gets to run. The job does not go on regardless:
the plug-in's socket closes with its process, the server notices on its next
heartbeat (at most a second later) and drops the job. An auto-started server
runs in a session of its own, so it outlives the plug-in and keeps its
models warm.
"""
import os

import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

from sharpfu_client import Client  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

STAGES = {"queued": "waiting for other jobs to finish", "started": "starting", "done": "done"}


def job_params(scale, method):
    """A job's parameters: the scale where the op has one (None where it has
    not), and the method when one is named."""
    found = {} if scale is None else {"scale": scale}
    method = (method or "").strip()
    if method:
        found["method"] = method
    return found


def connect(title):
    """A connected Client, starting the server if need be, with the progress
    bar saying so. The server config is sharpfu.json beside the plug-in
    (install.py writes it), else the user's own SharpFu configuration."""
    Gimp.progress_init("%s: connecting to the SharpFu server" % title)
    client = Client(beside=HERE)
    try:
        client.connect(on_start=lambda endpoint: Gimp.progress_set_text(
            "%s: starting the SharpFu server (the first start takes a while)" % title))
    except Exception:
        client.close()
        raise
    return client


def stage_text(job):
    """The server's stage of a job, in words for the progress bar."""
    if job.stage == "queued" and job.queue_position:
        return "waiting for other jobs to finish (place %d in the queue)" % job.queue_position
    return STAGES.get(job.stage, job.stage)


def run(op, frame, params, title):
    """Run `op` on one frame; returns the Result or raises SharpFuError."""
    client = connect(title)
    try:
        job = client.submit(op, [frame], params)
        shown = [None]

        def progress(fraction, stage):
            Gimp.progress_update(fraction)
            text = stage_text(job)
            if text != shown[0]:
                shown[0] = text
                Gimp.progress_set_text("%s: %s" % (title, text))

        return client.wait(job, progress)
    finally:
        client.close()
