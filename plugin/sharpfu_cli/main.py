"""`sharpfu`: SharpFu from the command line.

    sharpfu upscale photo.jpg -o big.jpg --scale 4
    sharpfu deblur scans/ -o sharp/
    sharpfu matte photo.png --mask rough.png -o alpha.png --bits 16
    sharpfu select photo.jpg -o subject.png --cutout subject-cut.png
    sharpfu status
    sharpfu models list       # and add, remove, show, pull: see models_cmd.py

It works through the SharpFu server like the GIMP plug-ins do, and starts
one when none runs. Each file either fails on one line of stderr or is
written whole; the exit code is 1 when any failed, 130 after Ctrl+C.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections import deque

import numpy as np
from tqdm import tqdm

from sharpfu_client import Cancelled, Client, Frame, SharpFuError
from sharpfu_client import config as config_module
from sharpfu_client import launcher, methods
from sharpfu_client.adapt import TILE_SIDE, adapt, sample_tiles, task_for
from sharpfu_client.cluster import Cluster, server_settings
from sharpfu_client.operations import OPERATIONS

from . import imageio, models_cmd

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
RUN_WORDS = {"classical": "classical method, not AI", "network": "AI model"}
STATUS_WORDS = {"classical": "classical method, not AI", "network": "trained network"}
INSTALL = {"select": "sharpfu models pull isnet-general"}   # for an op with nothing installed
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
LUMA = (0.299, 0.587, 0.114)   # ITU-R 601, as Pillow and most tools make grey
ADAPT_IMAGES = 8               # images of a batch that adaptation samples tiles from
ADAPT_TILES = 16
LOSSY_EXTENSIONS = (".jpg", ".jpeg", ".webp")
MIN_TILE, MAX_TILE = 64, 16384  # the server's smallest tile and its 'tile' parameter's maximum


def say(message: str) -> None:
    # tqdm.write keeps a progress bar intact under the message.
    tqdm.write("sharpfu: " + " ".join(message.split()), file=sys.stderr)


class Failure(Exception):
    def __init__(self, path: str, reason: str):
        super().__init__(reason)
        self.path, self.reason = path, reason


# -- command line -------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("server")
    group.add_argument("--endpoint", metavar="URL", action="append",
                       help="the server's ZeroMQ endpoint; give several to spread a batch over "
                            "several servers (or list them as \"servers\" in the configuration)")
    group.add_argument("--config", metavar="FILE", help="SharpFu configuration file")
    group.add_argument("--timeout", metavar="S", type=_positive_float,
                       help="seconds of server silence before giving up")
    group.add_argument("--no-autostart", action="store_true",
                       help="fail instead of starting a server when none runs")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bar and no note on the method used")
    job = argparse.ArgumentParser(add_help=False)
    group = job.add_argument_group("method")
    group.add_argument("--method", metavar="NAME",
                       help="model or method to use (see 'sharpfu status'); default: the best "
                            "installed")
    group.add_argument("--tile", metavar="N", type=_tile,
                       help="tile side in pixels, %d to %d (default: from free memory; the "
                            "server never exceeds what its memory allows)" % (MIN_TILE, MAX_TILE))

    parser = argparse.ArgumentParser(prog="sharpfu", description="AI restoration with the "
                                     "SharpFu server: upscale, deblur, sharpen, refine mattes, "
                                     "select subjects.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def image_command(name, help_text):
        command = commands.add_parser(name, parents=[connection, job], help=help_text,
                                      description=help_text + " Several inputs or a folder make "
                                      "a batch; -o is then a folder.")
        command.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders")
        command.add_argument("-o", "--output", metavar="OUT",
                             help="output file, or folder for a batch (never an input, unless "
                                  "--in-place)")
        command.add_argument("--in-place", action="store_true",
                             help="replace the inputs with the results (each file is replaced "
                                  "whole, in one step, once its result is ready); -o may then "
                                  "be left out")
        scale = OPERATIONS[name].params.get("scale")
        if scale is not None:
            command.add_argument("--scale", type=int, choices=scale.choices,
                                 default=scale.default,
                                 help="size factor (default %d)" % scale.default)
        command.add_argument("--strength", metavar="S", type=_strength,
                             help="how much of the change to keep, 0 to 1 or 0%%%% to 100%%%% "
                                  "(default 1: all; 0: the image %s)" % (
                                      "unchanged" if name == "deblur" else
                                      "plainly resampled with Lanczos-3"))
        if "kernel_size" in OPERATIONS[name].params:
            group = command.add_argument_group("blur")
            group.add_argument("--kernel-size", metavar="PX", type=_kernel_size,
                               help="the largest blur to look for, in pixels (the estimated "
                                    "blur kernel's side, made odd; default: automatic, 35 or "
                                    "2.5%%%% of a large image's shorter side); raise it for "
                                    "strong camera shake")
            group.add_argument("--save-kernel", metavar="FILE",
                               help="also write the estimated blur kernel as an image (grey, "
                                    "its largest weight white; .png or .tif); for several "
                                    "inputs, a folder, one file per input named after it")
        command.add_argument("--jobs", metavar="N", type=_positive_int,
                             help="images in flight at once (default: 2 per server), so that "
                                  "reading and writing files never leaves a server idle")
        command.add_argument("--resume", action="store_true",
                             help="skip inputs whose output already exists (outputs are "
                                  "written whole or not at all, so an existing one is finished)")
        adapts = {"upscale": "the upscaler", "deblur": "the deblurrer",
                  "sharpen": "the upscaler (at --scale 1: the deblurrer)"}[name]
        group = command.add_argument_group("adaptation")
        group.add_argument("--adapt", action="store_true",
                           help="first adapt %s to these images (tiles of up to %d of them; "
                                "no ground truth needed), then use the adapted model; the "
                                "server keeps it only if it restores held-out tiles better"
                                % (adapts, ADAPT_IMAGES))
        group.add_argument("--adapt-steps", metavar="N", type=_positive_int,
                           help="training steps of the adaptation (default: the server's, 300 for "
                                "the upscaler, 150 for the deblurrer)")
        group.add_argument("--adapt-save", action="store_true",
                           help="also save the adapted model in the server's models folder")
        group.add_argument("--adapt-low-rank", action="store_true",
                           help="train low-rank adapters instead of all the network's weights: "
                                "fewer parameters, smaller gains (docs/models/adaptation.md)")
        command.set_defaults(run=run_images, op=name, parser=command)

    image_command("upscale", "Enlarge images 2x or 4x.")
    image_command("deblur", "Remove blur at the same size.")
    image_command("sharpen", "Deblur, then optionally upscale.")

    matte = commands.add_parser("matte", parents=[connection, job],
                                help="Refine a coarse mask into an alpha matte.",
                                description="Refine a coarse mask into an alpha matte, written "
                                            "as a one-channel PNG the size of the image.")
    matte.add_argument("image", metavar="IMAGE")
    matte.add_argument("--mask", required=True, metavar="MASK",
                       help="coarse mask, the image's size: grey, or colour (its luminance), or "
                            "a plain colour with alpha (its alpha)")
    matte.add_argument("-o", "--output", required=True, metavar="ALPHA", help="PNG to write")
    matte.add_argument("--bits", type=int, choices=(8, 16), default=8,
                       help="bits per sample of the PNG (default 8)")
    matte.add_argument("--cutout", metavar="FILE",
                       help="also write the subject as an RGBA PNG (or TIFF): the matte as alpha, "
                            "colours freed of the old background (no halo)")
    matte.set_defaults(run=run_matte, op="matte", parser=matte)

    select = commands.add_parser("select", parents=[connection, job],
                                 help="Find the main subject of a photo: a soft mask.",
                                 description="Find the main subject of a photo with a subject "
                                             "model (install one with 'sharpfu models pull "
                                             "isnet-general') and write its soft mask as a "
                                             "one-channel PNG the size of the image (white: "
                                             "subject; transparent pixels count as background).")
    select.add_argument("image", metavar="IMAGE")
    select.add_argument("-o", "--output", required=True, metavar="MASK", help="PNG to write")
    select.add_argument("--no-refine", dest="refine", action="store_false",
                        help="the model's own soft mask, without refining its edges by closed-"
                             "form matting (faster; hair and fine edges come out blurred)")
    select.add_argument("--bits", type=int, choices=(8, 16), default=8,
                        help="bits per sample of the PNG (default 8)")
    select.add_argument("--cutout", metavar="FILE",
                        help="also write the subject as an RGBA PNG (or TIFF): the mask as "
                             "alpha, colours freed of the old background (no halo)")
    select.set_defaults(run=run_select, op="select", parser=select)

    status = commands.add_parser("status", parents=[connection],
                                 help="Show the server, its device and its methods.")
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")
    status.set_defaults(run=run_status, parser=status)
    models_cmd.add_parser(commands)
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _strength(text: str) -> float:
    """0 to 1, or a percentage (50%)."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must lie between 0 and 1 (or 0%% and 100%%)")
    return value


