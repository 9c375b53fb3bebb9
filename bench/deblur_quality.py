"""Deblurring quality benchmark: how much of a blur each method undoes.

On the held-out photos of training/photos.py (never trained on), each
blurred in three ways (training/degradations.py BLUR_CASES), whole photos,
edges extended by symmetric reflection:
  (a) Gaussian blur, sigma 2 px;
  (b) linear motion blur, 15 px at 30 degrees;
  (c) (b), then Gaussian noise of sigma 2/255 and 8-bit rounding;
and restored by each method, in one run:

    .venv/bin/python bench/deblur_quality.py [--photos DIR ...] [--models-dir DIR] [--record]

Rows:
  blurry input      the blurred photo itself
  unsharp mask      Pillow's ImageFilter.UnsharpMask() with its defaults
                    (radius 2, percent 150, threshold 3)
  Richardson-Lucy   skimage.restoration.richardson_lucy given the TRUE kernel,
                    30 iterations, per channel, on the photo padded 32 px by
                    symmetric reflection and cropped back (unpadded, its
                    border artefacts dominate)
  Wiener            skimage.restoration.unsupervised_wiener given the TRUE
                    kernel, per channel, padded the same way (its FFTs wrap
                    around too), its sampler seeded
  ours              SharpFu's `deblur` op through the server's engine on the
                    CPU with SharpFu's own trained network (models/weights/),
                    tiles and all: blind, it is given no kernel
  (further rows)    every other deblurrer the server's catalog offers, by
                    name: its classical unsharp mask (sigma 1.6 px, amount
                    0.8), the authors' MIMO-UNet checkpoints in --models-dir
Measures: PSNR (RGB, 8-bit range) and SSIM (Wang et al.: Gaussian window
sigma 1.5, K1 0.01, K2 0.03, per channel, averaged), both with 8 px shaved
off each border, averaged over the photos; wall-clock seconds per megapixel
(torch's threads for the networks; skimage and Pillow use one core), model
loading excluded. Goals (issue 5): ours beats Richardson-Lucy-with-the-true-
kernel on mean PSNR in all three cases, and the blurry input by at least
3 dB on (b).

--record appends the tables, with date and machine, to docs/BENCHMARKS.md and
writes docs/images/deblur_crops.png (crops: each case on a different photo).
"""
from __future__ import annotations

import argparse
import datetime
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
from server.settings import Settings  # noqa: E402
from training import metrics  # noqa: E402
from training.degradations import BLUR_CASES, BlurCase, to_8bit  # noqa: E402
from training.photos import DEFAULT_PHOTOS, VALIDATION, validation_set  # noqa: E402
from training.record import machine  # noqa: E402

PAD = 32
RL_ITERATIONS = 30
LETTERS = dict(zip(BLUR_CASES, "abc"))
# (case, photo, left, top, side): the crops of the picture
CROPS = [("gaussian-2", "grace_hopper.jpg", 176, 150, 160),
         ("motion-15", "raccoon.png", 600, 200, 160),
         ("motion-15+noise", "china.jpg", 300, 120, 160)]


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


def _per_channel_padded(blurry: np.ndarray, restore) -> np.ndarray:
    padded = np.pad(blurry.astype(np.float64) / 255.0, ((PAD, PAD), (PAD, PAD), (0, 0)),
                    mode="symmetric")
    out = np.stack([restore(padded[..., c], c) for c in range(padded.shape[2])], 2)
    return to_8bit(out[PAD:-PAD, PAD:-PAD] * 255.0)


class RichardsonLucy(Method):
    name = "Richardson-Lucy, true kernel"
    blind = False

    def run(self, blurry, case):
        from skimage.restoration import richardson_lucy
        return _per_channel_padded(blurry, lambda channel, _: richardson_lucy(
            channel, case.kernel, num_iter=RL_ITERATIONS))


class Wiener(Method):
    name = "unsupervised Wiener, true kernel"
    blind = False

    def run(self, blurry, case):
        from skimage.restoration import unsupervised_wiener
        return _per_channel_padded(blurry, lambda channel, c: unsupervised_wiener(
            channel, case.kernel, rng=np.random.default_rng(c))[0])


class Served(Method):
    """A deblurring method of the server's catalog, through the engine."""

    def __init__(self, engine: Engine, method: str | None, label: str):
        self.engine, self.method, self.name = engine, method, label

    def prepare(self):
        if self.error:
            return
        stage = self.engine.catalog.pick("deblur", self.method)
        self.title = "%s (%s)" % (stage.title, stage.source)
        # Warm-up: the weights load on the first job, and that is not deblurring.
        self.run(np.zeros((64, 64, 3), np.uint8), None)

    def run(self, blurry, case):
        job = local_job("deblur", {"method": self.method}, image=blurry)
        results, info = self.engine.run(job, lambda fraction, stage: None)
        return results[0][1]


