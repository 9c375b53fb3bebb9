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
from .methods.blind_deconvolution import shipped as blind_deconvolution
from .methods.colour_matte import ColourLineMatte
from .methods.lanczos import Lanczos
from .methods.mask_refiner import mask_refiner_methods
from .methods.network import shipped_methods
from .methods.unsharp import UnsharpMask
from .models_folder import scan as scan_models_folder

# op -> the op whose methods it draws on (sharpen = deblur, then upscale)
ROLES = {"upscale": "upscale", "deblur": "deblur", "sharpen": "deblur", "matte": "matte"}


class Catalog:
    def __init__(self, settings):
        self.settings = settings
        self._lock = threading.Lock()
        self.methods: dict[str, Method] = {}
        for method in (Lanczos(), UnsharpMask(), ColourLineMatte()):
            self.add(method)
        # SharpFu's trained networks; the classical methods stay as the fallback
        for method in shipped_methods() + blind_deconvolution() + mask_refiner_methods():
            self.add(method)
        # Checkpoints the user brought (install.py --add-model), named after
        # their files; a name already taken goes to the file's full name.
        for method in scan_models_folder(getattr(settings, "models_dir", ""), set(self.methods)):
            self.add(method)

    def add(self, method: Method) -> None:
        self.methods[method.name] = method

    def remove(self, name: str) -> None:
        self.methods.pop(name, None)

    def candidates(self, role: str, scale: int = 1) -> list[Method]:
        """Methods for a role, best first (Method.rank; for networks,
        server/methods/network.py's preference(): deblurrers the deblurring
        benchmark measured by their numbers there, then a user's checkpoints,
        the bigger first, then SharpFu's own, then the classical methods)."""
        found = [m for m in self.methods.values() if role in m.ops
                 and (role != "upscale" or scale in m.scales)]
        return sorted(found, key=lambda m: -m.rank())

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

    def chain(self, op: str, scale: int = 1, method: str | None = None) -> list[tuple[Method, int]]:
        """The methods that compute an op, in order, each with its own scale.
        sharpen is deblur then (at scale > 1) upscale; `method` names the
        deblurrer there, or the upscaler when it names one that cannot
        deblur (an adapted network: the deblurrer is then the default)."""
        if op == "sharpen":
            named = self.methods.get(method) if method else None
            if named is not None and "deblur" not in named.ops and "upscale" in named.ops:
                if scale == 1:
                    raise JobError("bad_params", "%s upscales; sharpen uses it only at scale 2 "
                                   "or 4." % named.title)
                return [(self.pick("deblur", None), 1), (self.pick("upscale", method, scale), scale)]
            stages = [(self.pick("deblur", method), 1)]
            if scale > 1:
                stages.append((self.pick("upscale", None, scale), scale))
            return stages
        return [(self.pick(ROLES[op], method, scale), scale)]

    def defaults(self) -> dict:
        """op -> scale -> the method (or '+'-joined chain) used when none is named."""
        scales = {"upscale": (2, 4), "deblur": (1,), "sharpen": (1, 2, 4), "matte": (1,)}
        return {op: {str(s): "+".join(m.name for m, _ in self.chain(op, s)) for s in ss}
                for op, ss in scales.items()}
