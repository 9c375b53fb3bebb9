"""Trained image-to-image networks as catalog methods: one class runs any
architecture the registry knows (models/registry.py: SharpFu's own and
spandrel's), for SharpFu's shipped weights, the models installed in the
models folder (models/store.py: pulled from the catalogue, added by the
user, copied in by hand) and adapted networks (server/adaptation/).

A method serves one flavour of a network with a set of weights per scale:
`span` upscales 2x with span-x2 and 4x with span-x4. A flavour whose 4x
weights have no 2x sibling serves 2x too, its 4x output reduced with an
antialiased bicubic filter (as Real-ESRGAN's users do). Weights are read
lazily, on the first job that needs them, through models/loading.py
(safetensors or weights-only checkpoints, nothing looser); what the tiler
needs (the context each output pixel depends on, the input-size multiple,
the tile alignment, the working memory per pixel) comes from the
architecture's descriptor, without loading anything.
"""
from __future__ import annotations

import json
import logging
import math

import torch
import torch.nn.functional as F

from models import registry
from models.architectures import mimo_unet
from training.degradations import DEBLUR_BENCHMARK_CASES

from . import ImageMethod

log = logging.getLogger("sharpfu.methods")

IMAGE_TASKS = {"upscale": ("upscale", "sharpen"), "deblur": ("deblur", "sharpen")}


class NetworkMethod(ImageMethod):
    kind = "network"
    rgb_only = True

    def __init__(self, name: str, weights: list[registry.Weights], *, title: str,
                 description: str, source: str, preference: float | None = None):
        super().__init__()
        specs = [w.spec for w in weights]
        if not weights or len({s.task for s in specs}) != 1 or specs[0].task not in IMAGE_TASKS:
            raise ValueError("one image task's weights, at least one, are needed")
        self.weights = {s.scale: w for s, w in zip(specs, weights)}
        if len(self.weights) != len(weights):
            raise ValueError("two weights files for one scale of %s" % name)
        self.name, self.title, self.description, self.source = name, title, description, source
        self.task = specs[0].task
        self.ops = IMAGE_TASKS[self.task]
        # served scale -> the weights' scale that makes it
        self.sources = {scale: scale for scale in self.weights}
        if 4 in self.weights and 2 not in self.weights:
            self.sources[2] = 4
        self.scales = tuple(sorted(self.sources))
        self.margin = max(s.receptive_radius for s in specs)
        self.alignment = math.lcm(*(s.alignment for s in specs))
        # The engine multiplies this by the scale served, squared; the
        # largest of the flavour's figures covers every scale it serves (a
        # 4x network serving 2x works at 4x).
        self.bytes_per_pixel = max(self.weights[source].spec.bytes_per_pixel
                                   * (source / served) ** 2
                                   for served, source in self.sources.items())
        self.preference = preference
        self.models: dict[int, torch.nn.Module] = {}
        self.dtype, self.device = torch.float32, torch.device("cpu")

    def info(self) -> dict:
        info = super().info()
        info["weights"] = {str(scale): _describe(w) for scale, w in sorted(self.weights.items())}
        return info

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        models = {}
        for scale, weights in self.weights.items():
            # networks that do not run in half precision stay in float32
            model = weights.load().to(device=device, dtype=dtype if weights.spec.half_precision
                                      else torch.float32)
            if device.type == "cuda":
                # cuDNN's fastest half-precision convolutions want NHWC.
                model = model.to(memory_format=torch.channels_last)
            models[scale] = model
        self.models, self.device, self.dtype = models, device, dtype
        self.loaded = True
        log.info("loaded %s (%s) on %s in %s", self.name,
                 ", ".join(w.name for w in self.weights.values()), device,
                 str(dtype).replace("torch.", ""))

    def unload(self) -> None:
        self.models, self.loaded = {}, False

    def networks(self, scale: int) -> list[torch.nn.Module]:
        return [self.models[scale]] if scale in self.models else []

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        source = self.sources[scale]
        model = self.models[source]
        multiple = self.weights[source].spec.multiple
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = x.to(next(model.parameters()).dtype)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)[..., :height * source, :width * source].float()
        if source != scale:
            out = F.interpolate(out, size=(height * scale, width * scale), mode="bicubic",
                                antialias=True, align_corners=False)
        # A network's additive output can overshoot a little at hard edges;
        # pixel values outside [0, 1] mean nothing here.
        return out.clamp_(0.0, 1.0)


