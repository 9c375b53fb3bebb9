"""The operations a job can ask for: their input frames and parameters.

This is the contract of docs/PROTOCOL.md, section "Operations"; the engine
decides how each is computed."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from sharpfu_client.wire import WireError


@dataclass(frozen=True)
class Param:
    kind: type
    default: object = None
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""

    def check(self, op: str, name: str, value, msg_id: str):
        if value is None and self.kind is str:
            return None
        valid = isinstance(value, self.kind) and not (self.kind is not bool and isinstance(value, bool))
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, valid = float(value), True
        if self.kind is float and valid and not math.isfinite(value):
            valid = False
        if not valid:
            raise WireError("bad_params", "Option %r of %s must be %s." % (
                name, op, {int: "an integer", float: "a finite number", str: "a string or null",
                           bool: "true or false"}[self.kind]), msg_id)
        if self.choices and value not in self.choices:
            raise WireError("bad_params", "Option %r of %s must be one of %s, not %r." % (
                name, op, ", ".join(str(c) for c in self.choices), value), msg_id)
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise WireError("bad_params", "Option %r of %s must lie between %s and %s." % (
                name, op, self.minimum, self.maximum), msg_id)
        return value


MAX_KERNEL = 99

COMMON = {
    "method": Param(str, help="name of the model or method to use (see status); null: the best "
                              "installed"),
    "tile": Param(int, 0, minimum=0, maximum=16384,
                  help="tile side in input pixels; 0: picked from free memory"),
}


@dataclass(frozen=True)
class OpSpec:
    name: str
    inputs: tuple[str, ...]
    params: dict = field(default_factory=dict)
    summary: str = ""
    common: tuple[str, ...] = ("method", "tile")   # which COMMON options it takes
    max_frames: int = 0       # > 0: 1 to max_frames frames, all named inputs[0]

    def all_params(self) -> dict:
        return {**{name: COMMON[name] for name in self.common}, **self.params}

    def check_params(self, params, msg_id: str) -> dict:
        if not isinstance(params, dict):
            raise WireError("bad_params", "'params' must be a JSON object.", msg_id)
        known = self.all_params()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise WireError("bad_params", "Unknown option(s) %s for %s; it takes: %s." % (
                ", ".join(map(repr, unknown)), self.name, ", ".join(sorted(known)) or "none"),
                msg_id)
        return {name: spec.check(self.name, name, params.get(name, spec.default), msg_id)
                for name, spec in known.items()}

    def scale(self, params: dict) -> int:
        return params.get("scale") or 1

    def describe(self) -> dict:
        return {"inputs": list(self.inputs), "summary": self.summary,
                "params": {name: {"type": p.kind.__name__, "default": p.default,
                                  **({"choices": list(p.choices)} if p.choices else {}),
                                  **({"min": p.minimum, "max": p.maximum}
                                     if p.minimum is not None else {}),
                                  "help": p.help}
                           for name, p in self.all_params().items()}}


# What deblurring takes, in `deblur` and in `sharpen`'s deblurring stage.
DEBLUR = {
    "strength": Param(float, 1.0, minimum=0.0, maximum=1.0,
                      help="how much of the deblurring to apply: 0 returns the input exactly, 1 "
                           "the full result, in between a mix of the two"),
    "kernel_size": Param(int, 0, minimum=0, maximum=MAX_KERNEL,
                         help="side in pixels of the blur kernel to estimate, odd, 3 to %d; 0: "
                              "automatic (4%% of the shorter side, 15 to 47). Methods that "
                              "estimate no kernel ignore it" % MAX_KERNEL),
    "kernel": Param(bool, False,
                    help="also return the estimated blur kernel as frame 'kernel' (f32, 1 "
                         "channel, its largest value scaled to 1); only methods that estimate "
                         "one"),
}

OPS = {spec.name: spec for spec in (
    OpSpec("upscale", ("image",),
           {"scale": Param(int, 2, choices=(2, 4), help="output size factor")},
           "Enlarge the image 2x or 4x."),
    OpSpec("deblur", ("image",), dict(DEBLUR), "Remove blur at the same size."),
    OpSpec("sharpen", ("image",),
           {"scale": Param(int, 1, choices=(1, 2, 4), help="output size factor"), **DEBLUR},
           "Deblur, then upscale: AI Sharpen."),
    OpSpec("matte", ("image", "mask"),
           {"foreground": Param(bool, False, help="also return the foreground colours "
                                "(frame 'foreground'), free of the old background"),
            "iterations": Param(int, 0, minimum=0, maximum=8,
                                help="refinement passes of a network refiner; 0: its default")},
           "Refine a coarse mask (1 channel, the image's size) into an alpha matte."),
    OpSpec("echo", ("image",),
           {"delay": Param(float, 0.0, minimum=0.0, maximum=60.0,
                           help="seconds to spend, in progress steps (for tests)"),
            "steps": Param(int, 10, minimum=1, maximum=1000, help="progress steps")},
           "Diagnostic: returns its frames unchanged, through the same queue as every job.",
           common=()),
    OpSpec("adapt", ("sample",),
           {"task": Param(str, "upscale", choices=("upscale", "deblur"),
                          help="which network adapts: an upscaler, or a deblurrer"),
            "scale": Param(int, 2, choices=(2, 4),
                           help="the upscaler's scale to adapt (a deblurrer ignores it)"),
            "steps": Param(int, 0, minimum=0, maximum=5000,
                           help="training steps, 10 or more; 0: the network's default (300 for "
                                "an upscaler, 150 for a deblurrer)"),
            "save": Param(bool, False, help="also write the adapted weights to the models "
                                            "folder, to be offered again after a restart"),
            "compressed": Param(bool, True, help="the images were saved as JPEG (or another "
                                                 "lossy format) at some point; false: the "
                                                 "training pairs get no JPEG either"),
            "trainable": Param(str, "all", choices=("all", "low-rank"),
                               help="what trains: all of the network's weights, or low-rank "
                                    "adapters on its convolutions (about 15% as many; "
                                    "docs/MODELS.md)"),
            "transport": Param(float, 0.0, minimum=0.0, maximum=1.0,
                               help="weight of the POUF-style feature alignment (0: off; "
                                    "docs/MODELS.md)")},
           "Adapt an upscaler or a deblurrer to samples of the user's own images (no ground "
           "truth needed); the result names the model to use as the method of later jobs.",
           common=("method",), max_frames=32),
)}
