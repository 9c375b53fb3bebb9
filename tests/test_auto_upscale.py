"""`auto` (server/methods/auto_upscale.py): the authors' SPAN for clean
inputs, SharpFu's SPAN-32 for JPEG thumbnails, chosen per image."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from enginekit import make_job
from models import community
from models.store import Store
from server.engine import Engine
from server.methods.auto_upscale import THRESHOLD, jpeg_evidence
from server.settings import Settings

# the bundled 120x120 thumbnail: a clean (PNG) downscale of a photo
THUMBNAIL = Path(__file__).resolve().parent.parent / "docs" / "images" / "thumbnail.png"


def version(jpeg: bool) -> np.ndarray:
    image = Image.open(THUMBNAIL).convert("RGB")
    if jpeg:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=75)
        image = Image.open(buffer).convert("RGB")
    return np.array(image)


def test_jpeg_evidence_tells_a_jpeg_thumbnail_from_a_clean_one():
    clean, jpeg = version(jpeg=False), version(jpeg=True)
    assert jpeg_evidence(clean) < THRESHOLD < jpeg_evidence(jpeg)
    assert jpeg_evidence(np.zeros((8, 8, 3), np.uint8)) == 0.0     # too small to tell: clean
    assert jpeg_evidence(np.zeros((7, 300, 3), np.uint8)) == 0.0
    # grey, 16-bit and float frames of the same pixels, as GIMP may send them
    assert jpeg_evidence(jpeg[..., :1]) > THRESHOLD
    assert jpeg_evidence(jpeg.astype(np.uint16) * 257) == jpeg_evidence(jpeg)
    assert abs(jpeg_evidence(jpeg.astype(np.float32) / 255) - jpeg_evidence(jpeg)) < 0.02
    # cropped off the 8x8 grid (as after a crop in GIMP): the grid is found
    assert jpeg_evidence(jpeg[5:, 3:]) > THRESHOLD
    # resampled after compression: the grid is gone, and so are most blocks
    shrunk = np.array(Image.fromarray(jpeg).resize((100, 100), Image.LANCZOS))
    assert jpeg_evidence(shrunk) < THRESHOLD


@pytest.fixture
def engine(tmp_path):
    community.spandrel()
    from spandrel.architectures.SPAN import SPAN
    store = Store(tmp_path / "models")
    torch.manual_seed(0)
    model = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)
    save_file(model.state_dict(), str(tmp_path / "x2.safetensors"))
    store.add(tmp_path / "x2.safetensors", name="span-official-x2-ch48")
    return Engine(Settings(device="cpu", models_dir=str(store.folder)))


def test_auto_is_the_default_and_chooses_per_image(engine):
    # only x2 of the authors' weights here: 4x falls to SharpFu's fine-tune alone
    assert engine.status()["defaults"]["upscale"] == {"2": "auto", "4": "span-tuned"}
    for jpeg, expected in ((False, "span-official-x2-ch48"), (True, "span-tuned")):
        job = make_job("upscale", {"scale": 2}, image=version(jpeg))
        results, info = engine.run(job, lambda f, s: None)
        assert info["name"] == expected
        assert results[0][1].shape == (240, 240, 3)
    # sharpen's upscaling stage chooses too
    job = make_job("sharpen", {"scale": 2}, image=version(jpeg=False))
    results, info = engine.run(job, lambda f, s: None)
    assert results[0][1].shape == (240, 240, 3)


def test_no_auto_without_the_official_weights(tmp_path):
    engine = Engine(Settings(device="cpu", models_dir=str(tmp_path / "empty")))
    assert "auto" not in engine.catalog.methods
    assert engine.status()["defaults"]["upscale"]["2"] == "span-tuned"
