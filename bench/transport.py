"""Transport benchmark: how fast pixels go client -> server -> client.

Round trips of 1, 12 and 100 megapixel RGBA u8 frames through the `echo`
op (queued and answered like any job), beside a plain memory copy of the
same bytes, in one run:

    .venv/bin/python bench/transport.py [--sizes 1 12 100] [--repeat 5] [--record]

Bandwidth is frame bytes divided by the round-trip time; the goal is at
least a third of memcpy's at 12 and 100 MP. Rows:
  memcpy            numpy copy into a warm buffer of the same size
  shm, zero-copy    shared memory; the result read in place (copy=False)
  shm, to bytes     shared memory; the result copied out into bytes
  tcp, zero-copy    pixels inline in the ZeroMQ messages over loopback TCP
--record appends the table, with date and machine, to docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.scratch import ServerProcess  # noqa: E402
from sharpfu_client import Frame  # noqa: E402
from training.record import machine  # noqa: E402

SIDES = {1: (1000, 1000), 12: (4000, 3000), 100: (10000, 10000)}


def best_of(repeat: int, fn) -> float:
    fn()  # warm-up: first-touch page faults and lazy set-up are not transport
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(proc: ServerProcess, megapixels: int, repeat: int) -> list[tuple[str, float]]:
    width, height = SIDES[megapixels]
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 4), dtype=np.uint8)
    nbytes = pixels.nbytes
    target = np.empty_like(pixels)
    rows = [("memcpy", nbytes / best_of(repeat, lambda: np.copyto(target, pixels)))]
    frame = Frame(pixels, width, height, 4, "u8")

    def round_trip(client, copy):
        result = client.run("echo", [frame], copy=copy)
        assert result.frame("image").nbytes == nbytes
        result.release()

    with proc.client(use_shm=True, timeout=300) as client:
        client.connect()
        rows.append(("shm, zero-copy", nbytes / best_of(repeat, lambda: round_trip(client, False))))
        rows.append(("shm, to bytes", nbytes / best_of(repeat, lambda: round_trip(client, True))))
        check = client.run("echo", [frame])
        assert bytes(check.frame("image").data) == pixels.tobytes(), "round trip not exact"
    with proc.client(use_shm=False, timeout=300) as client:
        client.connect()
        rows.append(("tcp, zero-copy", nbytes / best_of(max(1, repeat // 2),
                                                         lambda: round_trip(client, False))))
    return rows


def table(results: dict[int, list[tuple[str, float]]]) -> str:
    lines = ["| frame | path | GB/s | share of memcpy |", "|---|---|---:|---:|"]
    for megapixels, rows in results.items():
        memcpy = rows[0][1]
        for name, bandwidth in rows:
            lines.append("| %d MP RGBA u8 | %s | %.2f | %.2f |" % (
                megapixels, name, bandwidth / 1e9, bandwidth / memcpy))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 12, 100], choices=sorted(SIDES))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append to docs/BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        proc = ServerProcess(Path(directory), server_settings={"max_megapixels": 120}).start()
        try:
            results = {mp: measure(proc, mp, args.repeat) for mp in args.sizes}
        finally:
            proc.stop()
    text = table(results)
    print(text)
    if args.record:
        stamp = datetime.date.today().isoformat()
        section = ("\n### Transport, %s\n\nMachine: %s. `bench/transport.py --repeat %d`, best "
                   "of %d round trips after a warm-up.\n\n%s\n" % (
                       stamp, machine(), args.repeat, args.repeat, text))
        with open(ROOT / "docs" / "BENCHMARKS.md", "a") as handle:
            handle.write(section)


if __name__ == "__main__":
    main()
