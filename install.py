#!/usr/bin/env python3
"""Install SharpFu: the server's virtual environment and its configuration.

    python3 install.py            # set up .venv (torch: CUDA build if an NVIDIA GPU is present)
    python3 install.py --dev      # also the test tools
    python3 install.py --dry-run  # say what would be done, change nothing

It is safe to run again: what is already in place is left as it is.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _load_config_module():
    # The client library's config module needs only the standard library;
    # the package around it needs pyzmq, which is not installed yet.
    path = ROOT / "plugin" / "sharpfu_client" / "config.py"
    spec = importlib.util.spec_from_file_location("sharpfu_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sharpfu_config = _load_config_module()

TORCH = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu128"
PYPI = "https://pypi.org/simple"
MIN_PYTHON = (3, 10)


class Installer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.venv = Path(args.venv).resolve()
        self.changed = []

    def say(self, text: str) -> None:
        print(("[dry run] " if self.args.dry_run else "") + text, flush=True)

    def run(self, argv: list[str], check: bool = True) -> bool:
        self.say("$ " + " ".join(str(a) for a in argv))
        if self.args.dry_run:
            return True
        done = subprocess.run([str(a) for a in argv])
        if check and done.returncode != 0:
            sys.exit("install.py: this step failed (exit code %d); nothing after it was done."
                     % done.returncode)
        return done.returncode == 0

    # -- the server's virtual environment ---------------------------------------

    @property
    def python(self) -> Path:
        if os.name == "nt":
            return self.venv / "Scripts" / "python.exe"
        return self.venv / "bin" / "python"

    def server_command(self) -> list[str]:
        script = "sharpfu-server.exe" if os.name == "nt" else "sharpfu-server"
        return [str(self.python.parent / script)]

    def create_venv(self) -> None:
        if self.python.exists():
            self.say("virtual environment: %s (exists)" % self.venv)
            return
        self.run([sys.executable, "-m", "venv", str(self.venv)])
        self.changed.append("virtual environment")

    def installed(self, requirement: str) -> bool:
        """True when the venv already satisfies a requirement (no network)."""
        if not self.python.exists():
            return False
        code = ("import importlib.metadata as m, sys; name, _, version = sys.argv[1].partition('==');"
                "v = m.version(name); sys.exit(0 if not version or v.split('+')[0] == version else 1)")
        return subprocess.run([str(self.python), "-c", code, requirement],
                              capture_output=True).returncode == 0

    def install_torch(self) -> None:
        if self.installed(TORCH):
            self.say("torch: %s (installed)" % TORCH)
            return
        flavour = self.args.torch if self.args.torch != "auto" else (
            "cuda" if has_nvidia_gpu() else "cpu")
        pip = [str(self.python), "-m", "pip", "install", TORCH]
        self.say("torch: %s build (%s)" % (flavour.upper(), "chosen with --torch" if
                                             self.args.torch != "auto" else
                                             "an NVIDIA GPU was found" if flavour == "cuda"
                                             else "no NVIDIA GPU was found"))
        if flavour == "cpu" and sys.platform != "darwin":
            # PyPI's Linux wheel bundles CUDA (gigabytes a CPU cannot use);
            # PyTorch's own CPU index has the small build.
            if self.run(pip + ["--index-url", TORCH_CPU_INDEX, "--extra-index-url", PYPI],
                        check=False):
                self.changed.append("torch")
                return
            self.say("the CPU index was not reachable; taking torch from PyPI instead")
        elif flavour == "cuda" and os.name == "nt":
            pip += ["--index-url", TORCH_CUDA_INDEX_WINDOWS, "--extra-index-url", PYPI]
        self.run(pip)
        self.changed.append("torch")

    def install_project(self) -> None:
        target = ".[test]" if self.args.dev else "."
        if self.installed("sharpfu") and (not self.args.dev or self.installed("pytest")) \
                and self.editable_here():
            self.say("sharpfu: installed from %s" % ROOT)
            return
        self.run([str(self.python), "-m", "pip", "install", "--editable", target])
        self.changed.append("sharpfu")

    def editable_here(self) -> bool:
        done = subprocess.run([str(self.python), "-c", "import server, sys; print(server.__file__)"],
                              capture_output=True, text=True, cwd="/")
        return done.returncode == 0 and Path(done.stdout.strip()).resolve().is_relative_to(ROOT)

    # -- configuration ------------------------------------------------------------

    def write_config(self) -> dict:
        """The user's config.json: endpoint, signing key and how to start the
        server. An existing file keeps its key and every other setting."""
        path = Path(sharpfu_config.config_dir()) / sharpfu_config.CONFIG_NAME
        config = json.loads(path.read_text()) if path.exists() else {}
        wanted = dict(config)
        wanted.setdefault("key", secrets.token_hex(32))
        wanted["endpoint"] = self.args.endpoint or config.get("endpoint") or \
            sharpfu_config.DEFAULT_ENDPOINT
        wanted["server_command"] = self.server_command()
        if wanted != config:
            self.say("configuration: %s (%s)" % (path, "updated" if config else "created"))
            if not self.args.dry_run:
                write_private(path, wanted)
            self.changed.append("configuration")
        else:
            self.say("configuration: %s (up to date)" % path)
        return wanted

    def install(self) -> None:
        self.create_venv()
        self.install_torch()
        self.install_project()
        self.write_config()
        verb = "would change" if self.args.dry_run else "changed"
        self.say("done: %s" % ("%s: %s" % (verb, ", ".join(self.changed)) if self.changed
                                else "nothing to change"))


def write_private(path: Path, data: dict) -> None:
    """Write JSON readable by this user only: it holds the signing key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def has_nvidia_gpu() -> bool:
    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            return subprocess.run([smi, "-L"], capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False
    return False


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Install SharpFu's server and configuration.")
    parser.add_argument("--venv", default=str(ROOT / ".venv"),
                        help="where to create the server's virtual environment (default: .venv)")
    parser.add_argument("--torch", choices=["auto", "cpu", "cuda"], default="auto",
                        help="which torch build (default: CUDA when an NVIDIA GPU is present)")
    parser.add_argument("--dev", action="store_true", help="also install the test tools")
    parser.add_argument("--endpoint", help="the server's endpoint (default %s)"
                        % sharpfu_config.DEFAULT_ENDPOINT)
    parser.add_argument("--dry-run", action="store_true", help="say what would be done; change "
                                                                "nothing")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    if sys.version_info < MIN_PYTHON:
        sys.exit("install.py needs Python %d.%d or newer (this is %s)."
                 % (MIN_PYTHON + (sys.version.split()[0],)))
    Installer(parse_args(argv)).install()


if __name__ == "__main__":
    main()
