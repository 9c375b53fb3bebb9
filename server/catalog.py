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
from .methods.auto_upscale import AutoUpscale
from .methods.colour_matte import ColourLineMatte
from .methods.lanczos import Lanczos
from .methods.mask_refiner import mask_refiner_methods
from .methods.network import shipped_methods
from .methods.store_models import signature as store_signature
from .methods.store_models import store_methods
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
        for method in shipped_methods() + mask_refiner_methods():
            self.add(method)
        # Checkpoints the user brought (install.py --add-model), named after
        # their files; a name already taken goes to the file's full name.
        for method in scan_models_folder(getattr(settings, "models_dir", ""), set(self.methods)):
            self.add(method)
        self._store_names: set[str] = set()
        self._store_signature = None
        self.refresh()

    def refresh(self) -> None:
        """Offer what the model store holds now: a model added with `sharpfu
        models add` while the server runs appears the next time a client
        asks for the methods; a removed one goes (unless loaded and busy:
        loaded methods stay until the server restarts)."""
        folder = getattr(self.settings, "models_dir", "")
        found = store_signature(folder)
        if found == self._store_signature:
            return
        with self._lock:
            self._store_signature = found
            taken = set(self.methods) - self._store_names
            current = {m.name: m for m in store_methods(folder, taken)}
            for name in self._store_names - set(current):
                if not self.methods[name].loaded:
                    del self.methods[name]
            for name, method in current.items():
                old = self.methods.get(name)
                if old is None or old.record.get("sha256") != method.record.get("sha256"):
                    self.methods[name] = method
            self._store_names = {n for n in self.methods if n in current or
                                 n in self._store_names}
            self._offer_auto()

    # the clean-photo upscaler `auto` prefers, by scale, best first; measured
    # in docs/BENCHMARKS.md
    AUTO_CLEAN = {2: ("span-official-x2-ch48", "span-official-x2-ch52"),
                  4: ("span-official-x4-ch48", "span-official-x4-ch52")}
    AUTO_THUMBNAIL = "span"

    def _offer_auto(self) -> None:
        """`auto` (server/methods/auto_upscale.py) exists while both its
        networks are installed: the authors' SPAN for clean inputs and
        SharpFu's for JPEG thumbnails."""
        self.methods.pop("auto", None)
        thumbnail = self.methods.get(self.AUTO_THUMBNAIL)
        if thumbnail is None:
            return
        clean = {}
        for scale, names in self.AUTO_CLEAN.items():
            found = [self.methods[n] for n in names if n in self.methods]
            if found and scale in thumbnail.scales:
                clean[scale] = found[0]
        if clean:
            self.methods["auto"] = AutoUpscale(clean, {s: thumbnail for s in clean})

    def add(self, method: Method) -> None:
        self.methods[method.name] = method

    def remove(self, name: str) -> None:
        self.methods.pop(name, None)

    def candidates(self, role: str, scale: int = 1) -> list[Method]:
        """Methods for a role, best first (Method.rank: networks before
        classical ones, unless a network's own record ranks it lower; for
        deblurring, a user's MIMO-UNet+ before MIMO-UNet before SharpFu's
        own)."""
        self.refresh()
        found = [m for m in self.methods.values() if role in m.ops
                 and (role != "upscale" or scale in m.scales)]
        return sorted(found, key=lambda m: -m.rank())

    def pick(self, role: str, name: str | None, scale: int = 1) -> Method:
        self.refresh()
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
        self.refresh()
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
