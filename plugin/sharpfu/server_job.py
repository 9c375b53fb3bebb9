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
from sharpfu_client.adapt import TILE_SIDE, adapt as adapt_model, sample_tiles  # noqa: E402
from sharpfu_client.plugin_jobs import (CONNECTING, STARTING_SERVER, JobWords,  # noqa: E402,F401
                                        adaptation_note, job_params, stage_text)

HERE = os.path.dirname(os.path.abspath(__file__))


def connect(title):
    """A connected Client, starting the server if need be, with the progress
    bar saying so. The server config is sharpfu.json beside the plug-in
    (install.py writes it), else the user's own SharpFu configuration."""
    Gimp.progress_init("%s: %s" % (title, CONNECTING))
    client = Client(beside=HERE)
    try:
        client.connect(on_start=lambda endpoint: Gimp.progress_set_text(
            "%s: %s" % (title, STARTING_SERVER)))
    except Exception:
        client.close()
        raise
    return client


def follow(job, title, words, done=0.0, share=1.0):
    """A progress callback for client.wait: GIMP's progress bar goes from
    `done` to done + share, its text says in words what happens."""
    shown = [None]

    def progress(fraction, stage):
        Gimp.progress_update(min(1.0, done + share * fraction))
        text = "%s: %s" % (title, words.text(job))
        if text != shown[0]:
            shown[0] = text
            Gimp.progress_set_text(text)
    return progress


def run(op, frames, params, title, began=None):
    """Run `op` on frames; returns the Result or raises SharpFuError. The
    Result's `words` (JobWords, counting time from `began`, else from now)
    tell the end of it (see finish)."""
    client = connect(title)
    try:
        words = JobWords(op, client.server_status, params)
        words.began = began or words.began
        job = client.submit(op, frames, params)
        result = client.wait(job, follow(job, title, words))
        Gimp.progress_set_text("%s: %s" % (title, words.text(job)))
        result.words = words
        return result
    finally:
        client.close()


def finish(title, text, interactive):
    """The message that stays: in the progress bar's place and, for a user
    at the menus, as a message, which GIMP shows in the image window's
    status bar when it fits there."""
    message = "%s: %s" % (title, text)
    Gimp.progress_set_text(message)
    Gimp.progress_update(1.0)
    if interactive:
        Gimp.message(message)


# -- adapting a model to the user's pixels first (docs/PROTOCOL.md 7.1) -------

ADAPT_IMAGES = 8       # images of a batch that adaptation samples, as `sharpfu upscale --adapt`
LOSSY_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".heic", ".heif", ".avif")


def came_compressed(image, sample):
    """Whether the image went through lossy compression: an 8-bit image from
    a JPEG (or WebP, ...) file. 16- and 32-bit images, and 8-bit ones from
    PNG, TIFF or nowhere, get training pairs without JPEG, as the CLI's."""
    if sample != "u8":
        return False
    for getter in ("get_imported_file", "get_file", "get_exported_file"):
        found = getattr(image, getter, None)
        found = found() if found else None
        name = found.get_basename() if found is not None else None
        if name:
            return os.path.splitext(name)[1].lower() in LOSSY_EXTENSIONS
    return False


def adapt(frames, params, title, steps=0, compressed=True, task="upscale"):
    """Adapt the upscaler (task "upscale") or the deblurrer ("deblur") on
    tiles of `frames` (the pixels the jobs will send); returns (params for
    the jobs, a note for the status bar). The method becomes the adapted
    network, or stays the shipped one when the server's safeguard rejected
    the adaptation, which is no error."""
    samples = sample_tiles(frames, side=TILE_SIDE[task])
    client = connect(title)
    try:
        words = JobWords("adapt")
        Gimp.progress_set_text("%s: %s" % (title, words.words("started", 0.0)))

        def progress(fraction, stage):
            Gimp.progress_update(fraction)
            Gimp.progress_set_text("%s: %s" % (title, words.words(stage, fraction)))

        adaptation = adapt_model(client, samples, scale=params.get("scale", 2),
                                 steps=max(10, steps) if steps else None,
                                 method=params.get("method"), progress=progress,
                                 compressed=compressed, task=task)
    finally:
        client.close()
    return dict(params, method=adaptation.model), adaptation_note(adaptation)
