"""The methods a user can choose for an operation, best first, as the server
ranks them: the first is what runs when a job names none ("Best
available"). The GIMP dialogs' method lists, `sharpfu status` and
`sharpfu models list` all come from here, so they agree.

The server sends the ranking in its status (`choices`: op -> scale -> method
names, docs/PROTOCOL.md); a server from before it has only `methods` and
`defaults`, from which the same order is rebuilt as well as it can be (the
default first, then networks before classical methods). Python 2.7 and 3,
standard library only.
"""
from __future__ import absolute_import


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
    """scale (int) -> the ranked method infos, for every scale the status
    knows for `op`, smallest first."""
    status = status or {}
    scales = ((status.get("choices") or {}).get(op) or (status.get("defaults") or {}).get(op)
              or {})
    return [(int(scale), ranked(status, op, int(scale)))
            for scale in sorted(scales, key=int)]


def _can(method, op, scale):
    if op not in (method.get("ops") or []):
        return False
    scales = method.get("scales") or [1]
    if op == "sharpen":
        return "deblur" in (method.get("ops") or []) or (scale > 1 and scale in scales)
    return scale in scales


def _rebuilt(status, op, scale):
    methods = [m for m in status.get("methods") or [] if _can(m, op, scale)]
    default = ((status.get("defaults") or {}).get(op) or {}).get(str(scale)) or ""
    first = default.split("+")[0]
    methods.sort(key=lambda m: (m.get("name") != first, m.get("kind") != "network",
                                bool(m.get("adaptation"))))
    return [m.get("name") for m in methods]
