"""Deblurring quality benchmark (issue 17): how much of a blur each method
undoes, blind and given the kernel.

On the held-out photos of training/photos.py (never trained on, and not the
photos the blind estimation was tuned on), whole photos, each blurred in
four ways (training/degradations.py), edges extended by symmetric reflection:
  (a) Gaussian blur, sigma 2 px;
  (b) linear motion blur, 15 px at 30 degrees;
  (c) (b), then Gaussian noise of sigma 2/255 and 8-bit rounding;
  (d) non-linear camera shake, a random trajectory per photo (camera_shake:
      inertia and jerks, after Boracchi and Foi 2012), support 21-31 px,
      then noise of sigma 1/255 and rounding (shake_case: seeds used by
      nothing else);
and restored by each method, in one run:

    .venv/bin/python bench/deblur_quality.py [--photos DIR ...] [--models-dir DIR] [--record]

Rows:
  blurry input      the blurred photo itself
  unsharp mask      Pillow's ImageFilter.UnsharpMask() with its defaults
                    (radius 2, percent 150, threshold 3)
  Richardson-Lucy   skimage.restoration.richardson_lucy given the TRUE kernel,
                    30 iterations, per channel, on the photo padded 32 px by
                    symmetric reflection and cropped back
  ours, blind       SharpFu's `deblur` op with its blind-deconvolution method,
                    through the server's engine on the CPU, tiles and all:
                    it is given no kernel
  ours, true kernel the same method's non-blind half alone (its deconvolution
                    with the learned denoiser), given the TRUE kernel, on the
                    whole photo at once
  MIMO-UNet-small   SharpFu's CPU-trained MIMO-UNet (models/weights/), and any
                    MIMO-UNet checkpoint of --models-dir, through the engine
Measures: PSNR (RGB, 8-bit range) and SSIM (Wang et al.: Gaussian window
sigma 1.5, K1 0.01, K2 0.03, per channel, averaged), both with 8 px shaved
off each border, averaged over the photos; wall-clock seconds per megapixel
(torch's threads for the networks; skimage and Pillow use one core), model
loading excluded. Goals (issue 17): ours, blind, above Richardson-Lucy with
the true kernel on mean PSNR in every case; at least 3 dB above the blurry
input on (b) and 2 dB on (d); at most 30 s per megapixel.

--record appends the tables, with date and machine, to docs/BENCHMARKS.md,
writes docs/images/deblur_crops_DATE.png (crops: each case on a different photo)
and stores the mean PSNR of ours and of each user's checkpoint beside the
blurry input's and the unsharp mask's, per case, where the server ranks
deblurrers from (server/methods/network.py, preference): in the record of
the blind method's weights ("benchmark"), in NAME.benchmark.json beside a
user's checkpoint. SharpFu's mimo-unet-small keeps the rank its own
validation record gives it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.engine import Engine  # noqa: E402
from server.jobs import local_job  # noqa: E402
from server.methods.network import benchmark_path  # noqa: E402
from server.settings import Settings  # noqa: E402
from training import metrics  # noqa: E402
from training.degradations import (BLUR_CASES, DEBLUR_BENCHMARK_CASES, BlurCase,  # noqa: E402
                                   shake_case, to_8bit)
from training.photos import DEFAULT_PHOTOS, VALIDATION, validation_set  # noqa: E402
from training.record import machine  # noqa: E402

PAD = 32
RL_ITERATIONS = 30
BLIND = "blind-deconvolution"
LETTERS = dict(zip(DEBLUR_BENCHMARK_CASES, "abcd"))
TITLES = dict({name: case.title for name, case in BLUR_CASES.items()},
              **{"camera-shake": "non-linear camera shake, support 21-31 px (a trajectory of "
                                 "its own per photo), Gaussian noise sigma 1/255, 8-bit rounding"})
# (case, photo, left, top, side): the crops of the picture
CROPS = [("gaussian-2", "grace_hopper.jpg", 176, 150, 160),
         ("motion-15", "raccoon.png", 600, 200, 160),
         ("motion-15+noise", "china.jpg", 300, 120, 160),
         ("camera-shake", "picture_1a_by_freespace.jpg", 260, 180, 160)]


def centre_square(pixels: np.ndarray, side: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return np.ascontiguousarray(pixels[top:top + side, left:left + side])


def case_for(case_name: str, photo_index: int) -> BlurCase:
    """The blur of `case_name` for the photo_index-th photo (camera shake has
    a kernel of its own per photo; the other cases one for all)."""
    return shake_case(photo_index) if case_name == "camera-shake" else BLUR_CASES[case_name]


class Method:
    """A deblurrer: `run(blurry, case)` returns the restored 8-bit photo."""
    name = ""
    blind = True
    error: str | None = None

    def prepare(self) -> None:
        pass

    def run(self, blurry: np.ndarray, case: BlurCase) -> np.ndarray:
        raise NotImplementedError


class Blurry(Method):
    name = "blurry input"

    def run(self, blurry, case):
        return blurry


class Unsharp(Method):
    name = "unsharp mask (Pillow)"

    def run(self, blurry, case):
        return np.asarray(Image.fromarray(blurry).filter(ImageFilter.UnsharpMask()))


class RichardsonLucy(Method):
    name = "Richardson-Lucy, true kernel"
    blind = False

    def run(self, blurry, case):
        from skimage.restoration import richardson_lucy
        padded = np.pad(blurry.astype(np.float64) / 255.0, ((PAD, PAD), (PAD, PAD), (0, 0)),
                        mode="symmetric")
        out = np.stack([richardson_lucy(padded[..., c], case.kernel, num_iter=RL_ITERATIONS)
                        for c in range(padded.shape[2])], 2)
        return to_8bit(out[PAD:-PAD, PAD:-PAD] * 255.0)


class Served(Method):
    """A deblurring method of the server's catalog, through the engine."""

    def __init__(self, engine: Engine, method: str, label: str):
        self.engine, self.method, self.name = engine, method, label
        self.outcomes: list[dict] = []

    def prepare(self):
        stage = self.engine.catalog.pick("deblur", self.method)
        self.title = "%s (%s)" % (stage.title, stage.source)
        # Warm-up: the weights load on the first job, and that is not deblurring.
        self.run(np.zeros((64, 64, 3), np.uint8), None)
        self.outcomes.clear()

    def run(self, blurry, case):
        job = local_job("deblur", {"method": self.method}, image=blurry)
        results, info = self.engine.run(job, lambda fraction, stage: None)
        self.outcomes.append(dict(job.outcome))
        return results[0][1]


