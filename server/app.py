"""`sharpfu-server` and `python -m server`: settings, logging, signals."""
from __future__ import annotations

import json
import logging
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


def _setup_logging(level: str, path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        handlers.append(logging.FileHandler(path))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> None:
    args = settings_module.build_parser().parse_args(argv)
    if args.make_keys:
        for path in make_keys(args.make_keys):
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
    _setup_logging(settings.log_level, settings.log_file)

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
