"""MIMO-UNet deblurring as catalog methods: SharpFu's own trained weights
(models/weights/, with their JSON record) and the authors' checkpoints that
users put in their models folder (server/models_folder.py).

One class serves both, because what is particular to MIMO-UNet is the same
for both: the result is the last of three outputs, inputs are padded to
multiples of 4 by reflection (models/mimo_unet_weights.Restorer), tiles must
start on multiples of 4, and the tiler's margin is the network's effective
reach rather than its far larger theoretical one.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from models import mimo_unet, mimo_unet_weights, registry

from . import ImageMethod, deblur_rule

log = logging.getLogger("sharpfu.methods")

# Working memory per input pixel at `channels` (float32, inference): measured
# peak growth of the process over the weights, for 512x512 to 1024x1024
# inputs on the CPU, rounded up (docs/MODELS.md).
BYTES_PER_PIXEL_PER_CHANNEL = 110.0


class MimoUNetMethod(ImageMethod):
    kind = "network"
    rgb_only = True
    ops = ("deblur", "sharpen")
    scales = (1,)
    # Nearest-neighbour halving takes the even pixels: only shifts by
    # multiples of 4 leave the network's output unchanged.
    alignment = mimo_unet.MULTIPLE

    def __init__(self, path: Path, params: dict, name: str, title: str, description: str,
                 source: str, record: dict | None = None):
        super().__init__()
        self.path, self.params, self.record = Path(path), dict(params), record
        self.name, self.title, self.description, self.source = name, title, description, source
        self.margin = mimo_unet_weights.receptive_radius(**params)
        self.bytes_per_pixel = BYTES_PER_PIXEL_PER_CHANNEL * params["channels"]
        self.parameters = parameter_count(**params)
        self.preference = _preference(self.parameters, record, self.path)
        self.model: torch.nn.Module | None = None
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def info(self) -> dict:
        info = super().info()
        info["weights"] = {"file": self.path.name, "architecture": mimo_unet_weights.NAME,
                           "flavour": mimo_unet_weights.flavour(**self.params),
                           "hyper_parameters": self.params, "parameters": self.parameters}
        validation = (self.record or {}).get("validation")
        if validation:
            info["weights"]["validation"] = {
                case: {key: round(v[key], 2) for key in ("network", "blurry_input", "unsharp")
                       if key in v}
                for case, v in validation.items() if isinstance(v, dict) and "network" in v}
        return info

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        model, params = mimo_unet_weights.load(self.path)
        if params != self.params:
            raise RuntimeError("%s changed since the server started: it now holds %s %s"
                               % (self.path, mimo_unet_weights.NAME, params))
        model = model.to(device=device, dtype=dtype)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model, self.device, self.dtype = model, device, dtype
        self.loaded = True
        log.info("loaded %s (%s, %s) on %s in %s", self.name, self.path.name,
                 mimo_unet_weights.flavour(**self.params), device,
                 str(dtype).replace("torch.", ""))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        # The residual output can overshoot a little at hard edges; values
        # outside [0, 1] mean nothing here.
        return self.model(x).float().clamp_(0.0, 1.0)


def parameter_count(channels: int, blocks: int) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in mimo_unet.MIMOUNet(channels, blocks).parameters())


def _preference(parameters: int, record: dict | None, path: Path) -> float:
    """Where the catalog ranks this deblurrer when none is named (the highest
    first; classical methods stand at 0): by what it measured on the
    deblurring benchmark's cases (server/methods/deblur_rule.py), from a
    measurement beside its file or its record's validation. A user's
    checkpoint never measured here ranks below every measured deblurrer and
    above the unsharp mask, the bigger first (MIMO-UNet+ before MIMO-UNet).
    SharpFu's own weights rank above the unsharp mask only if they measured
    ahead of both the blurry input and the unsharp mask on every case."""
    return deblur_rule.preference(deblur_rule.measured(path, record), parameters / 1e9)


def validated_better(record: dict) -> bool:
    """True if, on every validation case of the record, the network's mean
    PSNR is above the blurry input's and the unsharp mask's."""
    cases = deblur_rule.measured(None, record)
    return bool(cases) and deblur_rule.ahead_of_baselines(cases)


def shipped(directory: str | Path | None = None) -> list[MimoUNetMethod]:
    """SharpFu's own MIMO-UNet weights: the registry's shipped weights
    (models/weights/NAME.safetensors with its NAME.json record) of this
    architecture. A broken record is skipped with a log line: the server must
    start regardless."""
    methods = []
    for weights in registry.shipped(directory):
        if weights.architecture.name != mimo_unet_weights.NAME:
            continue
        record = weights.record
        try:
            params = {"channels": int(record["hyper_parameters"]["channels"]),
                      "blocks": int(record["hyper_parameters"]["blocks"])}
            methods.append(MimoUNetMethod(weights.path, params, record["method"],
                                          record["title"], record["description"],
                                          record["source"], record))
        except (KeyError, TypeError, ValueError) as error:
            log.warning("not offering %s: %s: %s", weights.path.stem, type(error).__name__,
                        error)
    return methods
