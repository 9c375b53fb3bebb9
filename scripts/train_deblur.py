"""Train SharpFu's deblurring network (models/mimo_unet.py) on synthetic blur.

    .venv/bin/python scripts/train_deblur.py --run runs/mimo-unet-small \\
        --name mimo-unet-small --channels 16 --blocks 6 --minutes 100

Data: the training photos (training/photos.py; the held-out VALIDATION
photos are never trained on: they are this script's validation set and
bench/deblur_quality.py's photos). Each step cuts random patches, flips and
rotates them and blurs them (training/degradations.py: camera-shake
trajectories, straight motion, defocus discs, Gaussians, some left sharp;
then noise, 8-bit rounding and sometimes JPEG). A patch is blurred from a
crop larger by the kernel's reach, so its edges are blurred by real
picture, not by padding.

Loss, as in the paper: L1 between each of the three outputs and the sharp
patch at that size (bilinear downscales, as the authors' code makes them),
plus 0.1 x the L1 between their 2-D Fourier spectra (real and imaginary
parts), which weighs the fine detail that pixel L1 lets the network blur.

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
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import mimo_unet, registry  # noqa: E402
from models.architectures import mimo_unet as mimo_unet_arch  # noqa: E402
from server.methods.unsharp import UnsharpMask  # noqa: E402
from training import degradations, loop, metrics, photos  # noqa: E402
from training.record import write_weights  # noqa: E402

FFT_WEIGHT = 0.1


class Patches(photos.RandomCrops):
    """Random (blurry, sharp) training pairs from the photos."""

    def __init__(self, paths: list[Path], patch: int, seed: int,
                 recipe: degradations.BlurRecipe):
        super().__init__(paths, patch + 2 * degradations.largest_radius(recipe), seed)
        self.patch, self.recipe = patch, recipe

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        kernel, _ = degradations.random_kernel(self.rng, self.recipe)
        reach = kernel.shape[0] // 2
        scene = self.crop(self.patch + 2 * reach)
        blurry = degradations.blurred_photo(scene, kernel, self.rng, self.recipe)
        return blurry, scene[reach:reach + self.patch, reach:reach + self.patch]

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        blurry, sharp = zip(*(self.pair() for _ in range(size)))
        return photos.to_tensor(np.stack(blurry)), photos.to_tensor(np.stack(sharp))


def spectrum(x: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(torch.fft.rfft2(x))


def paper_loss(outputs: list[torch.Tensor], sharp: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Multi-scale L1 plus 0.1 x multi-scale L1 of the spectra."""
    targets = [F.interpolate(sharp, scale_factor=0.25, mode="bilinear"),
               F.interpolate(sharp, scale_factor=0.5, mode="bilinear"), sharp]
    content = sum(F.l1_loss(out, target) for out, target in zip(outputs, targets))
    frequency = sum(F.l1_loss(spectrum(out), spectrum(target))
                    for out, target in zip(outputs, targets))
    return content + FFT_WEIGHT * frequency, {"content": content.item(),
                                              "fft": frequency.item()}


def validate(model: torch.nn.Module, held_out: dict[str, np.ndarray]) -> dict:
    """PSNR (8 px shaved) of the network's result, of the blurry input and
    of the server's unsharp mask (the classical fallback the network must
    beat to be the default deblurrer), for each fixed case on each held-out
    photo, and their means."""
    device = next(model.parameters()).device
    result = {}
    for name, case in degradations.BLUR_CASES.items():
        rows = {}
        for photo_name, sharp in held_out.items():
            blurry = case.apply(sharp)
            x = photos.to_tensor(blurry)
            rows[photo_name] = {
                "network": metrics.psnr(photos.to_pixels(model.restore(x.to(device))), sharp),
                "blurry_input": metrics.psnr(blurry, sharp),
                "unsharp": metrics.psnr(photos.to_pixels(UnsharpMask().forward(x, 1)), sharp)}
        result[name] = {key: float(np.mean([r[key] for r in rows.values()]))
                        for key in ("network", "blurry_input", "unsharp")}
        result[name]["photos"] = rows
    return result


