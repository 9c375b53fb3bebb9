"""The models folder (setting `models_dir`, default <config dir>/models):
the one place the networks a user installs live, whichever way they came.

* Installed by SharpFu: `sharpfu models add FILE` (and its alias
  `install.py --add-model FILE`) and `sharpfu models pull NAME` write a
  pair, NAME.safetensors (the state dict, whatever format it came in) and
  NAME.json (its record: what it is, where it came from, its licence,
  checksums, measured numbers). The record is written last, so a model is
  installed exactly when its record exists; a half-copied file never looks
  installed.
* Copied in by hand: any other weights file in the folder (not below it),
  such as the authors' MIMO-UNetPlus.pkl, is recognised by content when the
  folder is listed and named after its file (the stem, or the whole file
  name if the stem is taken). It has no record: its licence and source are
  unknown.

Every file is read through models/registry.py: safetensors, or
torch.load(weights_only=True); a pickle that needs more is refused, never
unpickled. What a state dict is, is decided there too: SharpFu's own
architectures first, then spandrel's. A file that cannot be used is listed
with the reason, never served, and never stops anything. The catalogue
(models/catalogue.py) installs through `install` as well; adaptation keeps
what it saves in the `adapted/` folder inside (server/adaptation/).
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from . import registry
from .download import sha256_of
from .loading import SAFETENSORS, TORCH_CHECKPOINTS, WeightsError, load_state_dict

log = logging.getLogger("sharpfu.models")

WEIGHT_SUFFIXES = SAFETENSORS + TORCH_CHECKPOINTS
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
RECORD_VERSION = 1


class StoreError(Exception):
    """A store operation that cannot be done; the message says why."""


@dataclass
class Model:
    """One entry of the models folder."""
    name: str
    path: Path                              # the weights file
    record: dict | None                     # None: copied in by hand
    weights: registry.Weights | None        # None: it cannot be used (`problem` says why)
    problem: str = ""

    @property
    def summary(self) -> dict:
        """The record, or for a file copied in by hand what its content says."""
        if self.record is not None:
            return self.record
        found = {"name": self.name, "file": self.path.name, "licence": "unknown (copied into "
                 "the folder by hand)", "source": "file %s in the models folder" % self.path.name}
        if self.weights is not None:
            spec = self.weights.spec
            found.update(task=spec.task, scale=spec.scale,
                         architecture=self.weights.architecture.name,
                         hyper_parameters=self.weights.params,
                         parameters=self.weights.parameters, flavour=spec.flavour)
        else:
            found["problem"] = self.problem
        return found


def identify(state: dict[str, torch.Tensor], source: str = "these weights") -> registry.Loaded:
    try:
        return registry.build(state)
    except WeightsError as error:
        raise StoreError("%s: %s" % (source, error))


def default_folder() -> Path:
    from sharpfu_client import config
    return Path(config.config_dir()) / "models"


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise StoreError("%r cannot name a model: use up to 64 letters, digits, '.', '_', '+' "
                         "or '-', starting with a letter or digit" % name)
    return name


def name_from_file(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", path.stem).strip("-.") or "model"
    return stem[:64]


def _write_atomically(path: Path, write) -> None:
    """write(temporary_path), then rename over `path`: readers see the old
    file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp",
                                             dir=path.parent)
    os.close(descriptor)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o644)    # mkstemp makes it private; weights are not secret
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _refusal(path: Path, error: Exception) -> str:
    """Why a file cannot be used, in words for the user."""
    message = str(error)
    if "Weights only load failed" in message:
        # torch's own text goes on to suggest weights_only=False, the one
        # thing a user must not do with a file that holds code
        return ("%s cannot be loaded safely and was refused: it is a pickle that needs more "
                "than tensors to load, and SharpFu never runs the code a pickle may hold. Ask "
                "for (or convert it to) a .safetensors file, or a .pth that holds only the "
                "state dict."
                % path.name)
    return message


