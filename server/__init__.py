"""The SharpFu inference server: one long-lived process that owns the device
(CUDA when present, else the CPU) and serves restoration jobs over ZeroMQ.
See docs/PROTOCOL.md for the wire protocol and docs/ARCHITECTURE.md for how
a job flows through it."""
from sharpfu_client import __version__  # one version for the whole project

__all__ = ["__version__"]
