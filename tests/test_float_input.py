"""Float frames whose samples are not finite or absurdly large end with a
clear error, never with a result full of NaN."""
from __future__ import annotations

import numpy as np
import pytest

from sharpfu_client import Frame, JobFailed


@pytest.mark.parametrize("value", [1e38, -1e38, 3.0e5, float("inf"), float("nan")])
def test_float_input_beyond_half_precision_is_refused_clearly(server, value):
    image = np.full((32, 32, 3), 0.5, "<f4")
    image[5, 7, 1] = value
    with server.client(use_shm=False) as client:
        with pytest.raises(JobFailed) as caught:
            client.run("upscale", [Frame(image, 32, 32, 3, "f32")],
                       {"scale": 2, "method": "lanczos"})
    assert caught.value.code == "bad_pixels"
    assert "'image'" in caught.value.message


def test_bright_float_input_within_range_is_worked_on(server):
    image = np.full((32, 32, 3), 0.5, "<f4")
    image[5, 7, 1] = 60000.0   # HDR highlights are allowed
    with server.client() as client:
        result = client.run("upscale", [Frame(image, 32, 32, 3, "f32")],
                            {"scale": 2, "method": "lanczos"})
    out = np.frombuffer(result.frame("image").data, "<f4")
    assert np.isfinite(out).all()