def _kernel_size(text: str) -> int:
    spec = OPERATIONS["deblur"].params["kernel_size"]
    value = int(text)
    if not spec.minimum <= value <= spec.maximum:
        raise argparse.ArgumentTypeError("must lie between %d (automatic) and %d"
                                         % (spec.minimum, spec.maximum))
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _tile(text: str) -> int:
    value = int(text)
    if value != 0 and not MIN_TILE <= value <= MAX_TILE:
        raise argparse.ArgumentTypeError("must be 0 (automatic) or %d to %d" % (MIN_TILE,
                                                                                 MAX_TILE))
    return value


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "local", False):
        # the model store is local files: no server involved
        try:
            sys.exit(args.run(args))
        except config_module.ConfigError as error:
            say("error: %s" % error)
            sys.exit(EXIT_FAILED)
    interrupt = Interrupt()
    previous = signal.signal(signal.SIGINT, interrupt.handle)
    client = None
    try:
        client = open_client(args)
        code = args.run(args, client, interrupt)
    except KeyboardInterrupt:
        say("cancelled" if interrupt.requested else "interrupted")
        code = EXIT_INTERRUPTED
    except (config_module.ConfigError, SharpFuError) as error:
        say("error: %s" % getattr(error, "message", error))
        code = EXIT_FAILED
    finally:
        if client is not None:
            client.close()
        signal.signal(signal.SIGINT, previous)
    sys.exit(code)


