"""Screenshots of SharpFu's GIMP dialogs, for README.md: GIMP 3.2's GUI under
Xvfb, each dialog as the plug-in builds it (plugin/sharpfu/dialogs.py), with
the methods of a real SharpFu server in its dropdown.

    .venv/bin/python scripts/dialog_screenshots.py --gimp-root ROOT
    .venv/bin/python scripts/dialog_screenshots.py          # the system's gimp-3.2

ROOT is a Debian root with GIMP 3.2 and Xvfb, as tests/e2e/gimp_root.sh 3.2
builds and mounts (run it first: it prints the gimp-console path inside
ROOT); running GIMP in it needs root (chroot). Without --gimp-root the
system's gimp-3.2 and xvfb-run are used. The plug-in is installed there with
install.py (--plugin-only), a server of this checkout runs on a free port
for the time, and the pictures go to docs/images/dialog-<procedure>.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sharpfu_client import Client
from sharpfu_client.operations import PROCEDURES

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images"
PICTURE = ROOT / "docs" / "images" / "thumbnail.png"
VERSION = "3.2"

# Runs inside GIMP (python-fu-eval), with SETTINGS prepended.
INSIDE = r'''
import os, shutil, sys, time
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gimp, Gio, Gtk
sys.path.insert(0, os.path.join(Gimp.directory(), "plug-ins", "sharpfu"))
import dialogs
import in_place
from sharpfu_client.operations import PROCEDURES
dialogs.init()
PDB = Gimp.get_pdb()


def pump(seconds):
    end = time.time() + seconds
    while time.time() < end:
        while Gtk.events_pending():
            Gtk.main_iteration()
        time.sleep(0.05)


image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(SETTINGS["picture"]))
layer = image.get_layers()[0]
display = Gimp.Display.new(image)
for name in SETTINGS["procedures"]:
    proc = PDB.lookup_procedure(name)
    config = proc.create_config()
    if name == "sharpfu-batch":
        config.set_property("image", image)
    size = None
    if PROCEDURES[name].scales:
        def size(config):
            return in_place.result_size(image, layer, int(config.get_property("scale")))
    window = dialogs.build(proc, config, PROCEDURES[name], image, [layer], size)
    window.show_all()
    pump(2.0)
    frame = window.get_window().get_frame_extents()
    grab = os.path.join(SETTINGS["work"], "screen.xwd")
    shutil.copy(os.path.join(SETTINGS["fbdir"], "Xvfb_screen0"), grab)
    shot = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(grab))
    shot.crop(frame.width, frame.height, frame.x, frame.y)
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, shot, Gio.File.new_for_path(
        os.path.join(SETTINGS["work"], "dialog-%s.png" % name)), None)
    shot.delete()
    window.destroy()
    pump(0.3)
display.delete()
image.delete()
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path) -> tuple[subprocess.Popen, Path]:
    """A server of this checkout, on the CPU, for the dropdown's methods."""
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    config = folder / "config.json"
    config.write_text(json.dumps({"endpoint": endpoint, "key": "", "server_command": None,
                                  "server": {"device": "cpu"}}))
    server = subprocess.Popen([sys.executable, "-m", "server", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with Client(config_path=str(config), autostart=False) as client:
                client.connect()
            return server, config
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the SharpFu server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gimp-root", type=Path, help="a root with GIMP 3.2 (see above)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    root = args.gimp_root.resolve() if args.gimp_root else None
    if root is None and not (shutil.which("gimp-" + VERSION) and shutil.which("xvfb-run")):
        raise SystemExit("no gimp-%s and xvfb-run here; name a --gimp-root" % VERSION)
    settings = (root / "root" / ".config" / "GIMP" / VERSION) if root else \
        Path(tempfile.mkdtemp(prefix="sharpfu-gimp-settings-"))
    work = Path(tempfile.mkdtemp(prefix="sharpfu-shots-", dir=str(root / "tmp") if root else None))
    work.chmod(0o777)
    fbdir = work / "fb"
    fbdir.mkdir()
    inside = (lambda path: "/" + str(path.relative_to(root))) if root else str
    server, config = start_server(work)
    try:
        done = subprocess.run([sys.executable, str(ROOT / "install.py"), "--plugin-only",
                               "--plugin-dir", str(settings / "plug-ins"), "--config-from",
                               str(config)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stdout + done.stderr)
        shutil.copy(PICTURE, work / "picture.png")
        script = "SETTINGS = %r\n%s" % ({
            "picture": inside(work / "picture.png"), "work": inside(work),
            "fbdir": inside(fbdir), "procedures": list(PROCEDURES)}, INSIDE)
        argv = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24 -fbdir %s" % inside(fbdir),
                "gimp-" + VERSION, "-d", "--batch-interpreter=python-fu-eval", "-b", "-",
                "--quit"]
        env = dict(os.environ, LC_ALL="C.UTF-8")
        if root:
            argv = [shutil.which("chroot") or "/usr/sbin/chroot", str(root)] + argv
            env = {"HOME": "/root", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
                   "PATH": "/usr/local/bin:/usr/bin:/bin"}
        else:
            env["GIMP3_DIRECTORY"] = str(settings)
        done = subprocess.run(argv, input=script, capture_output=True, text=True, env=env,
                              timeout=600)
        args.out.mkdir(parents=True, exist_ok=True)
        made = sorted(work.glob("dialog-*.png"))
        if len(made) != len(PROCEDURES):
            raise SystemExit("GIMP made %d of %d screenshots:\n%s" % (
                len(made), len(PROCEDURES), (done.stdout + done.stderr)[-3000:]))
        for picture in made:
            shutil.copy(picture, args.out / picture.name)
            print(args.out / picture.name)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