def _describe(weights: registry.Weights) -> dict:
    found = {"name": weights.name, "architecture": weights.architecture.name,
             "flavour": weights.spec.flavour, "parameters": weights.parameters,
             "exact_tiles": weights.spec.exact_tiles}
    if weights.path is not None and weights.record is None:
        found["file"] = weights.path.name
    if weights.record and weights.record.get("licence"):
        found["licence"] = weights.record["licence"]
    headline = validation_headline(weights.record)
    if headline:
        found["validation"] = headline
    return found


def validation_cases(record: dict | None) -> dict[str, dict[str, float]]:
    """The mean numbers of each validation case of a weights record: the
    network's (as "network"; SR records call it "ours") beside its
    baselines' (the blurry input and the unsharp mask for a deblurrer,
    bicubic for an upscaler)."""
    cases = {}
    for case, values in ((record or {}).get("validation") or {}).items():
        if not isinstance(values, dict):
            continue
        numbers = {("network" if key == "ours" else key): float(value)
                   for key, value in values.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
        if "network" in numbers:
            cases[case] = numbers
    return cases


def validation_headline(record: dict | None) -> dict | None:
    return {case: {key: round(value, 2) for key, value in numbers.items()}
            for case, numbers in validation_cases(record).items()} or None


def installed(weights: registry.Weights) -> bool:
    """Weights from the models folder (a store record, or none at all: a
    file copied in by hand), not shipped with SharpFu."""
    return weights.record is None or "store" in weights.record


# What the deblurring benchmark (bench/deblur_quality.py --record) measured
# for a deblurrer: in the record of SharpFu's own weights ("benchmark"), in
# NAME.benchmark.json beside a checkpoint a user brought.
BENCHMARK_SUFFIX = ".benchmark.json"


def benchmark_path(weights: registry.Weights):
    return None if weights.path is None else weights.path.with_name(
        weights.path.name + BENCHMARK_SUFFIX)


def benchmark_cases(weights: registry.Weights) -> dict[str, dict[str, float]]:
    """case -> {"network": mean PSNR, "blurry_input": ..., "unsharp": ...,
    ...} as the deblurring benchmark measured these weights; {} if it never
    ran on them."""
    found = (weights.record or {}).get("benchmark")
    path = benchmark_path(weights)
    if found is None and path is not None and path.is_file():
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            log.warning("ignoring %s: %s", path, error)
    cases = (found or {}).get("cases") if isinstance(found, dict) else None
    return validation_cases({"validation": cases}) if isinstance(cases, dict) else {}


def _ahead(cases) -> bool:
    """On every case, the network above each of its baselines (a case
    without baselines, as a denoiser's validation, shows nothing)."""
    cases = list(cases)
    return bool(cases) and all(
        len(numbers) > 1 and numbers["network"] > max(v for k, v in numbers.items()
                                                      if k != "network")
        for numbers in cases)


def preference(weights: registry.Weights) -> float:
    """Where the catalog ranks a network when none is named (the highest
    first; classical methods stand at 0). The one place of these rules:

    * A deblurrer the deblurring benchmark measured on all its cases ranks
      by that: ahead of everything else, by its mean PSNR over the cases,
      if it beat the blurry input and the unsharp mask on every one; below
      the classical unsharp mask otherwise. The benchmark runs every
      deblurrer on the same held-out photos and blurs, so its numbers
      compare (a published number, on other photos and blur, would not).
    * Models from the models folder are offered by name (and in the GIMP
      dialogs' lists) below SharpFu's validated networks and above the
      classical methods, the bigger first: SharpFu knows nothing of how
      they do on its benchmarks, and community upscalers are mostly trained
      for another look (GAN-sharpened). The exception is the authors'
      MIMO-UNet checkpoints, which SharpFu recognises as its own
      architecture and knows to be far better trained than its own small
      deblurrer (docs/models/mimo-unet.md), and which a user adds for the
      job: unmeasured, they rank first, MIMO-UNet+ before MIMO-UNet; once
      the benchmark measured one (`--models-dir`), its numbers place it.
      Blind deconvolution is the exception for now: it stays below the
      unsharp mask whatever its numbers (server/methods/blind_deconvolution.py
      says why).
    * SharpFu's own weights rank above the classical method only if their
      record shows them ahead of every baseline on every validation case;
      otherwise they stay available by name, below it."""
    deblurrer = weights.spec.task == "deblur" or "deblur" in (weights.record or {}).get("ops", ())
    if deblurrer:
        measured = benchmark_cases(weights)
        if all(case in measured for case in DEBLUR_BENCHMARK_CASES):
            if not _ahead(measured[case] for case in DEBLUR_BENCHMARK_CASES):
                return -1.0
            mean = sum(measured[case]["network"] for case in DEBLUR_BENCHMARK_CASES) / len(
                DEBLUR_BENCHMARK_CASES)
            return 3.0 + mean / 100.0
    if installed(weights):
        if weights.architecture.name == mimo_unet.NAME:
            return 4.0 + weights.parameters / 1e9
        return 0.5 + weights.parameters / 1e9
    return 1.0 + weights.parameters / 1e9 if _ahead(
        validation_cases(weights.record).values()) else -1.0


def shipped_methods(directory=None) -> list[NetworkMethod]:
    """One method per flavour among the shipped image-to-image weights (in
    models/weights/ unless `directory` says otherwise), named by their
    records' `method`. A broken record is skipped with a log line: the
    server must start regardless."""
    by_method: dict[str, list[registry.Weights]] = {}
    for weights in registry.shipped(directory):
        record = weights.record
        if weights.spec.task in IMAGE_TASKS and "method" in record:
            by_method.setdefault(record["method"], []).append(weights)
    methods = []
    for name, group in sorted(by_method.items()):
        first = group[0].record
        try:
            methods.append(NetworkMethod(
                name, group, title=first["title"], description=first["description"],
                source=first["source"], preference=min(preference(w) for w in group)))
        except (ValueError, KeyError, TypeError) as error:
            log.warning("not offering network %s: %s", name, error)
    return methods


def installed_method(name: str, weights: registry.Weights) -> NetworkMethod:
    """The method that serves one model from the models folder."""
    spec, record = weights.spec, weights.record or {}
    what = "%dx upscaling" % spec.scale if spec.task == "upscale" else "deblurring"
    if weights.record is None:
        title = "%s %s, from %s" % (spec.flavour, what, weights.path.name)
        source = "user checkpoint %s" % weights.path.name
    else:
        title = record.get("title") if record.get("title") not in (None, name) else \
            "%s %s (%s)" % (spec.flavour, what, name)
        source = record.get("source") or "models folder"
    description = record.get("description") or "%s: %s (%s), %s parameters; licence %s." % (
        "Your checkpoint %s" % weights.path if weights.record is None else "Installed model "
        + name, weights.architecture.title, spec.flavour, format(weights.parameters, ","),
        record.get("licence") or "unknown")
    return NetworkMethod(name, [weights], title=title, description=description, source=source,
                         preference=preference(weights))


def offered_name(model, names: set[str]) -> str | None:
    """The method name a models-folder entry is offered under: its own, or
    its file's where a method has that name already; None (said in the
    log) where both are taken."""
    name = next((n for n in (model.name, model.path.name) if n not in names), None)
    if name is None:
        log.warning("models folder: %s is not offered: a method named %r exists already",
                    model.path.name, model.name)
    return name


def installed_methods(models, taken: set[str] = frozenset()) -> list[NetworkMethod]:
    """A method for each usable image-to-image model of the models folder
    (models/store.py's entries), named after it, or after its file where a
    built-in method has that name already."""
    methods, names = [], set(taken)
    for model in models:
        if model.weights is None or model.weights.spec.task not in IMAGE_TASKS:
            continue
        name = offered_name(model, names)
        if name is None:
            continue
        try:
            methods.append(installed_method(name, model.weights))
            names.add(name)
        except (ValueError, KeyError, TypeError, OSError) as error:
            log.warning("models folder: not offering %s: %s", model.name, error)
    return methods
