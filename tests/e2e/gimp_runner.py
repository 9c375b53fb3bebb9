"""A real GIMP 3 for the end-to-end tests: found on the system, or in a Debian
chroot that gimp_root.sh builds once and reuses.

GIMP runs a Python batch script (python-fu-eval) read from stdin, either
headless (gimp-console) or as the GUI program under Xvfb, which the undo and
cancel checks need. The script reports through a JSON-lines file in a work
folder that both sides see; GIMP's own output is kept for failure messages
only, since it is full of unrelated start-up noise.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT_SCRIPT = HERE / "gimp_root.sh"
VERSIONS = ("3.0", "3.2")
BUILD_TIMEOUT = 1800      # a first debootstrap + apt-get of GIMP takes minutes
PATH_INSIDE = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class GimpFailed(AssertionError):
    pass


class Gimp:
    """One GIMP 3 version. `root` is its chroot, or None for the system's GIMP
    (then GIMP3_DIRECTORY points it at a settings folder of the tests' own)."""

    def __init__(self, version: str, root: Path | None, settings: Path):
        self.version = version
        self.root = root
        self.settings = settings            # GIMP's settings folder, as the host sees it
        self.plugins = settings / "plug-ins"
        self.workdirs = []
        self._lock = None

    def __repr__(self):
        return "Gimp(%s, %s)" % (self.version, self.root or "system")

    # -- paths ------------------------------------------------------------------

    def workdir(self, name: str) -> Path:
        """A fresh folder that GIMP and the tests both see (host path)."""
        base = (self.root / "tmp") if self.root else Path(tempfile.gettempdir())
        folder = Path(tempfile.mkdtemp(prefix="sharpfu-e2e-%s-" % name, dir=base))
        folder.chmod(0o777)
        self.workdirs.append(folder)
        return folder

    def hold(self, timeout: float = 3600.0) -> None:
        """Take this GIMP for one test run: a chroot's GIMP keeps its settings,
        and so the installed plug-in, in one folder that every run shares, so
        a second run at once would install over the first's. Waits for the
        run before it (released by clean_up, or when that process ends)."""
        import fcntl
        path = self.settings.parent / (".sharpfu-e2e-%s.lock" % self.version)
        self._lock = open(path, "w")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise GimpFailed("another test run has held GIMP %s for over %d s (%s)"
                                     % (self.version, timeout, path))
                time.sleep(2)

    def clean_up(self):
        """Remove the work folders, unless SHARPFU_E2E_KEEP asks to keep them
        for a look at what GIMP wrote, and let the next run have this GIMP."""
        if not os.environ.get("SHARPFU_E2E_KEEP"):
            for folder in self.workdirs:
                shutil.rmtree(folder, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def inside(self, path: Path) -> str:
        """A host path as GIMP sees it."""
        path = Path(path).resolve()
        if self.root is None:
            return str(path)
        return "/" + str(path.relative_to(self.root.resolve()))

    def shared_memory(self) -> list[str]:
        """SharpFu's shared-memory segments where GIMP's plug-ins put them."""
        folder = (self.root / "dev" / "shm") if self.root else Path("/dev/shm")
        return [p.name for p in folder.glob("sharpfu-*")] if folder.is_dir() else []

    # -- running ----------------------------------------------------------------

    def command(self, gui: bool, screenshots: str | None,
                extra_env: dict | None = None) -> tuple[list[str], dict]:
        # Fonts are loaded (no -f): the batch checks make a text layer, and
        # without fonts GIMP cannot. It costs well under a second.
        batch = ["-b", "-", "--quit"]
        if gui:
            screen = "-screen 0 1280x1024x24" + (" -fbdir %s" % screenshots if screenshots else "")
            argv = ["xvfb-run", "-a", "-s", screen, "gimp-%s" % self.version, "-d",
                    "--batch-interpreter=python-fu-eval"] + batch
        else:
            argv = ["gimp-console-%s" % self.version, "-id",
                    "--batch-interpreter=python-fu-eval"] + batch
        if self.root is None:
            env = dict(os.environ, GIMP3_DIRECTORY=str(self.settings), LC_ALL="C.UTF-8")
            for name in ("SHARPFU_CONFIG", "SHARPFU_ENDPOINT", "SHARPFU_KEY"):
                env.pop(name, None)
            return argv, dict(env, **(extra_env or {}))
        env = {"HOME": "/root", "USER": "root", "LOGNAME": "root", "LC_ALL": "C.UTF-8",
               "LANG": "C.UTF-8", "PATH": PATH_INSIDE, "TERM": "dumb"}
        return ["chroot", str(self.root)] + argv, dict(env, **(extra_env or {}))

    def run(self, script: str, params: dict, gui: bool = False, timeout: float = 300,
            screenshots: Path | None = None, extra_env: dict | None = None) -> "Run":
        """Run a batch script with `PARAMS = params` prepended; it writes its
        findings to params["results"]. Host paths in params are translated."""
        results = Path(params["results"])
        params = {name: self.inside(value) if isinstance(value, Path) else value
                  for name, value in params.items()}
        source = "PARAMS = %r\n%s" % (params, script)
        argv, env = self.command(gui, self.inside(screenshots) if screenshots else None,
                                 extra_env)
        started = time.monotonic()
        try:
            done = subprocess.run(argv, input=source, capture_output=True, text=True, env=env,
                                  timeout=timeout)
            output, returncode = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as expired:
            output = "%s%s\n[killed after %d s]" % (
                _text(expired.stdout), _text(expired.stderr), timeout)
            returncode = None
        return Run(self, results, returncode, output, time.monotonic() - started)


class Run:
    """What one GIMP batch run reported: records[check] -> the check's dict."""

    def __init__(self, gimp: Gimp, results: Path, returncode, output: str, seconds: float):
        self.gimp, self.returncode, self.output, self.seconds = gimp, returncode, output, seconds
        self.records = {}
        if results.exists():
            for line in results.read_text().splitlines():
                record = json.loads(line)
                self.records[record["check"]] = record

    def __getitem__(self, check: str) -> dict:
        record = self.records.get(check)
        if record is None:
            raise GimpFailed("GIMP %s reported nothing for %r (exit %s, %.0f s). Its output:\n%s"
                             % (self.gimp.version, check, self.returncode, self.seconds,
                                self.tail()))
        if record.get("error"):
            raise GimpFailed("check %r failed inside GIMP %s:\n%s" % (
                check, self.gimp.version, record["error"]))
        return record

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def locate(version: str, scratch: Path) -> Gimp:
    """The GIMP to test: the system's, else a chroot. Skips, loudly, when
    there is neither a GIMP nor the root access to build one."""
    if shutil.which("gimp-console-%s" % version):
        settings = scratch / ("gimp-%s-settings" % version)
        (settings / "plug-ins").mkdir(parents=True, exist_ok=True)
        return Gimp(version, None, settings)
    if os.geteuid() != 0:
        pytest.skip("!!! GIMP %s END-TO-END TESTS NOT RUN: no gimp-console-%s on this system, and "
                    "building a GIMP chroot (tests/e2e/gimp_root.sh) needs root. Install GIMP %s "
                    "or run the tests as root. !!!" % (version, version, version))
    done = subprocess.run(["bash", str(ROOT_SCRIPT), version], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        raise GimpFailed("gimp_root.sh %s failed (exit %d):\n%s" % (
            version, done.returncode, done.stderr[-3000:]))
    console = Path(done.stdout.strip().splitlines()[-1])
    root = console.parents[2]                       # ROOT/usr/bin/gimp-console-X
    settings = root / "root" / ".config" / "GIMP" / version
    (settings / "plug-ins").mkdir(parents=True, exist_ok=True)
    return Gimp(version, root, settings)


def has_gui_tools(gimp: Gimp) -> bool:
    """xvfb-run and xdotool, where GIMP runs (the chroot has them)."""
    if gimp.root is not None:
        return all((gimp.root / "usr" / "bin" / tool).exists() for tool in ("xvfb-run",
                                                                             "xdotool"))
    return bool(shutil.which("xvfb-run") and shutil.which("xdotool")
                and shutil.which("gimp-%s" % gimp.version))
