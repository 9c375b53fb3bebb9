"""Writing small ONNX files for the tests with nothing but the protocol
buffer wire format (field numbers of onnx/onnx.proto3), so that SharpFu's
reader (models/onnx_convert.py) is checked without the `onnx` package and
without downloading anything: tensors in each of the encodings exporters
use, nodes with attributes, and the graph of ISNet (models/isnet.py) as
the DIS export names it, with weights chosen by the test."""
from __future__ import annotations

import struct

import numpy as np

FLOAT, UINT8, INT64, FLOAT16 = 1, 2, 7, 10
CODES = {np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UINT8, np.dtype(np.int64): INT64,
         np.dtype(np.float16): FLOAT16}


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1                 # negative int64s take ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def number(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def message(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def text(field: int, value: str) -> bytes:
    return message(field, value.encode())


def packed(field: int, values) -> bytes:
    return message(field, b"".join(varint(v) for v in values))


def tensor(name: str, array: np.ndarray, encoding: str = "raw") -> bytes:
    """TensorProto: `raw` (raw_data), or the typed fields exporters also
    write: `typed` (float_data packed / int32_data for uint8 and float16 bits
    / int64_data), `unpacked` (the same, one field per value)."""
    array = np.asarray(array)
    out = b"".join(number(1, d) for d in array.shape) + number(2, CODES[array.dtype])
    out += text(8, name)
    flat = array.reshape(-1)
    if encoding == "raw":
        return out + message(9, flat.astype(array.dtype.newbyteorder("<")).tobytes())
    if array.dtype == np.float32:
        if encoding == "typed":
            return out + message(4, struct.pack("<%df" % flat.size, *flat))
        return out + b"".join(varint(4 << 3 | 5) + struct.pack("<f", v) for v in flat)
    if array.dtype == np.float16:
        values = flat.view(np.uint16).tolist()
        field = 5
    else:
        values = flat.tolist()
        field = 7 if array.dtype == np.int64 else 5
    if encoding == "typed":
        return out + packed(field, values)
    return out + b"".join(number(field, v) for v in values)


def attribute(name: str, value) -> bytes:
    """AttributeProto with its type (20): INT 2, FLOAT 1, STRING 3, INTS 7,
    TENSOR 4."""
    out = text(1, name)
    if isinstance(value, bytes):
        return out + message(4, value) + number(20, 3)
    if isinstance(value, float):
        return out + varint(2 << 3 | 5) + struct.pack("<f", value) + number(20, 1)
    if isinstance(value, int):
        return out + number(3, value) + number(20, 2)
    if isinstance(value, tuple) and value and value[0] == "tensor":
        return out + message(5, tensor(name, value[1])) + number(20, 4)
    return out + packed(8, value) + number(20, 7)


def node(op_type: str, name: str, inputs, outputs, **attributes) -> bytes:
    out = b"".join(text(1, i) for i in inputs) + b"".join(text(2, o) for o in outputs)
    out += text(3, name) + text(4, op_type)
    return out + b"".join(message(5, attribute(k, v)) for k, v in attributes.items())


def value_info(name: str, dims) -> bytes:
    shape = b"".join(message(1, number(1, d)) for d in dims)
    return text(1, name) + message(2, message(1, number(1, FLOAT) + message(2, shape)))


def model(nodes, initialisers, inputs, outputs, producer: str = "SharpFu's tests") -> bytes:
    """A ModelProto: ir_version 8, opset 15."""
    graph = b"".join(message(1, n) for n in nodes) + text(2, "graph")
    graph += b"".join(message(5, t) for t in initialisers)
    graph += b"".join(message(11, value_info(n, d)) for n, d in inputs)
    graph += b"".join(message(12, value_info(n, d)) for n, d in outputs)
    return number(1, 8) + text(2, producer) + message(7, graph) + message(8, number(2, 15))


# -- ISNet as the DIS export lays it out ----------------------------------------------------

def _authors_names() -> list[str]:
    """The module path of each convolution of the authors' ISNet, in the
    order the graph runs them (facts of the released ONNX graph)."""
    from models import isnet

    def block(stage: str, levels) -> list[str]:
        depth = (4 if levels == "4F" else levels) - 1
        return (["/%s/rebnconvin" % stage]
                + ["/%s/rebnconv%d" % (stage, k) for k in range(1, depth + 2)]
                + ["/%s/rebnconv%dd" % (stage, k) for k in range(depth, 0, -1)])

    names = ["/conv_in"]
    for k, stage in enumerate(isnet.ENCODER):
        names += [n + "/conv_s1" for n in block("stage%d" % (k + 1), stage[0])]
    for k, stage in enumerate(isnet.DECODER):
        names += [n + "/conv_s1" for n in block("stage%dd" % (len(isnet.DECODER) - k), stage[0])]
    return names + ["/side%d" % k for k in range(1, 7)]


def isnet_graph(state: dict, named: bool = True, size: int = 1024) -> bytes:
    """An ONNX file of ISNet's convolutions with the weights of `state` (a
    state dict of models/isnet.ISNet, float16 or float32), laid out as the
    released graph is (node names, initialiser names, attributes); the
    layers between convolutions are left out, since the converter reads
    only the convolutions. `named=False` leaves the nodes unnamed."""
    from models import isnet
    with __import__("torch").device("meta"):
        network = isnet.ISNet()
    modules = dict(network.named_modules())
    nodes, initialisers = [], []
    previous = "input"
    for index, (path, name) in enumerate(zip(_authors_names(), isnet.convolutions(network))):
        module = modules[name]
        weight = state[name + ".weight"].numpy()
        bias = state[name + ".bias"].numpy()
        # the folded convolutions' initialisers are anonymous in the export
        w_name, b_name = "onnx::Conv_%d" % (1896 + 3 * index), "onnx::Conv_%d" % (1897 + 3 * index)
        initialisers += [tensor(w_name, weight), tensor(b_name, bias)]
        output = path + "/Conv_output_0"
        d = module.dilation[0]
        nodes.append(node("Conv", path + "/Conv" if named else "", [previous, w_name, b_name],
                          [output], dilations=[d, d], group=1, kernel_shape=[3, 3],
                          pads=[module.padding[0]] * 4, strides=list(module.stride)))
        previous = output
    return model(nodes, initialisers, [("input", [1, 3, size, size])],
                 [("output", [1, 1, size, size])])
