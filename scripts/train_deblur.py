"""Train SharpFu's deblurring network (models/mimo_unet.py) on synthetic blur.

    nice -n 19 .venv/bin/python scripts/train_deblur.py --run runs/mimo-unet-small \\
        --name mimo-unet-small --channels 16 --blocks 6 --minutes 100

Data: every photo in the --photos folders (default: ../shared/data/photos and
../shared/data/photos-by-sa beside the repository; scripts/
fetch_training_photos.py rebuilds both from public packages), except the
held-out photos of scripts/train_sr.py (VALIDATION), which are never trained
on: they are this script's validation set and bench/deblur_quality.py's
photos. Each step cuts random patches, flips and rotates them and blurs them
with scripts/blur_kernels.py (camera-shake trajectories, straight motion,
defocus discs, Gaussians, some left sharp; then noise, 8-bit rounding and
sometimes JPEG). A patch is blurred from a crop larger by the kernel's
reach, so its edges are blurred by real picture, not by padding.

Loss, as in the paper: L1 between each of the three outputs and the sharp
patch at that size (bilinear downscales, as the authors' code makes them),
plus 0.1 x the L1 between their 2-D Fourier spectra (real and imaginary
parts), which weighs the fine detail that pixel L1 lets the network blur.

The run folder holds checkpoint.pt (every few minutes and at the end; the
same --run resumes) and log.jsonl (loss, learning rate, validation PSNR).
Training stops after --minutes of training time, on which clock the
learning-rate schedule runs. Then the EMA weights go to
models/weights/NAME.safetensors with the record NAME.json; --export-only
writes them from the checkpoint again.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

# Training shares the machine (niced): OpenMP threads that spin while they
# wait for a descheduled sibling made each step 5 to 7 times slower there
# than threads that sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import mimo_unet, mimo_unet_weights, registry  # noqa: E402
from scripts import blur_kernels  # noqa: E402
from server.methods.unsharp import UnsharpMask  # noqa: E402
from scripts.batch_workers import batches  # noqa: E402
from scripts.train_sr import (DEFAULT_PHOTOS, EMA, VALIDATION, add_gpu_options,  # noqa: E402
                              autocast, describe_device, find_photos, git_commit,
                              learning_rate, read_rgb, to_tensor, training_history,
                              validation_set)

FFT_WEIGHT = 0.1


class Patches:
    """Random (blurry, sharp) training pairs from the photos."""

    def __init__(self, photos: list[Path], patch: int, seed: int,
                 recipe: blur_kernels.Recipe = blur_kernels.Recipe()):
        self.patch, self.recipe = patch, recipe
        self.images = [np.asarray(read_rgb(path)) for path in photos]
        # the longest kernel reaches about half its path length each way
        self.border = int(math.ceil(recipe.motion_length[1] / 2)) + 2 + int(
            math.ceil(3.5 * recipe.gaussian_sigma[1]))
        side = patch + 2 * self.border
        small = [p.name for p, a in zip(photos, self.images) if min(a.shape[:2]) < side]
        if small:
            raise SystemExit("photos smaller than a %d px patch: %s" % (side, ", ".join(small)))
        # Big photos hold more distinct patches, but not in proportion to
        # their area, or the few wallpapers would crowd out everything else.
        weights = np.array([math.sqrt(a.shape[0] * a.shape[1]) for a in self.images])
        self.weights = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        kernel, _ = blur_kernels.random_kernel(self.rng, self.recipe)
        reach = kernel.shape[0] // 2
        side = self.patch + 2 * reach
        image = self.images[self.rng.choice(len(self.images), p=self.weights)]
        y = self.rng.integers(0, image.shape[0] - side + 1)
        x = self.rng.integers(0, image.shape[1] - side + 1)
        scene = image[y:y + side, x:x + side]
        if self.rng.random() < 0.5:
            scene = scene[:, ::-1]
        scene = np.ascontiguousarray(np.rot90(scene, self.rng.integers(4)))
        blurry = blur_kernels.degrade(scene, kernel, self.rng, self.recipe)
        return blurry, scene[reach:reach + self.patch, reach:reach + self.patch]

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        blurry, sharp = zip(*(self.pair() for _ in range(size)))
        return to_tensor(np.stack(blurry)), to_tensor(np.stack(sharp))


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


@torch.inference_mode()
def restore(model: torch.nn.Module, blurry: np.ndarray) -> np.ndarray:
    out = model.restore(to_tensor(blurry).to(next(model.parameters()).device))
    return out[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


@torch.inference_mode()
def unsharp(blurry: np.ndarray) -> np.ndarray:
    """The server's classical fallback (server/methods/unsharp.py), which
    the network must beat to be the default deblurrer."""
    out = UnsharpMask().forward(to_tensor(blurry), 1)
    return out[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


@torch.inference_mode()
def validate(model: torch.nn.Module, photos: dict[str, np.ndarray]) -> dict:
    """PSNR (8 px shaved) of the network's result, of the blurry input and
    of the server's unsharp mask, for each fixed case on each validation
    photo, and their means."""
    model.eval()
    result = {}
    for name, case in blur_kernels.FIXED.items():
        rows = {}
        for photo_name, sharp in photos.items():
            blurry = case.apply(sharp)
            rows[photo_name] = {"network": blur_kernels.psnr(restore(model, blurry), sharp),
                                "blurry_input": blur_kernels.psnr(blurry, sharp),
                                "unsharp": blur_kernels.psnr(unsharp(blurry), sharp)}
        result[name] = {key: float(np.mean([r[key] for r in rows.values()]))
                        for key in ("network", "blurry_input", "unsharp")}
        result[name]["photos"] = rows
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, action="append",
                        help="folder of training photos (repeatable; default: %s)"
                        % ", ".join(str(p) for p in DEFAULT_PHOTOS))
    parser.add_argument("--run", type=Path, required=True,
                        help="folder for the checkpoint and log (resumed if it has one)")
    parser.add_argument("--name", required=True, help="weights name, e.g. mimo-unet-small")
    parser.add_argument("--method", default=None,
                        help="catalog method the weights serve under (default: --name)")
    parser.add_argument("--weights-dir", type=Path, default=registry.WEIGHTS_DIR)
    parser.add_argument("--channels", type=int, default=16,
                        help="full-size channels (the paper's MIMO-UNet: 32)")
    parser.add_argument("--blocks", type=int, default=6,
                        help="residual blocks per stage (MIMO-UNet 8, MIMO-UNet+ 20)")
    parser.add_argument("--patch", type=int, default=128, help="patch side (multiple of 4)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--minutes", type=float, default=90.0, help="training time")
    parser.add_argument("--validate-every", type=float, default=600.0, help="seconds")
    parser.add_argument("--checkpoint-every", type=float, default=300.0, help="seconds")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all)")
    parser.add_argument("--device", default="cpu")
    add_gpu_options(parser)
    parser.add_argument("--init", type=Path,
                        help="start from these weights (e.g. the shipped mimo-unet-small "
                             "safetensors); --channels and --blocks then come from them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-nice", action="store_true",
                        help="keep this process's priority (by default it lowers itself to "
                             "nice 19, to leave the machine usable)")
    parser.add_argument("--export-only", action="store_true",
                        help="write the weights and record from the run's checkpoint and exit")
    args = parser.parse_args(argv)
    args.photos = args.photos or DEFAULT_PHOTOS
    args.method = args.method or args.name
    if args.patch % mimo_unet.MULTIPLE:
        parser.error("--patch must be a multiple of %d" % mimo_unet.MULTIPLE)
    return args


def title(params: dict) -> str:
    return "MIMO-UNet deblurring, small (SharpFu-trained, %d channels x %d blocks)" % (
        params["channels"], params["blocks"])


def export(args, state: dict, val: dict, curve: list[dict]) -> None:
    from safetensors.torch import save_file
    args.weights_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in state["ema"].items()}
    weights_path = args.weights_dir / (args.name + ".safetensors")
    save_file(tensors, str(weights_path), metadata={
        "architecture": mimo_unet_weights.NAME, "trained_by": "SharpFu scripts/train_deblur.py"})
    # The file must rebuild, through the same detection as users' checkpoints,
    # into exactly this network.
    _, params = mimo_unet_weights.load(weights_path)
    parameters = sum(v.numel() for v in tensors.values())
    meta = state["meta"]
    record = {
        "name": args.name,
        "method": args.method,
        "architecture": mimo_unet_weights.NAME,
        "hyper_parameters": params,
        "parameters": parameters,
        "receptive_radius": mimo_unet_weights.receptive_radius(**params),
        "scale": 1,
        "ops": ["deblur", "sharpen"],
        "title": title(params),
        # what it achieved, not what it was trained for: users pick by this
        "description": ("Blind deblurring, a small MIMO-UNet (%.1fM parameters; the paper's "
                        "has 6.8M) trained on synthetic blur of photos. On held-out photos it "
                        "gains %s over the blurry input." % (parameters / 1e6, ", ".join(
                            "%+.2f dB on %s" % (v["network"] - v["blurry_input"], name)
                            for name, v in val.items()))),
        "source": "trained by SharpFu's scripts/train_deblur.py",
        "training": {
            "commands": meta["commands"],
            "data": meta["data"],
            "git": meta["git"],
            "device": meta["device"],
            "init": meta.get("init"),
            "torch": torch.__version__,
            "started": meta["started"],
            "training_seconds": round(state["elapsed"], 1),
            "steps": state["step"],
            "batch": args.batch, "patch": args.patch,
            "loss": "L1 at 1/4, 1/2 and full size + %g x L1 of their 2-D FFTs" % FFT_WEIGHT,
            "optimiser": "Adam, lr %g, warm-up then cosine to 1%% over the training time, "
                         "gradient norm clipped at 1" % args.lr,
            "ema": args.ema,
        },
        "validation": {"measure": "PSNR (dB, RGB, 8 px border shaved), mean over the held-out "
                                  "photos",
                       **{name: {"network": round(v["network"], 3),
                                 "blurry_input": round(v["blurry_input"], 3),
                                 "unsharp": round(v["unsharp"], 3),
                                 "photos": {p: {k: round(x, 3) for k, x in r.items()}
                                            for p, r in v["photos"].items()}}
                          for name, v in val.items()}},
        "validation_curve": curve,
    }
    (args.weights_dir / (args.name + ".json")).write_text(json.dumps(record, indent=1) + "\n")
    print("wrote %s (%d parameters) and its record" % (weights_path, parameters), flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.no_nice:
        os.nice(19)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    args.run.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.run / "checkpoint.pt"
    log_path = args.run / "log.jsonl"

    photos = find_photos(args.photos)
    training = [path for name, path in photos.items() if name not in VALIDATION]
    val_photos = {name: np.asarray(image) for name, image in validation_set(args.photos).items()}
    recipe = blur_kernels.Recipe()
    command = shlex.join([Path(sys.executable).name] + sys.argv)
    if checkpoint_path.exists():
        # Our own checkpoint: tensors and plain containers only, read safely.
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        hyper = state["meta"]["hyper_parameters"]
        if (hyper["channels"], hyper["blocks"]) != (args.channels, args.blocks):
            print("note: resuming a %(channels)d channels x %(blocks)d blocks run; "
                  "--channels and --blocks are ignored" % hyper, flush=True)
        args.channels, args.blocks = hyper["channels"], hyper["blocks"]
    elif args.init:
        # Detected and loaded strictly, as users' checkpoints are; Restorer
        # is MIMOUNet with another forward, so the names are the same.
        start, found = mimo_unet_weights.load(args.init)
        args.channels, args.blocks = found["channels"], found["blocks"]
    model = mimo_unet.MIMOUNet(args.channels, args.blocks).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    if checkpoint_path.exists():
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        ema = EMA(model, args.ema)
        ema.shadow = {k: v.to(device) for k, v in state["ema"].items()}
        if not args.export_only:
            state["meta"]["commands"].append(command)
        print("resumed at step %d, %.0f s trained" % (state["step"], state["elapsed"]), flush=True)
    else:
        if args.export_only:
            raise SystemExit("%s has no checkpoint to export" % args.run)
        if args.init:
            model.load_state_dict(start.state_dict())
        else:
            # The three residual outputs start at zero: an untrained network
            # returns its input instead of noise, and training starts from "no
            # harm done" (the paper's initialisation is PyTorch's default).
            for layer in (model.feat_extract[5], *model.ConvsOut):
                torch.nn.init.zeros_(layer.main[0].weight)
                torch.nn.init.zeros_(layer.main[0].bias)
        ema = EMA(model, args.ema)
        state = {"step": 0, "elapsed": 0.0, "meta": {
            "init": {"weights": str(args.init), "earlier_runs": training_history(args.init)}
                    if args.init else None,
            "commands": [command],
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git": git_commit(),
            "device": describe_device(device, torch.get_num_threads()),
            "hyper_parameters": {"channels": args.channels, "blocks": args.blocks},
            "data": {"folders": [str(p) for p in args.photos],
                     "training_photos": sorted(p.name for p in training),
                     "validation_photos": list(VALIDATION),
                     "recipe": recipe.describe(),
                     "validation_cases": {n: c.title for n, c in blur_kernels.FIXED.items()},
                     "source": "scripts/fetch_training_photos.py rebuilds the folders from "
                               "public packages (see their ATTRIBUTION.md)"}}}
    curve = [json.loads(line)["val"] for line in open(log_path)] if log_path.exists() else []
    curve = [c for c in curve if c is not None]

    def evaluate() -> tuple[dict, dict]:
        # float32 on the training device: validating on the CPU would hold a GPU up
        shadow = mimo_unet.MIMOUNet(args.channels, args.blocks).to(device)
        shadow.load_state_dict(ema.shadow)
        val = validate(shadow, val_photos)
        return {"step": state["step"], "seconds": round(state["elapsed"], 1),
                **{name: {key: round(v[key], 3) for key in ("network", "blurry_input", "unsharp")}
                   for name, v in val.items()}}, val

    def save() -> None:
        state.update(model=model.state_dict(), optimiser=optimiser.state_dict(),
                     ema=ema.shadow)
        torch.save(state, checkpoint_path.with_suffix(".tmp"))
        os.replace(checkpoint_path.with_suffix(".tmp"), checkpoint_path)

    if args.export_only:
        _, val = evaluate()
        export(args, state, val, curve)
        return

    seed = args.seed + state["step"]
    patches = batches(Patches(training, args.patch, seed, recipe),
                      lambda sampler: sampler.batch(args.batch), seed, args.workers,
                      pin_memory=device.type == "cuda")
    budget = args.minutes * 60.0
    print("training %s on %d photos (%d held out), %d parameters, %s" % (
        args.name, len(training), len(VALIDATION),
        sum(p.numel() for p in model.parameters()), state["meta"]["device"]), flush=True)
    last_val = last_save = state["elapsed"]
    losses, parts, val = [], [], None
    log = open(log_path, "a")
    if not curve:
        point, _ = evaluate()
        curve.append(point)
        log.write(json.dumps({"step": 0, "seconds": 0.0, "loss": None, "val": point}) + "\n")
        log.flush()
    while state["elapsed"] < budget:
        started = time.perf_counter()
        model.train()
        blurry, sharp = next(patches)
        blurry, sharp = blurry.to(device, non_blocking=True), sharp.to(device, non_blocking=True)
        lr = learning_rate(args.lr, state["elapsed"] / budget)
        for group in optimiser.param_groups:
            group["lr"] = lr
        with autocast(device, args.bf16):
            outputs = model(blurry)
        loss, part = paper_loss([o.float() for o in outputs], sharp)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        # a deep residual net with no normalisation: an odd batch (a sharp
        # patch of noise, a huge kernel) must not throw the weights off
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        state["step"] += 1
        ema.update(model, state["step"])
        losses.append(loss.item())
        parts.append(part)
        state["elapsed"] += time.perf_counter() - started
        done = state["elapsed"] >= budget
        if done or state["elapsed"] - last_val >= args.validate_every:
            point, val = evaluate()
            curve.append(point)
            entry = {"step": state["step"], "seconds": round(state["elapsed"], 1),
                     "loss": float(np.mean(losses)),
                     "content": float(np.mean([p["content"] for p in parts])),
                     "fft": float(np.mean([p["fft"] for p in parts])), "lr": lr, "val": point}
            log.write(json.dumps(entry) + "\n")
            log.flush()
            print("step %d  %.0f s  loss %.4f  lr %.2e  val PSNR %s" % (
                state["step"], state["elapsed"], entry["loss"], lr, "  ".join(
                    "%s %.2f (blurry %.2f)" % (n, point[n]["network"], point[n]["blurry_input"])
                    for n in blur_kernels.FIXED)), flush=True)
            losses, parts = [], []
            last_val = state["elapsed"]
        if done or state["elapsed"] - last_save >= args.checkpoint_every:
            save()
            last_save = state["elapsed"]
    log.close()
    save()
    if val is None or curve[-1]["step"] != state["step"]:
        _, val = evaluate()
    export(args, state, val, curve)


if __name__ == "__main__":
    main()
