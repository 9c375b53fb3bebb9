"""Train SharpFu's matte refiner (models/matte_refiner.py) and its guided
upsampler (models/guided_upsampler.py) together, on the CPU.

    OMP_WAIT_POLICY=PASSIVE nice -n 19 .venv/bin/python scripts/train_matte.py \\
        --run ../matte-runs/refiner --minutes 40 --threads 2

Data: scripts/matte_data.py. A pool of procedural alpha mattes is drawn once
(--pool of them, --seed); every step composites fresh foreground and
background crops from the training photos through them (the held-out
VALIDATION photos are never used) and makes a fresh coarse mask.

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

Both keep an exponential moving average of their weights, which is what is
exported. The run folder holds checkpoint.pt (resumable) and log.jsonl; at
the end models/weights/matte-refiner.{safetensors,json} and
matte-upsampler.{safetensors,json} are written with their training record.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import guided_upsampler, matte_refiner, registry  # noqa: E402
from models.loading import load_state_dict  # noqa: E402
from scripts import matte_data  # noqa: E402
from scripts.batch_workers import batches  # noqa: E402
from scripts.train_sr import (DEFAULT_PHOTOS, EMA, VALIDATION, add_gpu_options,  # noqa: E402
                              autocast, describe_device, git_commit, learning_rate,
                              training_history)

METHOD = "mask-refiner"
# The confidence's cross-entropy against the matte losses: at 0.1 (the first
# runs) it stayed too timid to settle anything; 1.0 from the third run on.
CONFIDENCE_WEIGHT = 1.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, action="append")
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--weights-dir", type=Path, default=registry.WEIGHTS_DIR)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--pool", type=int, default=240, help="procedural mattes drawn")
    parser.add_argument("--matte-size", type=int, default=384)
    parser.add_argument("--patch", type=int, default=128, help="refiner patch side")
    parser.add_argument("--up-patch", type=int, default=120, help="upsampler patch side "
                        "(full resolution; a multiple of 2, 3, 4 and 5)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--validate-every", type=float, default=300.0, help="seconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    add_gpu_options(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, help="start from a run's checkpoint.pt, or from "
                        "a weights folder holding matte-refiner.safetensors and "
                        "matte-upsampler.safetensors (e.g. models/weights): tensors of the "
                        "same shape are taken, layers that gained input channels keep their "
                        "old weights for the old inputs (new ones start at zero)")
    parser.add_argument("--export-only", action="store_true")
    args = parser.parse_args(argv)
    args.photos = args.photos or DEFAULT_PHOTOS
    return args


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
    def __init__(self, photos: matte_data.Photos, pool: list[np.ndarray], seed: int):
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
            sample = matte_data.make_sample(self.rng, self.photos, *alpha.shape, alpha=alpha)
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
            image = matte_data.composite(alpha, matte_data.random_crop(self.rng, fg, patch, patch),
                                         matte_data.random_crop(self.rng, bg, patch, patch))
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

def sad_mse(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Composition-1k units: SAD in thousands, MSE x 1000."""
    d = pred.astype(np.float64) - truth
    return float(np.abs(d).sum() / 1000), float((d * d).mean() * 1000)


@torch.inference_mode()
def validate(refiner, upsampler, samples: list[matte_data.Sample], iterations: int) -> dict:
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
def settling(refiner, samples: list[matte_data.Sample], iterations: int) -> dict:
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


# -- export ---------------------------------------------------------------------

def earlier_runs(meta: dict) -> list[dict]:
    """The runs these weights grew from (--init), oldest last."""
    runs = []
    if meta.get("init") and "weights" in meta["init"]:
        # Shipped weights: their record already holds the runs behind them.
        return training_history(Path(meta["init"]["weights"]) / "matte-refiner.safetensors")
    while meta.get("init") and Path(meta["init"].get("checkpoint", "")).is_file():
        path = meta["init"]["checkpoint"]
        source = torch.load(path, map_location="cpu", weights_only=True)
        meta = source["meta"]
        runs.append({"checkpoint": path, "steps": source["step"],
                     "training_seconds": round(source["elapsed"], 1),
                     "commands": meta["commands"], "git": meta["git"]})
    return runs


