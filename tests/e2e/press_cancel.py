"""Click the Cancel button of GIMP's progress bar, as a user would, once the
server has the job.

Runs beside GIMP under Xvfb (stdlib only), started by gimp_checks.cancel:

    press_cancel.py BEFORE.xwd SCREEN.xwd X Y WIDTH HEIGHT SERVER_LOG TEXT [DONE]

It waits for the server's log to say that a job described by TEXT (say
"upscale 2400x2400") is queued, and, given DONE (say "upscale 24x16"), that
a job described by that is done. Xvfb keeps its screen in SCREEN.xwd (-fbdir);
the bottom strip of the image window, where GIMP's status bar is, then
differs from BEFORE.xwd by the progress bar, and the Cancel button sits at
its right end: the rightmost changed spot is clicked. GIMP ignores keys
while a plug-in runs, so it has to be a click.
"""
import os
import struct
import subprocess
import sys
import time

STRIP = 44   # pixels at the bottom of the window that hold the status bar


def screen(path):
    with open(path, "rb") as handle:
        data = handle.read()
    header = struct.unpack(">25I", data[:100])
    header_size, bits_per_pixel, bytes_per_line, colours = (header[0], header[11], header[12],
                                                            header[19])
    return data[header_size + colours * 12:], bytes_per_line, bits_per_pixel // 8


def changed_columns(before, now, x0, y0, width, height):
    """{column: [changed rows]} in the bottom strip of the window."""
    old, stride, size = before
    new = now[0]
    changes = {}
    for y in range(y0 + height - STRIP, y0 + height):
        start = y * stride + x0 * size
        a, b = old[start:start + width * size], new[start:start + width * size]
        if a == b:
            continue
        for x in range(width):
            if a[x * size:x * size + 3] != b[x * size:x * size + 3]:
                changes.setdefault(x0 + x, []).append(y)
    return changes


def wait_for_job(log, text, deadline, done=None):
    start = os.path.getsize(log)
    while time.time() < deadline:
        with open(log, "rb") as handle:
            handle.seek(start)
            lines = handle.read().decode("utf-8", "replace").splitlines()
        queued = any(text in line and "queued" in line for line in lines)
        ids = [line.split("job ", 1)[1].split(":")[0] for line in lines
               if done and done in line and "queued" in line]
        if queued and (not done or any("job %s: done" % i in line for i in ids
                                       for line in lines)):
            return True
        time.sleep(0.05)
    return False


def main():
    before_path, screen_path = sys.argv[1:3]
    x0, y0, width, height = (int(v) for v in sys.argv[3:7])
    log, text = sys.argv[7:9]
    done = sys.argv[9] if len(sys.argv) > 9 else None
    deadline = time.time() + 90
    if not wait_for_job(log, text, deadline, done):
        print("the server never got the job")
        return 1
    before = screen(before_path)
    while time.time() < deadline:
        changes = changed_columns(before, screen(screen_path), x0, y0, width, height)
        if changes:
            break
        time.sleep(0.1)
    else:
        print("no progress bar appeared")
        return 1
    right = max(changes)
    rows = changes[right]
    # a few pixels into the button from its rightmost drawn pixel, on its middle row
    x, y = right - 8, (min(rows) + max(rows)) // 2
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"], check=True)
    print("clicked at %d,%d" % (x, y))
    return 0


if __name__ == "__main__":
    sys.exit(main())
