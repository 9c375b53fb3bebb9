"""Running ops on the engine directly, without a server, for unit tests."""
from __future__ import annotations

import numpy as np

from server.engine import Engine
from server.jobs import Job
from server.ops import OPS
from server.settings import Settings

FORMATS = {np.dtype("u1"): "u8", np.dtype("<u2"): "u16", np.dtype("<f4"): "f32"}

_engine = None


def engine() -> Engine:
    global _engine
    if _engine is None:
        _engine = Engine(Settings(device="cpu"))
    return _engine


def descriptor(name: str, array: np.ndarray) -> dict:
    height, width, channels = array.shape
    return {"name": name, "width": width, "height": height, "channels": channels,
            "format": FORMATS[array.dtype]}


def make_job(op: str, params: dict | None = None, **frames: np.ndarray) -> Job:
    checked = OPS[op].check_params(params or {}, "test")
    inputs = {name: (descriptor(name, array), array) for name, array in frames.items()}
    return Job(id="test", client=b"test", op=op, params=checked, inputs=inputs)


def run(op: str, params: dict | None = None, reports: list | None = None, **frames):
    """The op's first result frame as an array."""
    job = make_job(op, params, **frames)
    results, _ = engine().run(job, lambda f, s: reports.append((f, s)) if reports is not None
                              else None)
    return results[0][1]
