"""Models from the model store (models/store.py) as catalog methods: the
official SPAN and Real-ESRGAN that `sharpfu models pull` converts, and the
community models users `sharpfu models add`.

One method per installed model, named after it. An upscaler serves its own
scale and, when that is 4, also 2 (the 4x result reduced with an
antialiased bicubic filter, as Real-ESRGAN users do); a 1x restoration model
serves deblur and sharpen. Networks are built lazily, on the first job.

Tiling: SPAN and Compact are purely convolutional with a known reach, so
tiles with that margin are exact. The others (ESRGAN's reach is hundreds of
pixels, transformers attend over windows) get a 32-pixel margin, which
leaves no visible seam with the tiler's blending but is not exact.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from models.store import Store

from . import ImageMethod

log = logging.getLogger("sharpfu.methods")

# Input pixels each output pixel depends on, where it is bounded and known
# (Compact's comes from its tags).
MARGINS = {"SPAN": 21}           # conv_1, 6 blocks x 3, conv_2, the upsampler's 3x3
DEFAULT_MARGIN = 32
# Working memory per input pixel (float32 on the CPU), rounded up from the
# feature maps alive at once: SPAN ~10 maps of 48-52 channels, ESRGAN's
# dense blocks ~6 maps of 64-192, Compact 3 of 64; others a guess that errs high.
BYTES_PER_PIXEL = {"SPAN": 3000.0, "Compact": 1000.0, "ESRGAN": 6000.0}
DEFAULT_BYTES_PER_PIXEL = 20000.0
# Below the shipped networks (1.0) and above the classical methods (0.0),
# unless the model's record says otherwise.
DEFAULT_PREFERENCE = 0.5


class StoreMethod(ImageMethod):
    kind = "network"
    rgb_only = True

    def __init__(self, store: Store, record: dict):
        super().__init__()
        self.store, self.record = store, record
        self.name = record["name"]
        self.title = record.get("title") or self.name
        self.description = record.get("description") or (
            "%s, %dx %s (%s parameters), licence %s." % (
                record.get("notes") or "An installed model", record["scale"],
                record["architecture"], format(record.get("parameters") or 0, ","),
                record.get("licence", "unknown")))
        self.source = record.get("source", "model store")
        scale = int(record["scale"])
        if record["task"] == "upscale":
            self.ops = ("upscale",)
            self.scales = (2, 4) if scale == 4 else (scale,)
        else:
            self.ops = ("deblur", "sharpen")
            self.scales = (1,)
        self.model_scale = scale
        architecture = record["architecture"]
        self.margin = MARGINS.get(architecture, DEFAULT_MARGIN)
        convolutions = [t for t in record.get("tags") or [] if t.endswith("nc")]
        if architecture == "Compact" and convolutions:
            # num_conv 3x3 convolutions between the first and the last
            self.margin = int(convolutions[0][:-2]) + 2
        self.bytes_per_pixel = BYTES_PER_PIXEL.get(architecture, DEFAULT_BYTES_PER_PIXEL)
        self.preference = float(record.get("preference", DEFAULT_PREFERENCE))
        self.model: torch.nn.Module | None = None
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def info(self) -> dict:
        info = super().info()
        info["weights"] = {key: self.record.get(key) for key in (
            "architecture", "scale", "parameters", "licence", "sha256", "measured")}
        return info

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        model = self.store.load(self.name).to(device=device, dtype=dtype)
        self.model, self.device, self.dtype = model, device, dtype
        self.loaded = True
        log.info("loaded %s (%s, from the model store) on %s", self.name,
                 self.record["architecture"], device)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        height, width = x.shape[-2:]
        out = self.model(x.to(self.dtype)).float()
        if scale != self.model_scale:
            out = F.interpolate(out, size=(height * scale, width * scale), mode="bicubic",
                                antialias=True, align_corners=False)
        return out.clamp_(0.0, 1.0)


def store_methods(folder, taken: set[str] = frozenset()) -> list[StoreMethod]:
    """A method for each installed model whose name no other method has."""
    if not folder:
        return []
    store = Store(folder)
    methods = []
    for record in store.records():
        if record["name"] in taken:
            log.warning("model store: %s is not offered: a built-in method has that name",
                        record["name"])
            continue
        if record.get("task") not in ("upscale", "restore") or record.get("loader") != "spandrel":
            continue     # SharpFu's own architectures are served by their own methods
        methods.append(StoreMethod(store, record))
    return methods


def signature(folder) -> tuple:
    """Changes whenever a model is added to or removed from the store."""
    store = Store(folder) if folder else None
    if store is None or not store.folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in store.folder.glob("*.json")))
