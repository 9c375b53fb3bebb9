"""Train SharpFu's super-resolution network (models/span.py), "faithful"
flavour: L1 loss against the clean photo, so it is held to PSNR.

    nice -n 19 .venv/bin/python scripts/train_sr.py --scale 2 --run ../sr-runs/span-x2 \\
        --minutes 75 --name span-x2
    nice -n 19 .venv/bin/python scripts/train_sr.py --scale 4 --run ../sr-runs/span-x4 \\
        --minutes 40 --name span-x4 --init models/weights/span-x2.safetensors

(docs/MODELS.md has the exact commands behind the shipped weights, with the
--recipe changes they used.)

Data: every photo in the --photos folders (default: ../shared/data/photos and
../shared/data/photos-by-sa beside the repository; scripts/
fetch_training_photos.py rebuilds both from public packages), except the
held-out VALIDATION photos, which are never trained on. Each step takes
random patches, flips and rotates them, and degrades them with
scripts/degradations.py (antialiased bicubic/area/Lanczos downscales, mild
blur and noise, JPEG at quality 30-95, sometimes twice over).

The run folder holds checkpoint.pt (written every few minutes and at the end;
a run started again with the same --run resumes from it) and log.jsonl (loss,
learning rate and validation Y-PSNR over time). Training stops after
--minutes of training time (the learning-rate schedule runs on that clock).
At the end the EMA weights go to models/weights/NAME.safetensors with the
record NAME.json; --export-only writes them from the checkpoint again.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import registry, span  # noqa: E402
from models.loading import load_state_dict  # noqa: E402
from scripts import degradations  # noqa: E402
from scripts.batch_workers import batches  # noqa: E402

DEFAULT_PHOTOS = [ROOT.parent / "shared" / "data" / "photos",
                  ROOT.parent / "shared" / "data" / "photos-by-sa"]
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

# Held out of training, for validation and for bench/sr_quality.py: a face, fine
# fur, fine architecture, bristles and fur again, at several sizes.
VALIDATION = ("grace_hopper.jpg", "raccoon.png", "china.jpg", "picture_1a_by_freespace.jpg",
              "chelsea.png")


def find_photos(folders: list[Path]) -> dict[str, Path]:
    photos = {}
    for folder in folders:
        for path in sorted(Path(folder).iterdir()):
            if path.suffix.lower() in PHOTO_SUFFIXES and path.name not in photos:
                photos[path.name] = path
    return photos


def read_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def validation_set(folders: list[Path]) -> dict[str, Image.Image]:
    photos = find_photos(folders)
    missing = [name for name in VALIDATION if name not in photos]
    if missing:
        raise SystemExit("validation photos not found in %s: %s" % (
            ", ".join(map(str, folders)), ", ".join(missing)))
    return {name: read_rgb(photos[name]) for name in VALIDATION}


class Patches:
    """Random (low, high) resolution training pairs from the photos."""

    def __init__(self, photos: list[Path], scale: int, patch: int, seed: int,
                 recipe: degradations.Recipe = degradations.Recipe()):
        self.scale, self.patch, self.recipe = scale, patch, recipe
        self.images = [np.asarray(read_rgb(path)) for path in photos]
        side = patch * scale
        small = [p.name for p, a in zip(photos, self.images) if min(a.shape[:2]) < side]
        if small:
            raise SystemExit("photos smaller than a %d px patch: %s" % (side, ", ".join(small)))
        # Big photos hold more distinct patches, but not in proportion to
        # their area, or the few wallpapers would crowd out everything else.
        weights = np.array([math.sqrt(a.shape[0] * a.shape[1]) for a in self.images])
        self.weights = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        side = self.patch * self.scale
        lows, highs = [], []
        for index in self.rng.choice(len(self.images), size, p=self.weights):
            image = self.images[index]
            y = self.rng.integers(0, image.shape[0] - side + 1)
            x = self.rng.integers(0, image.shape[1] - side + 1)
            high = image[y:y + side, x:x + side]
            if self.rng.random() < 0.5:
                high = high[:, ::-1]
            high = np.rot90(high, self.rng.integers(4))
            high = Image.fromarray(np.ascontiguousarray(high))
            low = degradations.degrade(high, self.scale, self.rng, self.recipe)
            lows.append(np.asarray(low))
            highs.append(np.asarray(high))
        return to_tensor(np.stack(lows)), to_tensor(np.stack(highs))


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (n, h, w, 3) or (h, w, 3) -> float32 (n, 3, h, w) in [0, 1]."""
    if pixels.ndim == 3:
        pixels = pixels[None]
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0)


