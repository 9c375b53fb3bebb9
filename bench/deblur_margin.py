"""How far inside a tile a MIMO-UNet still feels the tile's edge: the margin
the tiler needs for given weights.

    .venv/bin/python bench/deblur_margin.py WEIGHTS [WEIGHTS ...] [--photos DIR ...]

WEIGHTS: SharpFu's safetensors or the authors' .pkl checkpoints (read through
torch.load(weights_only=True)); or "CxB" (e.g. 32x8) for a network of that
size with fixed random weights.

MIMO-UNet's theoretical reach is far beyond any practical margin (241 input
pixels for MIMO-UNet, 577 for MIMO-UNet+: models/architectures/mimo_unet.py), but
what lies far away contributes little. For each held-out photo, blurred by
each fixed case of training/degradations.py, the network runs on the whole
photo and on the two tiles either side of a vertical edge (the edge on a
multiple of 4, as the tiler places it); the table gives, for each size of
difference, the distance from the edge beyond which no output pixel differs
from the untiled result by more than that. Inside the margin the tiler gives
a tile no weight, and beyond it cross-fades two tiles whose errors are
below the level chosen, so tiled and untiled results then agree to that
level.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import registry  # noqa: E402
from models.architectures.mimo_unet import Restorer  # noqa: E402
from training.degradations import BLUR_CASES  # noqa: E402
from training.photos import DEFAULT_PHOTOS, validation_set  # noqa: E402

LEVELS = (2.0, 1.0, 0.5, 0.25)     # in 8-bit levels
EDGE = 320                          # the tile edge, in pixels from the left
HEIGHT, WIDTH = 384, 640            # the part of each photo used


def network(spec: str) -> torch.nn.Module:
    if "x" in spec and not Path(spec).exists():
        channels, blocks = map(int, spec.split("x"))
        torch.manual_seed(0)
        return Restorer(channels, blocks).eval()
    return registry.load(spec).model


@torch.inference_mode()
def edge_error(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Largest difference (8-bit levels) from the untiled result, by distance
    from the edge, over both tiles, all rows and channels."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    whole = model(x)
    left = (model(x[..., :EDGE]) - whole[..., :EDGE]).abs().amax(dim=(0, 1, 2)).flip(0)
    right = (model(x[..., EDGE:]) - whole[..., EDGE:]).abs().amax(dim=(0, 1, 2))
    n = min(len(left), len(right))
    return torch.maximum(left[:n], right[:n]).numpy() * 255


def reach(error: np.ndarray, level: float) -> int:
    above = np.nonzero(error > level)[0]
    return 0 if len(above) == 0 else int(above.max()) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--photos", type=Path, action="append")
    args = parser.parse_args()
    photos = {name: np.asarray(image)[:HEIGHT, :WIDTH]
              for name, image in validation_set(args.photos or DEFAULT_PHOTOS).items()
              if min(image.size) >= HEIGHT and max(image.size) >= WIDTH}
    print("| weights | photo | case | " + " | ".join("> %g/255 up to (px)" % l for l in LEVELS)
          + " |")
    print("|---|---|---|" + "---:|" * len(LEVELS))
    for spec in args.weights:
        model = network(spec)
        worst = dict.fromkeys(LEVELS, 0)
        for name, sharp in photos.items():
            for case_name, case in BLUR_CASES.items():
                error = edge_error(model, case.apply(sharp))
                reaches = [reach(error, level) for level in LEVELS]
                worst = {level: max(worst[level], r) for level, r in zip(LEVELS, reaches)}
                print("| %s | %s | %s | %s |" % (Path(spec).name, name, case_name,
                                                 " | ".join(map(str, reaches))), flush=True)
        print("| %s | all | worst | %s |" % (Path(spec).name, " | ".join(
            str(worst[level]) for level in LEVELS)), flush=True)


if __name__ == "__main__":
    main()