class Deblurring(loop.Task):
    clip = 1.0

    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.name = args.name
        self.hyper_parameters = {"channels": args.channels, "blocks": args.blocks}
        if args.init:
            # Detected and checked strictly, as users' checkpoints are.
            self.hyper_parameters = registry.Weights.from_file(args.init).params
        self.recipe = degradations.BlurRecipe()
        self.held_out = None

    def build(self):
        model = mimo_unet.MIMOUNet(**self.hyper_parameters)
        # The three residual outputs start at zero: an untrained network
        # returns its input instead of noise, and training starts from "no
        # harm done" (the paper's initialisation is PyTorch's default).
        for layer in (model.feat_extract[5], *model.ConvsOut):
            torch.nn.init.zeros_(layer.main[0].weight)
            torch.nn.init.zeros_(layer.main[0].bias)
        return {"model": model}

    def start_from(self, networks, path):
        # Restorer is MIMOUNet with another forward, so the names are the same.
        networks["model"].load_state_dict(registry.load(path).model.state_dict())
        return {}

    def data(self):
        return {"training_photos": sorted(p.name for p in photos.training_photos(self.args.photos)),
                "validation_photos": list(photos.VALIDATION),
                "recipe": self.recipe.describe(),
                "validation_cases": {n: c.title for n, c in degradations.BLUR_CASES.items()}}

    def sampler(self, seed):
        return Patches(photos.training_photos(self.args.photos), self.args.patch, seed,
                       self.recipe)

    def draw(self, sampler):
        return sampler.batch(self.args.batch)

    def forward(self, networks, batch):
        return networks["model"](batch[0])

    def loss(self, outputs, batch):
        return paper_loss(outputs, batch[1])

    def validate(self, networks):
        if self.held_out is None:
            self.held_out = {name: np.asarray(image) for name, image
                             in photos.validation_set(self.args.photos).items()}
        full = validate(networks["model"], self.held_out)
        return {name: {key: round(v[key], 3) for key in ("network", "blurry_input", "unsharp")}
                for name, v in full.items()}, full

    def summary(self, point):
        return "val PSNR " + "  ".join("%s %.2f (blurry %.2f)" % (
            n, point[n]["network"], point[n]["blurry_input"]) for n in degradations.BLUR_CASES)

    def export(self, weights, training, validation, curve):
        params = self.hyper_parameters
        parameters = sum(v.numel() for v in weights["model"].values())
        record = {
            "name": self.args.name, "method": self.args.method or self.args.name,
            "architecture": mimo_unet_arch.NAME, "hyper_parameters": params,
            "receptive_radius": mimo_unet_arch.receptive_radius(**params),
            "scale": 1, "ops": ["deblur", "sharpen"],
            "title": "MIMO-UNet deblurring, small (SharpFu-trained, %d channels x %d blocks)"
                     % (params["channels"], params["blocks"]),
            # what it achieved, not what it was trained for: users pick by this
            "description": ("Blind deblurring, a small MIMO-UNet (%.1fM parameters; the "
                            "paper's has 6.8M) trained on synthetic blur of photos. On held-out "
                            "photos it gains %s over the blurry input." % (
                                parameters / 1e6, ", ".join(
                                    "%+.2f dB on %s" % (v["network"] - v["blurry_input"], name)
                                    for name, v in validation.items()))),
            "source": "trained by SharpFu's scripts/train_deblur.py",
            "training": dict(training, patch=self.args.patch,
                             loss="L1 at 1/4, 1/2 and full size + %g x L1 of their 2-D FFTs"
                                  % FFT_WEIGHT),
            "validation": {"measure": "PSNR (dB, RGB, 8 px border shaved), mean over the "
                                      "held-out photos",
                           **{name: {"network": round(v["network"], 3),
                                     "blurry_input": round(v["blurry_input"], 3),
                                     "unsharp": round(v["unsharp"], 3),
                                     "photos": {p: {k: round(x, 3) for k, x in r.items()}
                                                for p, r in v["photos"].items()}}
                              for name, v in validation.items()}},
            "validation_curve": curve}
        write_weights(self.args.weights_dir, self.args.name, weights["model"], record,
                           "SharpFu scripts/train_deblur.py")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    loop.options(parser, minutes=90.0, lr=5e-4, batch=8, validate_every=600.0)
    parser.add_argument("--name", required=True, help="weights name, e.g. mimo-unet-small")
    parser.add_argument("--method", default=None,
                        help="catalog method the weights serve under (default: --name)")
    parser.add_argument("--channels", type=int, default=16,
                        help="full-size channels (the paper's MIMO-UNet: 32); with --init, "
                             "the weights' own")
    parser.add_argument("--blocks", type=int, default=6,
                        help="residual blocks per stage (MIMO-UNet 8, MIMO-UNet+ 20)")
    parser.add_argument("--patch", type=int, default=128, help="patch side (multiple of 4)")
    args = parser.parse_args(argv)
    if args.patch % mimo_unet.MULTIPLE:
        parser.error("--patch must be a multiple of %d" % mimo_unet.MULTIPLE)
    return args


if __name__ == "__main__":
    loop.train(Deblurring(parse_args()))