def export(args, state: dict, val: dict, curve: list, samples: list) -> None:
    from safetensors.torch import save_file
    refiner = matte_refiner.MatteRefiner(args.channels, args.iterations)
    refiner.load_state_dict(with_settle(state["ema_refiner"]))
    report = settling(refiner, samples, args.iterations)
    print("settling: %s" % report, flush=True)
    state["ema_refiner"] = refiner.state_dict()
    val = dict(val, settling=report)
    args.weights_dir.mkdir(parents=True, exist_ok=True)
    meta = state["meta"]
    training = {
        "commands": meta["commands"], "data": meta["data"], "git": meta["git"],
        "device": meta["device"], "torch": torch.__version__, "started": meta["started"],
        "training_seconds": round(state["elapsed"], 1), "steps": state["step"],
        "batch": args.batch, "optimiser": "Adam, lr %g, warm-up then cosine to 1%%" % args.lr,
        "ema": args.ema, "init": meta.get("init"), "earlier_runs": earlier_runs(meta)}
    for role, key, title, description, extra in (
            ("refiner", "ema_refiner", "Mask-guided iterative matte refiner (SharpFu-trained)",
             "Refines a coarse mask into an alpha matte at a working resolution of about a "
             "megapixel: mask-guided features, %d refinement passes in which confident pixels "
             "settle and the work goes to the uncertain band." % args.iterations,
             {"patch": args.patch, "loss": "band-weighted L1 + gradient L1 on every pass, "
                                           "BCE on confidence"}),
            ("upsampler", "ema_upsampler", "Guided matte upsampler (SharpFu-trained)",
             "Brings the working-resolution alpha to full resolution: joint-bilateral upsampling "
             "guided by the full-resolution image, then a detail step on full-resolution tiles "
             "in the uncertain band.",
             {"patch": args.up_patch, "scales": [2, 3, 4, 5],
              "loss": "band-weighted L1 + gradient L1"})):
        name = "matte-" + role
        tensors = {k: v.detach().float().contiguous().cpu() for k, v in state[key].items()}
        path = args.weights_dir / (name + ".safetensors")
        save_file(tensors, str(path), metadata={"trained_by": "SharpFu scripts/train_matte.py"})
        _, architecture, params = registry.load(path)
        record = {
            "name": name, "method": METHOD, "role": role, "architecture": architecture.name,
            "hyper_parameters": params, "parameters": sum(v.numel() for v in tensors.values()),
            "receptive_radius": architecture.receptive_radius(**params), "scale": 1,
            "ops": ["matte"], "title": title, "description": description,
            "source": "trained by SharpFu's scripts/train_matte.py",
            "training": dict(training, **extra),
            "validation": val, "validation_curve": curve}
        path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
        print("wrote %s (%d parameters)" % (path, record["parameters"]), flush=True)


# -- main -----------------------------------------------------------------------