def measure(methods: list[Method], photos: dict[str, np.ndarray]) -> dict:
    """case -> method -> {psnr, ssim, s_per_mp, photos: {...}}"""
    results = {}
    for case_name, case in BLUR_CASES.items():
        results[case_name] = {}
        blurred = {name: case.apply(sharp) for name, sharp in photos.items()}
        for method in methods:
            if method.error:
                continue
            rows, seconds, pixels = {}, 0.0, 0
            for name, sharp in photos.items():
                start = time.perf_counter()
                out = method.run(blurred[name], case)
                seconds += time.perf_counter() - start
                pixels += sharp.shape[0] * sharp.shape[1]
                rows[name] = {"psnr": metrics.psnr(out, sharp), "ssim": metrics.ssim(out, sharp)}
                print("  %-16s %-34s %-30s %.2f dB" % (case_name, method.name, name,
                                                      rows[name]["psnr"]), flush=True)
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
            LETTERS[case_name], BLUR_CASES[case_name].title,
            len(next(iter(rows.values()))["photos"])), "",
            "| method | kernel | PSNR (dB) | vs blurry | SSIM | s / MP |",
            "|---|---|---:|---:|---:|---:|"]
        for method in methods:
            if method.error:
                lines.append("| %s | | not run | | | %s |" % (method.name, method.error))
                continue
            row = rows[method.name]
            lines.append("| %s | %s | %.2f | %+.2f | %.4f | %.2f |" % (
                method.name, "blind" if method.blind else "given", row["psnr"],
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


def goals(results: dict, ours: Method) -> str:
    if ours.error:
        return "Goals: not judged; no trained network ran."
    lines = ["Goals:"]

    def verdict(ok):
        return "met" if ok else "NOT met"

    for case_name, rows in results.items():
        gap = rows[ours.name]["psnr"] - rows[RichardsonLucy.name]["psnr"]
        lines.append("- (%s) ours above Richardson-Lucy with the true kernel: %+.2f dB, %s." % (
            LETTERS[case_name], gap, verdict(gap > 0)))
    gain = results["motion-15"][ours.name]["psnr"] - results["motion-15"][Blurry.name]["psnr"]
    lines.append("- (b) ours at least +3.0 dB over the blurry input: %+.2f dB, %s." % (
        gain, verdict(gain >= 3.0)))
    return "\n".join(lines)


def crops_figure(methods: list[Method], photos: dict[str, np.ndarray], path: Path) -> None:
    """Rows: one case each, on its own photo; columns: the blurry input, each
    method, the sharp original. Pixels doubled."""
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
        case, sharp = BLUR_CASES[case_name], photos[photo]
        blurry = case.apply(sharp)
        panels = [blurry] + [m.run(blurry, case) for m in ran] + [sharp]
        y = label_h + r * (cell + pad)
        for c, panel in enumerate(panels):
            crop = Image.fromarray(panel[top:top + size, left:left + size])
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
                        help="append to docs/BENCHMARKS.md and write docs/images/deblur_crops.png")
    args = parser.parse_args()
    photos = {name: np.asarray(image)
              for name, image in validation_set(args.photos or DEFAULT_PHOTOS).items()}
    engine = Engine(Settings(device="cpu", models_dir=args.models_dir or ""))
    candidates = engine.catalog.candidates("deblur")
    default = candidates[0].name
    own = [m for m in candidates if m.kind == "network" and m.source.startswith("trained by")]
    ours = Served(engine, own[0].name if own else None, "ours")
    if own:
        ours.name = "ours: %s" % own[0].name
    else:
        ours.error = "no SharpFu-trained network in models/weights"
    methods: list[Method] = [Blurry(), Unsharp(), RichardsonLucy(), Wiener(), ours]
    # the server's other deblurrers: its classical fallback, users' checkpoints
    for method in candidates:
        if not own or method.name != own[0].name:
            methods.append(Served(engine, method.name, "%s (%s)%s" % (
                method.name, method.kind, ", server default" if method.name == default else "")))
    for method in methods:
        method.prepare()
    results = measure(methods, photos)
    text = tables(results, methods) + "\n\n" + goals(results, ours)
    header = "Ours: %s; the server's default deblurrer: %s. Photos (held out of training): %s." % (
        getattr(ours, "title", "?"), default, ", ".join(VALIDATION))
    print("\n" + header + "\n" + text)
    if args.record:
        image_path = ROOT / "docs" / "images" / "deblur_crops.png"
        crops_figure(methods, photos, image_path)
        stamp = datetime.date.today().isoformat()
        section = ("\n## Deblurring quality, %s (bench/deblur_quality.py)\n\nMachine: %s; torch "
                   "threads: %s. `bench/deblur_quality.py%s`. %s Seconds are wall-clock per "
                   "megapixel, model loading excluded; skimage and Pillow run on one core.\n%s\n\n"
                   "Crops, pixels doubled: ![crops](images/deblur_crops.png)\n" % (
                       stamp, machine(), torch.get_num_threads(),
                       " --models-dir %s" % args.models_dir if args.models_dir else "",
                       header, text))
        with open(ROOT / "docs" / "BENCHMARKS.md", "a") as handle:
            handle.write(section)
        print("recorded in docs/BENCHMARKS.md; crops in %s" % image_path.relative_to(ROOT))


if __name__ == "__main__":
    main()
