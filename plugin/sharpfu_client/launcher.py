"""Start the SharpFu server when no server answers.

install.py records the command (`server_command` in the configuration);
the CLI, which runs inside the server's own virtual environment, can also
start it with its own interpreter. The server is started detached, so that
it outlives the plug-in that started it and keeps its models warm; it logs
to the state folder and, when auto-started, exits after a long idle time.
"""
from __future__ import absolute_import, division, print_function

import os
import shlex
import subprocess
import sys

from . import config as config_module

DEFAULT_IDLE_EXIT = 1800  # seconds; frees the GPU memory of a forgotten server


def server_command(config):
    """The argv that starts the server, or None when nothing says how."""
    command = config.get("server_command")
    if not command and os.environ.get("SHARPFU_SERVER_COMMAND"):
        command = shlex.split(os.environ["SHARPFU_SERVER_COMMAND"])
    if isinstance(command, (list, tuple)) and command:
        return [str(part) for part in command]
    if command:
        return shlex.split(str(command))
    return None


def start_argv(config, endpoint):
    """The argv that starts a server for `endpoint` with this configuration,
    or None when nothing says how."""
    argv = server_command(config)
    if not argv:
        return None
    argv = argv + ["--endpoint", endpoint]
    if config.get("_path"):
        argv += ["--config", config["_path"]]
    return argv


def log_path():
    return os.path.join(config_module.state_dir(), "server.log")


def _clean_environment():
    # GIMP runs plug-ins with its own Python settings; the server's virtual
    # environment must not inherit them.
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE"):
        env.pop(name, None)
    return env


def start(config, endpoint):
    """Start the server detached; returns (Popen, log file path).

    Raises OSError when the command cannot be run, ValueError when there is
    no command."""
    argv = start_argv(config, endpoint)
    if not argv:
        raise ValueError("no server command is configured")
    idle = config.get("client", {}).get("autostart_idle_exit", DEFAULT_IDLE_EXIT)
    if idle:
        argv += ["--idle-exit", str(int(idle))]
    path = log_path()
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory)
    log = open(path, "ab")
    kwargs = {"stdin": open(os.devnull, "rb"), "stdout": log, "stderr": subprocess.STDOUT,
              "env": _clean_environment(), "cwd": os.path.expanduser("~")}
    if sys.platform == "win32":
        kwargs["creationflags"] = 0x00000008 | 0x00000200 | 0x08000000
        # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
    else:
        kwargs["close_fds"] = True
        kwargs["preexec_fn"] = os.setsid  # not killed with GIMP's process group
    try:
        process = subprocess.Popen(argv, **kwargs)
    finally:
        log.close()
    return process, path


def sandbox():
    """The sandbox GIMP runs in ("Flatpak", "Snap"), or None: a sandboxed
    program cannot start the server, which lives outside it."""
    if os.environ.get("FLATPAK_ID") or os.path.exists("/.flatpak-info"):
        return "Flatpak"
    if os.environ.get("SNAP"):
        return "Snap"
    return None


def command_line(argv):
    """argv as one line a user can paste into a terminal."""
    return " ".join(part if part and not any(c in part for c in " '\"$`\\") else
                    "'%s'" % part.replace("'", "'\\''") for part in argv)


def unreachable(config, endpoint, what=None):
    """What to tell a user when no server answers: what happened and what to
    do, with the exact command that starts the server and where its log is.
    No error numbers or tracebacks: those go to the log."""
    argv = start_argv(config, endpoint)
    told = [what or "No SharpFu server answers."]
    if argv:
        told.append("Start it in a terminal with: %s" % command_line(argv))
    else:
        told.append("This installation does not say how to start it: run SharpFu's install.py "
                    "again, or start the server in a terminal with the sharpfu-server command "
                    "from the .venv folder of SharpFu (add --endpoint %s)." % endpoint)
    boxed = sandbox()
    if boxed:
        told.append("GIMP runs in a %s sandbox here, which cannot start programs outside it: "
                    "run that command outside the sandbox (a terminal, or your session's "
                    "autostart), then try again." % boxed)
    else:
        told.append("Then try again.")
    told.append("The server's log is %s." % log_path())
    return " ".join(told)


def note_in_log(text):
    """Append a line to the server's log, where the details of a failure to
    start it belong."""
    try:
        directory = os.path.dirname(log_path())
        if not os.path.isdir(directory):
            os.makedirs(directory)
        with open(log_path(), "a") as handle:
            handle.write("sharpfu client: %s\n" % text)
    except (IOError, OSError):
        pass


def log_tail(path, lines=3):
    """The last lines of the server log, for error messages."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 4096))
            text = handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
