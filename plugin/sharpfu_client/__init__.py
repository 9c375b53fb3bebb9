"""SharpFu's client library: talks to the SharpFu inference server over ZeroMQ.

Shared by the GIMP plug-ins and the command line. Python 2.7 and 3, standard
library and pyzmq only."""
from __future__ import absolute_import

__version__ = "0.1.0"

from .errors import (Cancelled, ConnectionLost, JobFailed, ServerUnavailable,  # noqa: E402
                     SharpFuError, Timeout)

try:
    from .client import Client, Frame, Job, Result  # noqa: E402
except ImportError as error:
    # Without pyzmq nothing here reaches a server, but the tables that need
    # none (operations) still load: a plug-in registers its menu entries
    # anyway and, when one is chosen, says that pyzmq is missing.
    if "zmq" not in str(error):
        raise

__all__ = ["Client", "Frame", "Job", "Result", "SharpFuError", "ServerUnavailable",
           "ConnectionLost", "Timeout", "Cancelled", "JobFailed", "__version__"]