class Interrupt:
    """Ctrl+C while a job runs asks the server to cancel it, so that it stops
    working on an image nobody wants; a second Ctrl+C quits at once."""

    def __init__(self):
        self.waiting = False    # a job is in flight and wait() polls `requested`
        self.requested = False

    def handle(self, signum, frame):
        if self.waiting and not self.requested:
            self.requested = True
            say("cancelling (press Ctrl+C again to quit at once)")
            return
        raise KeyboardInterrupt


def open_client(args) -> Client | Cluster:
    config = config_module.load(args.config)
    endpoints = args.endpoint or []
    if len(endpoints) > 1 or (not endpoints and len(config.get("servers") or []) > 1):
        return Cluster(endpoints or None, config=config, timeout=args.timeout)
    if launcher.server_command(config) is None:
        # The CLI runs in the server's own environment, so it can always
        # start one with its own interpreter.
        config["server_command"] = [sys.executable, "-m", "server"]
    endpoint = endpoints[0] if endpoints else (server_settings(config)[0][0] if config.get(
        "servers") else None)
    return Client(endpoint=endpoint, config=config, timeout=args.timeout,
                  autostart=not args.no_autostart)


def connect(client: Client | Cluster, args) -> dict:
    if isinstance(client, Cluster):
        return client.connect()

    def starting(endpoint):
        if not args.quiet:
            say("no server answers at %s; starting one" % endpoint)

    return client.connect(on_start=starting)


# -- image ops ----------------------------------------------------------------

def run_images(args, client, interrupt: Interrupt) -> int:
    pairs, failed = plan(args)
    args.kernel_targets = kernel_targets(args, pairs)
    everything = [source for source, _ in pairs]
    skipped = 0
    if args.resume:
        todo = [(source, target) for source, target in pairs if not os.path.exists(target)]
        skipped, pairs = len(pairs) - len(todo), todo
        if skipped and not args.quiet:
            say("resuming: %d of %d outputs are there already" % (skipped, skipped + len(pairs)))
    if not pairs:
        return EXIT_FAILED if failed else 0
    connect(client, args)
    params = job_params(args)
    adaptation = None
    if getattr(args, "adapt", False):
        # Sampled from every input, finished or not, so that a resumed batch
        # asks for the same adaptation and the server answers from its cache.
        adaptation = run_adaptation(args, client, interrupt, everything, params)
        params["method"] = adaptation.model
    batch = Batch(args, client, interrupt, params)
    batch.run(pairs)
    failed += batch.failed
    if len(pairs) + skipped > 1 and not args.quiet:
        say(batch.summary(skipped, failed))
    if adaptation is not None and not args.quiet:
        say(adaptation.describe())
    return EXIT_FAILED if failed else 0


