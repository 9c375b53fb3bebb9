"""AI Sharpen benchmark: thumbnails that were blurry before they were made
small, brought back to full size by deblurring then upscaling (`sharpen`)
or by upscaling alone (`upscale`).

On the held-out photos of training/photos.py (never trained on), each one
blurred at full size by a fixed case of training/degradations.py
BLUR_CASES (or not at all, as a control), then reduced to half
size with Pillow BICUBIC (antialiased, as editors make thumbnails):
  (a) Gaussian blur, sigma 2 px, then half size;
  (b) linear motion blur, 15 px at 30 degrees, then half size;
  (c) no blur, half size only: sharpening must not spoil a clean thumbnail.
The half-size thumbnail is brought back to full size and compared with the
sharp original, in one run:

    .venv/bin/python bench/sharpen_quality.py [--photos DIR ...] [--models-dir DIR] [--record]

Rows:
  Lanczos                 Pillow LANCZOS upscale (classical, for reference)
  upscale                 SharpFu's `upscale` op at 2x, default method
  sharpen: D + U          SharpFu's `sharpen` op at 2x with deblurrer D (every
                          deblurring method the catalog offers, the default
                          one marked), then the default upscaler U
All through the server's engine on the CPU, tiles and all.
Measures: PSNR (RGB, 8-bit range) and SSIM as in bench/deblur_quality.py,
8 px shaved, averaged over the photos; wall-clock seconds per megapixel of
full-size output, model loading excluded. Goal (issue 5): sharpen scores
above upscale alone on the blurred thumbnails.

--record appends the table, with date and machine, to docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.engine import Engine  # noqa: E402
from server.jobs import local_job  # noqa: E402
from server.settings import Settings  # noqa: E402
from training import metrics  # noqa: E402
from training.degradations import BLUR_CASES, BlurCase  # noqa: E402
from training.photos import DEFAULT_PHOTOS, VALIDATION, validation_set  # noqa: E402
from training.record import machine  # noqa: E402

SCALE = 2
CASES = {"a": ("Gaussian blur sigma 2 px, then half size", BLUR_CASES["gaussian-2"]),
         "b": ("motion blur 15 px at 30 degrees, then half size", BLUR_CASES["motion-15"]),
         "c": ("no blur, half size only (control)", None)}


def thumbnail(sharp: np.ndarray, case: BlurCase | None) -> np.ndarray:
    blurred = case.apply(sharp) if case else sharp
    height, width = sharp.shape[0] // SCALE, sharp.shape[1] // SCALE
    return np.asarray(Image.fromarray(blurred).resize((width, height), Image.Resampling.BICUBIC))


class Row:
    def __init__(self, name: str, run):
        self.name, self.run = name, run


def engine_row(engine: Engine, op: str, method: str | None, name: str) -> Row:
    def run(small: np.ndarray) -> np.ndarray:
        job = local_job(op, {"method": method, "scale": SCALE}, image=small)
        return engine.run(job, lambda fraction, stage: None)[0][0][1]
    return Row(name, run)


def lanczos(small: np.ndarray) -> np.ndarray:
    image = Image.fromarray(small)
    return np.asarray(image.resize((image.width * SCALE, image.height * SCALE),
                                   Image.Resampling.LANCZOS))


def rows_for(engine: Engine, skip=()) -> list[Row]:
    upscaler = engine.catalog.pick("upscale", None, SCALE).name
    default = engine.catalog.pick("deblur", None).name
    rows = [Row("Lanczos (classical)", lanczos),
            engine_row(engine, "upscale", None, "upscale: %s" % upscaler)]
    for method in engine.catalog.candidates("deblur"):
        if method.name in skip:
            continue
        rows.append(engine_row(engine, "sharpen", method.name, "sharpen: %s + %s%s" % (
            method.name, upscaler, " (default)" if method.name == default else "")))
    return rows


def measure(rows: list[Row], photos: dict[str, np.ndarray]) -> dict:
    results = {}
    for letter, (_, case) in CASES.items():
        results[letter] = {}
        inputs = {name: thumbnail(sharp, case) for name, sharp in photos.items()}
        for row in rows:
            scores, seconds, pixels = {}, 0.0, 0
            for name, sharp in photos.items():
                start = time.perf_counter()
                out = row.run(inputs[name])
                seconds += time.perf_counter() - start
                truth = sharp[:out.shape[0], :out.shape[1]]
                pixels += out.shape[0] * out.shape[1]
                scores[name] = {"psnr": metrics.psnr(out, truth), "ssim": metrics.ssim(out, truth)}
                print("  %s %-40s %-28s %.2f dB" % (letter, row.name, name, scores[name]["psnr"]),
                      flush=True)
            results[letter][row.name] = {
                "psnr": float(np.mean([s["psnr"] for s in scores.values()])),
                "ssim": float(np.mean([s["ssim"] for s in scores.values()])),
                "s_per_mp": seconds / (pixels / 1e6)}
    return results


def table(results: dict, rows: list[Row]) -> str:
    lines = []
    for letter, (title, _) in CASES.items():
        base = results[letter][rows[1].name]["psnr"]
        lines += ["", "**(%s) %s**" % (letter, title), "",
                  "| method | PSNR (dB) | vs upscale alone | SSIM | s / MP of output |",
                  "|---|---:|---:|---:|---:|"]
        for row in rows:
            r = results[letter][row.name]
            lines.append("| %s | %.2f | %+.2f | %.4f | %.2f |" % (
                row.name, r["psnr"], r["psnr"] - base, r["ssim"], r["s_per_mp"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, action="append",
                        help="folders holding the held-out photos (default: %s)"
                        % ", ".join(map(str, DEFAULT_PHOTOS)))
    parser.add_argument("--models-dir", help="a models folder whose MIMO-UNet checkpoints "
                                             "get rows of their own")
    parser.add_argument("--skip", nargs="*", default=[], metavar="METHOD",
                        help="deblurrers to leave out, e.g. blind-deconvolution (minutes per MP)")
    parser.add_argument("--record", action="store_true", help="append to docs/BENCHMARKS.md")
    args = parser.parse_args()
    photos = {name: np.asarray(image)[:image.height // SCALE * SCALE,
                                      :image.width // SCALE * SCALE]
              for name, image in validation_set(args.photos or DEFAULT_PHOTOS).items()}
    engine = Engine(Settings(device="cpu", models_dir=args.models_dir or ""))
    rows = rows_for(engine, args.skip)
    for row in rows:   # warm-up: weights load on the first job
        row.run(np.zeros((32, 32, 3), np.uint8))
    results = measure(rows, photos)
    text = table(results, rows)
    header = "Photos (held out of training): %s; full-size truth, half-size input." % (
        ", ".join(VALIDATION))
    print("\n" + header + "\n" + text)
    if args.record:
        section = ("\n## AI Sharpen on blurred thumbnails, %s (bench/sharpen_quality.py)\n\n"
                   "Machine: %s; torch threads: %s. `bench/sharpen_quality.py%s`. %s PSNR (RGB) "
                   "and SSIM with 8 px shaved; seconds are wall-clock per megapixel of output, "
                   "model loading excluded.\n%s\n" % (
                       datetime.date.today().isoformat(), machine(), torch.get_num_threads(),
                       (" --models-dir %s" % args.models_dir if args.models_dir else "")
                       + (" --skip %s" % " ".join(args.skip) if args.skip else ""),
                       header, text))
        with open(ROOT / "docs" / "BENCHMARKS.md", "a") as handle:
            handle.write(section)
        print("recorded in docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