class TrueKernel(Method):
    """The blind-deconvolution method's non-blind half, given the true kernel."""
    name = "ours, true kernel (non-blind half)"
    blind = False

    def __init__(self, engine: Engine):
        self.engine = engine

    def prepare(self):
        self.method = self.engine.catalog.pick("deblur", BLIND)
        self.engine.catalog.ensure_loaded(self.method, torch.device("cpu"))

    def run(self, blurry, case):
        prepared = self.method.prepare(blurry, "u8", 3, 1, {}, lambda fraction, stage: None,
                                       kernel=torch.from_numpy(case.kernel).float())
        x = torch.from_numpy(blurry).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            out = prepared.run(x, (0, 0, blurry.shape[0], blurry.shape[1]))
        return to_8bit(out[0].permute(1, 2, 0).numpy() * 255.0)


def measure(methods: list[Method], photos: dict[str, np.ndarray], crops: dict) -> dict:
    """case -> method -> {psnr, ssim, s_per_mp, photos: {...}}; the CROPS of
    the results go into `crops`, by (case, method name)."""
    where = {(case, photo): (left, top, side) for case, photo, left, top, side in CROPS}
    results = {}
    for case_name in DEBLUR_BENCHMARK_CASES:
        results[case_name] = {}
        cases = {name: case_for(case_name, index) for index, name in enumerate(photos)}
        blurred = {name: cases[name].apply(sharp) for name, sharp in photos.items()}
        for method in methods:
            if method.error:
                continue
            rows, seconds, pixels = {}, 0.0, 0
            for name, sharp in photos.items():
                start = time.perf_counter()
                out = method.run(blurred[name], cases[name])
                seconds += time.perf_counter() - start
                pixels += sharp.shape[0] * sharp.shape[1]
                rows[name] = {"psnr": metrics.psnr(out, sharp), "ssim": metrics.ssim(out, sharp)}
                if (case_name, name) in where:
                    left, top, side = where[case_name, name]
                    crops[case_name, method.name] = out[top:top + side, left:left + side].copy()
                    crops[case_name, "original"] = sharp[top:top + side, left:left + side]
                if isinstance(method, Served) and method.outcomes:
                    rows[name]["found"] = method.outcomes[-1].get("blur")
                print("  %-16s %-36s %-30s %.2f dB  %s" % (
                    case_name, method.name, name, rows[name]["psnr"],
                    rows[name].get("found") or ""), flush=True)
            results[case_name][method.name] = {
                "psnr": float(np.mean([r["psnr"] for r in rows.values()])),
                "ssim": float(np.mean([r["ssim"] for r in rows.values()])),
                "s_per_mp": seconds / (pixels / 1e6), "photos": rows}
    return results


