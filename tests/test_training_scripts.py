"""The three training scripts run end to end, as scripts/train_on_gpu.sh
runs them (batches from worker processes, bfloat16 forward passes, starting
from weights), on a few synthetic photos for a second or so each, and
export weights that the server's registry loads. A GPU session has minutes
only: a script that breaks there must have broken here first."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import registry  # noqa: E402
from training.photos import VALIDATION  # noqa: E402

pytestmark = pytest.mark.slow   # each script runs end to end in a process of its own


def make_photos(folder: Path, side: int) -> Path:
    """The held-out names (validation needs them) and three to train on:
    smooth colour fields with hard edges."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for name in list(VALIDATION) + ["a.png", "b.png", "c.png"]:
        base = rng.uniform(0, 1, 3)
        wave = np.sin((xx * rng.uniform(2, 9) + yy * rng.uniform(2, 9)) * np.pi)[..., None]
        image = 0.5 * base + 0.3 * wave * rng.uniform(-1, 1, 3) + 0.2 * (xx > 0.5)[..., None]
        pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name, quality=95)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos"), 200)


def train(script: str, *args) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *map(str, args),
                           "--workers", "2", "--bf16", "--device", "cpu", "--minutes", "0.02"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def check_exported(path: Path, init: str) -> dict:
    model = registry.load(path).model
    assert sum(p.numel() for p in model.parameters()) > 0
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["training"]["steps"] >= 1
    assert "--workers 2 --bf16" in record["training"]["commands"][0]
    assert init in json.dumps(record["training"]["init"])
    return record


def test_super_resolution_from_shipped_weights(photos, tmp_path):
    shipped = ROOT / "models" / "weights" / "span-x2.safetensors"
    train("train_sr.py", "--scale", "2", "--name", "span-x2", "--run", tmp_path / "run",
          "--photos", photos, "--weights-dir", tmp_path, "--init", shipped,
          "--batch", "4", "--patch", "16", "--threads", "1")
    record = check_exported(tmp_path / "span-x2.safetensors", str(shipped))
    assert record["training"]["init"]["layers_fresh"] == []
    # the shipped weights' own runs stay named once new weights replace them
    shipped_record = json.loads(shipped.with_suffix(".json").read_text())
    assert record["training"]["init"]["earlier_runs"][0]["commands"] == \
        shipped_record["training"]["commands"]
    assert sorted(record["training"]["data"]["training_photos"]) == ["a.png", "b.png", "c.png"]


def test_deblurring_from_shipped_weights(photos, tmp_path):
    shipped = ROOT / "models" / "weights" / "mimo-unet-small.safetensors"
    train("train_deblur.py", "--name", "mimo-unet-small", "--run", tmp_path / "run",
          "--photos", photos, "--weights-dir", tmp_path, "--init", shipped,
          "--batch", "2", "--patch", "32", "--threads", "1", "--no-nice")
    record = check_exported(tmp_path / "mimo-unet-small.safetensors", str(shipped))
    # --init decides the size, whatever --channels and --blocks say
    shipped_record = json.loads(shipped.with_suffix(".json").read_text())
    assert record["hyper_parameters"] == shipped_record["hyper_parameters"]
    assert record["training"]["init"]["earlier_runs"][0]["steps"] == \
        shipped_record["training"]["steps"]


def test_matting_from_shipped_weights(photos, tmp_path):
    shipped = ROOT / "models" / "weights"
    train("train_matte.py", "--run", tmp_path / "run", "--photos", photos,
          "--weights-dir", tmp_path, "--init", shipped, "--batch", "2", "--pool", "3",
          "--matte-size", "96", "--patch", "64", "--up-patch", "60", "--threads", "1")
    record = check_exported(tmp_path / "matte-refiner.safetensors", str(shipped))
    check_exported(tmp_path / "matte-upsampler.safetensors", str(shipped))
    # the shipped weights' own history stays in the record
    earlier = record["training"]["init"]["earlier_runs"]
    assert earlier[0]["weights"] == str(shipped / "matte-refiner.safetensors")
    shipped_record = json.loads((shipped / "matte-refiner.json").read_text())
    assert earlier[1:] == shipped_record["training"]["earlier_runs"]
    assert record["training"]["init"]["refiner"]["fresh"] == []


def test_the_gpu_script_runs_every_training_on_the_cpu(tmp_path):
    """scripts/train_on_gpu.sh --check: the GPU run's exact commands, on the
    CPU for a few seconds each, SharpFu's own install hidden as it is on the
    GPU machine; every network's weights and record come back in one archive."""
    make_photos(tmp_path / "photos" / "photos", 272)   # the deblurrer's 192 px patches + border
    (tmp_path / "photos" / "photos-by-sa").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(["bash", str(ROOT / "scripts" / "train_on_gpu.sh"), "--check"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env=dict(os.environ, SHARPFU_TRAIN_PHOTOS=str(tmp_path / "photos"),
                                   OUT=str(out)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with tarfile.open(out / "weights.tar.gz") as archive:
        names = sorted(Path(n).name for n in archive.getnames() if Path(n).suffix)
    assert names == sorted("%s.%s" % (net, ext) for net in (
        "span-x2", "span-x4", "mimo-unet-small", "matte-refiner", "matte-upsampler")
        for ext in ("json", "safetensors"))
    with tarfile.open(out / "logs.tar.gz") as archive:
        assert len([n for n in archive.getnames() if n.endswith(".jsonl")]) == 4
