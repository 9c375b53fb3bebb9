"""Importing spandrel (MIT), whose architectures recognise and build
community model files (models/architectures/community.py puts them behind
SharpFu's descriptor interface, so models/registry.py loads them).

spandrel without torchvision
----------------------------
spandrel imports every architecture when it is imported, and two of them
import torchvision at module level (LaMa: `rotate` and `InterpolationMode`
for its rotation trick; RestoreFormer: `normalize`). Where no torchvision
matches the installed PyTorch (PyPI's Linux x86-64 torchvision is the CUDA
build: its C++ ops link libtorch_cuda.so, which a CPU PyTorch lacks, and
torchvision then fails in its own import with "operator torchvision::nms
does not exist"), install.py leaves torchvision out, and `import spandrel`
alone would fail. So `spandrel()` imports it with stand-ins for torchvision
that exist only while spandrel's modules are being imported:

* a finder at the head of sys.meta_path answers `torchvision` and its
  submodules with empty modules whose every attribute is a `Missing`
  placeholder (attribute access works, so class bodies and default
  arguments that name `InterpolationMode.BILINEAR` still define; calling
  one raises MissingPackage naming torchvision);
* right after the import the finder is removed and every `torchvision*`
  entry leaves sys.modules: no other code ever sees a torchvision that is
  not there, `import torchvision` fails as it should.

The architectures whose modules kept a placeholder are the ones that need
the missing package (`needs`), and `describe` refuses their models at once
with a message naming it. With a working torchvision none of this happens.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import threading
import types

log = logging.getLogger("sharpfu.models")

_lock = threading.Lock()
_spandrel = None
_needs: dict[str, set[str]] = {}
_absent: dict[str, str] = {}      # package -> why it is not usable


class MissingPackage(RuntimeError):
    """Code that needs a package which is not installed was called."""


class Missing:
    """A placeholder for a name from an absent package: any attribute is
    another placeholder; calling it raises MissingPackage."""

    def __init__(self, package: str, name: str):
        self._package, self._name = package, name

    def __getattr__(self, attribute: str) -> "Missing":
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return Missing(self._package, "%s.%s" % (self._name, attribute))

    def __call__(self, *args, **kwargs):
        raise MissingPackage("%s needs %s, which is not installed in SharpFu's environment"
                             % (self._name, self._package))

    def __repr__(self) -> str:
        return "<missing %s>" % self._name


class _StandInModule(types.ModuleType):
    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return Missing(self.__name__.split(".")[0], "%s.%s" % (self.__name__, attribute))


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, package: str):
        self.package = package

    def find_spec(self, name, path=None, target=None):
        if name == self.package or name.startswith(self.package + "."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def _usable(package: str) -> str | None:
    """None if `package` imports; else why not."""
    try:
        importlib.import_module(package)
        return None
    except ModuleNotFoundError:
        return "not installed"
    except Exception as error:  # noqa: BLE001 - a broken install raises anything
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
        return "installed but it does not import (%s: %s)" % (
            type(error).__name__, str(error).splitlines()[0] if str(error) else "")


def spandrel():
    """The spandrel module, imported once (with stand-ins for torchvision if
    it is not usable; see the module's docstring)."""
    global _spandrel
    with _lock:
        if _spandrel is not None:
            return _spandrel
        why = _usable("torchvision")
        if why is None:
            _spandrel = importlib.import_module("spandrel")
            return _spandrel
        _absent["torchvision"] = why
        finder = _StandInFinder("torchvision")
        sys.meta_path.insert(0, finder)
        try:
            module = importlib.import_module("spandrel")
        finally:
            sys.meta_path.remove(finder)
            for name in [n for n in sys.modules
                         if n == "torchvision" or n.startswith("torchvision.")]:
                del sys.modules[name]
        tainted = {name for name, mod in list(sys.modules.items())
                   if name.startswith("spandrel.") and mod is not None
                   and any(isinstance(v, Missing) for v in vars(mod).values())}
        for support in module.MAIN_REGISTRY.architectures():
            home = type(support.architecture).__module__
            if any(t == home or t.startswith(home + ".") for t in tainted):
                _needs.setdefault(support.architecture.id, set()).add("torchvision")
        log.info("spandrel imported without torchvision (%s); unavailable: %s", why,
                 ", ".join(sorted(_needs)) or "none")
        _spandrel = module
        return module


def needs(architecture: str) -> set[str]:
    """The absent packages that running an architecture of spandrel needs."""
    spandrel()
    return set(_needs.get(architecture, ()))


def unavailable() -> dict[str, str]:
    """spandrel architecture id -> a sentence saying which package it lacks."""
    spandrel()
    return {arch: ", ".join("%s (%s)" % (p, _absent.get(p, "absent")) for p in sorted(packages))
            for arch, packages in _needs.items()}
