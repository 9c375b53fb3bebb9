"""Which methods the server can run for each op, which is the default, and
which are loaded.

Networks come first in each op's preference list once their weights are
installed; the classical methods stay as the fallback, and status says
plainly which is which."""
from __future__ import annotations

import threading

import torch

from . import device as devices
from .jobs import JobError
from .methods import Method
from .methods.colour_matte import ColourLineMatte
from .methods.lanczos import Lanczos
from .methods.unsharp import UnsharpMask

# op -> the op whose methods it draws on (sharpen = deblur, then upscale)
ROLES = {"upscale": "upscale", "deblur": "deblur", "sharpen": "deblur", "matte": "matte"}


class Catalog:
    def __init__(self, settings):
        self.settings = settings
        self._lock = threading.Lock()
        self.methods: dict[str, Method] = {}
        for method in (Lanczos(), UnsharpMask(), ColourLineMatte()):
            self.add(method)

    def add(self, method: Method) -> None:
        self.methods[method.name] = method

    def candidates(self, role: str, scale: int = 1) -> list[Method]:
        """Methods for a role, best first: networks before classical ones."""
        found = [m for m in self.methods.values() if role in m.ops
                 and (role != "upscale" or scale in m.scales)]
        return sorted(found, key=lambda m: m.kind != "network")

    def pick(self, role: str, name: str | None, scale: int = 1) -> Method:
        if name is None:
            found = self.candidates(role, scale)
            if not found:
                raise JobError("internal", "No method can %s at scale %d." % (role, scale))
            return found[0]
        method = self.methods.get(name)
        if method is None or role not in method.ops:
            names = ", ".join(m.name for m in self.candidates(role, scale)) or "none"
            raise JobError("bad_params", "There is no method %r for %s; installed: %s." % (
                name, role, names))
        if role == "upscale" and scale not in method.scales:
            raise JobError("bad_params", "%s cannot upscale %dx; it does %s." % (
                method.title, scale, " and ".join("%dx" % s for s in method.scales)))
        return method

    def ensure_loaded(self, method: Method, device: torch.device) -> None:
        """Load lazily, once; loaded methods stay warm."""
        if method.loaded:
            return
        with self._lock:
            if not method.loaded:
                method.load(device, devices.half_dtype(device, self.settings.precision))

    def info(self) -> list[dict]:
        return [m.info() for m in self.methods.values()]

    def defaults(self) -> dict:
        result = {}
        for op, role in ROLES.items():
            scales = (2, 4) if op == "upscale" else (1,)
            result[op] = {str(s): self.candidates(role, s)[0].name for s in scales
                          if self.candidates(role, s)}
        return result
