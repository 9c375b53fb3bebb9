"""Throughput of the `sharpfu` command line on a folder batch, through a
live server on this machine (started here, on the CPU unless --device says
otherwise):

    nice -n 19 .venv/bin/python bench/cli_throughput.py [--images 24] [--size 256] [--record]

The folder holds --images PNGs of --size px (rendered text pages and line
art from bench/adapt_domains.py, alternately, so that files differ); each
run is `sharpfu upscale FOLDER -o OUT --scale 2 --jobs N` into an empty
folder, for each N of --jobs, and once more with --adapt (adaptation
first, then the batch with the adapted model). Reported: wall seconds of the
whole command (start-up, reading, writing included), images/s and output
megapixels/s, from the CLI's own summary line and from the wall clock.
"""
from __future__ import annotations

import argparse
import datetime
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import adapt_domains  # noqa: E402
from server.scratch import ServerProcess  # noqa: E402
from training.record import machine  # noqa: E402

SUMMARY = re.compile(r"(\d+) written in ([\d.]+) s: ([\d.]+) images/s, ([\d.]+) output MP/s")


def make_folder(folder: Path, count: int, size: int) -> None:
    folder.mkdir(parents=True)
    for k in range(count):
        render = adapt_domains.text_page if k % 2 == 0 else adapt_domains.line_art
        render(100 + k, (size, size)).save(folder / ("image%03d.png" % k))


def run(server: ServerProcess, folder: Path, out: Path, extra: list[str]) -> dict:
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "sharpfu_cli.main", "upscale", str(folder), "-o", str(out),
               "--scale", "2", "--config", str(server.config_path), "--no-autostart"] + extra
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit("sharpfu failed:\n" + done.stderr)
    match = SUMMARY.search(done.stderr)
    adaptation = re.search(r"adaptation (accepted|rejected)[^\n]*", done.stderr)
    return {"args": " ".join(extra), "wall": wall, "written": int(match.group(1)),
            "batch_s": float(match.group(2)), "images_s": float(match.group(3)),
            "mp_s": float(match.group(4)),
            "adaptation": adaptation.group(0) if adaptation else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--jobs", default="1,2,4")
    parser.add_argument("--adapt-steps", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sharpfu-throughput-"))
    try:
        folder = work / "in"
        make_folder(folder, args.images, args.size)
        server = ServerProcess(work / "server", server_settings={
            "device": args.device, "threads": args.threads}).start()
        try:
            rows = [run(server, folder, work / "out", ["--jobs", jobs])
                    for jobs in args.jobs.split(",")]
            rows.append(run(server, folder, work / "out",
                            ["--jobs", args.jobs.split(",")[-1], "--adapt",
                             "--adapt-steps", str(args.adapt_steps)]))
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    output_mp = args.images * (2 * args.size) ** 2 / 1e6
    lines = ["| options | images | batch s | images/s | output MP/s | whole command s | "
             "images/s, whole command |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append("| `%s` | %d | %.1f | %.2f | %.2f | %.1f | %.2f |" % (
            row["args"], row["written"], row["batch_s"], row["images_s"], row["mp_s"],
            row["wall"], row["written"] / row["wall"]))
    notes = [row["adaptation"] for row in rows if row["adaptation"]]
    text = "\n".join(lines) + ("\n\nWith --adapt: " + notes[0] if notes else "")
    print(text)
    if args.record:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        section = ("\n## Command-line batch throughput, %s (bench/cli_throughput.py)\n\n"
                   "Machine: %s; server on `%s`, %d torch threads. `bench/cli_throughput.py "
                   "--images %d --size %d --jobs %s`: `sharpfu upscale FOLDER -o OUT --scale 2` "
                   "on %d PNGs of %d x %d (%.1f output MP in all), through one live server "
                   "(shared memory). \"batch s\", images/s and MP/s are the CLI's own summary "
                   "(from the first submission to the last file written; with --adapt the "
                   "adaptation comes before it and is not counted); \"whole command\" adds "
                   "start-up, connecting and, with --adapt, the adaptation. %s\n\n%s\n" % (
                       stamp, machine(), args.device, args.threads, args.images, args.size,
                       args.jobs, args.images, args.size, args.size, output_mp, args.note, text))
        with open(ROOT / "docs" / "BENCHMARKS.md", "a") as handle:
            handle.write(section)
        print("recorded in docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
