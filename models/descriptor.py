"""What SharpFu needs to know about a network besides the network itself:
an architecture descriptor, one per network (models/architectures/), in the
manner of spandrel's: it recognises the architecture's state dicts and
reads their hyper-parameters from the names and shapes of the tensors, so a
weights file needs no side information; it builds the network for those
hyper-parameters; and it says what the server must know to run it (`Spec`).
An external registry (spandrel's) can stand behind the same interface."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class Spec:
    """How to run one network with given hyper-parameters."""
    task: str                 # "upscale", "deblur", "matte-refiner", "matte-upsampler"
    scale: int                # output size / input size
    colours: int              # channels in and out (3: RGB)
    receptive_radius: int     # input pixels of context an output pixel depends on: the
                              # tiler's margin (for deep networks: how far it measurably does)
    bytes_per_pixel: float    # working memory per input pixel at inference, for tile sizing
    multiple: int = 1         # input sides are padded (by replication) to multiples of it
    alignment: int = 1        # tiles start at multiples of it (a network that subsamples is
                              # unchanged only by shifts of its stride)
    flavour: str = ""         # the size or variant in words, e.g. "MIMO-UNet+"


@dataclass(frozen=True)
class Architecture:
    name: str                 # as weights records name it
    title: str                # the network and its paper
    licence: str              # of this implementation
    detect: Callable[[dict[str, torch.Tensor]], "dict | None"]   # hyper-parameters, or None;
                              # WeightsError for weights that look like it but cannot fit
    build: Callable[..., nn.Module]      # build(**hyper-parameters): the network as served
                                         # (eval-mode use: image in, image out)
    spec: Callable[..., Spec]            # spec(**hyper-parameters)