def run_adaptation(args, client, interrupt: Interrupt, sources: list[str], params: dict):
    """Adapt the upscaler (the deblurrer, for deblur and for sharpen at
    scale 1) on tiles of up to ADAPT_IMAGES of `sources`, spread evenly over
    them; returns the Adaptation."""
    task = task_for(args.op, params.get("scale"))
    step = max(1, len(sources) / ADAPT_IMAGES)
    chosen = [sources[int(k * step)] for k in range(min(ADAPT_IMAGES, len(sources)))]
    frames = []
    for path in chosen:
        try:
            frames.append(to_frame(read(path, input_limit(client, {})).pixels, "sample"))
        except Failure as failure:
            say("adaptation skips %s: %s" % (failure.path, failure.reason))
    if not frames:
        raise SharpFuError("None of the images could be read for adaptation.", "bad_frame")
    samples = sample_tiles(frames, ADAPT_TILES, TILE_SIDE[task])
    # JPEG and WebP files have been through lossy compression; PNG and TIFF
    # files usually have not, and the training pairs then get none either.
    compressed = any(os.path.splitext(path)[1].lower() in LOSSY_EXTENSIONS for path in chosen)
    if not args.quiet:
        say("adapting the %s to %d tile(s) of %d image(s)%s" % (
            "deblurrer" if task == "deblur" else "upscaler", len(samples), len(frames),
            "" if compressed else " (no lossy files among them)"))
    with tqdm(total=1, disable=True if args.quiet else None, file=sys.stderr, desc="adapting",
              bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]") as bar:
        def progress(fraction, stage):
            bar.update(max(0.0, fraction - bar.n))

        interrupt.waiting = True
        try:
            adaptation = adapt(client, samples, scale=params.get("scale", 2),
                               steps=args.adapt_steps, save=args.adapt_save,
                               method=params.get("method"), progress=progress,
                               cancelled=lambda: interrupt.requested, compressed=compressed,
                               task=task,
                               trainable="low-rank" if args.adapt_low_rank else "all")
        except Cancelled:
            raise KeyboardInterrupt from None
        finally:
            interrupt.waiting = False
        bar.update(1 - bar.n)
    if not args.quiet:
        say(adaptation.describe())
    return adaptation


class Batch:
    """Keeps `--jobs` images in flight: while the servers work, the next
    inputs are read and finished outputs written, so no server waits on the
    disk. One progress bar counts images, with fractions of those in flight."""

    def __init__(self, args, client, interrupt: Interrupt, params: dict):
        self.args, self.client, self.interrupt, self.params = args, client, interrupt, params
        servers = len(client.endpoints) if isinstance(client, Cluster) else 1
        self.window = args.jobs or 2 * servers
        self.in_flight: dict = {}       # job -> (source, target, picture)
        self.written = self.failed = 0
        self.pixels_out = 0
        self.methods: set[str] = set()
        self.started = time.monotonic()

    def run(self, pairs: list[tuple[str, str]]) -> None:
        pending = deque(pairs)
        with tqdm(total=len(pairs), disable=True if self.args.quiet else None, file=sys.stderr,
                  bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}]") as bar:
            while pending or self.in_flight:
                if self.interrupt.requested:
                    self.stop()
                while pending and len(self.in_flight) < self.window:
                    self.submit(*pending.popleft())
                self.interrupt.waiting = bool(self.in_flight)
                self.client.poll(0.1)
                for job in [j for j in self.in_flight if j.finished]:
                    self.finish(job)
                bar.n = self.written + self.failed + sum(j.fraction for j in self.in_flight)
                bar.refresh()
        self.interrupt.waiting = False

    def submit(self, source: str, target: str) -> None:
        try:
            check_output(target)   # before the work, not after it
            picture = read(source, input_limit(self.client, self.params))
            job = self.client.submit(self.args.op, [to_frame(picture.pixels, "image")],
                                     self.params)
        except Failure as failure:
            self.fail(failure.path, failure.reason)
            return
        except SharpFuError as error:
            self.fail(source, error.message)
            return
        self.in_flight[job] = (source, target, picture)

    def finish(self, job) -> None:
        source, target, picture = self.in_flight.pop(job)
        try:
            result = self.client.result(job)
            pixels = from_frame(result.frame("image"))
            write(target, imageio.Picture(pixels, picture.icc, picture.exif))
        except Failure as failure:
            self.fail(failure.path, failure.reason)
            return
        except Cancelled:
            raise KeyboardInterrupt from None
        except SharpFuError as error:
            self.fail(source, error.message)
            return
        self.written += 1
        self.pixels_out += pixels.shape[0] * pixels.shape[1]
        announce_method(self.args, result.method, self.methods)
        if self.args.kernel_targets:
            self.save_kernel(source, result)

    def save_kernel(self, source: str, result) -> None:
        """The estimated kernel beside the output (the output is written: a
        kernel that cannot be is reported, and counts as a failure)."""
        target = self.args.kernel_targets[source]
        try:
            kernel = from_frame(result.frame("kernel"))[..., 0]
        except KeyError:
            # strength 0: nothing ran, so no blur was estimated
            say("%s: no blur was estimated (nothing runs at strength 0); %s not written"
                % (source, target))
            return
        try:
            write(target, imageio.Picture(kernel_picture(kernel)))
        except Failure as failure:
            self.fail(failure.path, failure.reason)
            return
        if not self.args.quiet:
            say("%s: %s; kernel written to %s" % (source, blur_words(result.header.get("blur")),
                                                  target))

    def fail(self, path: str, reason: str) -> None:
        say("error: %s: %s" % (path, reason))
        self.failed += 1

    def stop(self) -> None:
        """Ctrl+C: cancel what the servers hold, wait a moment for them to
        confirm, then stop."""
        for job in self.in_flight:
            self.client.cancel(job)
        deadline = time.monotonic() + 5
        while any(not j.finished for j in self.in_flight) and time.monotonic() < deadline:
            self.client.poll(0.1)
        raise KeyboardInterrupt

    def summary(self, skipped: int, failed: int) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        parts = ["%d written" % self.written]
        if skipped:
            parts.append("%d skipped (already there)" % skipped)
        if failed:
            parts.append("%d failed" % failed)
        return "%s in %.1f s: %.2f images/s, %.2f output MP/s" % (
            ", ".join(parts), seconds, self.written / seconds, self.pixels_out / 1e6 / seconds)


