"""install.py's decisions about torchvision, spandrel and the default models,
with pip replaced by a recorder (the real thing is exercised by every fresh
install, `.ci/run` included)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def installer(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("sharpfu_install", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args(["--venv", str(tmp_path / "venv"), "--no-plugin"])
    made = module.Installer(args)
    made.commands, made.said, made.constraints = [], [], []

    def run(argv, check=True):
        argv = [str(a) for a in argv]
        made.commands.append(argv)
        if "--constraint" in argv:
            made.constraints.append(Path(argv[argv.index("--constraint") + 1]).read_text())
        return made.pip_answer

    made.pip_answer = True
    made.run = run
    made.say = made.said.append
    made.module = module
    return made


def test_cpu_torch_without_its_index_gets_no_torchvision_and_spandrel_without_deps(
        installer, monkeypatch):
    installer.torch_version = lambda: "2.13.0+cpu"
    installer.imports = lambda module: (False, "ModuleNotFoundError")
    installer.installed = lambda requirement: False
    monkeypatch.setattr(installer.module, "reachable", lambda url, timeout=5.0: False)
    installer.install_spandrel()
    assert not any("torchvision" in " ".join(c) for c in installer.commands)
    (pip,) = installer.commands
    assert pip[-2:] == ["--no-deps", installer.module.SPANDREL]
    assert installer.constraints == ["torch==2.13.0+cpu\n"]
    assert any("PyPI's torchvision is built for CUDA" in line for line in installer.said)


def test_cpu_torch_takes_torchvision_from_the_cpu_index(installer, monkeypatch):
    installer.torch_version = lambda: "2.13.0+cpu"
    answers = iter([(False, "ModuleNotFoundError"), (True, "")])
    installer.imports = lambda module: next(answers)
    installer.installed = lambda requirement: False
    monkeypatch.setattr(installer.module, "reachable", lambda url, timeout=5.0: True)
    installer.install_spandrel()
    torchvision, spandrel = installer.commands
    assert "torchvision" in torchvision and installer.module.TORCH_CPU_INDEX in torchvision
    assert spandrel[-1] == installer.module.SPANDREL and "--no-deps" not in spandrel
    assert installer.constraints == ["torch==2.13.0+cpu\n"] * 2


def test_a_torchvision_that_does_not_import_is_removed_again(installer, monkeypatch):
    installer.torch_version = lambda: "2.13.0"
    installer.imports = lambda module: (False, "RuntimeError: operator torchvision::nms "
                                               "does not exist")
    installer.installed = lambda requirement: False
    installer.install_spandrel()
    assert ["uninstall", "--yes", "torchvision"] == installer.commands[1][-3:]
    assert installer.commands[-1][-2:] == ["--no-deps", installer.module.SPANDREL]


def test_default_models_offline_say_so_and_go_on(installer):
    installer.pip_answer = False
    installer.pull_models()
    (command,) = installer.commands
    assert command[1:3] == ["models", "pull"]
    assert list(installer.module.DEFAULT_MODELS) == command[3:]
    assert "works without them" in installer.said[-1]
