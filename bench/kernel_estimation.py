"""Blind kernel estimation, measured quickly (issue 17): how close the kernel
found is to the true one, and what deblurring with it gains, on small crops.

The tuning loop of server/deblurring/estimate.py, kept so that every change
to the estimator is measured the same way. It is not the benchmark
(bench/deblur_quality.py is): by default it uses different photos (training
photos, not the held-out ones the benchmark measures on) and different
blurs (its own seeds, lengths and angles), so that tuning on it does not
tune on the benchmark.

    .venv/bin/python bench/kernel_estimation.py [--cases motion shake] [--photos 6]
        [--crop 320] [--kernel-size 0] [--no-deconvolution] [--set lambda_gradient=8e-3]

Cases (each photo gets a blur of its own, drawn from TUNING_SEED + index):
  motion        linear motion, 11 to 21 px at any angle, 8-bit rounding
  motion+noise  the same, then Gaussian noise sigma 2/255 and rounding
  shake         camera_shake (training/degradations.py), support 21 to 31 px,
                then noise sigma 1/255 and rounding (as the benchmark's (d),
                other trajectories)
  gaussian      Gaussian blur, sigma 1.5 to 2.5 px, 8-bit rounding (a check
                that smooth blurs stay found)

Per photo and case, through the blind-deconvolution method's own `prepare`
(the whole estimation: noise, window, denoising, the model choice, the
no-blur test) and its tile function on the whole crop:
  raw NCC   the estimator's kernel (before the model choice) against the
            truth: peak normalised cross-correlation over all shifts
            (server/deblurring/kernels.similarity)
  NCC       the kernel the method deconvolves with (after the model choice)
  aspect    how round the estimator's kernel is (kernels.aspect: 1 round,
            near 0 a line)
  model     free, gaussian, disc or none
  PSNR      of the deblurred crop (RGB, 8 px shaved), and its gain over the
            blurry crop; with the true kernel too (--true-kernel), the
            ceiling a perfect estimate would reach
  CPU s     process CPU seconds (all threads) of the estimation and of the
            deconvolution: comparable between runs on a loaded machine,
            unlike wall-clock seconds
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.deblurring import blind, estimate, kernels  # noqa: E402
from server.methods.blind_deconvolution import shipped  # noqa: E402
from training import metrics  # noqa: E402
from training.degradations import (BlurCase, camera_shake, gaussian,  # noqa: E402
                                   linear_motion, to_8bit)
from training.photos import DEFAULT_PHOTOS, VALIDATION, find_photos, read_rgb  # noqa: E402

# Used by nothing else: not the benchmark's (SHAKE_SEED), not training's.
TUNING_SEED = 4_242_017
# Training photos with edges at several scales (none of them held out).
TUNING_PHOTOS = ("astronaut.png", "coffee.png", "rocket.jpg", "friends_by_aitzol_berasategi.jpg",
                 "wine_by_jakkub_mede.jpg", "picture_0b_by_freespace.jpg",
                 "aitzgorri_by_aitzol_berasategi.jpg", "flower.jpg")
CASES = ("motion", "motion+noise", "shake", "gaussian")


def tuning_case(case: str, index: int) -> BlurCase:
    """The blur of `case` for the index-th photo (seeded, so every run sees
    the same)."""
    rng = np.random.default_rng(TUNING_SEED + 1000 * CASES.index(case) + index)
    if case in ("motion", "motion+noise"):
        length, angle = rng.uniform(11.0, 21.0), rng.uniform(0.0, 180.0)
        return BlurCase("linear %.1f px at %.0f deg" % (length, angle),
                        linear_motion(length, angle), 2.0 if case == "motion+noise" else 0.0)
    if case == "shake":
        while True:
            kernel = camera_shake(rng, rng.uniform(25.0, 45.0))
            if 21 <= kernel.shape[0] <= 31:
                return BlurCase("shake %d px" % kernel.shape[0], kernel, 1.0)
    sigma = rng.uniform(1.5, 2.5)
    return BlurCase("gaussian %.2f px" % sigma, gaussian(sigma), 0.0)


def centre_square(pixels: np.ndarray, side: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return np.ascontiguousarray(pixels[top:top + side, left:left + side])


def load_photos(folders: list[Path], held_out: bool, count: int, crop: int) -> dict:
    found = find_photos(folders)
    names = VALIDATION if held_out else TUNING_PHOTOS
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit("photos not found: %s" % ", ".join(missing))
    return {name: centre_square(np.asarray(read_rgb(found[name])), crop)
            for name in names[:count]}


class Recorder:
    """Keeps the estimator's own kernel: blind.simplest_model's argument."""

    def __init__(self):
        self.raw = None
        self.original = blind.simplest_model

    def __enter__(self):
        def recording(kernel):
            self.raw = kernel.clone()
            return self.original(kernel)
        blind.simplest_model = recording
        return self

    def __exit__(self, *exc):
        blind.simplest_model = self.original


def run_one(method, blurry: np.ndarray, sharp: np.ndarray, case: BlurCase, params: dict,
            deconvolution: bool, true_kernel: bool) -> dict:
    truth = torch.from_numpy(case.kernel).float()
    row = {"blur": case.title, "blurry": metrics.psnr(blurry, sharp)}
    start = time.process_time()
    with Recorder() as recorder, torch.inference_mode():
        prepared = method.prepare(blurry, "u8", 3, 1, params, lambda f, s: None)
    row["estimate_cpu"] = time.process_time() - start
    found = torch.from_numpy(prepared.frames["kernel"][..., 0])
    row["model"] = prepared.outcome["blur"]["kernel_model"]
    row["size"] = int(found.shape[-1])
    row["ncc"] = kernels.similarity(found, truth)
    row["raw_ncc"] = kernels.similarity(recorder.raw, truth) if recorder.raw is not None \
        else float("nan")
    row["raw_aspect"] = kernels.aspect(recorder.raw) if recorder.raw is not None \
        else float("nan")
    x = torch.from_numpy(blurry).permute(2, 0, 1)[None].float() / 255.0
    box = (0, 0, blurry.shape[0], blurry.shape[1])
    if deconvolution:
        start = time.process_time()
        with torch.inference_mode():
            out = prepared.run(x, box)
        row["deconvolve_cpu"] = time.process_time() - start
        row["psnr"] = metrics.psnr(to_8bit(out[0].permute(1, 2, 0).numpy() * 255.0), sharp)
    if true_kernel:
        given = method.prepare(blurry, "u8", 3, 1, {}, lambda f, s: None, kernel=truth)
        with torch.inference_mode():
            out = given.run(x, box)
        row["true_psnr"] = metrics.psnr(to_8bit(out[0].permute(1, 2, 0).numpy() * 255.0), sharp)
    return row


def summary(results: dict) -> str:
    lines = ["", "| case | raw NCC | NCC | models | PSNR gain (dB) | true-kernel gain | "
             "estimate CPU s | deconv CPU s |", "|---|---:|---:|---|---:|---:|---:|---:|"]

    def mean(rows, key):
        values = [r[key] for r in rows if key in r]
        return "%.3f" % float(np.mean(values)) if values else "-"

    for case, rows in results.items():
        rows = list(rows.values())
        models = {}
        for r in rows:
            models[r["model"]] = models.get(r["model"], 0) + 1
        gains = [r["psnr"] - r["blurry"] for r in rows if "psnr" in r]
        true_gains = [r["true_psnr"] - r["blurry"] for r in rows if "true_psnr" in r]
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            case, mean(rows, "raw_ncc"), mean(rows, "ncc"),
            ", ".join("%s %d" % kv for kv in sorted(models.items())),
            "%+.2f" % np.mean(gains) if gains else "-",
            "%+.2f" % np.mean(true_gains) if true_gains else "-",
            mean(rows, "estimate_cpu"), mean(rows, "deconvolve_cpu")))
    return "\n".join(lines)


def parse_setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(estimate.Settings)}
    if key not in fields:
        raise SystemExit("no estimation setting %r (%s)" % (key, ", ".join(fields)))
    kind = type(getattr(estimate.Settings(), key))
    return key, kind(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["motion", "shake"], choices=CASES)
    parser.add_argument("--photos", type=int, default=6, help="how many tuning photos")
    parser.add_argument("--folders", type=Path, action="append",
                        help="photo folders (default: %s)" % ", ".join(map(str, DEFAULT_PHOTOS)))
    parser.add_argument("--held-out", action="store_true",
                        help="the benchmark's held-out photos instead of training ones (still "
                             "this script's blurs): a check, not for tuning")
    parser.add_argument("--crop", type=int, default=320, help="centre square side, px")
    parser.add_argument("--kernel-size", type=int, default=0, help="0: the method's automatic")
    parser.add_argument("--no-deconvolution", dest="deconvolution", action="store_false",
                        help="kernels only (quicker)")
    parser.add_argument("--true-kernel", action="store_true",
                        help="also deconvolve with the true kernel (the ceiling)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an estimate.Settings field")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = load_photos(args.folders or DEFAULT_PHOTOS, args.held_out, args.photos, args.crop)
    found = shipped()
    if not found:
        raise SystemExit("the denoiser's weights (models/weights/drunet-denoiser.*) are missing")
    method = found[0]
    method.load(torch.device("cpu"), torch.float32)
    overrides = dict(parse_setting(s) for s in args.set)
    if overrides:
        method.settings = dataclasses.replace(
            method.settings, estimation=method.settings.estimation.with_(**overrides))
    params = {"kernel_size": args.kernel_size} if args.kernel_size else {}
    results = {}
    started = time.time()
    for case in args.cases:
        results[case] = {}
        for index, (name, sharp) in enumerate(photos.items()):
            blur_case = tuning_case(case, index)
            blurry = blur_case.apply(sharp, seed=TUNING_SEED + index)
            row = run_one(method, blurry, sharp, blur_case, params, args.deconvolution,
                          args.true_kernel)
            results[case][name] = row
            print("  %-13s %-36s %-28s raw %.3f (aspect %.2f)  ncc %.3f  %-8s %2d px  %s%s  "
                  "est %.0f s" % (
                case, name[:36], row["blur"], row["raw_ncc"], row["raw_aspect"], row["ncc"],
                row["model"],
                row["size"],
                "%+.2f dB" % (row["psnr"] - row["blurry"]) if "psnr" in row else "",
                " (true %+.2f)" % (row["true_psnr"] - row["blurry"]) if "true_psnr" in row
                else "", row["estimate_cpu"]), flush=True)
    print("\nsettings: %s; kernel size %s; crop %d; %s photos; %.0f s wall" % (
        ", ".join("%s=%s" % kv for kv in overrides.items()) or "defaults",
        args.kernel_size or "automatic", args.crop,
        "held-out" if args.held_out else "tuning", time.time() - started))
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
