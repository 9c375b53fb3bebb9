"""The operations a job can ask for: sharpfu_client.operations.OPERATIONS,
the one table of them (docs/PROTOCOL.md, section "Operations"), which the
GIMP plug-ins and the CLI read too.

OPS[name] has `inputs`, `outputs`, `max_frames`, `runner` (which engine
runner computes it), `check_params(params, msg_id)`, `scale(params)` and
`describe()`."""
from sharpfu_client.operations import COMMON, OPERATIONS, Operation, Param

OPS = OPERATIONS

__all__ = ["COMMON", "OPS", "Operation", "Param"]
