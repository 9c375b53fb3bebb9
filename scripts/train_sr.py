"""Train SharpFu's super-resolution network (models/span.py), "faithful"
flavour: L1 loss against the clean photo, so it is held to PSNR.

    .venv/bin/python scripts/train_sr.py --scale 2 --run ../sr-runs/span-x2 \\
        --minutes 75 --name span-x2
    .venv/bin/python scripts/train_sr.py --scale 4 --run ../sr-runs/span-x4 \\
        --minutes 40 --name span-x4 --init models/weights/span-x2.safetensors

(docs/models/span.md has the exact commands behind the shipped weights, with
the --recipe changes they used.)

Data: the training photos (training/photos.py; the held-out VALIDATION
photos are never trained on). Each step takes random patches, flips and
rotates them, and makes thumbnails of them (training/degradations.py:
antialiased bicubic/area/Lanczos downscales, mild blur and noise, JPEG at
quality 30-95, sometimes twice over). Validation: Y-PSNR on the two fixed
thumbnails of the held-out photos, beside bicubic's.

The loop, checkpoints, resumption and the exported record are
training/loop.py's; at the end the EMA weights go to
models/weights/NAME.safetensors with the record NAME.json.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # training/loop.py says why

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import span  # noqa: E402
from models.loading import load_state_dict  # noqa: E402
from training import degradations, loop, metrics, photos  # noqa: E402
from training.record import write_weights  # noqa: E402


class Patches(photos.RandomCrops):
    """Random (thumbnail, photo) training pairs from the photos."""

    def __init__(self, paths: list[Path], scale: int, patch: int, seed: int,
                 recipe: degradations.ThumbnailRecipe):
        super().__init__(paths, patch * scale, seed)
        self.scale, self.patch, self.recipe = scale, patch, recipe

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        lows, highs = [], []
        for _ in range(size):
            high = Image.fromarray(self.crop(self.patch * self.scale))
            lows.append(np.asarray(degradations.thumbnail(high, self.scale, self.rng,
                                                          self.recipe)))
            highs.append(np.asarray(high))
        return photos.to_tensor(np.stack(lows)), photos.to_tensor(np.stack(highs))


def validate(model: torch.nn.Module, held_out: dict[str, Image.Image], scale: int) -> dict:
    """Y-PSNR of the model and of Pillow's bicubic upscale on each fixed
    thumbnail of each held-out photo, and their means."""
    device = next(model.parameters()).device
    result = {}
    for case, degrade in degradations.THUMBNAIL_CASES.items():
        rows = {}
        for name, photo in held_out.items():
            truth = degradations.crop_to_multiple(photo, scale)
            low = degrade(truth, scale)
            ours = photos.to_pixels(model(photos.to_tensor(np.array(low)).to(device)))
            bicubic = low.resize(truth.size, Image.Resampling.BICUBIC)
            rows[name] = {"ours": metrics.y_psnr(ours, truth),
                          "bicubic": metrics.y_psnr(bicubic, truth)}
        result[case] = {"photos": rows,
                        "ours": float(np.mean([r["ours"] for r in rows.values()])),
                        "bicubic": float(np.mean([r["bicubic"] for r in rows.values()]))}
    return result


class SuperResolution(loop.Task):
    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.name = "%s x%d" % (args.name, args.scale)
        self.hyper_parameters = {"scale": args.scale, "channels": args.channels,
                                 "blocks": args.blocks, "colours": 3}
        self.held_out = None

    def build(self):
        return {"model": span.SPAN(**self.hyper_parameters)}

    def start_from(self, networks, path):
        # e.g. the 2x network for the 4x one: layers whose shapes differ start fresh
        source = load_state_dict(path)
        own = networks["model"].state_dict()
        taken = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        networks["model"].load_state_dict(taken, strict=False)
        return {"layers_taken": len(taken), "layers_fresh": sorted(set(own) - set(taken))}

    def data(self):
        return {"training_photos": sorted(p.name for p in photos.training_photos(self.args.photos)),
                "validation_photos": list(photos.VALIDATION),
                "recipe": self.args.recipe.describe()}

    def sampler(self, seed):
        return Patches(photos.training_photos(self.args.photos), self.args.scale, self.args.patch,
                       seed, self.args.recipe)

    def draw(self, sampler):
        return sampler.batch(self.args.batch)

    def forward(self, networks, batch):
        return networks["model"](batch[0])

    def loss(self, output, batch):
        return (output - batch[1]).abs().mean(), {}

    def validate(self, networks):
        if self.held_out is None:
            self.held_out = photos.validation_set(self.args.photos)
        full = validate(networks["model"], self.held_out, self.args.scale)
        return {case: {"ours": round(v["ours"], 3), "bicubic": round(v["bicubic"], 3)}
                for case, v in full.items()}, full

    def summary(self, point):
        return "val Y-PSNR " + "  ".join("%s %.2f (bicubic %.2f)" % (
            case, point[case]["ours"], point[case]["bicubic"])
            for case in degradations.THUMBNAIL_CASES)

    def export(self, weights, training, validation, curve):
        params = self.hyper_parameters
        parameters = sum(v.numel() for v in weights["model"].values())
        record = {
            "name": self.args.name, "method": self.args.method, "architecture": "span",
            "hyper_parameters": params,
            "receptive_radius": span.receptive_radius(params["blocks"]),
            "scale": params["scale"], "ops": ["upscale", "sharpen"], "flavour": "faithful",
            "title": "SPAN super-resolution (SharpFu-trained, %d channels x %d blocks)" % (
                params["channels"], params["blocks"]),
            "description": ("Lightweight super-resolution network (%dk parameters), trained to "
                            "restore downscaled, compressed thumbnails faithfully (L1 loss: no "
                            "invented texture)." % round(parameters / 1000)),
            "source": "trained by SharpFu's scripts/train_sr.py",
            "training": dict(training, patch=self.args.patch, loss="L1 (RGB)"),
            "validation": validation, "validation_curve": curve}
        write_weights(self.args.weights_dir, self.args.name, weights["model"], record,
                           "SharpFu scripts/train_sr.py")


def parse_recipe(changes: list[str]) -> degradations.ThumbnailRecipe:
    fields = {}
    defaults = degradations.ThumbnailRecipe()
    for change in changes:
        name, _, value = change.partition("=")
        if not hasattr(defaults, name):
            raise SystemExit("--recipe: no field %r in %s" % (name, defaults))
        kind = type(getattr(defaults, name))
        if kind is tuple:
            item = type(getattr(defaults, name)[0])
            fields[name] = tuple(item(v) for v in value.split(","))
        else:
            fields[name] = kind(value)
    return degradations.ThumbnailRecipe(**fields)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    loop.options(parser, minutes=75.0, lr=1e-3, batch=16)
    parser.add_argument("--scale", type=int, choices=[2, 4], required=True)
    parser.add_argument("--name", required=True, help="weights name, e.g. span-x2")
    parser.add_argument("--method", default="span",
                        help="catalog method the weights serve under (default: span)")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--patch", type=int, default=None,
                        help="low-resolution patch side (default 48 at 2x, 32 at 4x)")
    parser.add_argument("--recipe", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one field of training/degradations.py's ThumbnailRecipe, "
                             "e.g. jpeg=0.5 or jpeg_quality=50,95 (repeatable)")
    args = parser.parse_args(argv)
    args.recipe = parse_recipe(args.recipe)
    args.patch = args.patch or (48 if args.scale == 2 else 32)
    return args


if __name__ == "__main__":
    loop.train(SuperResolution(parse_args()))
