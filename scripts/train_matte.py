"""Train SharpFu's matte refiner (models/matte_refiner.py) and its guided
upsampler (models/guided_upsampler.py) together, on the CPU.

    .venv/bin/python scripts/train_matte.py --run ../matte-runs/refiner --minutes 40

Data: training/composites.py. A pool of procedural alpha mattes is drawn once
(--pool of them, --seed); every step composites fresh foreground and
background crops from the training photos through them (the held-out
VALIDATION photos of training/photos.py are never used) and makes a fresh coarse mask.

* The refiner sees the composite at its working resolution: each matte is
  first shrunk by 1-2.5x (as a big photo is for the ~1 MP working size), so
  hair arrives as partial alpha; loss: L1 and gradient L1 on the first alpha
  and on every refinement pass, weighted up in the uncertain band, plus a
  binary cross-entropy teaching each pass's confidence whether its alpha is
  within 0.04 of the truth (the settling signal).
* The upsampler sees the matte at full resolution and the same composite
  shrunk 2-5x with its alpha (the true alpha, blurred and perturbed the way
  the refiner's output errs), and must give back the full-resolution alpha;
  loss: L1 and gradient L1, band-weighted.

Both train together in the one loop of training/loop.py (checkpoints,
resumption, the averaged weights that are exported); at the end
models/weights/matte-refiner.{safetensors,json} and
matte-upsampler.{safetensors,json} are written with their training record.
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

from models import guided_upsampler, matte_refiner, registry  # noqa: E402
from models.loading import load_state_dict  # noqa: E402
from training import composites, loop, photos  # noqa: E402
from training.record import write_weights  # noqa: E402
from training.metrics import sad_mse  # noqa: E402

METHOD = "mask-refiner"
# The confidence's cross-entropy against the matte losses: at 0.1 (the first
# runs) it stayed too timid to settle anything; 1.0 from the third run on.
CONFIDENCE_WEIGHT = 1.0


# -- data ----------------------------------------------------------------------

def edge_crop(rng: np.random.Generator, alpha: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left of a side x side crop, centred near the matte's edge most of the
    time (that is where the work is), anywhere otherwise."""
    h, w = alpha.shape
    edge = np.argwhere((alpha > 0.02) & (alpha < 0.98))
    if len(edge) and rng.random() < 0.85:
        cy, cx = edge[rng.integers(len(edge))]
        y, x = cy - side // 2 + rng.integers(-side // 4, side // 4 + 1), cx - side // 2
    else:
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return int(np.clip(y, 0, h - side)), int(np.clip(x, 0, w - side))