def tables(results: dict, methods: list[Method]) -> str:
    lines = []
    for case_name, rows in results.items():
        base = rows[Blurry.name]["psnr"]
        lines += ["", "**(%s) %s**, mean of %d photos" % (
            LETTERS[case_name], TITLES[case_name],
            len(next(iter(rows.values()))["photos"])), "",
            "| method | kernel | PSNR (dB) | vs blurry | SSIM | s / MP |",
            "|---|---|---:|---:|---:|---:|"]
        for method in methods:
            if method.error:
                lines.append("| %s | | not run | | | %s |" % (method.name, method.error))
                continue
            row = rows[method.name]
            lines.append("| %s | %s | %.2f | %+.2f | %.4f | %.2f |" % (
                method.name, "blind" if method.blind else "true", row["psnr"],
                row["psnr"] - base, row["ssim"], row["s_per_mp"]))
    photo_names = list(next(iter(next(iter(results.values())).values()))["photos"])
    lines += ["", "Per photo, PSNR (dB):", "",
              "| case | method | " + " | ".join(photo_names) + " |",
              "|---|---|" + "---:|" * len(photo_names)]
    for case_name, rows in results.items():
        for name, row in rows.items():
            lines.append("| %s | %s | %s |" % (LETTERS[case_name], name, " | ".join(
                "%.2f" % row["photos"][p]["psnr"] for p in photo_names)))
    return "\n".join(lines)


def found_kernels(results: dict, ours: Method) -> str:
    """What the blind estimation found, per case and photo."""
    lines = ["", "What the blind method found (kernel side px, model, noise /255):", ""]
    for case_name, rows in results.items():
        found = ["%s: %s" % (photo, "%s %s %.1f" % (f["kernel_size"], f["kernel_model"],
                                                    f["noise_sigma"]) if f else "?")
                 for photo, f in ((p, r.get("found")) for p, r in rows[ours.name]["photos"].items())]
        lines.append("- (%s) %s" % (LETTERS[case_name], "; ".join(found)))
    return "\n".join(lines)


def goals(results: dict, ours: Method) -> str:
    lines = ["Goals:"]

    def verdict(ok):
        return "met" if ok else "NOT met"

    for case_name, rows in results.items():
        gap = rows[ours.name]["psnr"] - rows[RichardsonLucy.name]["psnr"]
        lines.append("- (%s) ours, blind, above Richardson-Lucy with the true kernel: %+.2f dB, "
                     "%s." % (LETTERS[case_name], gap, verdict(gap > 0)))
    for case_name, target in (("motion-15", 3.0), ("camera-shake", 2.0)):
        rows = results[case_name]
        gain = rows[ours.name]["psnr"] - rows[Blurry.name]["psnr"]
        lines.append("- (%s) ours, blind, at least %+.1f dB over the blurry input: %+.2f dB, %s."
                     % (LETTERS[case_name], target, gain, verdict(gain >= target)))
    worst = max(rows[ours.name]["s_per_mp"] for rows in results.values())
    lines.append("- at most 30 s per megapixel: %.1f s at worst, %s (on this machine, under the "
                 "load noted)." % (worst, verdict(worst <= 30.0)))
    return "\n".join(lines)


