"""Who may talk to the server.

Loopback (and ipc) endpoints are open to this machine's users, optionally
narrowed by the HMAC signing key. Any other address would expose the server
to the network, so binding one requires ZeroMQ CURVE: an encrypted,
authenticated transport where only clients whose public certificates sit in
curve_clients_dir are let in.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from sharpfu_client.config import is_local_endpoint
from sharpfu_client.wire import CONNECT_USER, connect_password


ZAP_DOMAIN = "sharpfu"


class SecurityError(Exception):
    pass


def check_endpoint(settings) -> bool:
    """Returns True when CURVE must be (and can be) used; raises SecurityError
    when a non-local endpoint lacks keys."""
    if settings.endpoint.startswith("ipc://") and os.name == "nt":
        raise SecurityError("ipc:// endpoints need a POSIX system; use tcp://127.0.0.1:PORT.")
    has_keys = bool(settings.curve_secret_file and settings.curve_clients_dir)
    if is_local_endpoint(settings.endpoint):
        return has_keys
    if not has_keys:
        raise SecurityError(
            "Refusing to listen on %s: it is reachable from other machines, and no CURVE keys are "
            "configured. Create keys with 'sharpfu-server --make-keys DIR', then set "
            "curve_secret_file and curve_clients_dir (see README, 'Several machines'), or listen "
            "on tcp://127.0.0.1 only." % settings.endpoint)
    return True


def enable_curve(context: zmq.Context, socket: zmq.Socket, settings) -> ThreadAuthenticator:
    for path in (settings.curve_secret_file, settings.curve_clients_dir):
        if not os.path.exists(path):
            raise SecurityError("CURVE key file or folder %s does not exist." % path)
    public, secret = zmq.auth.load_certificate(settings.curve_secret_file)
    if secret is None:
        raise SecurityError("%s holds no secret key; give the server's .key_secret file."
                            % settings.curve_secret_file)
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=settings.curve_clients_dir)
    socket.curve_server = True
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    return authenticator


def enable_plain(context: zmq.Context, socket: zmq.Socket, key: bytes) -> ThreadAuthenticator:
    """Let in only connections that present the key's PLAIN credentials.

    Checked during ZeroMQ's handshake, before a connection can deliver a
    message: a peer without the key cannot make the server buffer a single
    byte (a signature can only be checked once a whole message is in)."""
    authenticator = ThreadAuthenticator(context, log=_quiet_log())
    authenticator.start()
    authenticator.configure_plain(domain=ZAP_DOMAIN, passwords={
        CONNECT_USER.decode(): connect_password(key).decode()})
    socket.zap_domain = ZAP_DOMAIN.encode()
    socket.plain_server = True
    return authenticator


def _quiet_log() -> logging.Logger:
    # pyzmq logs every handshake at debug level; a stranger retrying its
    # connection would fill the server's log.
    logger = logging.getLogger("sharpfu.auth")
    logger.setLevel(logging.WARNING)
    return logger


KEY_FILES = ("server.key", "server.key_secret", "client.key_secret",
             os.path.join("clients", "client.key"))


def make_keys(directory: str, force: bool = False) -> list[str]:
    """A server and a client key pair, for a first set-up of remote servers:
    DIR/server.key_secret is the server's curve_secret_file, DIR/clients its
    curve_clients_dir; clients need DIR/server.key and DIR/client.key_secret.

    Existing keys are replaced only with `force` (SecurityError otherwise):
    replacing them locks out every client set up with the old ones. The
    files are made in a private folder inside DIR under umask 077, so a
    secret never exists with wider permissions, and then renamed into place."""
    existing = [name for name in KEY_FILES if os.path.lexists(os.path.join(directory, name))]
    if existing and not force:
        raise SecurityError("%s already holds keys (%s); replacing them locks out every client "
                            "that uses them. Give --force to replace them anyway."
                            % (directory, ", ".join(existing)))
    for folder in (directory, os.path.join(directory, "clients")):
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)
    umask = os.umask(0o077)
    try:
        staging = tempfile.mkdtemp(dir=directory, prefix=".keys-")
        made = {}
        for name in ("server", "client"):
            made[name] = zmq.auth.create_certificates(staging, name)
    finally:
        os.umask(umask)
    try:
        written = []
        for (public, secret), public_target, secret_target in (
                (made["server"], "server.key", "server.key_secret"),
                (made["client"], os.path.join("clients", "client.key"), "client.key_secret")):
            os.chmod(public, 0o644)   # public certificates are meant to be handed out
            for source, target in ((public, public_target), (secret, secret_target)):
                target = os.path.join(directory, target)
                os.replace(source, target)
                written.append(target)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
