# -*- coding: utf-8 -*-
"""The methods a user can choose for an operation, best first, as the server
ranks them: the first is what runs when a job names none ("Best
available"). The GIMP dialogs' method lists, `sharpfu status` and
`sharpfu models list` all come from here, so they agree.

The server sends the ranking in its status (`choices`: op -> scale -> method
names, docs/PROTOCOL.md); for a server from before it, which has only
`methods` and `defaults`, the same order is rebuilt as well as it can be
(the default first, then networks before classical methods).

A dialog should open at once, so the status is kept for a short while in
the state folder (STATUS_CACHE) and asked of a running server only when that
is stale; a dialog never starts a server. Python 2.7 and 3, standard
library only (the Client is handed in).
"""
from __future__ import absolute_import

import json
import os
import time

from . import config as config_module

BEST = ""                 # the method value that lets the server choose
CACHE_NAME = "status-cache.json"
CACHE_SECONDS = 30.0      # a status this fresh is used as it is
ASK_TIMEOUT = 1.0         # seconds a dialog waits for a running server's status


def short_title(method):
    """A method's title without its details in brackets or after a comma
    (channel and block counts, how it was trained)."""
    title = method.get("title") or method.get("name") or u"?"
    return title.split(u" (")[0].split(u",")[0].strip()


def label(method):
    """How a dialog names a method: what it is called and whether it is AI."""
    words = short_title(method)
    if method.get("adaptation"):
        words += u", adapted to your images"
    return words + (u" (AI)" if method.get("kind") == "network" else u" (classical, not AI)")


def ranked(status, op, scale=1):
    """The method infos (from status["methods"]) a job of `op` at `scale` may
    name, best first."""
    status = status or {}
    by_name = dict((m.get("name"), m) for m in status.get("methods") or [])
    names = ((status.get("choices") or {}).get(op) or {}).get(str(scale))
    if names is None:
        names = _rebuilt(status, op, scale)
    return [by_name[name] for name in names if name in by_name]


def by_scale(status, op):
    """(scale, ranked method infos) for every scale the status knows for
    `op`, smallest first."""
    status = status or {}
    scales = ((status.get("choices") or {}).get(op) or (status.get("defaults") or {}).get(op)
              or {})
    return [(int(scale), ranked(status, op, int(scale))) for scale in sorted(scales, key=int)]


def choices(status, op, scale=1):
    """(value, label) for a dialog's method field: "Best available" (the
    server's default, named), then every installed method that can do `op`
    at `scale`, best first."""
    status = status or {}
    by_name = dict((m.get("name"), m) for m in status.get("methods") or [])
    default = ((status.get("defaults") or {}).get(op) or {}).get(str(scale))
    best = u"Best available"
    if default:
        parts = [by_name.get(name, {"name": name}) for name in default.split("+")]
        best += u": " + u", then ".join(label(part) for part in parts)
    return [(BEST, best)] + [(m["name"], label(m)) for m in ranked(status, op, scale)]


def estimates_blur(status, op, scale, method):
    """Whether the deblurrer a job of `op` at `scale` naming `method` ("" for
    the server's choice) would run estimates a blur kernel (status
    methods' `extra_frames`), which Blur size and Show estimated blur need;
    None when the status cannot tell (no server, or an unknown name)."""
    status = status or {}
    name = method
    if not name or not any(m.get("name") == name and "deblur" in (m.get("ops") or [])
                           for m in status.get("methods") or []):
        # the server's default deblurring stage (a named upscaler leaves it so)
        name = ((status.get("defaults") or {}).get(op) or {}).get(str(scale)) or ""
        name = name.split("+")[0]
    for info in status.get("methods") or []:
        if info.get("name") == name:
            return "kernel" in (info.get("extra_frames") or [])
    return None


def _offers(method, op, scale):
    """Whether a server without `choices` would take `method` for `op` at
    `scale`: AI Sharpen's first stage is a deblurrer, its last an upscaler
    for a scale above 1."""
    if op not in (method.get("ops") or []):
        return False
    scales = method.get("scales") or [1]
    if op == "sharpen":
        return "deblur" in (method.get("ops") or []) or (scale > 1 and scale in scales)
    return scale in scales


def _rebuilt(status, op, scale):
    methods = [m for m in status.get("methods") or [] if _offers(m, op, scale)]
    default = ((status.get("defaults") or {}).get(op) or {}).get(str(scale)) or ""
    first = default.split("+")[0]
    methods.sort(key=lambda m: (m.get("name") != first, m.get("kind") != "network",
                                bool(m.get("adaptation")), short_title(m).lower()))
    return [m.get("name") for m in methods]


def cache_path():
    return os.path.join(config_module.state_dir(), CACHE_NAME)


def cached_status(endpoint, ask, clock=time.time, path=None):
    """The server's status for a dialog: the cached one while it is fresh,
    else ask() (a running server's, or None when none answers), which is
    then cached; a stale cached one when no server answers; else None."""
    path = path or cache_path()
    cached = None
    try:
        with open(path) as handle:
            cached = json.load(handle)
        if cached.get("endpoint") != endpoint:
            cached = None
    except (IOError, OSError, ValueError, AttributeError):
        cached = None
    if cached is not None and clock() - cached.get("time", 0) < CACHE_SECONDS:
        return cached.get("status")
    status = ask()
    if status is None:
        return cached.get("status") if cached else None
    kept = dict((name, status.get(name)) for name in ("methods", "defaults", "choices",
                                                        "limits"))
    try:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory)
        temporary = path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump({"endpoint": endpoint, "time": clock(), "status": kept}, handle)
        os.rename(temporary, path)
    except (IOError, OSError):
        pass
    return kept
