"""Running ops on the engine directly, without a server, for unit tests."""
from __future__ import annotations

from server.engine import Engine
from server.jobs import local_job as make_job
from server.settings import Settings

__all__ = ["engine", "make_job", "run"]

_engine = None


def engine() -> Engine:
    global _engine
    if _engine is None:
        _engine = Engine(Settings(device="cpu"))
    return _engine


def run(op: str, params: dict | None = None, reports: list | None = None, **frames):
    """The op's first result frame as an array."""
    job = make_job(op, params, **frames)
    results, _ = engine().run(job, lambda f, s: reports.append((f, s)) if reports is not None
                              else None)
    return results[0][1]
