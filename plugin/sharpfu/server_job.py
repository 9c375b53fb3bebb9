"""One SharpFu job from inside GIMP, with GIMP's progress bar fed by the server.

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


def run(op, frame, params, title):
    """Run `op` on one frame; returns the Result or raises SharpFuError.
    The server config is sharpfu.json beside the plug-in (install.py writes
    it), else the user's own SharpFu configuration."""
    Gimp.progress_init("%s: connecting to the SharpFu server" % title)
    client = Client(beside=HERE)
    try:
        client.connect(on_start=lambda endpoint: Gimp.progress_set_text(
            "%s: starting the SharpFu server (the first start takes a while)" % title))
        job = client.submit(op, [frame], params)
        shown = [None]

        def progress(fraction, stage):
            Gimp.progress_update(fraction)
            text = STAGES.get(stage, stage)
            if stage == "queued" and job.queue_position:
                text = "waiting for other jobs to finish (place %d in the queue)" % (
                    job.queue_position)
            if text != shown[0]:
                shown[0] = text
                Gimp.progress_set_text("%s: %s" % (title, text))

        return client.wait(job, progress)
    finally:
        client.close()
