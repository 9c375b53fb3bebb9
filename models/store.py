"""The model store: networks the user installed, in the models folder
(setting `models_dir`, default <config dir>/models).

Each installed model is a pair, NAME.safetensors (its state dict, whatever
format it came in) and NAME.json (its record: what it is, where it came
from, its licence, checksums, measured numbers). The record is written
last, so a model is installed exactly when its record exists; a half-copied
file never looks installed. Files come in only through models/loading.py
(safetensors, or torch.load(weights_only=True)): a pickle that needs more
is refused, never unpickled.

What a state dict is, is decided by SharpFu's own architectures first
(models/registry.py: its SPAN, MIMO-UNet, matting networks), then by
spandrel's (models/community.py): ESRGAN and Real-ESRGAN, Compact, SPAN,
SwinIR, HAT, DAT, NAFNet, SCUNet and the rest. The catalogue
(models/catalogue.py) installs through `install` too.
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

from . import community, registry
from .download import sha256_of
from .loading import SAFETENSORS, TORCH_CHECKPOINTS, WeightsError, load_state_dict

log = logging.getLogger("sharpfu.models")

ADDABLE = SAFETENSORS + (".pth", ".pt", ".ckpt")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
RECORD_VERSION = 1


class StoreError(Exception):
    """A store operation that cannot be done; the message says why."""


@dataclass
class Identified:
    """What a state dict holds."""
    loader: str          # "sharpfu" (models/registry.py) or "spandrel"
    architecture: str    # the registry's name or spandrel's id
    task: str            # "upscale", "restore", "matte"
    scale: int
    parameters: int
    hyper_parameters: dict
    tags: list


def identify(state: dict[str, torch.Tensor], source: str = "these weights") -> Identified:
    """SharpFu's own architectures first, then spandrel's."""
    try:
        architecture, params = registry.detect(state)
    except WeightsError:
        architecture = None
    if architecture is not None:
        model, _, _ = registry.build(state)
        scale = int(params.get("scale", 1))
        task = ("upscale" if scale > 1 else "restore") if architecture.name in (
            "span", "mimo-unet") else "matte"
        return Identified("sharpfu", architecture.name, task, scale,
                          sum(p.numel() for p in model.parameters()), params, [])
    described = community.describe(state, source)
    return Identified("spandrel", described.architecture, described.task, described.scale,
                      described.parameters, {}, described.tags)


def build(record: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The eval-mode network of an installed model (CPU, float32)."""
    if record.get("loader") == "sharpfu":
        model, architecture, params = registry.build(state)
        if architecture.name != record["architecture"]:
            raise WeightsError("%s holds %s weights, its record says %s"
                               % (record["name"], architecture.name, record["architecture"]))
        return model
    described = community.describe(state, record.get("name", "these weights"))
    if described.architecture != record["architecture"] or described.scale != record["scale"]:
        raise WeightsError("%s holds a %dx %s, its record says a %dx %s" % (
            record["name"], described.scale, described.architecture, record["scale"],
            record["architecture"]))
    return described.model


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


class Store:
    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder).expanduser() if folder else default_folder()

    def weights_path(self, name: str) -> Path:
        return self.folder / (name + ".safetensors")

    def record_path(self, name: str) -> Path:
        return self.folder / (name + ".json")

    # -- reading -------------------------------------------------------------

    def records(self) -> list[dict]:
        """Every installed model's record, sorted by name; broken ones are
        skipped with a log line."""
        found = []
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                log.warning("model store: skipping %s: unreadable record (%s)", path.name, error)
                continue
            if not isinstance(record, dict) or record.get("store") != RECORD_VERSION \
                    or record.get("name") != path.stem:
                continue     # another file that happens to be JSON (a shipped weights record)
            if not self.weights_path(path.stem).is_file():
                log.warning("model store: skipping %s: its weights file is missing", path.stem)
                continue
            found.append(record)
        return found

    def names(self) -> set[str]:
        return {record["name"] for record in self.records()}

    def get(self, name: str) -> dict:
        for record in self.records():
            if record["name"] == name:
                return record
        raise StoreError("no installed model is named %r (installed: %s)" % (
            name, ", ".join(sorted(self.names())) or "none"))

    def load(self, name: str) -> torch.nn.Module:
        record = self.get(name)
        return build(record, load_state_dict(self.weights_path(name)))

    # -- changing ------------------------------------------------------------

    def install(self, name: str, state: dict[str, torch.Tensor], record: dict,
                replace: bool = False) -> dict:
        """Write a state dict and its record (record last). `record` holds
        what the caller knows (source, licence, title, notes, ...); what the
        weights say is added here."""
        check_name(name)
        if not replace and self.record_path(name).exists():
            raise StoreError("a model named %r is installed already; remove it first "
                             "(sharpfu models remove %s) or choose another name" % (name, name))
        identified = identify(state, name)
        from safetensors.torch import save_file
        tensors = {key: value.detach().contiguous().clone() for key, value in state.items()}
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.weights_path(name), lambda p: save_file(tensors, str(p)))
        full = {"store": RECORD_VERSION, "name": name,
                "title": record.get("title") or name,
                "task": identified.task, "scale": identified.scale,
                "loader": identified.loader, "architecture": identified.architecture,
                "hyper_parameters": identified.hyper_parameters, "tags": identified.tags,
                "parameters": identified.parameters,
                "licence": record.get("licence") or "unknown (not stated by the user)",
                "source": record.get("source") or "unknown",
                "source_sha256": record.get("source_sha256"),
                "sha256": sha256_of(self.weights_path(name)),
                "size": self.weights_path(name).stat().st_size,
                "added": datetime.datetime.now().isoformat(timespec="seconds"),
                "notes": record.get("notes", ""),
                "measured": record.get("measured", {})}
        for key in ("catalogue", "preference", "attribution", "description"):
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
        if path.suffix.lower() not in ADDABLE:
            raise StoreError("%s: SharpFu adds .safetensors files, and .pth/.pt/.ckpt files "
                             "that hold only weights (other formats: %s are read too by the "
                             "older --add-model)" % (path.name, ", ".join(TORCH_CHECKPOINTS)))
        try:
            state = load_state_dict(path, container_keys=community.CONTAINER_KEYS)
        except WeightsError as error:
            message = str(error)
            if "Weights only load failed" in message or "holds more than weights" in message:
                message = ("%s was refused: it is a pickle that needs more than tensors to "
                           "load, and SharpFu never runs the code a pickle may hold. Ask for "
                           "(or convert it to) a .safetensors file, or a .pth that holds only "
                           "the state dict." % path.name)
            raise StoreError(message)
        name = check_name(name or name_from_file(path))
        try:
            return self.install(name, state, {"source": source or "file %s" % path.name,
                                              "source_sha256": sha256_of(path),
                                              "licence": licence})
        except WeightsError as error:
            raise StoreError(str(error))

    def remove(self, name: str) -> dict:
        record = self.get(name)
        # the record first: from then on the model is not installed
        self.record_path(name).unlink()
        self.weights_path(name).unlink(missing_ok=True)
        return record

    def set_measured(self, name: str, measured: dict) -> None:
        record = self.get(name)
        record["measured"] = measured
        _write_atomically(self.record_path(name),
                          lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))
