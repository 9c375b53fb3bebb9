"""Select Subject by ISNet (models/isnet.py, the authors' DIS weights from
the models folder: `sharpfu models pull isnet-general`): the whole picture
resized to the network's 1024 x 1024, less 0.5 (the authors'
normalisation), the mask it returns resized back to the picture's size
bilinearly and clamped to 0..1.

The resize down is plain bilinear (no antialiasing), as the authors'
training and inference and the npm package resize; the network saw such
inputs. The mask is not stretched to its own range (the authors' script
does; the package does not): a picture without a clear subject keeps a
faint mask. The mask's resize back is antialiased when the picture is smaller
than 1024 in a direction. Runs in whatever device and precision the catalog
loads it with; the mask comes back in the image's dtype.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from models import isnet, registry
from models.architectures import isnet as isnet_architecture

from . import SubjectMethod
from .network import offered_name

log = logging.getLogger("sharpfu.methods")

TITLE = "ISNet (DIS), automatic subject mask"


class IsnetSubject(SubjectMethod):
    kind = "network"
    rgb_only = True

    def __init__(self, name: str, weights: registry.Weights, *, title: str = TITLE,
                 description: str = "", source: str = "models folder",
                 preference: float | None = None):
        super().__init__()
        if weights.spec.task != isnet_architecture.TASK:
            raise ValueError("%s holds %s weights, not a segmentation network"
                             % (name, weights.spec.task))
        self.name, self.title, self.source = name, title, source
        self.description = description or (
            "The main subject's soft mask, found by ISNet (Qin et al., 'Highly Accurate "
            "Dichotomous Image Segmentation', ECCV 2022) at %d x %d: a start for Refine Matte."
            % (isnet.SIZE, isnet.SIZE))
        self.weights = {1: weights}     # as NetworkMethod's: the catalog reads the file's version
        self.preference = preference
        self.model: torch.nn.Module | None = None
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def info(self) -> dict:
        info = super().info()
        weights = self.weights[1]
        info["weights"] = {"1": {"name": weights.name, "architecture": weights.architecture.name,
                                 "flavour": weights.spec.flavour,
                                 "parameters": weights.parameters,
                                 "licence": (weights.record or {}).get("licence", "unknown")}}
        return info

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        weights = self.weights[1]
        model = weights.load().to(device=device, dtype=dtype if weights.spec.half_precision
                                  else torch.float32)
        # NHWC: cuDNN's fastest half-precision convolutions want it, and on
        # the CPU (oneDNN) ISNet ran a third faster so (docs/models/isnet.md)
        model = model.to(memory_format=torch.channels_last)
        self.model, self.device, self.dtype = model, device, next(model.parameters()).dtype
        self.loaded = True
        log.info("loaded %s (%s) on %s in %s", self.name, weights.name, device,
                 str(self.dtype).replace("torch.", ""))

    def unload(self) -> None:
        self.model, self.loaded = None, False

    def networks(self, scale: int = 1) -> list[torch.nn.Module]:
        return [self.model] if self.model is not None else []

    @torch.no_grad()
    def subject(self, image: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError("%s is not loaded" % self.name)
        if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3, 4):
            raise ValueError("an image (1, 3, h, w) is needed, not %s" % (tuple(image.shape),))
        height, width = image.shape[-2:]
        colour = image[:, :3] if image.shape[1] != 1 else image.expand(-1, 3, -1, -1)
        colour = colour.to(device=self.device, dtype=torch.float32)
        x = F.interpolate(colour, size=(isnet.SIZE, isnet.SIZE), mode="bilinear",
                          align_corners=False) - isnet.MEAN
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        mask = self.model(x).float()
        mask = F.interpolate(mask, size=(height, width), mode="bilinear", align_corners=False,
                             antialias=height < isnet.SIZE or width < isnet.SIZE)
        return mask.clamp_(0.0, 1.0).to(device=image.device, dtype=image.dtype)


def subject_methods(models, taken: set[str] = frozenset()) -> list[IsnetSubject]:
    """A `select` method for each ISNet of the models folder (models/store.py's
    entries), named after it (or its file, where that name is taken); the
    catalogue's, the authors' weights, rank first."""
    methods, names = [], set(taken)
    for model in models:
        if model.weights is None or model.weights.spec.task != isnet_architecture.TASK:
            continue
        name = offered_name(model, names)
        if name is None:
            continue
        record = model.record or {}
        title = record.get("title") or "%s (%s)" % (TITLE, model.path.name)
        source = record.get("source") or "user checkpoint %s" % model.path.name
        methods.append(IsnetSubject(name, model.weights, title=title, source=source,
                                    description=record.get("description", ""),
                                    preference=1.0 if record.get("catalogue") else 0.5))
        names.add(name)
    return methods