class Store:
    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder).expanduser() if folder else default_folder()
        self._seen: dict[Path, tuple] = {}      # by hand: path -> (size, mtime, Model)

    def weights_path(self, name: str) -> Path:
        return self.folder / (name + ".safetensors")

    def record_path(self, name: str) -> Path:
        return self.folder / (name + ".json")

    # -- reading -------------------------------------------------------------

    def _records(self) -> list[tuple[dict, Path]]:
        found = []
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                log.warning("models folder: skipping %s: unreadable record (%s)", path.name, error)
                continue
            if not isinstance(record, dict) or record.get("store") != RECORD_VERSION \
                    or record.get("name") != path.stem:
                continue     # another file that happens to be JSON
            if not self.weights_path(path.stem).is_file():
                log.warning("models folder: skipping %s: its weights file is missing", path.stem)
                continue
            found.append((record, self.weights_path(path.stem)))
        return found

    def _installed(self, record: dict, path: Path) -> Model:
        try:
            weights = registry.Weights(registry.architecture(record["architecture"]),
                                       dict(record["hyper_parameters"]), path=path,
                                       record=record)
        except KeyError:
            absent = registry.community.why_not()
            return Model(record["name"], path, record, None, "its architecture %s is unknown "
                         "here%s" % (record.get("architecture"),
                                     " (%s)" % absent if absent else ""))
        except (TypeError, ValueError) as error:
            return Model(record["name"], path, record, None, "its record is damaged (%s)" % error)
        return Model(record["name"], path, record, weights)

    def _by_hand(self, path: Path, name: str) -> Model:
        """A file copied in by hand, recognised once per version of it."""
        stat = path.stat()
        known = self._seen.get(path)
        if known and known[:2] == (stat.st_size, stat.st_mtime_ns):
            model = known[2]
            model.name = name
            return model
        if stat.st_size == 0:
            model = Model(name, path, None, None, "the file is empty (an interrupted download?)")
        else:
            try:
                model = Model(name, path, None, registry.Weights.from_file(path))
            except WeightsError as error:
                model = Model(name, path, None, None, _refusal(path, error))
            except (OSError, IndexError, KeyError, AttributeError, TypeError) as error:
                # what torch.load raises on some damaged files
                model = Model(name, path, None, None, "cannot be read as weights: damaged or "
                              "not a checkpoint (%s: %s)" % (type(error).__name__, error))
        self._seen[path] = (stat.st_size, stat.st_mtime_ns, model)
        return model

    def models(self) -> list[Model]:
        """Every entry, installed ones by name, then the files copied in by
        hand by file name; those that cannot be used carry `problem`."""
        installed = [self._installed(record, path) for record, path in self._records()]
        if not self.folder.is_dir():
            return installed
        names = {model.name for model in installed}
        paired = {model.path for model in installed}
        by_hand = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") or not path.is_file() or path in paired:
                continue
            if path.suffix.lower() not in WEIGHT_SUFFIXES:
                if path.suffix.lower() != ".json":    # records, which are not models
                    log.info("models folder: skipping %s: not a weights file (SharpFu reads "
                             "%s)", path.name, ", ".join(WEIGHT_SUFFIXES))
                continue
            name = next((n for n in (path.stem, path.name) if n not in names), None)
            if name is None:
                by_hand.append(Model(path.name, path, None, None,
                                     "a model named %r is installed already" % path.name))
                continue
            names.add(name)
            by_hand.append(self._by_hand(path, name))
        return installed + by_hand

    def records(self) -> list[dict]:
        """The records of the models SharpFu installed, sorted by name."""
        return [record for record, _ in self._records()]

    def names(self) -> set[str]:
        return {model.name for model in self.models()}

    def find(self, name: str) -> Model:
        for model in self.models():
            if model.name == name:
                return model
        raise StoreError("no installed model is named %r (installed: %s)" % (
            name, ", ".join(sorted(self.names())) or "none"))

    def get(self, name: str) -> dict:
        return self.find(name).summary

    def load(self, name: str) -> torch.nn.Module:
        model = self.find(name)
        if model.weights is None:
            raise StoreError("%s cannot be used: %s" % (name, model.problem))
        return model.weights.load()

    def signature(self) -> tuple:
        """Changes whenever a file in the folder is added, removed or replaced."""
        if not self.folder.is_dir():
            return ()
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                            for p in self.folder.iterdir()
                            if p.is_file() and not p.name.startswith(".")))

    # -- changing ------------------------------------------------------------

    def install(self, name: str, state: dict[str, torch.Tensor], record: dict,
                replace: bool = False) -> dict:
        """Write a state dict and its record (record last). `record` holds
        what the caller knows (source, licence, title, notes, ...); what the
        weights say is added here."""
        check_name(name)
        if not replace and name in self.names():
            raise StoreError("a model named %r is installed already; remove it first "
                             "(sharpfu models remove %s) or choose another name" % (name, name))
        loaded = identify(state, name)
        spec = loaded.spec
        from safetensors.torch import save_file
        tensors = {key: value.detach().contiguous().clone() for key, value in state.items()}
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.weights_path(name), lambda p: save_file(tensors, str(p)))
        full = {"store": RECORD_VERSION, "name": name,
                "title": record.get("title") or name,
                "task": spec.task, "scale": spec.scale,
                "architecture": loaded.architecture.name,
                "hyper_parameters": loaded.params, "flavour": spec.flavour,
                "parameters": sum(p.numel() for p in loaded.model.parameters()),
                "licence": record.get("licence") or "unknown (not stated by the user)",
                "source": record.get("source") or "unknown",
                "source_sha256": record.get("source_sha256"),
                "sha256": sha256_of(self.weights_path(name)),
                "size": self.weights_path(name).stat().st_size,
                "added": datetime.datetime.now().isoformat(timespec="seconds"),
                "notes": record.get("notes", ""),
                "measured": record.get("measured", {})}
        for key in ("catalogue", "attribution", "description"):
            if key in record:
                full[key] = record[key]
        _write_atomically(self.record_path(name),
                          lambda p: p.write_text(json.dumps(full, indent=2) + "\n"))
        return full

    def add(self, path: str | Path, name: str | None = None, licence: str | None = None,
            source: str | None = None) -> dict:
        """Install a weights file the user brought."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise StoreError("%s is not a file" % path)
        if path.suffix.lower() not in WEIGHT_SUFFIXES:
            raise StoreError("%s: not a weights file; SharpFu adds .safetensors files, and "
                             "PyTorch checkpoints (%s) that hold only weights" % (
                                 path.name, ", ".join(TORCH_CHECKPOINTS)))
        if path.resolve().parent == self.folder.resolve():
            raise StoreError("%s is in the models folder already, and is used as it is (as %r). "
                             "To give it a record, move it out of the folder and add it from "
                             "there." % (path.name, next((m.name for m in self.models()
                                                          if m.path == path), path.stem)))
        try:
            state = load_state_dict(path, container_keys=registry.CONTAINER_KEYS)
        except WeightsError as error:
            raise StoreError(_refusal(path, error))
        name = check_name(name or name_from_file(path))
        source_sha256 = sha256_of(path)
        if name in self.names():
            existing = self.find(name)
            if existing.record and existing.record.get("source_sha256") == source_sha256:
                return dict(existing.record, again=True)      # the same file again
        return self.install(name, state, {"source": source or "file %s" % path.name,
                                          "source_sha256": source_sha256, "licence": licence})

    def remove(self, name: str) -> dict:
        model = self.find(name)
        summary = model.summary
        if model.record is not None:
            # the record first: from then on the model is not installed
            self.record_path(name).unlink()
        model.path.unlink(missing_ok=True)
        return summary

    def set_measured(self, name: str, measured: dict) -> None:
        record = self.find(name).record
        if record is None:
            raise StoreError("%s has no record (it was copied in by hand)" % name)
        record["measured"] = measured
        _write_atomically(self.record_path(name),
                          lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))
