"""spandrel's architectures (MIT; ESRGAN and Real-ESRGAN, Compact, SPAN in
its training layout, SwinIR, HAT, DAT, NAFNet, SCUNet and the rest) as
descriptors, so that models/registry.py recognises and loads community
model files through the same path as SharpFu's own networks, after them.

Each of spandrel's architectures becomes one descriptor named
"spandrel:<its id>": `detect` is spandrel's own key test (cheap), `load`
has spandrel build the network from the state dict. Weights are always
read by models/loading.py (safetensors, or torch.load(weights_only=True)),
never by spandrel's own file loading, which would run TorchScript.

What the server needs besides (`Spec`) is known exactly for the two
convolutional architectures whose reach is bounded and small (SPAN,
Compact): their tiles are exact. ESRGAN's reach runs to hundreds of pixels
and transformers attend across windows: they get a margin that leaves no
seam visible after the tiler's cross-fade, not an exact one
(`exact_tiles` False), larger where spandrel itself discourages tiling.
"""
from __future__ import annotations

import json
import logging
import threading

import torch
from torch import nn

from .. import community
from ..descriptor import Architecture, Spec
from ..loading import WeightsError

log = logging.getLogger("sharpfu.models")

PREFIX = "spandrel:"
LICENCE = "MIT (spandrel's implementation; see the architecture's own notice in spandrel)"

# Input pixels each output pixel depends on, where the reach is bounded:
# SPAN: conv_1, 6 blocks x 3, conv_2, the upsampler's 3x3. Compact: its
# num_conv 3x3 convolutions plus the first and the last.
EXACT_RADIUS = {"SPAN": lambda hp: 21, "Compact": lambda hp: int(hp.get("num_conv", 16)) + 2}
# Where the reach is unbounded or unknown: context that hides the seams.
MARGIN, DISCOURAGED_MARGIN = 32, 64
# Working memory per output pixel (float32), rounded up from the feature
# maps alive at once: SPAN about a dozen maps of 48-52 channels at the input
# size, ESRGAN's dense blocks up to 192 channels, Compact 3 of 64; the rest
# a figure that errs high (transformers keep attention maps per window).
BYTES_PER_PIXEL = {"SPAN": 3000.0, "Compact": 1000.0, "ESRGAN": 6000.0}
DEFAULT_BYTES_PER_PIXEL = 20000.0


class SpandrelNetwork(nn.Module):
    """A network spandrel built, called as spandrel calls it (some
    architectures take their input or return their output in their own way;
    spandrel's descriptor pads to the architecture's size requirements and
    clamps): image in [0, 1], image out."""

    def __init__(self, descriptor):
        super().__init__()
        self.net = descriptor.model
        self.descriptor = descriptor   # not a module attribute: spandrel's own object

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.descriptor(x)


def _plain(value):
    """A hyper-parameter as JSON holds it, or None if it is not data (a
    class, a function)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def _params(descriptor) -> dict:
    hyper = getattr(descriptor.model, "hyperparameters", {}) or {}
    plain = {key: _plain(value) for key, value in hyper.items()}
    size = descriptor.size_requirements
    return {"scale": int(descriptor.scale), "purpose": descriptor.purpose,
            "tags": list(descriptor.tags), "multiple": int(size.multiple_of),
            "minimum": int(size.minimum), "tiling": descriptor.tiling.name.lower(),
            "half": bool(descriptor.supports_half),
            "hyperparameters": {k: v for k, v in plain.items() if v is not None}}


def _describe(support):
    arch_id = support.architecture.id
    name = PREFIX + arch_id

    def detect(state: dict) -> dict | None:
        return {} if support.detect(state) else None

    def load(state: dict) -> tuple[nn.Module, dict]:
        module = community.spandrel()
        missing = community.needs(arch_id)
        if missing:
            raise WeightsError("they are a %s model, which needs %s; it is not usable in "
                               "SharpFu's environment (%s)." % (
                                   arch_id, " and ".join(sorted(missing)),
                                   community.unavailable()[arch_id]))
        try:
            descriptor = support.architecture.load(dict(state))
        except (RuntimeError, KeyError, ValueError, IndexError, TypeError,
                AttributeError) as error:
            raise WeightsError("they look like %s but do not load: %s: %s" % (
                arch_id, type(error).__name__, str(error).splitlines()[0] if str(error) else ""))
        if not isinstance(descriptor, module.ImageModelDescriptor):
            raise WeightsError("they are a %s model (%s), not an image-to-image network that "
                               "SharpFu can run." % (arch_id, type(descriptor).__name__))
        if descriptor.input_channels != 3 or descriptor.output_channels != 3:
            raise WeightsError("they are a %s model with %d input and %d output channels; "
                               "SharpFu runs RGB-to-RGB networks." % (
                                   arch_id, descriptor.input_channels,
                                   descriptor.output_channels))
        if descriptor.size_requirements.square or descriptor.purpose == "FaceSR":
            raise WeightsError("they are a %s model for %s inputs, not for whole photos of any "
                               "size." % (arch_id, "square face" if descriptor.purpose == "FaceSR"
                                          else "square"))
        descriptor.model.eval()
        return SpandrelNetwork(descriptor), _params(descriptor)

    def build(**params) -> nn.Module:
        raise WeightsError("spandrel builds %s networks from their weights, not from "
                           "hyper-parameters alone" % arch_id)

    def spec(scale: int, tags=(), multiple: int = 1, tiling: str = "supported",
             half: bool = True, hyperparameters=None, **_) -> Spec:
        hyper = hyperparameters or {}
        exact = arch_id in EXACT_RADIUS
        radius = (EXACT_RADIUS[arch_id](hyper) if exact else
                  DISCOURAGED_MARGIN if tiling != "supported" else MARGIN)
        return Spec(task="upscale" if scale > 1 else "deblur", scale=scale, colours=3,
                    receptive_radius=radius,
                    bytes_per_pixel=BYTES_PER_PIXEL.get(arch_id, DEFAULT_BYTES_PER_PIXEL),
                    multiple=max(1, multiple),
                    flavour="%s%s" % (arch_id, " (%s)" % ", ".join(tags) if tags else ""),
                    exact_tiles=exact, half_precision=half)

    return Architecture(name=name, title="%s (through spandrel)" % arch_id, licence=LICENCE,
                        detect=detect, build=build, spec=spec, load=load, external="spandrel")


_lock = threading.Lock()
_architectures: list[Architecture] | None = None
_why_not = ""


def architectures() -> list[Architecture]:
    """spandrel's architectures in spandrel's own order of detection; none,
    with the reason logged once (`why_not`), if spandrel is not installed or
    does not import."""
    global _architectures, _why_not
    with _lock:
        if _architectures is not None:
            return _architectures
        try:
            module = community.spandrel()
        except Exception as error:  # noqa: BLE001 - absent or broken: SharpFu runs on
            _why_not = "spandrel is not usable (%s: %s)" % (type(error).__name__, error)
            log.warning("community models cannot be loaded: %s", _why_not)
            _architectures = []
            return _architectures
        _architectures = [_describe(support)
                          for support in module.MAIN_REGISTRY.architectures("detection")]
        return _architectures


def why_not() -> str:
    """Why spandrel's architectures are missing ("" when they are not)."""
    architectures()
    return _why_not
