"""Trained networks as catalog methods.

Each method is one flavour of a network (the registry's `method` field), with
a set of weights per scale: `span` upscales 2x with span-x2 and 4x with
span-x4. Weights are read lazily, on the first job that needs them, through
models/loading.py (safetensors or weights-only checkpoints, nothing looser).
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from models import registry

from . import ImageMethod

log = logging.getLogger("sharpfu.methods")

# The registry's super-resolution architectures, which this wrapper serves.
UPSCALERS = ("span",)


class NetworkMethod(ImageMethod):
    kind = "network"
    rgb_only = True

    def __init__(self, weights: list[registry.Weights]):
        super().__init__()
        if not weights or len({w.method for w in weights}) != 1:
            raise ValueError("one method's weights, at least one, are needed")
        self.weights = {w.scale: w for w in weights}
        if len(self.weights) != len(weights):
            raise ValueError("two weights files for one scale of %s" % weights[0].method)
        first = weights[0]
        self.name = first.method
        self.scales = tuple(sorted(self.weights))
        self.ops = tuple(sorted({op for w in weights for op in w.record["ops"]}))
        self.title = first.record["title"]
        self.description = first.record["description"]
        self.source = first.record["source"]
        # Context for exact tiling: every output pixel depends on input pixels
        # within the receptive radius, and on nothing further.
        self.margin = max(w.receptive_radius for w in weights)
        # Working memory per input pixel is dominated by about a dozen feature
        # maps alive at once (float32 on the CPU); the engine multiplies this
        # figure by scale squared, so it is stated per output pixel of the
        # smallest scale, which covers the larger ones.
        channels = max(w.params.get("channels", 64) for w in weights)
        self.bytes_per_pixel = 12 * channels * 4 / min(self.scales) ** 2 + 64.0
        self.models: dict[int, torch.nn.Module] = {}
        self.dtype = torch.float32
        self.device = torch.device("cpu")

    def info(self) -> dict:
        info = super().info()
        info["weights"] = {str(s): {"name": w.name, "parameters": w.record.get("parameters"),
                                    "validation": _headline(w.record)}
                           for s, w in sorted(self.weights.items())}
        return info

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        models = {}
        for scale, weights in self.weights.items():
            model = weights.load().to(device=device, dtype=dtype)
            if device.type == "cuda":
                # cuDNN's fastest half-precision convolutions want NHWC.
                model = model.to(memory_format=torch.channels_last)
            models[scale] = model
        self.models, self.device, self.dtype = models, device, dtype
        self.loaded = True
        log.info("loaded %s (%s) on %s in %s", self.name,
                 ", ".join(w.name for w in self.weights.values()), device,
                 str(dtype).replace("torch.", ""))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        model = self.models[scale]
        multiple = self.weights[scale].multiple
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = x.to(self.dtype)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)[..., :height * scale, :width * scale]
        # The network's additive output can overshoot a little at hard edges;
        # pixel values outside [0, 1] mean nothing here.
        return out.float().clamp_(0.0, 1.0)


def _headline(record: dict) -> dict | None:
    """Mean validation Y-PSNR, ours against bicubic, per degradation."""
    validation = record.get("validation") or {}
    headline = {name: {"ours": round(v["ours"], 2), "bicubic": round(v["bicubic"], 2)}
                for name, v in validation.items() if isinstance(v, dict) and "ours" in v}
    return headline or None


def network_methods(directory=None) -> list[NetworkMethod]:
    """One method per flavour found among the shipped weights (in
    models/weights/ unless `directory` says otherwise)."""
    by_method: dict[str, list[registry.Weights]] = {}
    for weights in registry.shipped(directory):
        # Other image networks (the MIMO-UNet deblurrers) have methods of
        # their own, and their weights may share the folder.
        if weights.architecture.name not in UPSCALERS or "method" not in weights.record:
            continue
        by_method.setdefault(weights.method, []).append(weights)
    methods = []
    for name, group in sorted(by_method.items()):
        try:
            methods.append(NetworkMethod(group))
        except (ValueError, KeyError) as error:
            log.warning("not offering network %s: %s", name, error)
    return methods

