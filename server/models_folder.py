"""Checkpoints users bring: the models folder (setting `models_dir`, default
<config dir>/models; `install.py --add-model PATH` copies a file there).

At start the server looks at every file in the folder (not below it) and
offers each one it recognises by content (models/registry.py) as a
deblurrer, as a catalog method named after the file: the authors' MIMO-UNet
checkpoints (`MIMO-UNet.pkl`, `MIMO-UNetPlus.pkl`, the RealBlur MIMO-UNet+,
whatever they are called) and MIMO-UNet weights in safetensors.
Files are read only through models/loading.py (safetensors, or
torch.load(weights_only=True)): a checkpoint that holds anything but tensors
and plain containers is refused, never unpickled. Whatever cannot be used is
skipped with a log line saying why; a bad file never stops the server.
"""
from __future__ import annotations

import logging
from pathlib import Path

from models import registry
from models.loading import SAFETENSORS, TORCH_CHECKPOINTS, WeightsError

from .methods.network import IMAGE_TASKS, NetworkMethod, preference

log = logging.getLogger("sharpfu.models")

WEIGHT_SUFFIXES = SAFETENSORS + TORCH_CHECKPOINTS
# What users' checkpoints may do here: deblur (the authors' MIMO-UNet, far
# better trained than SharpFu's own, which it then outranks).
USER_TASKS = ("deblur",)


class NotUsable(Exception):
    """A file in the models folder that SharpFu cannot offer; says why."""


def recognise(path: str | Path) -> registry.Weights:
    """The weights in `path`, read safely and checked to load strictly into
    a deblurrer SharpFu knows; NotUsable, saying why, otherwise."""
    path = Path(path)
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise NotUsable("not a weights file (SharpFu reads %s)" % ", ".join(WEIGHT_SUFFIXES))
    if path.stat().st_size == 0:
        raise NotUsable("the file is empty (an interrupted download?)")
    try:
        weights = registry.Weights.from_file(path)
    except (OSError, IndexError, KeyError, AttributeError, TypeError) as error:
        # what torch.load raises on some damaged files, past models/loading.py
        raise NotUsable("cannot be read as weights: damaged or not a checkpoint (%s: %s)"
                        % (type(error).__name__, error))
    except WeightsError as error:
        message = str(error)
        if "Weights only load failed" in message:
            # torch's own text goes on to suggest weights_only=False, the one
            # thing a user must not do with a file that holds code
            message = message.split(" (Weights only load failed")[0] + (
                " (torch.load with weights_only=True refused it).")
        raise NotUsable(message)
    if weights.spec.task not in USER_TASKS:
        raise NotUsable("%s weights: SharpFu runs only deblurrers from the models folder"
                        % weights.architecture.title)
    return weights


def method_for(weights: registry.Weights, name: str) -> NetworkMethod:
    spec, path = weights.spec, weights.path
    what = "%dx upscaling" % spec.scale if spec.task == "upscale" else "deblurring"
    return NetworkMethod(
        name, [weights], title="%s %s, from %s" % (spec.flavour, what, path.name),
        description="Your checkpoint %s: %s (%s), %s parameters." % (
            path, weights.architecture.title, spec.flavour, format(weights.parameters, ",")),
        source="user checkpoint %s" % path.name, preference=preference(weights))


def scan(folder: str | Path | None, taken: set[str] = frozenset()) -> list[NetworkMethod]:
    """A method for each usable checkpoint in `folder`, named after its file
    (the stem; the whole file name if the stem is taken)."""
    if not folder:
        return []
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        if folder.exists():
            log.warning("models folder %s is not a folder; no user checkpoints", folder)
        return []
    methods, names = [], set(taken)
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in WEIGHT_SUFFIXES:
            # a README or a download's leftovers: nothing to warn about
            log.info("models folder: skipping %s: not a weights file (SharpFu reads %s)",
                     path.name, ", ".join(WEIGHT_SUFFIXES))
            continue
        try:
            weights = recognise(path)
        except NotUsable as error:
            log.warning("models folder: skipping %s: %s", path.name, error)
            continue
        except Exception as error:  # noqa: BLE001 - one odd file must not stop the server
            log.warning("models folder: skipping %s: %s: %s", path.name, type(error).__name__,
                        error)
            continue
        name = next((n for n in (path.stem, path.name) if n not in names), None)
        if name is None:
            log.warning("models folder: skipping %s: a method named %r is already installed",
                        path.name, path.name)
            continue
        names.add(name)
        methods.append(method_for(weights, name))
        log.info("models folder: %s is %s (%s); offered as method %r", path.name,
                 weights.architecture.name, weights.spec.flavour, name)
    return methods


def main(argv=None) -> int:
    """`python -m server.models_folder PATH`: can the server offer PATH?
    Prints what it is as JSON (install.py --add-model asks this in the
    server's own environment before it copies anything)."""
    import argparse
    import json
    import sys
    parser = argparse.ArgumentParser(prog="python -m server.models_folder",
                                     description=main.__doc__.split("\n")[0])
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    try:
        weights = recognise(args.path)
    except NotUsable as error:
        print(error, file=sys.stderr)
        return 1
    print(json.dumps({"architecture": weights.architecture.name,
                      "flavour": weights.spec.flavour,
                      "hyper_parameters": weights.params,
                      "parameters": weights.parameters,
                      "ops": list(IMAGE_TASKS[weights.spec.task])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