def benchmark_numbers(results: dict, method: Method) -> dict:
    """What the server ranks a deblurrer by (server/methods/network.py)."""
    return {"measure": "PSNR (dB, RGB, 8 px border shaved), mean over the held-out photos, "
                       "bench/deblur_quality.py",
            "date": datetime.date.today().isoformat(),
            "cases": {case: {"network": round(rows[method.name]["psnr"], 3),
                             "blurry_input": round(rows[Blurry.name]["psnr"], 3),
                             "unsharp": round(rows[Unsharp.name]["psnr"], 3)}
                      for case, rows in results.items()}}


def store_numbers(engine: Engine, results: dict, served: list[Served]) -> None:
    for method in served:
        weights = engine.catalog.pick("deblur", method.method).weights
        if isinstance(weights, dict):       # a network method: its weights by scale
            weights = weights[1]
        numbers = benchmark_numbers(results, method)
        if weights.record is not None and weights.path is not None:
            record_path = weights.path.with_suffix(".json")
            record = json.loads(record_path.read_text())
            record["benchmark"] = numbers
            record_path.write_text(json.dumps(record, indent=1) + "\n")
            print("benchmark numbers stored in %s" % record_path.relative_to(ROOT))
        elif weights.path is not None:
            benchmark_path(weights).write_text(json.dumps(numbers, indent=1) + "\n")
            print("benchmark numbers stored in %s" % benchmark_path(weights))


