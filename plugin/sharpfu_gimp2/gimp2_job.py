"""SharpFu jobs from inside GIMP 2.10, with GIMP's progress bar fed by the
server's progress.

Cancelling: GIMP 2.10 kills a plug-in whose progress the user cancels; its
socket closes with it, and the server drops the job on its next heartbeat.
"""
import os

from gimpfu import gimp, pdb

from gimp2_layers import native
from sharpfu_client import Client
from sharpfu_client.operations import plain
from sharpfu_client.plugin_jobs import (CONNECTING, STARTING_SERVER, JobWords,  # noqa: F401
                                        job_params)

HERE = os.path.dirname(os.path.abspath(__file__))


def say(text):
    """The progress bar's text."""
    pdb.gimp_progress_set_text(native(text))


def connect(title):
    """A connected Client, starting the server if need be. The server config
    is sharpfu.json beside the plug-in (install.py writes it), else the
    user's own SharpFu configuration."""
    gimp.progress_init(native("%s: %s" % (title, plain(CONNECTING))))
    client = Client(beside=HERE)
    try:
        client.connect(on_start=lambda endpoint: say("%s: %s" % (title, plain(STARTING_SERVER))))
    except Exception:
        client.close()
        raise
    return client


def wait(client, job, title, words, done=0.0, share=1.0):
    """The Result of a submitted job, with the progress bar going from `done`
    to done + share and its text (from `words`, a JobWords) saying what
    happens; raises SharpFuError when the job fails."""
    shown = [None]

    def progress(fraction, stage):
        gimp.progress_update(min(1.0, done + share * fraction))
        # title may hold a layer's name: bytes in Python 2, so the words go plain to it
        text = "%s: %s" % (title, plain(words.text(job)))
        if text != shown[0]:
            shown[0] = text
            say(text)

    return client.wait(job, progress)


def run(op, frames, params, title):
    """Run `op` on frames; returns the Result, whose `words` (JobWords) tell
    the end of it, or raises SharpFuError."""
    client = connect(title)
    try:
        words = JobWords(op, client.server_status, params)
        result = wait(client, client.submit(op, frames, params), title, words)
        result.words = words
        return result
    finally:
        client.close()