def with_settle(shadow: dict) -> dict:
    """Checkpoints from before `settle` was saved with the weights lack it."""
    return dict({"settle": torch.tensor(0.9)}, **shadow)


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


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.run.mkdir(parents=True, exist_ok=True)
    checkpoint_path, log_path = args.run / "checkpoint.pt", args.run / "log.jsonl"
    device = torch.device(args.device)
    refiner = matte_refiner.MatteRefiner(args.channels, args.iterations).to(device)
    upsampler = guided_upsampler.GuidedUpsampler().to(device)
    optimiser = torch.optim.Adam([{"params": refiner.parameters()},
                                  {"params": upsampler.parameters()}], lr=args.lr)
    command = shlex.join([Path(sys.executable).name] + sys.argv)
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        refiner.load_state_dict(with_settle(state["refiner"]))
        upsampler.load_state_dict(state["upsampler"])
        optimiser.load_state_dict(state["optimiser"])
        if not args.export_only:
            state["meta"]["commands"].append(command)
    else:
        if args.export_only:
            raise SystemExit("%s has no checkpoint to export" % args.run)
        training = matte_data.training_photos(args.photos)
        init = None
        if args.init:
            if args.init.is_dir():
                source = {"ema_" + role: load_state_dict(args.init / ("matte-%s.safetensors"
                                                                      % role))
                          for role in ("refiner", "upsampler")}
                init = {"weights": str(args.init)}
            else:
                # Our own checkpoint: tensors and plain containers only, read safely.
                source = torch.load(args.init, map_location="cpu", weights_only=True)
                init = {"checkpoint": str(args.init), "steps": source["step"],
                        "seconds": round(source["elapsed"], 1)}
            init.update({"refiner": take_weights(refiner, source["ema_refiner"]),
                         "upsampler": take_weights(upsampler, source["ema_upsampler"])})
            print("started from %s: %s" % (args.init, init), flush=True)
        state = {"step": 0, "elapsed": 0.0, "meta": {
            "init": init,
            "commands": [command],
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git": git_commit(), "device": describe_device(device, args.threads),
            "data": {"folders": [str(p) for p in args.photos],
                     "training_photos": sorted(p.name for p in training),
                     "validation_photos": list(VALIDATION),
                     "mattes": "%d procedural mattes of %d px (scripts/matte_data.py, seed %d)"
                               % (args.pool, args.matte_size, args.seed),
                     "validation_set": "8 composites of 320 x 320 from the validation photos, "
                                       "seed %d" % matte_data.VALIDATION_SEED,
                     "source": "scripts/fetch_training_photos.py rebuilds the photo folders "
                               "from public packages (see their ATTRIBUTION.md)"}}}
    ema_refiner, ema_upsampler = EMA(refiner, args.ema), EMA(upsampler, args.ema)
    if "ema_refiner" in state:
        ema_refiner.shadow = {k: v.to(device) for k, v in with_settle(state["ema_refiner"]).items()}
        ema_upsampler.shadow = {k: v.to(device) for k, v in state["ema_upsampler"].items()}
    val_samples = matte_data.validation_set(args.photos, 8, 320, 320)

    def evaluate() -> dict:
        r = matte_refiner.MatteRefiner(args.channels, args.iterations)
        r.load_state_dict(with_settle(ema_refiner.shadow))
        u = guided_upsampler.GuidedUpsampler()
        u.load_state_dict(ema_upsampler.shadow)
        return validate(r, u, val_samples, args.iterations)

    def save() -> None:
        state.update(refiner=refiner.state_dict(), upsampler=upsampler.state_dict(),
                     optimiser=optimiser.state_dict(), ema_refiner=ema_refiner.shadow,
                     ema_upsampler=ema_upsampler.shadow)
        torch.save(state, checkpoint_path.with_suffix(".tmp"))
        os.replace(checkpoint_path.with_suffix(".tmp"), checkpoint_path)

    curve = [json.loads(line)["val"] for line in open(log_path)] if log_path.exists() else []
    if args.export_only:
        state.update(ema_refiner=ema_refiner.shadow, ema_upsampler=ema_upsampler.shadow)
        val = evaluate()
        export(args, state, val, curve, val_samples)
        return

    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    pool = [matte_data.make_matte(rng, args.matte_size, args.matte_size) for _ in range(args.pool)]
    print("drew %d mattes in %.0f s" % (len(pool), time.perf_counter() - started), flush=True)
    photos = matte_data.Photos(matte_data.training_photos(args.photos))
    seed = args.seed + state["step"]

    def draw(sampler: Batches) -> tuple[dict, dict]:
        return sampler.refiner(args.batch, args.patch), sampler.upsampler(args.batch, args.up_patch)
    stream = batches(Batches(photos, pool, seed), draw, seed, args.workers,
                     pin_memory=device.type == "cuda")
    budget = args.minutes * 60.0
    print("training %d + %d parameters, %s" % (
        matte_refiner.parameters(refiner), guided_upsampler.parameters(upsampler),
        state["meta"]["device"]), flush=True)
    log = open(log_path, "a")
    if not curve:
        point = dict(evaluate(), step=0, seconds=0.0)
        curve.append(point)
        log.write(json.dumps({"step": 0, "val": point}) + "\n")
        print("start: %s" % json.dumps(point), flush=True)
    last_val = state["elapsed"]
    losses = []
    while state["elapsed"] < budget:
        t0 = time.perf_counter()
        refiner.train()
        upsampler.train()
        lr = learning_rate(args.lr, state["elapsed"] / budget)
        for group in optimiser.param_groups:
            group["lr"] = lr
        b, u = next(stream)
        b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
        u = {k: v.to(device, non_blocking=True) for k, v in u.items()}
        r = upsampler.RADIUS
        with autocast(device, args.bf16):
            passes = refiner(b["image"], b["mask"])
            guided = upsampler(F.pad(u["image"], (r, r, r, r), mode="replicate"), u["alpha_lo"],
                               upsampler.low_guide(u["image_lo"]))
        passes = [{k: v.float() if v.is_floating_point() else v for k, v in p.items()}
                  for p in passes]
        loss_r = refiner_loss(passes, b["alpha"], b["mask"])
        loss_u = matte_loss(guided.float(), u["alpha"], band_weight(u["alpha"]))
        optimiser.zero_grad(set_to_none=True)
        (loss_r + loss_u).backward()
        torch.nn.utils.clip_grad_norm_(list(refiner.parameters()) + list(upsampler.parameters()), 1.0)
        optimiser.step()
        state["step"] += 1
        ema_refiner.update(refiner, state["step"])
        ema_upsampler.update(upsampler, state["step"])
        losses.append((loss_r.item(), loss_u.item()))
        state["elapsed"] += time.perf_counter() - t0
        done = state["elapsed"] >= budget
        if done or state["elapsed"] - last_val >= args.validate_every:
            point = dict(evaluate(), step=state["step"], seconds=round(state["elapsed"], 1))
            curve.append(point)
            mean = np.mean(losses, 0)
            log.write(json.dumps({"step": state["step"], "loss_refiner": float(mean[0]),
                                  "loss_upsampler": float(mean[1]), "lr": lr, "val": point}) + "\n")
            log.flush()
            print("step %d  %.0f s  loss %.4f / %.4f  val SAD mask %.2f passes %s  up 4x "
                  "bilinear %.2f guided %.2f" % (
                      state["step"], state["elapsed"], mean[0], mean[1], point["mask"]["sad"],
                      " ".join("%.2f" % p["sad"] for p in point["passes"]),
                      point["upsampler_4x"]["bilinear"]["sad"],
                      point["upsampler_4x"]["guided"]["sad"]), flush=True)
            losses = []
            last_val = state["elapsed"]
            save()
    log.close()
    save()
    export(args, state, curve[-1], curve, val_samples)


if __name__ == "__main__":
    main()
