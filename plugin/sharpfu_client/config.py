"""Where SharpFu keeps its configuration, and how it is read.

One JSON file holds what the server and its clients must agree on (the
endpoint, the signing key, how to start the server) plus a section for each.
The installer writes it; a copy named sharpfu.json beside each GIMP plug-in
lets a sandboxed GIMP (Flatpak, Snap), whose home directory differs, find
the server too.
"""
from __future__ import absolute_import, division, print_function

import json
import os
import sys

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5599"
CONFIG_NAME = "config.json"
PLUGIN_CONFIG_NAME = "sharpfu.json"

DEFAULTS = {
    "endpoint": DEFAULT_ENDPOINT,
    "key": "",                 # hex HMAC key; empty: messages are not signed
    "server_command": None,    # argv that starts the server, recorded by install.py
    "server": {},
    "client": {},
}


def config_dir():
    """The per-user configuration folder of SharpFu."""
    if sys.platform == "win32":
        return os.path.join(os.environ.get("APPDATA") or os.path.expanduser("~"), "SharpFu")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Application Support/SharpFu")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "sharpfu")


def state_dir():
    """Where the server writes its log."""
    if sys.platform == "win32":
        return os.path.join(os.environ.get("LOCALAPPDATA") or config_dir(), "SharpFu")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Logs/SharpFu")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "sharpfu")


class ConfigError(Exception):
    pass


def candidate_paths(explicit=None, beside=None):
    """Config files in the order they are tried; the first that exists wins."""
    paths = []
    if explicit:
        paths.append(explicit)
    if os.environ.get("SHARPFU_CONFIG"):
        paths.append(os.environ["SHARPFU_CONFIG"])
    if beside:
        paths.append(os.path.join(beside, PLUGIN_CONFIG_NAME))
    paths.append(os.path.join(config_dir(), CONFIG_NAME))
    return paths


def load(explicit=None, beside=None):
    """The merged configuration: defaults, then the first config file found,
    then the SHARPFU_ENDPOINT and SHARPFU_KEY environment variables.

    An explicitly named file that is missing is an error; a missing default
    file is not. The path used is stored under "_path"."""
    config = json.loads(json.dumps(DEFAULTS))
    config["_path"] = None
    for index, path in enumerate(candidate_paths(explicit, beside)):
        if not os.path.exists(path):
            if index == 0 and explicit:
                raise ConfigError("The configuration file %s does not exist." % path)
            continue
        try:
            with open(path) as handle:
                loaded = json.load(handle)
        except (IOError, OSError, ValueError) as exc:
            raise ConfigError("Cannot read the SharpFu configuration %s: %s" % (path, exc))
        if not isinstance(loaded, dict):
            raise ConfigError("The SharpFu configuration %s must hold a JSON object." % path)
        for name in ("server", "client"):
            if name in loaded and not isinstance(loaded[name], dict):
                raise ConfigError("%r in %s must be a JSON object." % (name, path))
        config.update(loaded)
        config["_path"] = os.path.abspath(path)
        break
    if os.environ.get("SHARPFU_ENDPOINT"):
        config["endpoint"] = os.environ["SHARPFU_ENDPOINT"]
    if "SHARPFU_KEY" in os.environ:
        config["key"] = os.environ["SHARPFU_KEY"]
    return config


def key_bytes(config):
    """The signing key as bytes (empty when messages are not signed)."""
    key = config.get("key") or ""
    return key.encode("ascii") if not isinstance(key, bytes) else key


def is_local_endpoint(endpoint):
    """True for endpoints only this machine can reach: loopback TCP, ipc and
    inproc. Anything else must be protected by CURVE."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host in ("localhost", "::1") or host.startswith("127.")
