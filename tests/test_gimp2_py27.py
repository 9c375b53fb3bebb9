"""The GIMP 2.10 plug-in stays inside what GIMP 2.10's Python 2.7 runs:
checked by vermin, and by running it under a real Python 2.7 against the
gimpfu double and a live server when the machine has a Python 2.7."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_client_py27 import PY27_SITE, pyzmq_for_27, python27

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugin" / "sharpfu_gimp2"
DOUBLE = Path(__file__).resolve().parent / "gimpfu_double"


def test_vermin_finds_nothing_python_27_lacks_in_the_plugin():
    vermin = Path(sys.executable).parent / "vermin"
    done = subprocess.run([str(vermin), "-t=2.7-", "-t=3.6-", "--violations", "--no-tips",
                           str(PLUGIN), str(ROOT / "plugin" / "sharpfu_client"), str(DOUBLE)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_vermin_would_catch_a_python_3_construct(tmp_path):
    """The check above can fail: an f-string in a copy of the plug-in is found."""
    copy = tmp_path / "sharpfu_gimp2"
    shutil.copytree(PLUGIN, copy)
    with open(copy / "gimp2_job.py", "a") as handle:
        handle.write("\n\ndef spoiled(name):\n    return f'{name}'\n")
    vermin = Path(sys.executable).parent / "vermin"
    done = subprocess.run([str(vermin), "-t=2.7-", "-t=3.6-", "--violations", "--no-tips",
                           str(copy)], capture_output=True, text=True)
    assert done.returncode != 0 and "f-string" in done.stdout


def test_plugin_runs_under_python_27(server, tmp_path):
    interpreter = python27()
    problem = "no Python 2.7 on this machine" if interpreter is None else pyzmq_for_27(interpreter)
    if problem:
        pytest.skip("LOUD SKIP: the GIMP 2.10 plug-in was not run under Python 2.7: " + problem)
    config = tmp_path / "config.json"
    shutil.copy(server.config_path, config)
    env = dict(os.environ, SHARPFU_CONFIG=str(config), PYTHONPATH=os.pathsep.join(
        [str(DOUBLE), str(ROOT / "plugin"), str(PY27_SITE)]))
    env.pop("PYTHONHOME", None)
    env.pop("SHARPFU_ENDPOINT", None)
    done = subprocess.run([interpreter, str(Path(__file__).parent / "gimp2_py27_smoke.py"),
                           str(PLUGIN / "sharpfu_gimp2.py")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split()[-3:] == ["ok", "2", "7"]
