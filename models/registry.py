"""Which architectures SharpFu knows, how to recognise one from its weights,
and which trained weights ship with it.

As in spandrel, the weights say what they are: `detect` reads the names and
shapes in a state dict and returns the architecture and its
hyper-parameters, so a file needs no side information to be built. The
shipped weights in models/weights/ come in pairs, NAME.safetensors and
NAME.json; the JSON record says what the weights are for (ops, scale, the
method they serve under) and how they were made (command, data, commit,
device, duration, validation numbers).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import drunet, mimo_unet_weights, span
from . import guided_upsampler, matte_refiner
from .loading import WeightsError, load_state_dict

log = logging.getLogger("sharpfu.models")

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# where checkpoints nest their state dict: "model" in the MIMO-UNet release
CONTAINER_KEYS = mimo_unet_weights.CONTAINER_KEYS


@dataclass(frozen=True)
class Architecture:
    name: str
    title: str
    detect: Callable[[dict[str, torch.Tensor]], dict | None]   # hyper-parameters, or None
    build: Callable[..., nn.Module]                              # build(**hyper-parameters)
    receptive_radius: Callable[..., int]                         # in input pixels
    multiple: Callable[..., int] = lambda **_: 1                 # input sides must divide by it


def _detect_span(state: dict[str, torch.Tensor]) -> dict | None:
    needed = ("head.weight", "tail.weight", "fuse.weight", "upsample.weight")
    if not all(key in state for key in needed):
        return None
    channels, colours = state["head.weight"].shape[:2]
    blocks = 1 + max(int(m.group(1)) for key in state
                     for m in [re.match(r"body\.(\d+)\.c1\.weight$", key)] if m)
    outputs = state["upsample.weight"].shape[0]
    scale = round((outputs / colours) ** 0.5)
    if scale * scale * colours != outputs:
        raise WeightsError("SPAN weights with %d output channels for %d colours: not a square "
                           "scale." % (outputs, colours))
    return {"scale": scale, "channels": int(channels), "blocks": blocks, "colours": int(colours)}


def _detect_matte_refiner(state: dict[str, torch.Tensor]) -> dict | None:
    if not all(key in state for key in ("stem.weight", "select.gate.weight", "step.c1.weight")):
        return None
    return {"channels": int(state["down4.0.weight"].shape[0])}


def _detect_guided_upsampler(state: dict[str, torch.Tensor]) -> dict | None:
    if not all(key in state for key in ("guide.2.weight", "detail.0.weight", "log_sigma")):
        return None
    return {"guide": int(state["guide.2.weight"].shape[0]),
            "channels": int(state["detail.0.weight"].shape[0])}

def _detect_drunet(state: dict[str, torch.Tensor]) -> dict | None:
    if not all(key in state for key in ("head.weight", "tail.weight", "downs.0.weight",
                                        "ups.0.weight")):
        return None
    levels = 1 + max(int(m.group(1)) for key in state
                     for m in [re.match(r"downs\.(\d+)\.weight$", key)] if m)
    channels = [int(state["head.weight"].shape[0])] + [
        int(state["downs.%d.weight" % i].shape[0]) for i in range(levels)]

    def count(prefix: str) -> int:
        found = [int(m.group(1)) for key in state
                 for m in [re.match(re.escape(prefix) + r"\.(\d+)\.conv1\.weight$", key)] if m]
        return 1 + max(found) if found else 0
    blocks = [count("encoders.%d" % i) for i in range(levels)] + [count("body")]
    return {"colours": int(state["tail.weight"].shape[0]), "channels": channels,
            "blocks": blocks}


ARCHITECTURES = {
    "span": Architecture(
        name="span", title="SPAN (Swift Parameter-free Attention Network)",
        detect=_detect_span, build=span.SPAN,
        receptive_radius=lambda blocks, **_: span.receptive_radius(blocks)),
    mimo_unet_weights.NAME: Architecture(**mimo_unet_weights.ARCHITECTURE),
    # The refiner runs on the whole working-resolution image, never tiled;
    # its radius is stated for the record.
    "matte-refiner": Architecture(
        name="matte-refiner", title="Mask-guided iterative matte refiner",
        detect=_detect_matte_refiner, build=matte_refiner.MatteRefiner,
        receptive_radius=lambda **_: matte_refiner.RECEPTIVE_RADIUS,
        multiple=lambda **_: matte_refiner.MULTIPLE),
    # The denoiser of blind deconvolution; it runs on canvases the splitting
    # pads to its multiple (server/deblurring/denoiser.py).
    "drunet": Architecture(
        name="drunet", title="DRUNet denoiser (noise-level conditioned U-Net)",
        detect=_detect_drunet, build=drunet.DRUNet,
        receptive_radius=lambda **params: drunet.receptive_radius(**params),
        multiple=lambda channels, **_: 2 ** (len(channels) - 1)),
    "guided-upsampler": Architecture(
        name="guided-upsampler", title="Guided matte upsampler (FeatSharp-style)",
        detect=_detect_guided_upsampler, build=guided_upsampler.GuidedUpsampler,
        receptive_radius=lambda **_: guided_upsampler.GuidedUpsampler.RADIUS),
}


def detect(state: dict[str, torch.Tensor]) -> tuple[Architecture, dict]:
    """The architecture of a state dict and its hyper-parameters."""
    for architecture in ARCHITECTURES.values():
        params = architecture.detect(state)
        if params is not None:
            return architecture, params
    raise WeightsError("These weights match no architecture SharpFu knows (%s); first keys: %s."
                       % (", ".join(ARCHITECTURES), ", ".join(list(state)[:5])))


def build(state: dict[str, torch.Tensor]) -> tuple[nn.Module, Architecture, dict]:
    """An eval-mode network with the weights loaded (strictly: every name and
    shape must match)."""
    architecture, params = detect(state)
    model = architecture.build(**params)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError("The weights look like %s %s but do not fit it: %s" % (
            architecture.name, params, str(error).splitlines()[0]))
    return model.eval(), architecture, params


def load(path: str | Path) -> tuple[nn.Module, Architecture, dict]:
    """Build the network stored in a weights file, on the CPU, in float32.
    Checkpoints may nest their state dict under one of CONTAINER_KEYS."""
    return build(load_state_dict(path, container_keys=CONTAINER_KEYS))


@dataclass(frozen=True)
class Weights:
    """One shipped weights file and its record."""
    path: Path
    record: dict = field(hash=False)

    @property
    def name(self) -> str:
        return self.record["name"]

    @property
    def method(self) -> str:
        """The catalog method these weights serve under (one per flavour,
        covering each scale it has weights for)."""
        return self.record["method"]

    @property
    def scale(self) -> int:
        return int(self.record["scale"])

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES[self.record["architecture"]]

    @property
    def params(self) -> dict:
        return self.record["hyper_parameters"]

    @property
    def receptive_radius(self) -> int:
        return self.architecture.receptive_radius(**self.params)

    @property
    def multiple(self) -> int:
        return self.architecture.multiple(**self.params)

    def load(self) -> nn.Module:
        model, architecture, params = load(self.path)
        if architecture.name != self.record["architecture"] or params != self.params:
            raise WeightsError("%s holds %s %s, but its record says %s %s." % (
                self.path, architecture.name, params, self.record["architecture"], self.params))
        return model


def shipped(directory: str | Path | None = None) -> list[Weights]:
    """Every NAME.safetensors in `directory` that has its NAME.json record,
    sorted by name. A file without a record, or a record naming an unknown
    architecture, is skipped: the server must start even if one is broken."""
    found = []
    for path in sorted(Path(directory or WEIGHTS_DIR).glob("*.safetensors")):
        record_path = path.with_suffix(".json")
        if not record_path.is_file():
            continue
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError) as error:
            log.warning("skipping %s: its record cannot be read (%s)", path.name, error)
            continue
        if isinstance(record, dict) and record.get("architecture") in ARCHITECTURES:
            found.append(Weights(path, record))
    return found
