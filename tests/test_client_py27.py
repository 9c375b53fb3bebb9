"""The client library stays inside the Python 2.7 / 3 common subset (GIMP
2.10 bundles Python 2.7), checked by vermin and by running it under a real
Python 2.7 when the machine has one."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY27_SITE = Path(os.environ.get("SHARPFU_PY27_SITE", ROOT / ".cache" / "py27-site"))
LIBRARY = ROOT / "plugin" / "sharpfu_client"


def python27():
    """A Python 2.7 that really runs (pyenv's shim may exist without one)."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python2.7")))
    candidates += [p for p in (shutil.which("python2.7"),) if p]
    for candidate in candidates:
        try:
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30).stdout
        except OSError:
            continue
        if out.strip() == "(2, 7)":
            return candidate
    return None


def test_vermin_finds_nothing_python_27_lacks():
    vermin = Path(sys.executable).parent / "vermin"
    done = subprocess.run([str(vermin), "-t=2.7-", "-t=3.6-", "--violations", "--no-tips",
                           str(LIBRARY)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def pyzmq_for_27(interpreter):
    """pyzmq 19.0.2 (its last release with CPython 2.7 wheels, as GIMP 2.10
    users get) installed into a folder of the project's own cache."""
    if not (PY27_SITE / "zmq").is_dir():
        done = subprocess.run([interpreter, "-m", "pip", "install", "--quiet", "--no-deps",
                               "--only-binary=:all:", "--target", str(PY27_SITE),
                               "pyzmq==19.0.2"], capture_output=True, text=True, cwd="/")
        if done.returncode != 0:
            return "pip could not install pyzmq 19.0.2 for it: " + done.stderr.strip()[-300:]
    return None


def test_client_library_runs_under_python_27(server):
    interpreter = python27()
    problem = "no Python 2.7 on this machine" if interpreter is None else pyzmq_for_27(interpreter)
    if problem:
        pytest.skip("LOUD SKIP: the client library was not run under Python 2.7: " + problem)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(LIBRARY.parent), str(PY27_SITE)]))
    env.pop("PYTHONHOME", None)
    done = subprocess.run([interpreter, str(Path(__file__).parent / "py27_smoke.py"),
                           server.endpoint, str(server.config_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["ok", "2", "7"]
