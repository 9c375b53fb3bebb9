"""Which architectures SharpFu knows, how a weights file becomes a running
network, and which trained weights ship with SharpFu.

As in spandrel, the weights say what they are: each architecture's
descriptor (models/architectures/) reads the names and shapes in a state
dict and returns its hyper-parameters, so a file needs no side information
to be built. The shipped weights in models/weights/ come in pairs,
NAME.safetensors and NAME.json; the JSON record says what the weights are
for (ops, scale, the method they serve under) and how they were made
(command, data, commit, device, duration, validation numbers).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .architectures import drunet, matte, mimo_unet, span
from .descriptor import Architecture, Spec
from .loading import WeightsError, load_state_dict

log = logging.getLogger("sharpfu.models")

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ARCHITECTURES = {a.name: a for a in (span.ARCHITECTURE, mimo_unet.ARCHITECTURE,
                                     matte.REFINER, matte.UPSAMPLER, drunet.ARCHITECTURE)}
# where checkpoints nest their state dict: "model" in the MIMO-UNet release
CONTAINER_KEYS = ("model",)


def detect(state: dict[str, torch.Tensor]) -> tuple[Architecture, dict]:
    """The architecture of a state dict and its hyper-parameters."""
    for architecture in ARCHITECTURES.values():
        params = architecture.detect(state)
        if params is not None:
            return architecture, params
    raise WeightsError("These weights match no architecture SharpFu knows (%s); first keys: %s."
                       % (", ".join(ARCHITECTURES), ", ".join(list(state)[:5])))


@dataclass
class Loaded:
    """A network built from its weights: eval mode, on the CPU, float32."""
    model: nn.Module
    architecture: Architecture
    params: dict

    @property
    def spec(self) -> Spec:
        return self.architecture.spec(**self.params)


def build(state: dict[str, torch.Tensor]) -> Loaded:
    """The network the state dict is for, its weights loaded strictly: every
    name and shape must match."""
    # DataParallel saves every name under "module."
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    architecture, params = detect(state)
    model = architecture.build(**params)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError("The weights look like %s (%s) but do not fit it: %s" % (
            architecture.title, architecture.spec(**params).flavour or params,
            str(error).splitlines()[0]))
    return Loaded(model.eval(), architecture, params)


def load(path: str | Path) -> Loaded:
    """The network stored in a weights file (safetensors, or a checkpoint
    read by torch.load(weights_only=True)). Checkpoints may nest their state
    dict under one of CONTAINER_KEYS. WeightsError, saying why, for anything
    that cannot be used."""
    try:
        return build(load_state_dict(path, container_keys=CONTAINER_KEYS))
    except WeightsError as error:
        raise WeightsError("%s: %s" % (Path(path).name, error)) from None


@dataclass(eq=False)
class Weights:
    """One set of weights a method serves: a file with its hyper-parameters
    known (detected, or from its record), or weights held in memory (an
    adapted network's). `record` is the JSON record shipped weights have."""
    architecture: Architecture
    params: dict
    path: Path | None = None
    record: dict | None = field(default=None, repr=False)
    state: dict | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return (self.record or {}).get("name") or (self.path.stem if self.path else "in memory")

    @property
    def spec(self) -> Spec:
        return self.architecture.spec(**self.params)

    @property
    def parameters(self) -> int:
        if self.record and self.record.get("parameters"):
            return int(self.record["parameters"])
        with torch.device("meta"):
            return sum(p.numel() for p in self.architecture.build(**self.params).parameters())

    def load(self) -> nn.Module:
        """The network, eval mode, CPU, float32; refused if the file no
        longer holds what it held when it was recognised."""
        loaded = build(self.state) if self.state is not None else load(self.path)
        if loaded.architecture is not self.architecture or loaded.params != self.params:
            raise WeightsError("%s now holds %s %s, not %s %s." % (
                self.path or "the weights", loaded.architecture.name, loaded.params,
                self.architecture.name, self.params))
        return loaded.model

    @classmethod
    def from_file(cls, path: str | Path) -> "Weights":
        """Weights recognised by content (the file is read and checked to
        load strictly)."""
        loaded = load(path)
        return cls(loaded.architecture, loaded.params, path=Path(path))


def shipped(directory: str | Path | None = None) -> list[Weights]:
    """Every NAME.safetensors in `directory` (default models/weights/) that
    has its NAME.json record, sorted by name. A file without a record, or a
    record naming an unknown architecture, is skipped: the server must start
    even if one is broken."""
    found = []
    for path in sorted(Path(directory or WEIGHTS_DIR).glob("*.safetensors")):
        record_path = path.with_suffix(".json")
        if not record_path.is_file():
            continue
        try:
            record = json.loads(record_path.read_text())
            architecture = ARCHITECTURES[record["architecture"]]
            params = dict(record["hyper_parameters"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("skipping %s: its record cannot be used (%s: %s)", path.name,
                        type(error).__name__, error)
            continue
        found.append(Weights(architecture, params, path=path, record=record))
    return found