def to_image(tensor: torch.Tensor) -> Image.Image:
    pixels = tensor[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(pixels)


@torch.inference_mode()
def upscale(model: torch.nn.Module, low: Image.Image) -> Image.Image:
    return to_image(model(to_tensor(np.array(low)).to(next(model.parameters()).device)))


@torch.inference_mode()
def validate(model: torch.nn.Module, photos: dict[str, Image.Image], scale: int) -> dict:
    """Y-PSNR of the model and of Pillow's bicubic upscale on each fixed
    degradation of each validation photo, and their means."""
    model.eval()
    result = {}
    for degradation, degrade in degradations.FIXED.items():
        rows = {}
        for name, photo in photos.items():
            truth = degradations.crop_to_multiple(photo, scale)
            low = degrade(truth, scale)
            ours = upscale(model, low)
            bicubic = low.resize(truth.size, Image.Resampling.BICUBIC)
            rows[name] = {"ours": degradations.y_psnr(ours, truth),
                          "bicubic": degradations.y_psnr(bicubic, truth)}
        result[degradation] = {
            "photos": rows,
            "ours": float(np.mean([r["ours"] for r in rows.values()])),
            "bicubic": float(np.mean([r["bicubic"] for r in rows.values()]))}
    return result


class EMA:
    """Exponential moving average of the weights: steadier and usually a
    little better than the last step's, which matters in a short run."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for key, value in model.state_dict().items():
            self.shadow[key].lerp_(value, 1.0 - decay)


def learning_rate(base: float, progress: float, warmup: float = 0.02) -> float:
    """Linear warm-up, then a cosine down to 1% of `base`, over the training
    time (progress 0 to 1)."""
    if progress < warmup:
        return base * max(progress / warmup, 0.01)
    t = (progress - warmup) / (1.0 - warmup)
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0))))


def git_commit() -> dict:
    def git(*args):
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        except OSError:   # no git at all
            return ""
        return done.stdout if done.returncode == 0 else ""
    commit = git("rev-parse", "HEAD").strip()
    if not commit:
        # A copy of the working tree without .git (the GPU machine's): the
        # commit comes from whoever started the run, or stays unknown.
        return {"commit": os.environ.get("SHARPFU_COMMIT") or None,
                "uncommitted_changes_in_models_or_scripts": None}
    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    ours = [p for p in changed if p.startswith(("models/", "scripts/"))]
    return {"commit": commit, "uncommitted_changes_in_models_or_scripts": ours}


def training_history(weights: Path) -> list[dict]:
    """The runs behind `weights` (--init), newest first, from the record
    beside them: GPU runs start from the shipped weights and replace them,
    and the record is then the only place the earlier runs are named."""
    record = Path(weights).with_suffix(".json")
    if not record.is_file():
        return []
    training = json.loads(record.read_text()).get("training", {})
    return [{"weights": str(weights), **{key: training.get(key) for key in (
        "steps", "training_seconds", "commands", "git", "device")}}] + list(
        training.get("earlier_runs") or [])


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast for the forward pass (--bf16), for a GPU's tensor
    cores. Losses are taken in float32 outside it: the deblurrer's FFT has
    no bfloat16, and CUDA's autocast refuses the matte's cross-entropy.
    Weights, optimiser and EMA stay float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def add_gpu_options(parser: argparse.ArgumentParser) -> None:
    """--workers and --bf16, shared by the three training scripts."""
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that make batches ahead (0: the training process "
                             "makes them itself, as on the 2-core CPU; a GPU needs several)")
    parser.add_argument("--bf16", action="store_true",
                        help="run the forward pass in bfloat16 autocast (for a GPU)")


def describe_device(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return "GPU: %s" % torch.cuda.get_device_name(device)
    return "CPU: %s, %d torch threads (%d cores visible), nice %d" % (
        cpu_name(), threads, os.cpu_count() or 0, os.nice(0))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, choices=[2, 4], required=True)
    parser.add_argument("--photos", type=Path, action="append",
                        help="folder of training photos (repeatable; default: %s)"
                        % ", ".join(str(p) for p in DEFAULT_PHOTOS))
    parser.add_argument("--run", type=Path, required=True,
                        help="folder for the checkpoint and log (resumed if it has one)")
    parser.add_argument("--name", required=True, help="weights name, e.g. span-x2")
    parser.add_argument("--method", default="span",
                        help="catalog method the weights serve under (default: span)")
    parser.add_argument("--weights-dir", type=Path, default=registry.WEIGHTS_DIR)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--patch", type=int, default=None,
                        help="low-resolution patch side (default 48 at 2x, 32 at 4x)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--minutes", type=float, default=75.0, help="training time")
    parser.add_argument("--init", type=Path,
                        help="start from these weights (e.g. the 2x network for the 4x one); "
                             "layers whose shapes differ start fresh")
    parser.add_argument("--validate-every", type=float, default=300.0, help="seconds")
    parser.add_argument("--checkpoint-every", type=float, default=300.0, help="seconds")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all)")
    parser.add_argument("--device", default="cpu")
    add_gpu_options(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one field of scripts/degradations.py's Recipe, e.g. "
                             "jpeg=0.5 or jpeg_quality=50,95 (repeatable)")
    parser.add_argument("--export-only", action="store_true",
                        help="write the weights and record from the run's checkpoint and exit")
    args = parser.parse_args(argv)
    args.photos = args.photos or DEFAULT_PHOTOS
    args.recipe = parse_recipe(args.recipe)
    args.patch = args.patch or (48 if args.scale == 2 else 32)
    return args


def parse_recipe(changes: list[str]) -> degradations.Recipe:
    fields = {}
    defaults = degradations.Recipe()
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
    return degradations.Recipe(**fields)


def export(args, model: torch.nn.Module, state: dict, val: dict, curve: list[dict]) -> None:
    from safetensors.torch import save_file
    args.weights_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in state["ema"].items()}
    weights_path = args.weights_dir / (args.name + ".safetensors")
    save_file(tensors, str(weights_path), metadata={"architecture": "span",
                                                      "trained_by": "SharpFu scripts/train_sr.py"})
    # The file must rebuild, through the registry, into exactly this network.
    _, architecture, params = registry.load(weights_path)
    parameters = sum(v.numel() for v in tensors.values())
    meta = state["meta"]
    record = {
        "name": args.name,
        "method": args.method,
        "architecture": architecture.name,
        "hyper_parameters": params,
        "parameters": parameters,
        "receptive_radius": architecture.receptive_radius(**params),
        "scale": args.scale,
        "ops": ["upscale", "sharpen"],
        "flavour": "faithful",
        "title": "SPAN super-resolution (SharpFu-trained, %d channels x %d blocks)" % (
            params["channels"], params["blocks"]),
        "description": ("Lightweight super-resolution network (%dk parameters), trained to "
                        "restore downscaled, compressed thumbnails faithfully (L1 loss: no "
                        "invented texture)." % round(parameters / 1000)),
        "source": "trained by SharpFu's scripts/train_sr.py",
        "training": {
            "commands": meta["commands"],
            "data": meta["data"],
            "git": meta["git"],
            "device": meta["device"],
            "torch": torch.__version__,
            "started": meta["started"],
            "training_seconds": round(state["elapsed"], 1),
            "steps": state["step"],
            "batch": args.batch, "patch": args.patch, "loss": "L1 (RGB)",
            "optimiser": "Adam, lr %g, warm-up then cosine to 1%% over the training time" % args.lr,
            "ema": args.ema,
            "init": meta.get("init"),
        },
        "validation": val,
        "validation_curve": curve,
    }
    (args.weights_dir / (args.name + ".json")).write_text(json.dumps(record, indent=1) + "\n")
    print("wrote %s (%d parameters) and its record" % (weights_path, parameters), flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    args.run.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.run / "checkpoint.pt"
    log_path = args.run / "log.jsonl"

    photos = find_photos(args.photos)
    training = [path for name, path in photos.items() if name not in VALIDATION]
    val_photos = validation_set(args.photos)
    model = span.SPAN(args.scale, args.channels, args.blocks).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    command = shlex.join([Path(sys.executable).name] + sys.argv)
    if checkpoint_path.exists():
        # Our own checkpoint: tensors and plain containers only, read safely.
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
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
        init = None
        if args.init:
            source = load_state_dict(args.init)
            own = model.state_dict()
            taken = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(taken, strict=False)
            init = {"weights": str(args.init), "layers_taken": len(taken),
                    "layers_fresh": sorted(set(own) - set(taken)),
                    "earlier_runs": training_history(args.init)}
        ema = EMA(model, args.ema)
        state = {"step": 0, "elapsed": 0.0, "meta": {
            "commands": [command],
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git": git_commit(),
            "device": describe_device(device, torch.get_num_threads()),
            "init": init,
            "data": {"folders": [str(p) for p in args.photos],
                     "training_photos": sorted(p.name for p in training),
                     "validation_photos": list(VALIDATION),
                     "recipe": args.recipe.describe(),
                     "source": "scripts/fetch_training_photos.py rebuilds the folders from "
                               "public packages (see their ATTRIBUTION.md)"}}}
    curve = [json.loads(line)["val"] for line in open(log_path)] if log_path.exists() else []
    curve = [c for c in curve if c is not None]

    def evaluate() -> dict:
        # float32 on the training device: validating on the CPU would hold a GPU up
        shadow = span.SPAN(args.scale, args.channels, args.blocks).to(device)
        shadow.load_state_dict(ema.shadow)
        val = validate(shadow, val_photos, args.scale)
        return {"step": state["step"], "seconds": round(state["elapsed"], 1),
                **{d: {"ours": round(v["ours"], 3), "bicubic": round(v["bicubic"], 3)}
                   for d, v in val.items()}}, val

    def save() -> None:
        state.update(model=model.state_dict(), optimiser=optimiser.state_dict(),
                     ema=ema.shadow)
        torch.save(state, checkpoint_path.with_suffix(".tmp"))
        os.replace(checkpoint_path.with_suffix(".tmp"), checkpoint_path)

    if args.export_only:
        point, val = evaluate()
        export(args, model, state, val, curve)
        return

    data = state["meta"]["data"]
    in_force = (data.get("recipe_changes") or [{"recipe": data["recipe"]}])[-1]["recipe"]
    if args.recipe.describe() != in_force:
        print("note: the degradation recipe changes from step %d on; the record keeps both"
              % state["step"], flush=True)
        data.setdefault("recipe_changes", []).append(
            {"from_step": state["step"], "recipe": args.recipe.describe()})
    seed = args.seed + state["step"]
    patches = batches(Patches(training, args.scale, args.patch, seed, args.recipe),
                      lambda sampler: sampler.batch(args.batch), seed, args.workers,
                      pin_memory=device.type == "cuda")
    budget = args.minutes * 60.0
    print("training %s x%d on %d photos (%d held out), %d parameters, %s" % (
        args.name, args.scale, len(training), len(VALIDATION),
        sum(p.numel() for p in model.parameters()), state["meta"]["device"]), flush=True)
    last_val = last_save = state["elapsed"]
    losses = []
    log = open(log_path, "a")
    if not curve:
        point, _ = evaluate()
        curve.append(point)
        log.write(json.dumps({"step": 0, "seconds": 0.0, "loss": None, "val": point}) + "\n")
        log.flush()
    while state["elapsed"] < budget:
        started = time.perf_counter()
        model.train()
        low, high = next(patches)
        low, high = low.to(device, non_blocking=True), high.to(device, non_blocking=True)
        lr = learning_rate(args.lr, state["elapsed"] / budget)
        for group in optimiser.param_groups:
            group["lr"] = lr
        with autocast(device, args.bf16):
            out = model(low)
        loss = (out.float() - high).abs().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        state["step"] += 1
        ema.update(model, state["step"])
        losses.append(loss.item())
        state["elapsed"] += time.perf_counter() - started
        done = state["elapsed"] >= budget
        if done or state["elapsed"] - last_val >= args.validate_every:
            point, _ = evaluate()
            curve.append(point)
            entry = {"step": state["step"], "seconds": round(state["elapsed"], 1),
                     "loss": float(np.mean(losses)), "lr": lr, "val": point}
            log.write(json.dumps(entry) + "\n")
            log.flush()
            print("step %d  %.0f s  loss %.4f  lr %.2e  val Y-PSNR %s" % (
                state["step"], state["elapsed"], entry["loss"], lr, "  ".join(
                    "%s %.2f (bicubic %.2f)" % (d, point[d]["ours"], point[d]["bicubic"])
                    for d in degradations.FIXED)), flush=True)
            losses = []
            last_val = state["elapsed"]
        if done or state["elapsed"] - last_save >= args.checkpoint_every:
            save()
            last_save = state["elapsed"]
    log.close()
    save()
    _, val = evaluate()
    export(args, model, state, val, curve)


if __name__ == "__main__":
    main()
