"""Adaptation benchmark: what `adapt` (server/adaptation.py) buys on images
unlike the training photos, and what it costs on photos like them.

    nice -n 19 .venv/bin/python bench/adapt_quality.py [--degradation b] [--record]
    nice -n 19 .venv/bin/python bench/adapt_quality.py --task deblur --blur motion-15 [--record]

Protocol, per domain (bench/adapt_domains.py: text and screenshots, line art,
fur and foliage close-ups, astronomy; and the in-domain held-out photos of
scripts/train_sr.py VALIDATION, from ../shared/data/photos):
  ground truth -> degradation (b) Pillow LANCZOS to half size + JPEG 75, or
  (a) Pillow BICUBIC (training/degradations.py THUMBNAIL_CASES) -> low-resolution input;
  the adapt op sees ONLY those inputs, as tiles picked by the client
  library's sample_tiles (as `sharpfu upscale --adapt` does: one adaptation
  shared by the domain's batch, POUF's setting); then each input is upscaled
  2x by the shipped network and by the adapted one (the `model` the op
  named: the shipped one again when the safeguard rejected the adaptation),
  through the server's engine on the CPU, and both are scored against the
  ground truth: Y-PSNR, BT.601, 2 px border shaved.
Seconds per image: the adaptation's wall time divided by the domain's images,
plus the mean upscale time; measured on this (shared) CPU.

With --task deblur, the deblurrer instead: ground truth -> one of
training/degradations.py's fixed blurs (Gaussian sigma 2, or motion 15 px at
30 degrees) -> the blurry input, the only thing the adapt op sees (task
"deblur", tiles of 512 px, one adaptation per domain); each input deblurred
by the shipped network and by the adapted one; PSNR over RGB with 8 px
shaved, as bench/deblur_quality.py measures.

Goals (issue 7): mean gain out of domain at least +0.3 dB; in domain no
loss above 0.1 dB.
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
sys.path.insert(0, str(ROOT / "bench"))

import adapt_domains  # noqa: E402
from server.engine import Engine  # noqa: E402
from server.jobs import local_job  # noqa: E402
from training import degradations, metrics  # noqa: E402
from training.degradations import BLUR_CASES  # noqa: E402
from training.photos import DEFAULT_PHOTOS, validation_set  # noqa: E402
from training.record import machine  # noqa: E402
from server.settings import Settings  # noqa: E402
from sharpfu_client import Frame  # noqa: E402
from sharpfu_client.adapt import DEFAULT_TILES, TILE_SIDE, sample_tiles  # noqa: E402

SCALE = 2
IN_DOMAIN = "in domain (held-out photos)"
DEGRADATIONS = {"a": "bicubic", "b": "lanczos+jpeg75"}


class Upscaling:
    """Task (b) or (a): thumbnails made by a fixed downscale, restored 2x."""

    task = "upscale"
    measure = "Y-PSNR"

    def __init__(self, degradation: str):
        self.degradation = degradation
        self.compressed = degradation != "bicubic"   # (b) would be JPEGs, (a) lossless files

    def truth(self, image: Image.Image) -> Image.Image:
        return degradations.crop_to_multiple(image, SCALE)

    def degrade(self, truth: Image.Image) -> Image.Image:
        return degradations.THUMBNAIL_CASES[self.degradation](truth, SCALE)

    def restore(self, engine: Engine, low: Image.Image, method: str | None):
        return run(engine, "upscale", {"scale": SCALE, "method": method}, low)

    def score(self, result: Image.Image, truth: Image.Image) -> float:
        return metrics.y_psnr(result, truth)


class Deblurring:
    """A fixed blur of training/degradations.py, restored at the same size."""

    task = "deblur"
    measure = "PSNR"
    compressed = False          # the blurry inputs are never saved lossily here

    def __init__(self, blur: str):
        self.blur = blur

    def truth(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB")

    def degrade(self, truth: Image.Image) -> Image.Image:
        return Image.fromarray(BLUR_CASES[self.blur].apply(np.asarray(truth)))

    def restore(self, engine: Engine, blurry: Image.Image, method: str | None):
        return run(engine, "deblur", {"method": method}, blurry)

    def score(self, result: Image.Image, truth: Image.Image) -> float:
        return metrics.psnr(np.asarray(result), np.asarray(truth))


def run(engine: Engine, op: str, params: dict, image: Image.Image) -> tuple[Image.Image, float]:
    job = local_job(op, params, image=np.array(image))
    start = time.perf_counter()
    results, info = engine.run(job, lambda f, s: None)
    return Image.fromarray(results[0][1]), time.perf_counter() - start


def adapt(engine: Engine, task, lows: list[Image.Image], steps: int | None,
          trainable: str) -> dict:
    frames = [Frame(np.ascontiguousarray(np.array(low)), low.width, low.height, 3, "u8")
              for low in lows]
    samples = sample_tiles(frames, DEFAULT_TILES, TILE_SIDE[task.task])
    arrays = {"sample%d" % k: np.frombuffer(s.data, np.uint8).reshape(s.height, s.width, 3)
              for k, s in enumerate(samples)}
    params = {"scale": SCALE, "task": task.task, "compressed": task.compressed,
              "trainable": trainable, **({"steps": steps} if steps else {})}
    job = local_job("adapt", params, **arrays)
    engine.check(job)
    last = [0.0]

    def report(fraction, stage):
        if fraction - last[0] >= 0.25:
            last[0] = fraction
            print("    %3.0f%% %s" % (100 * fraction, stage), flush=True)

    start = time.perf_counter()
    engine.run(job, report)
    outcome = dict(job.outcome["adaptation"], wall=time.perf_counter() - start)
    return outcome


def run_domain(engine: Engine, task, name: str, items, steps: int | None,
               trainable: str = "all") -> dict:
    truths = [task.truth(image) for _, image in items]
    lows = [task.degrade(truth) for truth in truths]
    print("%s: adapting on %d inputs" % (name, len(lows)), flush=True)
    outcome = adapt(engine, task, lows, steps, trainable)
    rows, upscale_seconds = [], []
    for (label, _), truth, low in zip(items, truths, lows):
        shipped, _ = task.restore(engine, low, None)
        adapted, seconds = task.restore(engine, low, outcome["model"])
        upscale_seconds.append(seconds)
        row = {"image": label, "shipped": task.score(shipped, truth),
               "adapted": task.score(adapted, truth)}
        rows.append(row)
        print("  %-28s %.2f -> %.2f dB (%+.2f)" % (label, row["shipped"], row["adapted"],
                                                   row["adapted"] - row["shipped"]), flush=True)
    shipped = float(np.mean([r["shipped"] for r in rows]))
    adapted = float(np.mean([r["adapted"] for r in rows]))
    return {"domain": name, "rows": rows, "shipped": shipped, "adapted": adapted,
            "gain": adapted - shipped, "outcome": outcome,
            "seconds_per_image": outcome["wall"] / len(rows) + float(np.mean(upscale_seconds))}


def table(results: list[dict], measure: str = "Y-PSNR") -> str:
    lines = ["Scores: %s." % measure, "",
             "| domain | images | shipped (dB) | adapted (dB) | gain (dB) | verdict | internal pairs "
             "before → after (dB) | adapt s | s / image |",
             "|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for r in results:
        o = r["outcome"]
        lines.append("| %s | %d | %.2f | %.2f | %+.2f | %s | %.2f → %.2f | %.1f | %.1f |" % (
            r["domain"], len(r["rows"]), r["shipped"], r["adapted"], r["gain"],
            "accepted" if o["accepted"] else "rejected", o["before"], o["after"], o["wall"],
            r["seconds_per_image"]))
    out = [r for r in results if r["domain"] != IN_DOMAIN]
    if out:
        lines.append("| **mean out of domain** | %d | %.2f | %.2f | **%+.2f** | | | | %.1f |" % (
            sum(len(r["rows"]) for r in out), np.mean([r["shipped"] for r in out]),
            np.mean([r["adapted"] for r in out]), np.mean([r["gain"] for r in out]),
            np.mean([r["seconds_per_image"] for r in out])))
    lines += ["", "Per image, %s (dB), shipped → adapted:" % measure, ""]
    for r in results:
        lines.append("- %s: %s" % (r["domain"], "; ".join(
            "%s %.2f → %.2f" % (row["image"], row["shipped"], row["adapted"]) for row in r["rows"])))
    return "\n".join(lines)


def goals(results: list[dict]) -> str:
    out = [r["gain"] for r in results if r["domain"] != IN_DOMAIN]
    inside = [r["gain"] for r in results if r["domain"] == IN_DOMAIN]
    lines = ["Goals:"]
    if out:
        mean = float(np.mean(out))
        lines.append("- mean gain out of domain at least +0.30 dB: %+.2f dB, %s." % (
            mean, "met" if mean >= 0.3 else "NOT met"))
    if inside:
        lines.append("- no loss above 0.10 dB in domain: %+.2f dB, %s." % (
            inside[0], "met" if inside[0] >= -0.1 else "NOT met"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=("upscale", "deblur"), default="upscale",
                        help="which network adapts (default: the x2 upscaler)")
    parser.add_argument("--degradation", choices=sorted(DEGRADATIONS), default="b",
                        help="upscale: (a) bicubic or (b) Lanczos + JPEG 75 (default)")
    parser.add_argument("--blur", choices=sorted(BLUR_CASES), default="motion-15",
                        help="deblur: the blur of the inputs (default motion-15)")
    parser.add_argument("--steps", type=int, help="adaptation steps (default: the server's)")
    parser.add_argument("--trainable", choices=("all", "low-rank"), default="all",
                        help="what trains: all weights (default) or low-rank adapters")
    parser.add_argument("--domains", help="comma-separated subset (default: all, then in domain)")
    parser.add_argument("--photos", nargs="*", type=Path, default=DEFAULT_PHOTOS,
                        help="folders with the held-out in-domain photos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="", help="a sentence for the recorded section")
    parser.add_argument("--record", action="store_true",
                        help="append the table, with date and machine, to docs/BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.task == "deblur":
        task = Deblurring(args.blur)
        what = ("Blur: %s; the deblurrer; adaptation sees only the blurry inputs (up to %d "
                "tiles of %d px, one adaptation per domain)" % (
                    BLUR_CASES[args.blur].title, DEFAULT_TILES, TILE_SIDE["deblur"]))
        options = "--task deblur --blur %s" % args.blur
    else:
        degradation = DEGRADATIONS[args.degradation]
        task = Upscaling(degradation)
        what = ("Degradation (%s) %s; x2; adaptation sees only the low-resolution inputs (up "
                "to %d tiles of %d px, one adaptation per domain)" % (
                    args.degradation, degradations.THUMBNAIL_TITLES[degradation], DEFAULT_TILES,
                    TILE_SIDE["upscale"]))
        options = "--degradation %s" % args.degradation
    domains = adapt_domains.domains()
    domains[IN_DOMAIN] = list(validation_set(args.photos).items())
    chosen = args.domains.split(",") if args.domains else list(domains)
    engine = Engine(Settings(device="cpu", threads=args.threads))
    task.restore(engine, Image.new("RGB", (32, 32)), None)   # weights load outside the timing
    results = [run_domain(engine, task, name, domains[name], args.steps, args.trainable)
               for name in chosen]
    text = table(results, task.measure) + "\n\n" + goals(results)
    print(text)
    if args.record:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        command = "bench/adapt_quality.py %s%s%s%s" % (
            options, " --steps %d" % args.steps if args.steps else "",
            " --trainable %s" % args.trainable if args.trainable != "all" else "",
            " --domains '%s'" % args.domains if args.domains else "")
        section = ("\n## Adaptation to the user's images%s%s, %s (bench/adapt_quality.py)\n\n"
                   "Machine: %s; torch threads: %d. `%s`. %s. %s\n\n%s\n\n%s\n" % (
                       ": the deblurrer" if args.task == "deblur" else "",
                       ", low-rank adapters" if args.trainable == "low-rank" else "", stamp,
                       machine(), args.threads, command, what, args.note, table(results, task.measure),
                       goals(results)))
        with open(ROOT / "docs" / "BENCHMARKS.md", "a") as handle:
            handle.write(section)
        print("recorded in docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
