"""Which architectures SharpFu knows, how a weights file becomes a running
network, and which trained weights ship with SharpFu.

As in spandrel, the weights say what they are: each architecture's
descriptor (models/architectures/) reads the names and shapes in a state
dict and returns its hyper-parameters, so a file needs no side information
to be built. SharpFu's own architectures are asked first, then spandrel's
(models/architectures/community.py), imported only when a state dict is
none of SharpFu's: `load` is the one path by which every weights file
becomes a network, SharpFu's shipped weights, the official weights the
catalogue converts, users' community models and adapted networks alike.

The shipped weights in models/weights/ come in pairs, NAME.safetensors and
NAME.json; the JSON record says what the weights are for (ops, scale, the
method they serve under) and how they were made (command, data, commit,
device, duration, validation numbers).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .architectures import community, drunet, isnet, matte, mimo_unet, span, span_official
from .descriptor import Architecture, Spec
from .loading import WeightsError, load_state_dict

log = logging.getLogger("sharpfu.models")

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# SharpFu's own, asked first
ARCHITECTURES = {a.name: a for a in (span.ARCHITECTURE, span_official.ARCHITECTURE,
                                     mimo_unet.ARCHITECTURE, matte.REFINER, matte.UPSAMPLER,
                                     drunet.ARCHITECTURE, isnet.ARCHITECTURE)}
# Where checkpoints nest their state dict: "model" in the MIMO-UNet release,
# "params_ema" and "params" in BasicSR's, the others in community releases.
CONTAINER_KEYS = ("params_ema", "params-ema", "params", "model_state_dict", "state_dict",
                  "model", "net", "net_g")
# Prefixes a whole state dict may carry: DataParallel's, some GAN trainers'.
PREFIXES = ("module.", "netG.")


def architectures() -> list[Architecture]:
    """Every architecture, in the order they are asked: SharpFu's, then
    spandrel's (importing spandrel)."""
    return list(ARCHITECTURES.values()) + community.architectures()


def architecture(name: str) -> Architecture:
    """The architecture a record names; KeyError if none is (spandrel's, when
    spandrel is absent)."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    if name.startswith(community.PREFIX):
        for found in community.architectures():
            if found.name == name:
                return found
    raise KeyError(name)


def _unprefixed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            return {key[len(prefix):]: value for key, value in state.items()}
    return state


def detect(state: dict[str, torch.Tensor]) -> tuple[Architecture, dict]:
    """The architecture of a state dict and its hyper-parameters (for
    spandrel's architectures, what `load` reads: {} until then)."""
    state = _unprefixed(state)
    for found in ARCHITECTURES.values():
        params = found.detect(state)
        if params is not None:
            return found, params
    for found in community.architectures():
        if found.detect(state) is not None:
            return found, {}
    why = community.why_not()
    raise WeightsError("These weights match no architecture SharpFu knows (%s%s); first keys: "
                       "%s." % (", ".join(ARCHITECTURES), ", nor spandrel's" if not why else
                                "; %s, so community architectures were not tried" % why,
                                ", ".join(list(state)[:5])))


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
    state = _unprefixed(state)
    architecture, params = detect(state)
    if architecture.load is not None:
        model, params = architecture.load(state)
        return Loaded(model.eval(), architecture, params)
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
    counted: int | None = field(default=None, repr=False)    # parameters, once counted

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
        if self.counted is None:
            if self.architecture.load is not None:     # built from its weights only
                self.counted = sum(p.numel() for p in self.load().parameters())
            else:
                with torch.device("meta"):
                    self.counted = sum(p.numel() for p in
                                       self.architecture.build(**self.params).parameters())
        return self.counted

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
        return cls(loaded.architecture, loaded.params, path=Path(path),
                   counted=sum(p.numel() for p in loaded.model.parameters()))


def shipped(directory: str | Path | None = None) -> list[Weights]:
    """Every NAME.safetensors in `directory` (default models/weights/) that
    has its NAME.json record, sorted by name. A file without a record, or a
    record naming an unknown architecture, is skipped: the server must start
    even if one is broken."""
    weights = []
    for path in sorted(Path(directory or WEIGHTS_DIR).glob("*.safetensors")):
        record_path = path.with_suffix(".json")
        if not record_path.is_file():
            continue
        try:
            record = json.loads(record_path.read_text())
            found = architecture(record["architecture"])
            params = dict(record["hyper_parameters"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("skipping %s: its record cannot be used (%s: %s)", path.name,
                        type(error).__name__, error)
            continue
        weights.append(Weights(found, params, path=path, record=record))
    return weights
