"""Which methods the server can run for each op, which is the default, and
which are loaded.

Networks come first in each op's preference list once their weights are
installed; the classical methods stay as the fallback, and status says
plainly which is which. The models folder (models/store.py) is looked at
again whenever a client asks for the methods: a model added or removed
while the server runs is offered or dropped then."""
from __future__ import annotations

import logging
import threading

import torch

from models.store import Store

from . import device as devices
from .jobs import JobError
from .methods import Method
from .methods.auto_upscale import AutoUpscale
from .methods.blind_deconvolution import shipped as blind_deconvolution
from .methods.colour_matte import ColourLineMatte
from .methods.guided_filter import GuidedFilterMatte
from .methods.isnet_subject import subject_methods
from .methods.laplacian_matte import LaplacianMatte
from .methods.lanczos import Lanczos
from .methods.mask_refiner import mask_refiner_methods
from .methods.network import installed_methods, shipped_methods
from .methods.unsharp import UnsharpMask

log = logging.getLogger("sharpfu.models")

# op -> the op whose methods it draws on (sharpen = deblur, then upscale)
ROLES = {"upscale": "upscale", "deblur": "deblur", "sharpen": "deblur", "matte": "matte",
         "select": "select"}
# the scales each op is offered at
OP_SCALES = {"upscale": (2, 4), "deblur": (1,), "sharpen": (1, 2, 4), "matte": (1,),
             "select": (1,)}
# ops that have no method until a network is installed (no classical fallback),
# and what to install for them
OPTIONAL = ("select",)
NO_METHOD = {"select": "Select Subject needs a model that finds the subject of a photo, and this "
                       "server has none installed. Install one with 'sharpfu models pull "
                       "isnet-general' (once; the server offers it at once), then try again. "
                       "Nothing was changed."}


class Catalog:
    def __init__(self, settings):
        self.settings = settings
        self._lock = threading.Lock()
        self.methods: dict[str, Method] = {}
        for method in (Lanczos(), UnsharpMask(), ColourLineMatte(), GuidedFilterMatte(),
                       LaplacianMatte()):
            self.add(method)
        # SharpFu's trained networks; the classical methods stay as the fallback
        for method in shipped_methods() + blind_deconvolution() + mask_refiner_methods():
            self.add(method)
        folder = getattr(settings, "models_dir", "")
        self.store = Store(folder) if folder else None
        self._installed: dict[str, tuple] = {}     # name -> the file's (size, mtime) served
        self._signature = None
        self._reported: set[tuple[str, str]] = set()
        self.refresh()

    def refresh(self) -> None:
        """Offer what the models folder holds now: a model added with
        `sharpfu models add` (or copied in) while the server runs appears the
        next time a client asks for the methods; a removed one goes, unless
        it is loaded (then it stays until the server restarts); a replaced
        one is served from its new file."""
        found = self.store.signature() if self.store is not None else ()
        if found == self._signature:
            return
        with self._lock:
            self._signature = found
            models = self.store.models() if self.store is not None else []
            for model in models:
                if model.problem and (model.name, model.problem) not in self._reported:
                    self._reported.add((model.name, model.problem))
                    log.warning("models folder: skipping %s: %s", model.path.name, model.problem)
            taken = set(self.methods) - set(self._installed) - {"auto"}
            current = {m.name: m for m in installed_methods(models, taken)}
            current.update((m.name, m) for m in subject_methods(models, taken | set(current)))
            # each installed method serves one file
            versions = {m.name: _version(next(iter(m.weights.values())).path)
                        for m in current.values()}
            for name in set(self._installed) - set(current):
                if not self.methods[name].loaded:
                    del self.methods[name]
                    del self._installed[name]
            for name, method in current.items():
                if name not in self.methods or self._installed.get(name) != versions[name]:
                    self.methods[name] = method
                    self._installed[name] = versions[name]
                    log.info("models folder: %s offered as method %r (%s)", method.source,
                             name, method.title)
            self._offer_auto()

    # the clean-photo upscaler `auto` prefers, by scale, best first; measured
    # in docs/BENCHMARKS.md
    AUTO_CLEAN = {2: ("span-official-x2-ch48", "span-official-x2-ch52"),
                  4: ("span-official-x4-ch48", "span-official-x4-ch52")}
    AUTO_THUMBNAIL = ("span-tuned", "span")

    def _offer_auto(self) -> None:
        """`auto` (server/methods/auto_upscale.py) exists while both its
        networks are installed: the authors' SPAN for clean inputs and
        SharpFu's for JPEG thumbnails."""
        self.methods.pop("auto", None)
        thumbnail = next((self.methods[n] for n in self.AUTO_THUMBNAIL if n in self.methods),
                         None)
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
        """Methods for a role, best first (Method.rank; for networks,
        server/methods/network.py's preference(): deblurrers the deblurring
        benchmark measured by their numbers there, then a user's checkpoints,
        the bigger first, then SharpFu's own, then the classical methods)."""
        self.refresh()
        found = [m for m in self.methods.values() if role in m.ops
                 and (role != "upscale" or scale in m.scales)]
        return sorted(found, key=lambda m: -m.rank())

    def pick(self, role: str, name: str | None, scale: int = 1) -> Method:
        self.refresh()
        if name is None:
            found = self.candidates(role, scale)
            if not found and role in NO_METHOD:
                raise JobError("bad_params", NO_METHOD[role])
            if not found:
                raise JobError("internal", "No method can %s at scale %d." % (role, scale))
            return found[0]
        method = self.methods.get(name)
        if method is None or role not in method.ops:
            names = ", ".join(m.name for m in self.candidates(role, scale))
            if not names and role in NO_METHOD:
                raise JobError("bad_params", NO_METHOD[role])
            raise JobError("bad_params", "There is no method %r for %s; installed: %s." % (
                name, role, names or "none"))
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

    def choices(self) -> dict:
        """op -> scale -> the names of the methods a job may name for it,
        best first: the first is what runs when none is named (for sharpen,
        the deblurrers, whose first is its first stage, then the upscalers
        it can end with). The list the GIMP dialogs and the CLI offer. An
        op without a classical fallback (select) is listed only once a
        method for it is installed; so in `defaults`."""
        self.refresh()
        found = {}
        for op, scales in self._offered().items():
            found[op] = {}
            for scale in scales:
                if op == "sharpen":
                    names = [m.name for m in self.candidates("deblur")]
                    if scale > 1:
                        names += [m.name for m in self.candidates("upscale", scale)
                                  if "sharpen" in m.ops and m.name not in names]
                else:
                    names = [m.name for m in self.candidates(ROLES[op], scale)]
                found[op][str(scale)] = names
        return found

    def defaults(self) -> dict:
        """op -> scale -> the method (or '+'-joined chain) used when none is named."""
        return {op: {str(s): "+".join(m.name for m, _ in self.chain(op, s)) for s in ss}
                for op, ss in self._offered().items()}

    def _offered(self) -> dict:
        """OP_SCALES less the optional ops no installed method can do."""
        return {op: scales for op, scales in OP_SCALES.items()
                if op not in OPTIONAL or self.candidates(ROLES[op])}


def _version(path) -> tuple:
    try:
        stat = path.stat()
    except OSError:
        return ()
    return (str(path), stat.st_size, stat.st_mtime_ns)