def shrink(a: np.ndarray, factor: float) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(a, np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    size = (int(round(a.shape[0] / factor)), int(round(a.shape[1] / factor)))
    t = F.interpolate(t, size=size, mode="area")
    return t[0, 0].numpy() if a.ndim == 2 else t[0].permute(1, 2, 0).numpy()


class Batches:
    def __init__(self, photos: composites.Photos, pool: list[np.ndarray], seed: int):
        self.photos, self.pool = photos, pool
        self.rng = np.random.default_rng(seed)

    def _matte(self) -> np.ndarray:
        alpha = self.pool[self.rng.integers(len(self.pool))]
        alpha = np.rot90(alpha, self.rng.integers(4))
        return np.ascontiguousarray(alpha[:, ::-1] if self.rng.random() < 0.5 else alpha)

    def refiner(self, size: int, patch: int) -> dict:
        images, masks, alphas = [], [], []
        for _ in range(size):
            alpha = self._matte()
            factor = self.rng.uniform(1.0, min(2.5, alpha.shape[0] / (patch + 8)))
            alpha = np.clip(shrink(alpha, factor), 0, 1)
            sample = composites.make_sample(self.rng, self.photos, *alpha.shape, alpha=alpha)
            y, x = edge_crop(self.rng, alpha, patch)
            crop = (slice(y, y + patch), slice(x, x + patch))
            images.append(sample.image[crop])
            masks.append(sample.mask[crop])
            alphas.append(alpha[crop])
        return {"image": to_tensor(np.stack(images)), "mask": to_tensor(np.stack(masks)),
                "alpha": to_tensor(np.stack(alphas))}

    def upsampler(self, size: int, patch: int) -> dict:
        factor = int(self.rng.integers(2, 6))
        images, alphas = [], []
        for _ in range(size):
            alpha = self._matte()
            y, x = edge_crop(self.rng, alpha, patch)
            alpha = alpha[y:y + patch, x:x + patch]
            fg, bg = self.photos.two(self.rng)
            image = composites.composite(alpha, composites.random_crop(self.rng, fg, patch, patch),
                                         composites.random_crop(self.rng, bg, patch, patch))
            images.append(image)
            alphas.append(alpha)
        image, alpha = to_tensor(np.stack(images)), to_tensor(np.stack(alphas))
        low = perturb(self.rng, F.avg_pool2d(alpha, factor))
        return {"image": image, "alpha": alpha, "image_lo": F.avg_pool2d(image, factor),
                "alpha_lo": low}


def perturb(rng: np.random.Generator, alpha: torch.Tensor) -> torch.Tensor:
    """A working-resolution alpha as the refiner gets it wrong: a little soft,
    a little off in level, a little noisy in the band."""
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, 1.0)
        k = torch.exp(-torch.arange(-2, 3, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
        k = k / k.sum()
        alpha = F.conv2d(F.pad(alpha, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
        alpha = F.conv2d(F.pad(alpha, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))
    if rng.random() < 0.3:
        alpha = alpha.clamp(1e-4, 1 - 1e-4) ** rng.uniform(0.75, 1.35)
    if rng.random() < 0.5:
        band = ((alpha > 0.01) & (alpha < 0.99)).float()
        alpha = alpha + band * torch.randn_like(alpha) * rng.uniform(0.0, 0.05)
    return alpha.clamp(0, 1)


def to_tensor(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, np.float32))
    return t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2)


# -- losses ---------------------------------------------------------------------

def band_weight(alpha: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """1 everywhere, 5 in the uncertain band: near soft alpha, and where the
    coarse mask is wrong."""
    soft = ((alpha > 0.01) & (alpha < 0.99)).float()
    if mask is not None:
        soft = torch.maximum(soft, ((mask - alpha).abs() > 0.5).float())
    return 1.0 + 4.0 * F.max_pool2d(soft, 7, stride=1, padding=3)


def gradients(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return a[..., 1:, :] - a[..., :-1, :], a[..., :, 1:] - a[..., :, :-1]


def matte_loss(pred: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    l1 = (weight * (pred - truth).abs()).mean()
    (py, px), (ty, tx) = gradients(pred), gradients(truth)
    grad = (weight[..., 1:, :] * (py - ty).abs()).mean() + (weight[..., :, 1:] * (px - tx).abs()).mean()
    return l1 + grad


def refiner_loss(passes: list[dict], truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weight = band_weight(truth, mask)
    total = 0.5 * matte_loss(passes[0]["alpha"], truth, weight)
    for p in passes[1:]:
        total = total + matte_loss(p["alpha"], truth, weight)
        right = ((p["alpha"] - truth).abs() < 0.04).float()
        total = total + CONFIDENCE_WEIGHT * F.binary_cross_entropy(
            p["confidence"].clamp(1e-5, 1 - 1e-5), right.detach())
    return total


# -- validation -----------------------------------------------------------------

@torch.inference_mode()
def validate(refiner, upsampler, samples: list[composites.Sample], iterations: int) -> dict:
    """Mean SAD and MSE on the held-out composites: the coarse mask, each
    refiner pass; and for the upsampler (4x), JBU-guided against bilinear."""
    refiner.eval()
    upsampler.eval()
    result = {"mask": [], "passes": [[] for _ in range(iterations + 1)],
              "up_bilinear": [], "up_guided": []}
    for s in samples:
        image = to_tensor(s.image[None])
        mask = to_tensor(s.mask[None])
        passes = refiner(image, mask, iterations)
        result["mask"].append(sad_mse(s.mask, s.alpha))
        for k, p in enumerate(passes):
            result["passes"][k].append(sad_mse(p["alpha"][0, 0].numpy(), s.alpha))
        truth = to_tensor(s.alpha[None])
        low, image_lo = F.avg_pool2d(truth, 4), F.avg_pool2d(image, 4)
        bilinear = F.interpolate(low, scale_factor=4, mode="bilinear", align_corners=False)
        r = upsampler.RADIUS
        guided = upsampler(F.pad(image, (r, r, r, r), mode="replicate"), low,
                           upsampler.low_guide(image_lo))
        result["up_bilinear"].append(sad_mse(bilinear[0, 0].numpy(), s.alpha))
        result["up_guided"].append(sad_mse(guided[0, 0].numpy(), s.alpha))

    def mean(pairs):
        a = np.array(pairs)
        return {"sad": round(float(a[:, 0].mean()), 3), "mse": round(float(a[:, 1].mean()), 3)}
    return {"mask": mean(result["mask"]),
            "passes": [mean(p) for p in result["passes"]],
            "upsampler_4x": {"bilinear": mean(result["up_bilinear"]),
                             "guided": mean(result["up_guided"])}}


@torch.inference_mode()
def settling(refiner, samples: list[composites.Sample], iterations: int) -> dict:
    """How the confidence behaves on the held-out composites: the share of
    pixels a refinement pass would settle at the refiner's threshold, and how
    often those are right (within 0.04 of the truth), beside the share right
    over all pixels."""
    refiner.eval()
    confidence, right = [], []
    for s in samples:
        passes = refiner(to_tensor(s.image[None]), to_tensor(s.mask[None]), iterations,
                         sparse=False)
        truth = to_tensor(s.alpha[None])
        for p in passes[1:]:
            confidence.append(p["confidence"].flatten())
            right.append(((p["alpha"] - truth).abs() < 0.04).flatten())
    confidence, right = torch.cat(confidence), torch.cat(right).float()
    above = confidence > refiner.settle
    return {"settle": round(float(refiner.settle), 3),
            "share_settling": round(float(above.float().mean()), 3),
            "right_if_settling": round(float(right[above].mean()), 4) if bool(above.any()) else None,
            "right_overall": round(float(right.mean()), 4)}


# -- the task -------------------------------------------------------------------

def take_weights(model: torch.nn.Module, source: dict) -> dict:
    """Copy `source` into `model` where it fits (see --init); what was done."""
    own = model.state_dict()
    taken, grown = [], []
    with torch.no_grad():
        for key, value in source.items():
            if key not in own:
                continue
            if own[key].shape == value.shape:
                own[key].copy_(value)
                taken.append(key)
            elif (own[key].dim() == 4 and own[key].shape[0] == value.shape[0]
                  and own[key].shape[1] > value.shape[1] and own[key].shape[2:] == value.shape[2:]):
                own[key].zero_()
                own[key][:, :value.shape[1]].copy_(value)
                grown.append(key)
    model.load_state_dict(own)
    return {"taken": len(taken), "grown": grown, "fresh": sorted(set(own) - set(taken) - set(grown))}


class Matting(loop.Task):
    name = "matte refiner and upsampler"
    clip = 1.0

    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.hyper_parameters = {"channels": args.channels, "iterations": args.iterations}
        self.held_out = None

    def build(self):
        return {"refiner": matte_refiner.MatteRefiner(**self.hyper_parameters),
                "upsampler": guided_upsampler.GuidedUpsampler()}

    def start_from(self, networks, path):
        """A weights folder holding matte-refiner.safetensors and
        matte-upsampler.safetensors (e.g. models/weights): tensors of the same
        shape are taken, layers that gained input channels keep their old
        weights for the old inputs (new ones start at zero)."""
        return {role: take_weights(networks[role],
                                   load_state_dict(path / ("matte-%s.safetensors" % role)))
                for role in ("refiner", "upsampler")}

    def history_of(self, path):
        return path / "matte-refiner.safetensors"

    def data(self):
        return {"training_photos": sorted(p.name for p in photos.training_photos(self.args.photos)),
                "validation_photos": list(photos.VALIDATION),
                "mattes": "%d procedural mattes of %d px (training/composites.py, seed %d)"
                          % (self.args.pool, self.args.matte_size, self.args.seed),
                "validation_set": "8 composites of 320 x 320 from the validation photos, "
                                  "seed %d" % composites.VALIDATION_SEED}

    def sampler(self, seed):
        rng = np.random.default_rng(self.args.seed)
        pool = [composites.make_matte(rng, self.args.matte_size, self.args.matte_size)
                for _ in range(self.args.pool)]
        return Batches(composites.Photos(photos.training_photos(self.args.photos)), pool, seed)

    def draw(self, sampler):
        return (sampler.refiner(self.args.batch, self.args.patch),
                sampler.upsampler(self.args.batch, self.args.up_patch))

    def forward(self, networks, batch):
        b, u = batch
        upsampler = networks["upsampler"]
        r = upsampler.RADIUS
        passes = networks["refiner"](b["image"], b["mask"])
        guided = upsampler(F.pad(u["image"], (r, r, r, r), mode="replicate"), u["alpha_lo"],
                           upsampler.low_guide(u["image_lo"]))
        return passes, guided

    def loss(self, outputs, batch):
        (passes, guided), (b, u) = outputs, batch
        loss_r = refiner_loss(passes, b["alpha"], b["mask"])
        loss_u = matte_loss(guided, u["alpha"], band_weight(u["alpha"]))
        return loss_r + loss_u, {"loss_refiner": loss_r.item(), "loss_upsampler": loss_u.item()}

    def samples(self):
        if self.held_out is None:
            self.held_out = composites.validation_set(self.args.photos, 8, 320, 320)
        return self.held_out

    def validate(self, networks):
        point = validate(networks["refiner"].cpu(), networks["upsampler"].cpu(), self.samples(),
                         self.hyper_parameters["iterations"])
        return point, point

    def summary(self, point):
        return "val SAD mask %.2f passes %s  up 4x bilinear %.2f guided %.2f" % (
            point["mask"]["sad"], " ".join("%.2f" % p["sad"] for p in point["passes"]),
            point["upsampler_4x"]["bilinear"]["sad"], point["upsampler_4x"]["guided"]["sad"])

    def export(self, weights, training, validation, curve):
        refiner = matte_refiner.MatteRefiner(**self.hyper_parameters)
        refiner.load_state_dict(weights["refiner"])
        report = settling(refiner, self.samples(), self.hyper_parameters["iterations"])
        print("settling: %s" % report, flush=True)
        validation = dict(validation, settling=report)
        for role, title, description, extra in (
                ("refiner", "Mask-guided iterative matte refiner (SharpFu-trained)",
                 "Refines a coarse mask into an alpha matte at a working resolution of about a "
                 "megapixel: mask-guided features, %d refinement passes in which confident "
                 "pixels settle and the work goes to the uncertain band."
                 % self.hyper_parameters["iterations"],
                 {"patch": self.args.patch, "loss": "band-weighted L1 + gradient L1 on every "
                                                    "pass, BCE on confidence"}),
                ("upsampler", "Guided matte upsampler (SharpFu-trained)",
                 "Brings the working-resolution alpha to full resolution: joint-bilateral "
                 "upsampling guided by the full-resolution image, then a detail step on "
                 "full-resolution tiles in the uncertain band.",
                 {"patch": self.args.up_patch, "scales": [2, 3, 4, 5],
                  "loss": "band-weighted L1 + gradient L1"})):
            architecture, params = registry.detect(weights[role])
            record = {
                "name": "matte-" + role, "method": METHOD, "role": role,
                "architecture": architecture.name, "hyper_parameters": params,
                "receptive_radius": architecture.spec(**params).receptive_radius,
                "scale": 1, "ops": ["matte"], "title": title, "description": description,
                "source": "trained by SharpFu's scripts/train_matte.py",
                "training": dict(training, **extra), "validation": validation,
                "validation_curve": curve}
            write_weights(self.args.weights_dir, "matte-" + role, weights[role], record,
                               "SharpFu scripts/train_matte.py")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    loop.options(parser, minutes=40.0, lr=2e-3, batch=4, ema=0.995)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--pool", type=int, default=240, help="procedural mattes drawn")
    parser.add_argument("--matte-size", type=int, default=384)
    parser.add_argument("--patch", type=int, default=128, help="refiner patch side")
    parser.add_argument("--up-patch", type=int, default=120, help="upsampler patch side "
                        "(full resolution; a multiple of 2, 3, 4 and 5)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    loop.train(Matting(parse_args()))
