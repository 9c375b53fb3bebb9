"""The `adapt` op and the networks it makes (docs/PROTOCOL.md, "Adaptation"):
an upscaler adapted for one scale, or a deblurrer.

An adapted network is a catalog method of its own, named after the shipped
method and a hash of everything that made it (the shipped weights, the
scale, the settings, the sample pixels): the same request gives the same
name on any server, so a batch spread over several servers can name one
model, and asking again is answered from the cache at once. The shipped
weights are never touched. Adapted networks stay warm in memory (the
latest MAX_WARM of them); with `save` they are also written, safetensors
plus a JSON record, to the `adapted/` folder inside the models folder, and
offered again after a restart.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from models import registry
from training.degradations import BlurRecipe, ThumbnailRecipe

from ..jobs import Job, JobError
from ..methods.network import NetworkMethod
from . import fit, pairs

log = logging.getLogger("sharpfu.adapt")

MAX_WARM = 16              # adapted networks kept in memory (each under 1 MB)
MAX_SAMPLE_PIXELS = 16_000_000
FOLDER = "adapted"



# The shipped networks adaptation's settings were measured on
# (docs/models/adaptation.md). An adapt job that names no method starts from
# one of these rather than from the op's default: the default upscaler is
# now a fine-tune of the authors' SPAN, on which these settings found no
# gain (+0.00 dB on the test's pictures), and a deblurrer's default may be
# classical.
MEASURED_BASES = {"upscale": "span", "deblur": "mimo-unet-small"}

class AdaptedMethod(NetworkMethod):
    """A shipped network's weights (an upscaler's for one scale, or a
    deblurrer's), adapted to someone's images: the same network, other
    weights, held in memory or saved in the models folder."""

    def __init__(self, name: str, base: NetworkMethod, scale: int, record: dict,
                 state: dict | None = None, path: Path | None = None):
        shipped = base.weights[scale]
        weights = registry.Weights(shipped.architecture, shipped.params, path=path, state=state)
        outcome = record["adaptation"]
        super().__init__(
            name, [weights],
            title="%s, adapted to %d sample(s) (%+.2f dB on held-out pairs)" % (
                base.title, record["samples"], outcome["gain"]),
            description="%s Adapted by the adapt op: %s." % (base.description,
                                                             outcome["reason"]),
            source="adapted from %s" % base.name)
        self.base, self.record = base, record

    @property
    def path(self) -> Path | None:
        return self.weights[self.scales[0]].path

    @path.setter
    def path(self, path: Path) -> None:
        self.weights[self.scales[0]].path = path

    def rank(self) -> float:
        # Below its shipped network, and so below whatever would be the
        # default without it (a shipped deblurrer that did not validate
        # ranks under the unsharp mask): used when named, never by default.
        return self.base.rank() - 0.5

    def info(self) -> dict:
        info = super().info()
        info["adaptation"] = dict(self.record["adaptation"], base=self.base.name,
                                  samples=self.record["samples"])
        return info

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        super().load(device, dtype)
        weights = self.weights[self.scales[0]]
        if weights.path is not None:
            weights.state = None    # the network holds the weights now


class Adapter:
    """Runs adapt jobs for an engine and keeps what they made."""

    def __init__(self, catalog, device: torch.device, models_dir: str | None):
        self.catalog, self.device = catalog, device
        self.folder = Path(models_dir).expanduser() / FOLDER if models_dir else None
        self.outcomes: dict[str, dict] = {}          # id -> the result's report
        self.warm: OrderedDict[str, None] = OrderedDict()
        self._load_saved()

    # -- checks before queueing -----------------------------------------------

    def base_method(self, job: Job) -> NetworkMethod:
        task = _task(job)
        name = job.params["method"]
        if name is None and MEASURED_BASES[task] in self.catalog.methods:
            name = MEASURED_BASES[task]
        if task == "deblur":
            method = self.catalog.pick("deblur", name)
            if name is None and not isinstance(method, NetworkMethod):
                # The default deblurrer may be one no training adapts (blind
                # deconvolution): adapting means the best deblurring network.
                method = next((m for m in self.catalog.candidates("deblur")
                               if isinstance(m, NetworkMethod)), method)
        else:
            method = self.catalog.pick("upscale", name, job.params["scale"])
            if getattr(method, "name", "") == "auto":
                # adaptation learns the user's own images: start from the
                # network trained for degraded inputs, the one it can adapt
                method = method.thumbnail[job.params["scale"]]
        if isinstance(method, AdaptedMethod):
            raise JobError("bad_params", "%r is already an adapted network; adapt the shipped "
                           "one (%s) instead." % (method.name, method.base.name))
        if not isinstance(method, NetworkMethod) or task not in method.ops:
            raise JobError("bad_params", "%s cannot adapt: only an image-to-image network "
                           "trained end to end can (%s)." % (
                               method.title, "it is a classical method" if method.kind ==
                               "classical" else "its network is only a part of it"))
        if task != "deblur" and job.params["scale"] not in method.weights:
            raise JobError("bad_params", "%s makes %dx from its %dx weights, which cannot be "
                           "adapted for %dx; adapt it at %dx." % (
                               method.name, job.params["scale"],
                               method.sources[job.params["scale"]], job.params["scale"],
                               method.sources[job.params["scale"]]))
        external = {w.architecture.title for w in method.weights.values()
                    if w.architecture.external}
        if external:
            # Adaptation fits the network to pairs made from the user's images
            # with SharpFu's own degradation recipe and an L1 loss: it would
            # pull a community model, trained for its own look (most of them
            # GAN-sharpened) on data SharpFu knows nothing of, toward SharpFu's.
            raise JobError("bad_params", "%s cannot be adapted: it is a community model (%s), "
                           "and adaptation fine-tunes SharpFu's own networks, whose training "
                           "it knows; adapt one of them instead (%s)." % (
                               method.name, ", ".join(sorted(external)), ", ".join(
                                   m.name for m in self.catalog.candidates(
                                       "deblur" if task == "deblur" else "upscale",
                                       1 if task == "deblur" else job.params["scale"])
                                   if isinstance(m, NetworkMethod)
                                   and not isinstance(m, AdaptedMethod)
                                   and not any(w.architecture.external
                                               for w in m.weights.values()))))
        return method

    def check(self, job: Job) -> None:
        self.base_method(job)
        if 0 < job.params["steps"] < 10:
            raise JobError("bad_params", "Option 'steps' of adapt must be 0 (the network's "
                           "default) or at least 10, not %d." % job.params["steps"])
        if job.params["save"] and self.folder is None:
            raise JobError("bad_params", "save needs a models folder; this server has none "
                           "(set models_dir).")

    # -- the op -----------------------------------------------------------------

    def run(self, job: Job, report) -> dict:
        """Adapt, or answer from the cache; returns the result's `adaptation`."""
        base = self.base_method(job)
        task = _task(job)
        samples = [_rgb8(array, desc["format"]) for desc, array in job.inputs.values()]
        scale = 1 if task == "deblur" else job.params["scale"]
        weights = base.weights[scale]
        if task == "deblur":
            recipe, settings = BlurRecipe.of(weights.record), fit.DEBLUR
        else:
            recipe, settings = ThumbnailRecipe.of(weights.record), fit.Settings()
        settings = dataclasses.replace(settings, steps=job.params["steps"] or settings.steps)
        if job.params["trainable"] == "low-rank":
            settings = dataclasses.replace(
                settings, trainable="low-rank",
                learning_rate=settings.learning_rate * fit.LOW_RANK_RATE_FACTOR)
        if not job.params["compressed"]:
            # Pairs that teach removing JPEG the images never had make the
            # network remove real faint detail instead (docs/models/adaptation.md).
            recipe = dataclasses.replace(recipe, jpeg=0.0)
        name = "%s-adapted-%s" % (base.name, _content_hash(weights.path, scale, settings,
                                                           recipe, samples))
        known = self.outcomes.get(name)
        if known is not None and (not known["accepted"] or name in self.catalog.methods):
            report(1.0, "adapted before (cached)")
            return dict(known, cached=True)

        self.catalog.ensure_loaded(base, self.device)
        degradation = pairs.Reblur(recipe) if task == "deblur" else pairs.Downscale(scale, recipe)
        try:
            outcome = fit.adapt(base.models[scale], samples, degradation, settings,
                                progress=lambda f, s: report(0.98 * f, s),
                                cancelled=job.cancel.is_set)
        except ValueError as error:   # no sample large enough
            raise JobError("bad_frame", "Cannot adapt: %s." % error)
        result = outcome.report()
        result.update(model=name if outcome.accepted else base.name, base=base.name,
                      task=task, scale=scale, samples=len(samples),
                      compressed=job.params["compressed"], cached=False, saved=None)
        if outcome.accepted:
            record = {"name": name, "base": base.name, "base_weights": weights.name,
                      "task": task, "scale": scale, "samples": len(samples),
                      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "settings": dataclasses.asdict(settings),
                      "recipe": dataclasses.asdict(recipe), "adaptation": result}
            method = AdaptedMethod(name, base, scale, record, state=outcome.state)
            self._offer(method)
            if job.params["save"]:
                result["saved"] = str(self._save(name, outcome.state, record))
        self.outcomes[name] = result
        log.info("adapt: %s %s (%.2f -> %.2f dB on held-out pairs, %.1f s)", name,
                 "accepted" if outcome.accepted else "rejected", outcome.before, outcome.after,
                 outcome.seconds)
        return result

    # -- keeping adapted networks ------------------------------------------------

    def _offer(self, method: AdaptedMethod) -> None:
        self.catalog.add(method)
        self.warm[method.name] = None
        self.warm.move_to_end(method.name)
        while len(self.warm) > MAX_WARM:
            old, _ = self.warm.popitem(last=False)
            stale = self.catalog.methods.get(old)
            if isinstance(stale, AdaptedMethod):
                if stale.path is not None:
                    stale.unload()          # on disk: loads again when named
                else:
                    self.catalog.remove(old)
                    self.outcomes.pop(old, None)

    def _save(self, name: str, state: dict, record: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / (name + ".safetensors")
        tensors = {k: v.detach().float().contiguous().cpu() for k, v in state.items()}
        # Written under temporary names and renamed: a crash leaves no half file.
        partial = path.with_suffix(".partial")
        save_file(tensors, str(partial))
        partial.replace(path)
        path.with_suffix(".json").write_text(json.dumps(record, indent=1))
        method = self.catalog.methods.get(name)
        if isinstance(method, AdaptedMethod):
            method.path = path
        return path

    def _load_saved(self) -> None:
        if self.folder is None or not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.safetensors")):
            try:
                record = json.loads(path.with_suffix(".json").read_text())
                base = self.catalog.methods.get(record["base"])
                if not isinstance(base, NetworkMethod) or isinstance(base, AdaptedMethod) \
                        or record["scale"] not in base.weights:
                    raise ValueError("its shipped network %r (%sx) is not installed"
                                     % (record.get("base"), record.get("scale")))
                method = AdaptedMethod(record["name"], base, record["scale"], record, path=path)
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("adapted models: skipping %s: %s", path.name, error)
                continue
            self.catalog.add(method)
            self.outcomes[method.name] = dict(record["adaptation"], saved=str(path))


def _task(job: Job) -> str:
    return job.params.get("task") or "upscale"


def _rgb8(array: np.ndarray, fmt: str) -> np.ndarray:
    """Any frame as 8-bit RGB: what the pairs are cut from. Alpha is dropped
    (a sample's transparent pixels are still pixels of the picture)."""
    channels = array.shape[2]
    colour = array[..., :3] if channels >= 3 else array[..., :1]
    if fmt == "u8":
        values = np.asarray(colour)
    else:
        full = 1.0 if fmt == "f32" else 65535.0
        values = np.clip(np.asarray(colour, np.float32) / full * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return np.ascontiguousarray(values)


def _content_hash(weights_path: Path, scale: int, settings, recipe, samples) -> str:
    digest = hashlib.sha256()
    digest.update(Path(weights_path).read_bytes())
    digest.update(json.dumps([scale, dataclasses.asdict(settings), dataclasses.asdict(recipe)],
                             sort_keys=True).encode())
    for sample in samples:
        digest.update(np.asarray(sample.shape, np.int64).tobytes())
        digest.update(sample.tobytes())
    return digest.hexdigest()[:12]

