"""`sharpfu-server` and `python -m server`: settings, logging, signals."""
from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import sys

import zmq

from sharpfu_client.config import ConfigError

from . import settings as settings_module
from .device import DeviceError
from .security import SecurityError, make_keys

log = logging.getLogger("sharpfu")

EXIT_CONFIG = 2
EXIT_IN_USE = 3


LOG_MAX_BYTES = 5 << 20   # per file; with LOG_BACKUPS older ones, 20 MB at most
LOG_BACKUPS = 3


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A size-capped log whose files are readable by this user only from the
    moment they exist (it names clients, files and models)."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if os.name != "nt":
            os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding)


def setup_logging(level: str, path: str | None, max_bytes: int = LOG_MAX_BYTES,
                  backups: int = LOG_BACKUPS) -> None:
    """Log to stderr, or, given a file, to that file (capped and rotated)
    with only warnings and errors on stderr, which an autostarted server
    sends to a file that is never rotated."""
    console = logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [console]
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)
        handlers.append(PrivateRotatingFileHandler(path, maxBytes=max_bytes,
                                                   backupCount=backups, encoding="utf-8"))
        console.setLevel(logging.WARNING)
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def main(argv: list[str] | None = None) -> None:
    args = settings_module.build_parser().parse_args(argv)
    if args.make_keys:
        try:
            written = make_keys(args.make_keys, args.force)
        except SecurityError as error:
            sys.exit("sharpfu-server: %s" % error)
        for path in written:
            print(path)
        return
    try:
        settings = settings_module.resolve(args)
    except ConfigError as error:
        sys.exit("sharpfu-server: %s" % error)
    if args.print_config:
        shown = {k: v for k, v in vars(settings).items() if k != "key"}
        shown["signed"] = bool(settings.key)
        print(json.dumps(shown, indent=2))
        return
    setup_logging(settings.log_level, settings.log_file)

    # Imported late: torch takes seconds to load, and --help should not wait.
    from .broker import Broker
    from .engine import Engine

    try:
        engine = Engine(settings)
        broker = Broker(settings, engine)
    except (SecurityError, DeviceError, ConfigError) as error:
        log.error("%s", error)
        sys.exit(EXIT_CONFIG)
    except zmq.ZMQError as error:
        if error.errno == zmq.EADDRINUSE:
            log.error("%s is already in use, probably by another SharpFu server; "
                      "use it, or choose another --endpoint.", settings.endpoint)
            sys.exit(EXIT_IN_USE)
        log.error("cannot listen on %s: %s", settings.endpoint, error)
        sys.exit(EXIT_CONFIG)

    def on_signal(signum, frame):
        log.info("signal %d received", signum)
        broker.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    broker.serve_forever()


if __name__ == "__main__":
    main()
