"""Exceptions the client library raises.

Every one carries an error `code` from wire.ERRORS and a `message` written
for the user: plug-ins show it as it is, the CLI prints it on one line."""
from __future__ import absolute_import, division, print_function

from .wire import ERRORS


class SharpFuError(Exception):
    code = "internal"

    def __init__(self, message=None, code=None, detail=None):
        self.code = code or self.code
        self.message = message or ERRORS.get(self.code, "SharpFu failed.")
        self.detail = detail
        Exception.__init__(self, self.message)


class ServerUnavailable(SharpFuError):
    """No server answered and none could be started."""
    code = "server_unavailable"


class ConnectionLost(SharpFuError):
    """The server went away while a request was in flight."""
    code = "connection_lost"


class Timeout(SharpFuError):
    """The server stayed silent for longer than the client's timeout."""
    code = "timeout"


class Cancelled(SharpFuError):
    """The job was cancelled by this client."""
    code = "cancelled"


class JobFailed(SharpFuError):
    """The server answered with an error; `code` is the server's."""
