from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server.scratch import ServerProcess  # noqa: E402

# Tests never read or write the user's own SharpFu configuration and logs.
_home = tempfile.mkdtemp(prefix="sharpfu-tests-")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_home, "config")
os.environ["XDG_STATE_HOME"] = os.path.join(_home, "state")
os.environ.pop("SHARPFU_CONFIG", None)
os.environ.pop("SHARPFU_ENDPOINT", None)
os.environ.pop("SHARPFU_KEY", None)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One signed server shared by the tests that only need a working one."""
    proc = ServerProcess(tmp_path_factory.mktemp("server"), key="0123456789abcdef" * 4).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def subject_server(tmp_path_factory):
    """A signed server that also offers tests/fake_subject.py for the select
    op (the shared `server` has no subject finder)."""
    proc = ServerProcess(tmp_path_factory.mktemp("subject-server"), key="0123456789abcdef" * 4,
                         server_settings={"device": "cpu"},
                         program=Path(__file__).resolve().parent / "fake_subject_server.py")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_server(tmp_path):
    """A server of the test's own, for tests that kill or starve it."""
    procs = []

    def start(**kwargs) -> ServerProcess:
        proc = ServerProcess(tmp_path / ("server%d" % len(procs)), **kwargs)
        procs.append(proc)   # before starting: one that never answers is stopped too
        return proc.start()

    yield start
    for proc in procs:
        proc.stop()
