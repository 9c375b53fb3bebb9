"""Blind deconvolution as a catalog method: the blur kernel estimated from
the photo itself, then deconvolution with SharpFu's trained denoiser as the
prior (server/deblurring/, docs/models/deblur.md).

The kernel (and, on a large photo, a kernel per region) is found from the
whole frame in `prepare`; the deconvolution then runs tile by tile through
the engine's tiler, each tile with the kernel of its region and enough
picture around it for the deconvolution to settle (Blur.margin).
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

from models import registry

from .. import pixels
from ..deblurring import blind, deconvolve
from ..deblurring.denoiser import Denoiser
from . import ImageMethod, Prepared
from .network import preference

log = logging.getLogger("sharpfu.methods")

ARCHITECTURE = "drunet"
BAND_PIXELS = 2_000_000    # a frame is read into tensors this many pixels at a time


class BlindDeconvolution(ImageMethod):
    kind = "network"
    ops = ("deblur", "sharpen")
    scales = (1,)
    extra_frames = ("kernel",)
    prepared_share = 0.3
    # float32 working set per input pixel of a tile: the splitting's planes
    # on the padded canvas (about a dozen of 3 channels, some complex) and
    # the denoiser's features (models/architectures/drunet.py)
    bytes_per_pixel = 800.0

    def __init__(self, weights: registry.Weights):
        super().__init__()
        record = weights.record
        self.weights = weights
        self.name = record["method"]
        self.title = record["title"]
        self.description = record["description"]
        self.source = record["source"]
        # Not the default, whatever the benchmark says, until the plug-in
        # gives it the whole layer (or the kernel found there) for previews
        # and selections: it estimates the blur from the frame it is sent,
        # so its result on a crop is not its result on the whole picture,
        # and the preview would show something the filter does not make.
        self.preference = min(preference(weights), -1.0)
        self.denoiser: Denoiser | None = None
        self.device = torch.device("cpu")
        self.settings = blind.Settings()
        self.deconvolution = deconvolve.Settings()

    def info(self) -> dict:
        info = super().info()
        info["weights"] = {"name": self.weights.name, "architecture": ARCHITECTURE,
                           "flavour": self.weights.spec.flavour,
                           "parameters": self.weights.parameters}
        return info

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        # float32 whatever the precision setting: the splitting's Fourier
        # steps read the denoiser's output back at every iteration.
        self.denoiser = Denoiser(self.weights.load().to(device=device, dtype=torch.float32))
        self.device = device
        self.loaded = True
        log.info("loaded %s (%s) on %s", self.name, self.weights.name, device)

    def networks(self, scale: int) -> list[torch.nn.Module]:
        return [self.denoiser.network] if self.denoiser is not None else []

    def prepare(self, image: np.ndarray, image_format: str, colour_channels: int, scale: int,
                params: dict, progress: Callable[[float, str], None],
                kernel: torch.Tensor | None = None) -> Prepared:
        """Estimate the blur of frame `image` (h, w, c); returns the tile
        function that removes it. `kernel`: the blur, when it is known (the
        benchmark's non-blind row), instead of estimating it."""
        grey, clipped = planes(image, image_format, colour_channels, self.device)

        def colour(top: int, left: int, height: int, width: int) -> torch.Tensor:
            block = image[top:top + height, left:left + width]
            return pixels.to_tensor(block, image_format, self.device)[0, :colour_channels]

        progress(0.0, "%s: estimating the blur" % self.title)
        settings = self.settings
        if params.get("kernel_size"):
            settings = blind.Settings(params["kernel_size"], settings.estimation,
                                      settings.regions)
        with torch.inference_mode():
            blur = blind.analyse(grey, clipped, colour, self.denoiser, settings, kernel,
                                 lambda f: progress(f, "%s: estimating the blur" % self.title))
        del grey
        log.info("blur: %s", blur.describe())

        def run(tile: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
            restored = blind.deconvolve_tile(tile[0], box, blur, clipped, self.denoiser,
                                             self.deconvolution)
            # deconvolution overshoots a little at hard edges
            return restored.clamp(0.0, 1.0)[None]

        # the kernel's weights as they are (they sum to one; no blur: [[1]])
        return Prepared(run, blur.margin, {"blur": blur.describe()},
                        {"kernel": blur.kernel.float().cpu().numpy()[:, :, None]})

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """A whole (1, c, h, w) picture: its blur estimated, then removed
        (as the engine does it, without the tiling)."""
        image = np.ascontiguousarray(x[0].permute(1, 2, 0).float().cpu().numpy())
        prepared = self.prepare(image, "f32", image.shape[2], scale, {},
                                lambda fraction, stage: None)
        return prepared.run(x.float(), (0, 0, x.shape[-2], x.shape[-1]))


def planes(image: np.ndarray, image_format: str, colour_channels: int,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The luminance (h, w) and the clipped pixels (h, w) of frame `image`,
    read a band of rows at a time (a large frame in float32 at once would
    need gigabytes)."""
    height, width = image.shape[:2]
    step = max(16, BAND_PIXELS // max(1, width))
    greys, clipped = [], []
    for top in range(0, height, step):
        band = pixels.to_tensor(image[top:top + step], image_format, device)[0, :colour_channels]
        greys.append(blind.luminance(band))
        clipped.append(blind.clipped_pixels(band))
    return torch.cat(greys, 0), torch.cat(clipped, 0)


def shipped(directory=None) -> list[BlindDeconvolution]:
    """The method, if its denoiser's weights are shipped (or in `directory`)."""
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
