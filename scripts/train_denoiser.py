"""Train the denoiser that blind deconvolution uses as its prior
(models/drunet.py; server/deblurring/deconvolve.py calls it at a noise
level that falls from 49/255 to the photo's own at every iteration).

    .venv/bin/python scripts/train_denoiser.py --run ../denoiser-runs/drunet \\
        --minutes 300 --init models/weights/drunet-denoiser.safetensors

(docs/models/deblur.md has the exact commands behind the
shipped weights.)

Data: the training photos (training/photos.py; the held-out VALIDATION
photos are never trained on). Each step takes random patches, flipped,
rotated and, half of the time, reduced by up to 2x first (so the network
sees both a photo's fine grain and its larger structures at the pixel
scale), and adds white Gaussian noise of a level drawn uniformly from
--sigma-min to --sigma-max (in 8-bit levels), a share of it the same in
every channel (training/degradations.py's add_noise). The network is told
the level and learns to remove it (L1 loss against the clean patch). No
8-bit rounding: what the splitting hands the denoiser is continuous.

Validation: PSNR (training/metrics.py, RGB) of the denoised centre crop of
each held-out photo at noise levels 5, 15, 25 and 50, beside the noisy
input's; the noise is seeded, so every validation sees the same.

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

from models import drunet  # noqa: E402
from models.architectures import drunet as descriptor  # noqa: E402
from models.loading import load_state_dict  # noqa: E402
from training import degradations, loop, metrics, photos  # noqa: E402
from training.record import write_weights  # noqa: E402

VALIDATION_LEVELS = (5, 15, 25, 50)     # 8-bit levels
VALIDATION_CROP = 256


class NoisyPatches(photos.RandomCrops):
    """Random (noisy patch, clean patch, noise level) training triples."""

    def __init__(self, paths: list[Path], patch: int, seed: int, sigma: tuple[float, float],
                 grey_noise: float):
        # a patch may be cut at up to twice its side and reduced
        super().__init__(paths, 2 * patch, seed)
        self.patch, self.sigma, self.grey_noise = patch, sigma, grey_noise

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noisy, clean, levels = [], [], []
        for _ in range(size):
            side = self.patch
            if self.rng.random() < 0.5:
                side = int(round(self.patch * self.rng.uniform(1.0, 2.0)))
            crop = self.crop(side)
            if side != self.patch:
                crop = np.asarray(Image.fromarray(crop).resize((self.patch, self.patch),
                                                               Image.Resampling.BICUBIC))
            sigma = self.rng.uniform(*self.sigma)
            grey = self.rng.random() < self.grey_noise
            noisy.append(degradations.add_noise(crop.astype(np.float64), sigma, grey, self.rng))
            clean.append(crop)
            levels.append(sigma / 255.0)
        noisy = torch.from_numpy(np.stack(noisy)).permute(0, 3, 1, 2).float().div_(255.0)
        return noisy, photos.to_tensor(np.stack(clean)), torch.tensor(levels, dtype=torch.float32)


def centre_crop(image: Image.Image, side: int) -> np.ndarray:
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    side = min(side, height, width) // 8 * 8
    top, left = (height - side) // 2, (width - side) // 2
    return pixels[top:top + side, left:left + side]


def validate(model: torch.nn.Module, held_out: dict[str, Image.Image]) -> dict:
    """PSNR of the denoised and of the noisy centre crops at each level."""
    device = next(model.parameters()).device
    result = {}
    for level in VALIDATION_LEVELS:
        rows = {}
        for index, (name, photo) in enumerate(held_out.items()):
            clean = centre_crop(photo, VALIDATION_CROP)
            rng = np.random.default_rng(1000 * index + level)
            noisy = degradations.add_noise(clean.astype(np.float64), level, False, rng)
            x = torch.from_numpy(noisy).permute(2, 0, 1)[None].float().div(255.0).to(device)
            denoised = photos.to_pixels(model(x, torch.tensor([level / 255.0], device=device)))
            rows[name] = {"network": metrics.psnr(denoised, clean),
                          "noisy_input": metrics.psnr(degradations.to_8bit(noisy), clean)}
        result["sigma-%d" % level] = {
            "photos": rows,
            "network": float(np.mean([r["network"] for r in rows.values()])),
            "noisy_input": float(np.mean([r["noisy_input"] for r in rows.values()]))}
    return result


class Denoising(loop.Task):
    clip = 1.0

    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.name = args.name
        self.hyper_parameters = {"colours": 3, "channels": list(args.channels),
                                 "blocks": list(args.blocks)}
        self.held_out = None

    def build(self):
        return {"model": descriptor.build(**self.hyper_parameters)}

    def start_from(self, networks, path):
        networks["model"].load_state_dict(load_state_dict(path), strict=True)
        return {"layers_taken": len(networks["model"].state_dict()), "layers_fresh": []}

    def data(self):
        return {"training_photos": sorted(p.name for p in photos.training_photos(self.args.photos)),
                "validation_photos": list(photos.VALIDATION),
                "recipe": {"patch": self.args.patch, "reduced": "half of the patches, by 1x-2x "
                                                                 "(bicubic)",
                           "noise_sigma": list(self.args.sigma), "grey_noise": self.args.grey_noise,
                           "noise": "white Gaussian, in 8-bit levels, no rounding"}}

    def sampler(self, seed):
        return NoisyPatches(photos.training_photos(self.args.photos), self.args.patch, seed,
                            tuple(self.args.sigma), self.args.grey_noise)

    def draw(self, sampler):
        return sampler.batch(self.args.batch)

    def forward(self, networks, batch):
        return networks["model"](batch[0], batch[2])

    def loss(self, output, batch):
        return (output - batch[1]).abs().mean(), {}

    def validate(self, networks):
        if self.held_out is None:
            self.held_out = photos.validation_set(self.args.photos)
        full = validate(networks["model"], self.held_out)
        return {case: {"network": round(v["network"], 3), "noisy_input": round(v["noisy_input"], 3)}
                for case, v in full.items()}, full

    def summary(self, point):
        return "val PSNR " + "  ".join("s%d %.2f" % (level, point["sigma-%d" % level]["network"])
                                       for level in VALIDATION_LEVELS)

    def export(self, weights, training, validation, curve):
        params = self.hyper_parameters
        parameters = sum(v.numel() for v in weights["model"].values())
        record = {
            "name": self.args.name, "method": self.args.method, "architecture": "drunet",
            "hyper_parameters": params, "scale": 1, "ops": ["deblur", "sharpen"],
            "title": "Blind deconvolution (estimated blur kernel, learned denoiser prior)",
            "description": ("Estimates the blur kernel from the photo itself, then deconvolves "
                            "with a denoiser of %dk parameters as the prior; camera shake, "
                            "motion and focus blur." % round(parameters / 1000)),
            "source": "trained by SharpFu's scripts/train_denoiser.py",
            "training": dict(training, patch=self.args.patch, loss="L1 (RGB)"),
            "validation": validation, "validation_curve": curve}
        write_weights(self.args.weights_dir, self.args.name, weights["model"], record,
                      "SharpFu scripts/train_denoiser.py")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    loop.options(parser, minutes=240.0, lr=5e-4, batch=12)
    parser.add_argument("--name", default="drunet-denoiser", help="weights name")
    parser.add_argument("--method", default="blind-deconvolution",
                        help="catalog method the weights serve under")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 1, 2, 2])
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--sigma", type=float, nargs=2, default=[0.0, 55.0],
                        metavar=("LOW", "HIGH"), help="noise levels, in 8-bit levels")
    parser.add_argument("--grey-noise", type=float, default=0.2,
                        help="share of the samples whose noise is the same in every channel")
    args = parser.parse_args(argv)
    if len(args.channels) != len(args.blocks):
        parser.error("one block count per level")
    if args.patch % drunet.DRUNet(3, tuple(args.channels), tuple(args.blocks)).multiple:
        parser.error("--patch must be a multiple of 2 ** (levels - 1)")
    return args


if __name__ == "__main__":
    loop.train(Denoising(parse_args()))