def plan(args) -> tuple[list[tuple[str, str]], int]:
    """(input, output) pairs, and how many inputs already failed. Refuses
    (exit 2) outputs that would write over an input without --in-place; says
    which outputs cannot be written before anything is read or sent."""
    parser, output = args.parser, args.output
    if args.in_place and args.resume:
        parser.error("--resume skips inputs whose output exists; with --in-place every one does")
    if output is None and not args.in_place:
        parser.error("the following arguments are required: -o/--output (or --in-place)")
    files, failed = [], 0
    batch = len(args.inputs) > 1
    for path in args.inputs:
        if os.path.isdir(path):
            batch = True
            found = sorted(entry.path for entry in os.scandir(path) if entry.is_file()
                           and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS)
            if not found:
                say("error: %s: no %s files in this folder" % (path, "/".join(IMAGE_EXTENSIONS)))
                failed += 1
            files += found
        elif not os.path.isfile(path):
            say("error: %s: %s" % (path, "no such file" if not os.path.exists(path)
                                   else "not a regular file"))
            failed += 1
        else:
            files.append(path)
    if output is None:
        return [(f, f) for f in files], failed
    into_folder = batch or os.path.isdir(output) or output.endswith(os.sep)
    if into_folder and os.path.exists(output) and not os.path.isdir(output):
        parser.error("with several inputs or a folder, -o must be a folder; %s is a file"
                     % output)
    if into_folder and not os.path.exists(output) \
            and os.path.splitext(output)[1].lower() in IMAGE_EXTENSIONS:
        parser.error("with several inputs or a folder, -o must be a folder; %s is named like an "
                     "image file (end it with %s to make a folder of that name)"
                     % (output, os.sep))
    pairs = [(f, os.path.join(output, os.path.basename(f)) if into_folder else output)
             for f in files]
    targets = set()
    sources = {_identity(f) for f in files}
    for source, target in pairs:
        if os.path.abspath(target) in targets:
            parser.error("several inputs would be written to %s" % target)
        targets.add(os.path.abspath(target))
        if not args.in_place and _identity(target) in sources:
            parser.error("%s would be written over the input %s; give --in-place to replace "
                         "inputs with their results, or choose another -o" % (target, source))
    if into_folder:
        try:
            os.makedirs(output, exist_ok=True)
        except OSError as error:
            say("error: %s: %s" % (output, error.strerror))
            return [], failed + len(pairs) + 1
    writable = []
    for source, target in pairs:
        try:
            check_output(target)
        except Failure as failure:
            say("error: %s: %s" % (failure.path, failure.reason))
            failed += 1
        else:
            writable.append((source, target))
    return writable, failed


def _identity(path: str):
    """What makes two paths one file: device and inode when it exists (links,
    other spellings), else the absolute path."""
    try:
        info = os.stat(path)
        return info.st_dev, info.st_ino
    except OSError:
        return os.path.abspath(path)


