"""Blind deconvolution as a catalog method: the blur kernel estimated from
the photo itself, then deconvolution with SharpFu's trained denoiser as the
prior (server/deblurring/, docs/models/blind-deconvolution.md).

It needs the whole picture (a kernel is estimated from all of it, and
regions are cross-faded), so the engine hands it the whole frame
(`whole_image`) rather than tiles; it tiles its own work inside.
"""
from __future__ import annotations

import logging

import torch

from models import registry
from server.deblurring import blind
from server.deblurring.denoiser import Denoiser

from . import ImageMethod, deblur_rule

log = logging.getLogger("sharpfu.methods")

ARCHITECTURE = "drunet"


class BlindDeconvolution(ImageMethod):
    kind = "network"
    ops = ("deblur", "sharpen")
    scales = (1,)
    whole_image = True
    estimates_kernel = True
    # float32 working set per pixel: the canvas, its spectra and the
    # splitting's variables (about 12 planes of 3 channels), and the
    # denoiser's features on a tile
    bytes_per_pixel = 200.0

    def __init__(self, weights: registry.Weights):
        super().__init__()
        record = weights.record
        self.weights = weights
        self.name = record["method"]
        self.title = record["title"]
        self.description = record["description"]
        self.source = record["source"]
        self.measured = deblur_rule.measured(weights.path, record)
        self.preference = deblur_rule.preference(self.measured)
        self.margin = 0
        self.denoiser: Denoiser | None = None
        self.device = torch.device("cpu")

    def info(self) -> dict:
        info = super().info()
        info["weights"] = {"name": self.weights.name, "architecture": ARCHITECTURE,
                           "hyper_parameters": self.weights.params,
                           "parameters": self.weights.record.get("parameters")}
        if self.measured:
            info["measured"] = self.measured
        return info

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        # The splitting's Fourier steps need float32; so does the denoiser,
        # whose output they read back at every iteration.
        model = self.weights.load().to(device=device, dtype=torch.float32)
        self.denoiser = Denoiser(model)
        self.device = device
        self.loaded = True
        log.info("loaded %s (%s) on %s", self.name, self.weights.name, device)

    def run_whole(self, image: torch.Tensor, request: blind.Request,
                  progress: blind.Progress) -> blind.Outcome:
        """`image` (c, h, w) in [0, 1] on the device."""
        with torch.inference_mode():
            return blind.deblur(image, self.denoiser, request, progress)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """A tile on its own, for callers that can only tile (the whole
        picture is better: see run_whole)."""
        return self.run_whole(x[0], blind.Request(), lambda f, s: None).image[None]


def shipped(directory=None) -> list[BlindDeconvolution]:
    methods = []
    for weights in registry.shipped(directory):
        if weights.architecture.name != ARCHITECTURE or "method" not in weights.record:
            continue
        try:
            methods.append(BlindDeconvolution(weights))
        except (KeyError, TypeError, ValueError) as error:
            log.warning("not offering %s: %s: %s", weights.path.stem, type(error).__name__,
                        error)
    return methods
