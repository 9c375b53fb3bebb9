"""SharpFu's client library: talks to the SharpFu inference server over ZeroMQ.

Shared by the GIMP plug-ins and the command line. Python 2.7 and 3, standard
library and pyzmq only."""
from __future__ import absolute_import

__version__ = "0.1.0"

from .client import Client, Frame, Job, Result  # noqa: E402
from .errors import (Cancelled, ConnectionLost, JobFailed, ServerUnavailable,  # noqa: E402
                     SharpFuError, Timeout)

__all__ = ["Client", "Frame", "Job", "Result", "SharpFuError", "ServerUnavailable",
           "ConnectionLost", "Timeout", "Cancelled", "JobFailed", "__version__"]
