"""Secure by default: loopback only unless CURVE keys protect the endpoint."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from server.scratch import ROOT, ServerProcess, free_port
from sharpfu_client import Client, Frame, SharpFuError


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:%d", "tcp://*:%d"])
def test_a_network_endpoint_without_keys_is_refused(tmp_path, endpoint):
    endpoint = endpoint % free_port()
    done = subprocess.run([sys.executable, "-m", "server", "--endpoint", endpoint],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=ServerProcess(tmp_path).environment())
    assert done.returncode == 2
    assert "Refusing to listen" in done.stderr and "CURVE" in done.stderr


@pytest.fixture
def keys(tmp_path):
    directory = tmp_path / "keys"
    subprocess.run([sys.executable, "-m", "server", "--make-keys", str(directory)], cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    return directory


def curve_client(proc: ServerProcess, tmp_path, client_section: dict) -> Client:
    config = json.loads(proc.config_path.read_text())
    config["client"] = client_section
    path = tmp_path / ("client-%d.json" % len(list(tmp_path.glob("client-*.json"))))
    path.write_text(json.dumps(config))
    return Client(endpoint=proc.connect_endpoint, config_path=str(path), autostart=False,
                  connect_timeout=2.0)


@pytest.mark.slow
def test_curve_lets_in_only_known_clients(fresh_server, keys, tmp_path):
    known = {"curve_server_public_file": str(keys / "server.key"),
             "curve_secret_file": str(keys / "client.key_secret")}
    proc = fresh_server(endpoint="tcp://0.0.0.0:%d" % free_port(), client_settings=known,
                        server_settings={"curve_secret_file": str(keys / "server.key_secret"),
                                         "curve_clients_dir": str(keys / "clients")})
    with curve_client(proc, tmp_path, known) as allowed:
        out = allowed.run("echo", [Frame(b"\1\2\3" * 4, 2, 2, 3)])
        assert bytes(out.frame("image").data) == b"\1\2\3" * 4
    # A client without keys, and one whose key the server does not know, get nothing.
    stranger_keys = tmp_path / "stranger"
    subprocess.run([sys.executable, "-m", "server", "--make-keys", str(stranger_keys)], cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    for section in ({}, {"curve_server_public_file": str(keys / "server.key"),
                         "curve_secret_file": str(stranger_keys / "client.key_secret")}):
        with curve_client(proc, tmp_path, section) as stranger:
            with pytest.raises(SharpFuError) as caught:
                stranger.connect()
            assert caught.value.code == "server_unavailable"
