"""Files SharpFu writes for the user: the configuration (install.py), CURVE
keys (sharpfu-server --make-keys), the server's log and its shared-memory
marker. Secrets get their final permissions from the start, nothing the
user set is rewritten, and nothing is left behind."""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from server.scratch import ROOT, ServerProcess, free_port

INSTALL = ROOT / "install.py"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_000():
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def install(monkeypatch, tmp_path):
    """install.py as a module, with the user's folders under tmp_path."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("SHARPFU_CONFIG", raising=False)
    spec = importlib.util.spec_from_file_location("sharpfu_install", INSTALL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_config(install, *options):
    installer = install.Installer(install.parse_args(["--no-plugin"] + list(options)))
    return installer.write_config()


def user_config(tmp_path) -> Path:
    return tmp_path / "config" / "sharpfu" / "config.json"


# -- install.py and the configuration -----------------------------------------

def test_a_complete_configuration_is_left_byte_for_byte(install, tmp_path):
    path = user_config(tmp_path)
    path.parent.mkdir(parents=True)
    text = ('{"key": "%s", "endpoint": "tcp://127.0.0.1:6000",\n "server_command": ["%s"],\n'
            ' "server": {"tile": 256}}' % ("ab" * 32, sys.executable))
    path.write_text(text)
    os.chmod(path, 0o600)
    write_config(install)
    assert path.read_text() == text


def test_missing_keys_are_added_and_the_rest_kept(install, tmp_path):
    path = user_config(tmp_path)
    path.parent.mkdir(parents=True)
    other_clone = [sys.executable, "-m", "server"]   # another clone's working command
    path.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:6000", "server_command": other_clone,
                                "server": {"tile": 256}, "client": {"timeout": 90}}))
    config = write_config(install)
    written = json.loads(path.read_text())
    assert written["server_command"] == other_clone      # not this clone's
    assert written["endpoint"] == "tcp://127.0.0.1:6000"
    assert written["server"] == {"tile": 256} and written["client"] == {"timeout": 90}
    assert len(written["key"]) == 64 and config["key"] == written["key"]
    assert mode(path) == 0o600


def test_a_command_that_no_longer_exists_is_repaired(install, tmp_path):
    path = user_config(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": "ab" * 32, "endpoint": "tcp://127.0.0.1:6000",
                                "server_command": ["/gone/clone/.venv/bin/sharpfu-server"]}))
    write_config(install)
    command = json.loads(path.read_text())["server_command"]
    assert command[0] != "/gone/clone/.venv/bin/sharpfu-server"


def test_sharpfu_config_names_the_file_written(install, tmp_path, monkeypatch):
    custom = tmp_path / "elsewhere" / "sharpfu.json"
    monkeypatch.setenv("SHARPFU_CONFIG", str(custom))
    write_config(install)
    assert json.loads(custom.read_text())["key"]
    assert not user_config(tmp_path).exists()


def test_a_new_configuration_is_private_from_the_start(install, tmp_path, umask_000):
    leftover = user_config(tmp_path).with_suffix(".tmp")   # from an interrupted older install
    leftover.parent.mkdir(parents=True)
    os.chmod(leftover.parent, 0o777)
    leftover.write_text("{}")
    os.chmod(leftover, 0o666)
    write_config(install)
    assert mode(user_config(tmp_path)) == 0o600


def test_a_new_configuration_folder_is_private(install, tmp_path, umask_000):
    write_config(install)
    assert mode(user_config(tmp_path)) == 0o600
    assert mode(user_config(tmp_path).parent) == 0o700


def run_install(tmp_path, *options, env=None):
    environment = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"),
                       HOME=str(tmp_path / "home"))
    environment.pop("SHARPFU_CONFIG", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, str(INSTALL)] + [str(o) for o in options],
                          capture_output=True, text=True, env=environment, timeout=300)


def test_add_model_honours_sharpfu_config(tmp_path):
    import torch
    from models import mimo_unet
    checkpoint = tmp_path / "Deblur.pkl"
    torch.manual_seed(0)
    torch.save({"model": mimo_unet.MIMOUNet(8, 1).state_dict()}, checkpoint)
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps({"server": {"models_dir": str(tmp_path / "my-models")}}))
    done = run_install(tmp_path, "--venv", sys.prefix, "--add-model", checkpoint,
                       env={"SHARPFU_CONFIG": str(custom)})
    assert done.returncode == 0, done.stderr
    installed = sorted(p.name for p in (tmp_path / "my-models").iterdir())
    assert installed and all(name.lower().startswith("deblur") for name in installed), installed
    assert not (tmp_path / "config" / "sharpfu" / "models").exists()


def test_plugin_only_honours_sharpfu_config(tmp_path):
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:6001", "key": "cd" * 32,
                                  "server_command": None}))
    plugins = tmp_path / "home" / ".config" / "GIMP" / "3.0" / "plug-ins"
    plugins.mkdir(parents=True)
    done = run_install(tmp_path, "--plugin-only", "--plugin-dir", plugins,
                       env={"SHARPFU_CONFIG": str(custom)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((plugins / "sharpfu" / "sharpfu.json").read_text())["key"] == "cd" * 32


# -- sharpfu-server --make-keys ------------------------------------------------

def make_keys(directory, *options):
    return subprocess.run([sys.executable, "-m", "server", "--make-keys", str(directory)]
                          + list(options), cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_make_keys_refuses_to_replace_keys_without_force(tmp_path):
    keys = tmp_path / "keys"
    assert make_keys(keys).returncode == 0
    secret = (keys / "server.key_secret").read_bytes()
    again = make_keys(keys)
    assert again.returncode != 0 and "--force" in again.stderr
    assert (keys / "server.key_secret").read_bytes() == secret
    assert make_keys(keys, "--force").returncode == 0
    assert (keys / "server.key_secret").read_bytes() != secret


def test_secret_keys_never_exist_with_wider_permissions(tmp_path, monkeypatch, umask_000):
    import zmq.auth
    from server import security
    seen = {}
    create = zmq.auth.create_certificates

    def watched(directory, name, metadata=None):
        public, secret = create(directory, name, metadata)
        seen[name] = mode(secret)   # the moment the file first exists
        return public, secret

    monkeypatch.setattr(zmq.auth, "create_certificates", watched)
    written = security.make_keys(str(tmp_path / "keys"))
    assert seen == {"server": 0o600, "client": 0o600}
    for path in written:
        assert mode(path) == (0o600 if path.endswith("_secret") else 0o644)
    assert mode(tmp_path / "keys") == 0o700


# -- the server's log and marker ---------------------------------------------

def test_the_log_is_private_capped_and_rotated(tmp_path, umask_000):
    from server import app
    path = tmp_path / "state" / "sharpfu" / "server.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.handlers = []
        app.setup_logging("info", str(path), max_bytes=20000, backups=2)
        for n in range(2000):
            logging.getLogger("sharpfu.test").info("line %d of a flood %s", n, "x" * 40)
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = saved
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["server.log", "server.log.1", "server.log.2"]
    assert all(os.path.getsize(path.parent / name) <= 20000 for name in files)
    assert all(mode(path.parent / name) == 0o600 for name in files)
    assert mode(path.parent) == 0o700


def test_an_autostarted_server_logs_to_its_capped_file(tmp_path, monkeypatch, umask_000):
    from sharpfu_client import launcher
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    argv_file = tmp_path / "argv.json"
    command = [sys.executable, "-c", "import json, sys; json.dump(sys.argv, open(%r, 'w')); "
               "print('early output')" % str(argv_file)]
    process, console = launcher.start({"server_command": command, "_path": None},
                                      "tcp://127.0.0.1:1")
    process.wait(30)
    argv = json.loads(argv_file.read_text())
    assert argv[argv.index("--log-file") + 1] == launcher.log_path()
    assert open(console).read() == "early output\n"
    assert mode(console) == 0o600 and mode(os.path.dirname(console)) == 0o700


def shm_markers(pid):
    prefix = "sharpfu-%08x" % pid
    return [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_refused_and_duplicate_starts_leave_no_marker(tmp_path, fresh_server):
    env = ServerProcess(tmp_path).environment()
    refused = subprocess.Popen([sys.executable, "-m", "server", "--endpoint",
                                "tcp://0.0.0.0:%d" % free_port()], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert refused.wait(120) == 2
    running = fresh_server()
    duplicate = subprocess.Popen([sys.executable, "-m", "server", "--endpoint",
                                  running.endpoint], cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert duplicate.wait(120) == 3
    assert shm_markers(refused.pid) == [] and shm_markers(duplicate.pid) == []