def crops_figure(methods: list[Method], crops: dict, path: Path) -> None:
    """Rows: one case each, on its own photo (CROPS); columns: the blurry
    input, each method, the sharp original. Pixels doubled."""
    ran = [m for m in methods if not m.error and not isinstance(m, Blurry)]
    columns = ["blurry input"] + [m.name for m in ran] + ["original"]
    zoom, pad, label_h, side = 2, 6, 18, max(c[4] for c in CROPS)
    cell = side * zoom
    figure = Image.new("RGB", (len(columns) * (cell + pad), label_h + len(CROPS) * (cell + pad)),
                       "white")
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default(12)
    for c, title in enumerate(columns):
        draw.text((c * (cell + pad) + 2, 2), title[:30], fill="black", font=font)
    for r, (case_name, photo, left, top, size) in enumerate(CROPS):
        panels = [crops[case_name, Blurry.name]] + [crops[case_name, m.name] for m in ran] \
            + [crops[case_name, "original"]]
        y = label_h + r * (cell + pad)
        for c, panel in enumerate(panels):
            crop = Image.fromarray(panel)
            figure.paste(crop.resize((size * zoom, size * zoom), Image.Resampling.NEAREST),
                         (c * (cell + pad), y))
        draw.text((4, y + 2), "(%s) %s" % (LETTERS[case_name], case_name), fill="yellow",
                  font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, action="append",
                        help="folders holding the held-out photos (default: %s)"
                        % ", ".join(map(str, DEFAULT_PHOTOS)))
    parser.add_argument("--models-dir", help="a models folder whose MIMO-UNet checkpoints "
                                             "get rows of their own")
    parser.add_argument("--record", action="store_true",
                        help="append to docs/BENCHMARKS.md, write docs/images/deblur_crops_DATE.png "
                             "and store the served deblurrers' numbers for the server's ranking")
    parser.add_argument("--crop", type=int, default=0, metavar="PX",
                        help="measure on each photo's centre square of this side instead of the "
                             "whole photo (a quicker run; the figure then shows each crop's "
                             "centre)")
    parser.add_argument("--results", type=Path,
                        help="also write the raw results here (JSON, and the crops beside it "
                             "as .npz); with --from-results, read them instead of measuring")
    parser.add_argument("--from-results", action="store_true",
                        help="tabulate (and --record) the results of an earlier --results run")
    args = parser.parse_args()
    photos = {name: np.asarray(image)
              for name, image in validation_set(args.photos or DEFAULT_PHOTOS).items()}
    if args.crop:
        photos = {name: centre_square(pixels, args.crop) for name, pixels in photos.items()}
        side = min(160, args.crop)
        CROPS[:] = [(case, photo, (photos[photo].shape[1] - side) // 2,
                     (photos[photo].shape[0] - side) // 2, side) for case, photo, *_ in CROPS]
    engine = Engine(Settings(device="cpu", models_dir=args.models_dir or ""))
    names = [m.name for m in engine.catalog.candidates("deblur")]
    if BLIND not in names:
        raise SystemExit("the blind-deconvolution method is missing (its denoiser's weights, "
                         "models/weights/drunet-denoiser.*)")
    ours = Served(engine, BLIND, "ours, blind")
    networks = [Served(engine, m.name, "%s (%s)" % (m.name, m.source))
                for m in engine.catalog.candidates("deblur")
                if m.kind == "network" and m.name != BLIND]
    methods: list[Method] = [Blurry(), Unsharp(), RichardsonLucy(), ours, TrueKernel(engine)]
    methods += networks
    if args.from_results:
        results = json.loads(args.results.read_text())
        stored = np.load(args.results.with_suffix(".npz"))
        crops = {tuple(key.split("|")): stored[key] for key in stored.files}
        ours.title = results.pop("_title")
    else:
        for method in methods:
            method.prepare()
        crops = {}
        results = measure(methods, photos, crops)
        if args.results:
            args.results.write_text(json.dumps(dict(results, _title=ours.title)))
            np.savez(args.results.with_suffix(".npz"),
                     **{"|".join(key): value for key, value in crops.items()})
    text = tables(results, methods) + "\n" + found_kernels(results, ours) + "\n\n" + \
        goals(results, ours)
    header = "Ours: %s. Photos (held out of training): %s%s." % (
        ours.title, ", ".join(VALIDATION),
        "; each cut to its centre %d px square" % args.crop if args.crop else ", whole")
    print("\n" + header + "\n" + text)
    if args.record:
        now = datetime.datetime.now(datetime.timezone.utc)
        # dated, so that earlier sections keep their own figure
        image_path = ROOT / "docs" / "images" / ("deblur_crops_%s.png" % now.date().isoformat())
        crops_figure(methods, crops, image_path)
        stamp = now.strftime("%Y-%m-%d %H:%M UTC")
        section = ("\n## Deblurring quality, %s (bench/deblur_quality.py)\n\nMachine: %s; torch "
                   "threads: %s. `bench/deblur_quality.py%s%s`. %s Seconds are wall-clock per "
                   "megapixel, model loading excluded; skimage and Pillow run on one core.\n%s\n\n"
                   "Crops, pixels doubled: ![crops](images/%s)\n" % (
                       stamp, machine(), torch.get_num_threads(),
                       " --crop %d" % args.crop if args.crop else "",
                       " --models-dir %s" % args.models_dir if args.models_dir else "",
                       header, text, image_path.name))
        with open(ROOT / "docs" / "BENCHMARKS.md", "a") as handle:
            handle.write(section)
        # SharpFu's other networks keep the rank their own validation gives
        # them; a user's checkpoint, which has none, gets these numbers
        store_numbers(engine, results, [ours] + [
            n for n in networks if engine.catalog.pick("deblur", n.method).source.startswith(
                "user")])
        print("recorded in docs/BENCHMARKS.md; crops in %s" % image_path.relative_to(ROOT))


if __name__ == "__main__":
    main()