def kernel_targets(args, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """input -> where its estimated kernel goes (--save-kernel): the file
    named, or for several inputs (or a folder named) a PNG per input in that
    folder, named after it."""
    target = getattr(args, "save_kernel", None)
    if not target:
        return {}
    folder = len(pairs) > 1 or os.path.isdir(target) or target.endswith(os.sep) \
        or len(args.inputs) > 1 or any(os.path.isdir(path) for path in args.inputs)
    if not folder:
        if os.path.splitext(target)[1].lower() not in (".png", ".tif", ".tiff"):
            args.parser.error("--save-kernel writes a PNG (or TIFF); name it .png")
        return {source: target for source, _ in pairs}
    if os.path.exists(target) and not os.path.isdir(target):
        args.parser.error("with several inputs, --save-kernel must be a folder; %s is a file"
                          % target)
    os.makedirs(target, exist_ok=True)
    return {source: os.path.join(target, os.path.splitext(os.path.basename(source))[0] + ".png")
            for source, _ in pairs}


def kernel_picture(kernel: np.ndarray) -> np.ndarray:
    """A kernel's weights as a 16-bit grey image, its largest weight white."""
    top = float(kernel.max())
    scaled = kernel / top if top > 0 else kernel
    return np.round(np.clip(scaled, 0.0, 1.0) * 65535.0).astype("<u2")[..., None]


def blur_words(blur: dict | None) -> str:
    """What the deblurrer found, in words."""
    if not blur:
        return "blur estimated"
    if blur.get("kernel_model") == "none":
        return "no blur found: left as it is"
    shape = {"free": "camera shake or motion", "gaussian": "soft (Gaussian) blur",
             "disc": "focus blur (a disc)", "given": "given"}.get(blur.get("kernel_model"),
                                                                  blur.get("kernel_model"))
    words = "blur %d px, %s, noise %.1f/255" % (blur.get("kernel_size", 0), shape,
                                                  blur.get("noise_sigma", 0.0))
    if (blur.get("regions") or 1) > 1:
        words += ", %d regions with kernels of their own" % blur["regions"]
    return words


def job_params(args) -> dict:
    params = {}
    if args.method:
        params["method"] = args.method
    if args.tile is not None:
        params["tile"] = args.tile
    if getattr(args, "scale", None):
        params["scale"] = args.scale
    if getattr(args, "strength", None) is not None and args.strength != 1.0:
        params["strength"] = args.strength
    if getattr(args, "kernel_size", None):
        params["kernel_size"] = args.kernel_size
    if getattr(args, "save_kernel", None):
        params["kernel"] = True
    return params


def run_job(client: Client, interrupt: Interrupt, op, frames, params, bar, done: int):
    if interrupt.requested:
        raise KeyboardInterrupt

    def progress(fraction, stage):
        bar.update(max(0.0, done + fraction - bar.n))

    job = client.submit(op, frames, params)
    interrupt.waiting = True
    try:
        return client.wait(job, progress, cancelled=lambda: interrupt.requested)
    except Cancelled:
        if interrupt.requested:
            raise KeyboardInterrupt from None
        raise
    finally:
        interrupt.waiting = False


def announce_method(args, method: dict, seen: set) -> None:
    """Say once which method made the result: a classical one is never to be
    taken for AI."""
    if args.quiet or not method or method.get("name") in seen:
        return
    seen.add(method.get("name"))
    stages = method.get("stages") or [method]
    said = " then ".join("%s (%s)" % (stage.get("title") or stage.get("name"),
                                      RUN_WORDS.get(stage.get("kind"), stage.get("kind")))
                         for stage in stages)
    say("%s used %s" % (args.op, said))


# -- matte --------------------------------------------------------------------

def run_matte(args, client: Client, interrupt: Interrupt) -> int:
    def frames(image):
        mask = read(args.mask, input_limit(client, {}))
        if image.size != mask.size:
            raise Failure(args.mask, "the mask is %dx%d but the image is %dx%d; they must "
                          "be the same size" % (mask.size + image.size))
        return [to_frame(image.pixels, "image"), to_frame(mask_channel(mask.pixels), "mask")]
    return run_mask(args, client, interrupt, [args.image, args.mask], frames, job_params(args),
                    "alpha", "matte")


def run_select(args, client: Client, interrupt: Interrupt) -> int:
    params = job_params(args)
    if not args.refine:
        params["refine"] = False
    return run_mask(args, client, interrupt, [args.image],
                    lambda image: [to_frame(image.pixels, "image")], params, "mask", "mask")


def run_mask(args, client: Client, interrupt: Interrupt, inputs: list[str], frames, params,
             frame: str, what: str) -> int:
    """matte and select: a one-channel result written as a PNG (or TIFF),
    and with --cutout the subject's freed colours with it as alpha."""
    target = args.output
    if os.path.isdir(target):
        target = os.path.join(target, os.path.splitext(os.path.basename(args.image))[0] + ".png")
    if os.path.splitext(target)[1].lower() not in (".png", ".tif", ".tiff"):
        args.parser.error("the %s is written as a PNG (or TIFF); name the output .png" % what)
    if args.cutout and os.path.splitext(args.cutout)[1].lower() not in (".png", ".tif", ".tiff"):
        args.parser.error("the cut-out is written as a PNG (or TIFF); name it .png")
    identities = {_identity(path) for path in inputs}
    for path in filter(None, (target, args.cutout)):
        if _identity(path) in identities:
            args.parser.error("%s would be written over an input; choose another name" % path)
        try:
            check_output(path)
        except Failure as failure:
            say("error: %s: %s" % (failure.path, failure.reason))
            return EXIT_FAILED
    connect(client, args)
    with tqdm(total=1, disable=True if args.quiet else None, file=sys.stderr,
              bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]") as bar:
        try:
            image = read(args.image, input_limit(client, {}))
            if args.cutout:
                params = dict(params, foreground=True)
            result = run_job(client, interrupt, args.op, frames(image), params, bar, 0)
            alpha = from_frame(result.frame(frame))
            if args.op == "select" and not alpha.any():
                say("%s: found no subject: the mask is empty (it looks for one main subject "
                    "in front of a background)" % args.image)
            bits = "u16" if args.bits == 16 else "u8"
            write(target, imageio.Picture(imageio.to_format(alpha, bits)))
            if args.cutout:
                colour = from_frame(result.frame("foreground"))
                write(args.cutout, imageio.Picture(imageio.to_format(
                    np.concatenate([colour, alpha], 2), bits), icc=image.icc))
        except Failure as failure:
            say("error: %s: %s" % (failure.path, failure.reason))
            return EXIT_FAILED
        except SharpFuError as error:
            say("error: %s: %s" % (args.image, error.message))
            return EXIT_FAILED
        bar.update(1 - bar.n)
    announce_method(args, result.method, set())
    return 0


def mask_channel(pixels: np.ndarray) -> np.ndarray:
    """One channel of coverage: the alpha of a plain colour with alpha (the
    colour says nothing), else the grey level or the colour's luminance."""
    channels = pixels.shape[2]
    colour = pixels[..., :channels - 1] if channels in (2, 4) else pixels
    if channels in (2, 4) and (colour == colour.flat[0]).all():
        return np.ascontiguousarray(pixels[..., -1:])
    if colour.shape[2] == 1:
        return np.ascontiguousarray(colour)
    luma = colour.astype(np.float32) @ np.array(LUMA, np.float32)
    if colour.dtype.kind == "f":
        return luma[..., None].astype("<f4")
    top = np.iinfo(colour.dtype).max
    return np.clip(np.floor(luma + 0.5), 0, top).astype(colour.dtype)[..., None]


# -- files and frames ---------------------------------------------------------

def read(path: str, max_pixels: int = imageio.MAX_PIXELS) -> imageio.Picture:
    try:
        picture = imageio.read(path, max_pixels)
    except imageio.ImageError as error:
        raise Failure(path, str(error)) from None
    for note in picture.notes:
        say("%s: %s" % (path, note))
    return picture


def input_limit(client, params: dict) -> int:
    """The most pixels an input may have for the server to take the job: its
    max_pixels for the result, so an image that would be refused is never
    decoded."""
    limits = (getattr(client, "server_status", None) or {}).get("limits") or {}
    scale = params.get("scale") or 1
    return (limits.get("max_pixels") or imageio.MAX_PIXELS) // (scale * scale)


def check_output(path: str) -> None:
    """Refuse, before any work, an output that cannot be written: an unknown
    extension, a folder where the file would go, a folder that does not
    exist or cannot be written to."""
    try:
        imageio.format_for(path)
    except imageio.ImageError as error:
        raise Failure(path, str(error)) from None
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise Failure(path, "cannot write: it is a folder")
    if not os.path.isdir(folder):
        raise Failure(path, "cannot write: %s %s" % (folder, "is not a folder" if
                                                       os.path.exists(folder) else
                                                       "does not exist"))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Failure(path, "cannot write: no permission to write in %s" % folder)


def write(path: str, picture: imageio.Picture) -> None:
    try:
        notes = imageio.write(path, picture)
    except imageio.ImageError as error:
        raise Failure(path, str(error)) from None
    except OSError as error:
        raise Failure(path, "cannot write: %s" % (error.strerror or error)) from None
    for note in notes:
        say("%s: %s" % (path, note))


def to_frame(pixels: np.ndarray, name: str) -> Frame:
    height, width, channels = pixels.shape
    return Frame(np.ascontiguousarray(pixels), width, height, channels,
                 imageio.sample_format(pixels), name)


def from_frame(frame: Frame) -> np.ndarray:
    return np.frombuffer(frame.data, imageio.DTYPES[frame.format]).reshape(
        frame.height, frame.width, frame.channels)


# -- status -------------------------------------------------------------------

def run_status(args, client, interrupt: Interrupt) -> int:
    if isinstance(client, Cluster):
        found = client.statuses()
        if args.json:
            print(json.dumps({endpoint: status if isinstance(status, dict) else
                              {"error": status.code, "message": status.message}
                              for endpoint, status in found}, indent=2, sort_keys=True))
        else:
            print("\n\n".join(describe_status(status) if isinstance(status, dict) else
                               "%s: not answering (%s)" % (endpoint, status.message)
                               for endpoint, status in found))
        return 0 if any(isinstance(status, dict) for _, status in found) else EXIT_FAILED
    status = connect(client, args)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(describe_status(status))
    return 0


def describe_status(status: dict) -> str:
    server, device = status.get("server") or {}, status.get("device") or {}
    jobs = status.get("jobs") or {}
    gib = 1024.0 ** 3
    lines = [
        "SharpFu server %s at %s (pid %s, %s)" % (
            server.get("version", "?"), server.get("endpoint", "?"), server.get("pid", "?"),
            "signed" if server.get("signed") else "unsigned"),
        "Device: %s, %s, %.1f of %.1f GiB free" % (
            device.get("type", "?"), device.get("name", "?"),
            (device.get("memory_free") or 0) / gib, (device.get("memory_total") or 0) / gib),
        "Jobs: %d running, %d queued" % (jobs.get("running", 0), jobs.get("queued", 0)),
    ]
    return "\n".join(lines + describe_choices(status))


def describe_choices(status: dict) -> list[str]:
    """Per op: the default, then every method a job may name, best first
    (sharpfu_client.methods: the order the GIMP dialogs list them in), with
    the scales each serves. `sharpfu status` and `sharpfu models list` both
    print this."""
    lines = []
    ops = status.get("ops") or {}
    all_defaults = status.get("defaults") or {}
    for op in [op for op in ops if op in all_defaults] + [op for op in all_defaults
                                                         if op not in ops]:
        defaults = all_defaults[op]
        lines.append("")
        summary = (ops.get(op) or {}).get("summary", "")
        lines.append("%s: %s" % (op, summary) if summary else op)
        scales = sorted(defaults.items(), key=lambda item: int(item[0]))
        lines.append("  default: " + ", ".join(
            name if len(scales) == 1 else "%s (%sx)" % (name, scale) for scale, name in scales))
        ranked = methods.by_scale(status, op)
        served: dict[str, list[int]] = {}
        order: list[dict] = []
        for scale, infos in ranked:
            for method in infos:
                if method["name"] not in served:
                    served[method["name"]] = []
                    order.append(method)
                served[method["name"]].append(scale)
        for method in order:
            # where a model comes from (shipped, installed, a user's
            # checkpoint) matters to whoever picks one by name
            source = method.get("source")
            at = "" if len(ranked) == 1 else " [%s]" % ", ".join(
                "%dx" % s for s in served[method["name"]])
            lines.append("  %-14s %s (%s%s)%s" % (
                method.get("name"), method.get("title", ""),
                STATUS_WORDS.get(method.get("kind"), method.get("kind")),
                "; " + source if source and source != "built in" else "", at))
    for op, command in INSTALL.items():
        # an op with nothing installed to do it (select, before a model is pulled)
        if op in ops and op not in all_defaults:
            summary = (ops.get(op) or {}).get("summary", "")
            lines += ["", "%s: %s" % (op, summary) if summary else op,
                      "  none installed; install with: %s" % command]
    return lines


if __name__ == "__main__":
    main()
