"""A SharpFu server in a child process, with a configuration, key and log
of its own in a scratch folder: for the tests and benchmarks that need a
live server beside the user's own."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sharpfu_client import Client, Timeout, ConnectionLost

# where `python -m server` finds this checkout's server
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """Starts `python -m server` with its own config file and log. program:
    another script to run in its place, taking the server's arguments (a
    test's server with a test double among its methods)."""

    def __init__(self, directory: Path, key: str = "", endpoint: str | None = None,
                 extra_args: tuple[str, ...] = (), server_settings: dict | None = None,
                 client_settings: dict | None = None, program: str | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.endpoint = endpoint or "tcp://127.0.0.1:%d" % free_port()
        self.key = key
        self.config_path = self.directory / "config.json"
        self.config_path.write_text(json.dumps({
            "endpoint": self.endpoint, "key": key,
            "server_command": [sys.executable, "-m", "server"],
            # a models folder of its own: never the user's, whose models
            # would change what the server offers and runs by default
            "server": dict({"models_dir": str(self.directory / "models")},
                           **(server_settings or {})),
            "client": client_settings or {},
        }))
        self.log_path = self.directory / "server.log"
        self.extra_args = list(extra_args)
        self.program = ["-m", "server"] if program is None else [str(program)]
        self.process: subprocess.Popen | None = None

    def environment(self) -> dict:
        env = dict(os.environ)
        env["SHARPFU_CONFIG"] = str(self.config_path)
        env["XDG_STATE_HOME"] = str(self.directory / "state")
        env.pop("SHARPFU_ENDPOINT", None)
        env.pop("SHARPFU_KEY", None)
        return env

    def start(self, wait: bool = True) -> "ServerProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable] + self.program + ["--config", str(self.config_path),
             "--log-level", "debug"] + self.extra_args,
            cwd=ROOT, env=self.environment(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.kill()   # never leave a server behind a failed test
                raise
        return self

    @property
    def connect_endpoint(self) -> str:
        """Where a client reaches it: a wildcard bind is reached on the loopback."""
        return self.endpoint.replace("//0.0.0.0:", "//127.0.0.1:").replace("//*:", "//127.0.0.1:")

    def client(self, **kwargs) -> Client:
        kwargs.setdefault("autostart", False)
        return Client(endpoint=self.connect_endpoint, config_path=str(self.config_path), **kwargs)

    def raw_socket(self):
        """A bare DEALER socket to the server, let in with the server's key."""
        import zmq
        from sharpfu_client.client import authenticate
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        authenticate(sock, self.key.encode())
        sock.connect(self.connect_endpoint)
        return sock

    def wait_ready(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        with self.client(connect_timeout=0.5) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError("server exited with %s:\n%s" % (
                        self.process.returncode, self.log()))
                try:
                    return client.status(timeout=0.5)
                except (Timeout, ConnectionLost):
                    if time.monotonic() > deadline:
                        raise RuntimeError("server did not answer:\n" + self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
