# -*- coding: utf-8 -*-
"""The methods a dialog offers for an operation: those the server has
installed, as its status lists them, "Best available" first.

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


def offers(method, op, scale):
    """Whether `method` can be named for `op` at `scale`: AI Sharpen takes a
    deblurrer (its first stage) or an upscaler for its scale."""
    if op not in (method.get("ops") or []):
        return False
    scales = method.get("scales") or [1]
    return scale in scales or (op == "sharpen" and 1 in scales)


def choices(status, op, scale=1):
    """(value, label) for a dialog's method field: "Best available" (the
    server's default, named), then every installed method that can do `op`
    at `scale`, AI first."""
    status = status or {}
    methods = status.get("methods") or []
    by_name = dict((m.get("name"), m) for m in methods)
    default = ((status.get("defaults") or {}).get(op) or {}).get(str(scale))
    best = u"Best available"
    if default:
        parts = [by_name.get(name, {"name": name}) for name in default.split("+")]
        best += u": " + u", then ".join(label(part) for part in parts)
    found = [(BEST, best)]
    usable = [m for m in methods if offers(m, op, scale)]
    usable.sort(key=lambda m: (m.get("kind") != "network", bool(m.get("adaptation")),
                               short_title(m).lower()))
    return found + [(m["name"], label(m)) for m in usable]


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
    kept = {"methods": status.get("methods"), "defaults": status.get("defaults"),
            "limits": status.get("limits")}
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
