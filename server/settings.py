"""The server's settings: defaults, then the config file, then environment
variables, then command-line flags (each overriding the one before)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields

import psutil

from sharpfu_client import __version__
from sharpfu_client import config as client_config


def _memory_total() -> int:
    return psutil.virtual_memory().total


@dataclass
class Settings:
    endpoint: str = client_config.DEFAULT_ENDPOINT
    config_path: str | None = None
    key: bytes = b""
    device: str = "auto"              # auto, cpu, cuda, cuda:N, mps
    precision: str = "auto"           # auto, fp32, fp16, bf16 (networks only)
    max_megapixels: float = 256.0     # per frame, input and output alike
    max_held_bytes: int = field(default_factory=lambda: max(1 << 30, _memory_total() // 2))
    max_jobs_per_client: int = 64
    tile: int = 0                     # 0: picked from free memory
    models_dir: str = ""
    idle_exit: float = 0.0            # seconds without work before exiting; 0: never
    heartbeat: float = 1.0            # seconds between progress messages of a job
    log_level: str = "info"
    log_file: str | None = None
    curve_secret_file: str | None = None   # this server's zmq.auth certificate (secret)
    curve_clients_dir: str | None = None   # public certificates of allowed clients
    threads: int = 0                  # torch CPU threads; 0: torch's default

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    @property
    def max_message_bytes(self) -> int:
        """ZMQ_MAXMSGSIZE: the largest frame an accepted image can need
        (RGBA f32), plus room for the header."""
        return self.max_pixels * 16 + (1 << 20)


def default_models_dir() -> str:
    return os.path.join(client_config.config_dir(), "models")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sharpfu-server",
        description="SharpFu inference server: serves AI restoration jobs to GIMP and the "
                    "sharpfu command line over ZeroMQ.")
    parser.add_argument("--endpoint", help="ZeroMQ endpoint to bind (default %s; env "
                        "SHARPFU_ENDPOINT)" % client_config.DEFAULT_ENDPOINT)
    parser.add_argument("--config", help="configuration file (default: %s; env SHARPFU_CONFIG)"
                        % os.path.join(client_config.config_dir(), client_config.CONFIG_NAME))
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (env SHARPFU_DEVICE)")
    parser.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"],
                        help="arithmetic of the networks on GPUs (default auto: fp16 where safe)")
    parser.add_argument("--max-megapixels", type=float,
                        help="largest image accepted or produced, in megapixels")
    parser.add_argument("--tile", type=int, help="tile side in pixels (default: from free memory)")
    parser.add_argument("--models-dir", help="folder scanned for extra model checkpoints")
    parser.add_argument("--idle-exit", type=float,
                        help="exit after this many seconds without work (0: never)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-file", help="also log to this file")
    parser.add_argument("--curve-secret-file",
                        help="this server's CURVE certificate (needed to bind a non-loopback "
                             "address)")
    parser.add_argument("--curve-clients-dir", help="folder of allowed clients' public "
                                                    "certificates")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--make-keys", metavar="DIR",
                        help="write a server and a client CURVE key pair into DIR and exit")
    parser.add_argument("--force", action="store_true",
                        help="with --make-keys: replace keys that DIR already holds")
    parser.add_argument("--print-config", action="store_true",
                        help="print the settings in effect and exit")
    parser.add_argument("--version", action="version", version="sharpfu-server " + __version__)
    return parser


def resolve(args: argparse.Namespace) -> Settings:
    """Merge defaults, config file, environment and flags."""
    config = client_config.load(args.config)
    server = config.get("server") or {}
    settings = Settings(models_dir=default_models_dir())
    known = {f.name for f in fields(Settings)} - {"endpoint", "key", "config_path"}
    unknown = set(server) - known
    if unknown:
        raise client_config.ConfigError("Unknown server setting(s) in %s: %s" % (
            config["_path"], ", ".join(sorted(unknown))))
    for name, value in server.items():
        setattr(settings, name, value)
    settings.endpoint = config["endpoint"]
    settings.key = client_config.key_bytes(config)
    settings.config_path = config["_path"]
    if os.environ.get("SHARPFU_DEVICE"):
        settings.device = os.environ["SHARPFU_DEVICE"]
    for name in ("endpoint", "device", "precision", "max_megapixels", "tile", "models_dir",
                 "idle_exit", "log_level", "log_file", "curve_secret_file", "curve_clients_dir",
                 "threads"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(settings, name, value)
    if settings.max_megapixels <= 0:
        raise client_config.ConfigError("max_megapixels must be positive.")
    return settings
