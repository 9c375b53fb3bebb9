"""Fitting a shipped network to the user's own images, with no ground
truth: what the `adapt` op computes (docs/models/adaptation.md says why each
part is there and what it was measured to do).

A float32 copy of the network is trained (all of its weights, or low-rank
adapters on its convolutions, server/adaptation/low_rank.py) with the one
training loop's steps (training/loop.py) on:

* internal pairs (server/adaptation/pairs.py): the user's images, degraded
  the way the network's training photos were, must come back as they were
  (L1);
* for a deblurrer, consistency: its output on the user's images, reduced,
  stays with the shipped network's (weight `consistency`), the only setting
  measured that did not lose on photos like its training ones.

Safeguards: few steps; the best of a few checkpoints on held-out internal
pairs; and a verdict: the adapted weights are kept only if they beat the
shipped ones there by `min_gain` dB, otherwise the shipped network goes on
serving. The shipped weights are never modified.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.loop import Loop
from training.metrics import batch_y_psnr

from ..tiling import Cancelled
from . import low_rank
from .pairs import Pairs


@dataclass(frozen=True)
class Settings:
    steps: int = 300
    learning_rate: float = 2e-3
    batch: int = 8
    patch: int = 32              # input side of a pair (for an upscaler, the target's
                                 # is patch * scale)
    trainable: str = "all"       # "all" the weights, or "low-rank" adapters of rank `rank`
    rank: int = 4
    consistency: float = 0.0     # weight of the low-pass consistency with the shipped output
    min_gain: float = 0.05       # dB on the held-out pairs, or the adaptation is rejected
    checks: int = 5              # evaluations on the held-out pairs during the run
    seed: int = 0


# A deblurrer (MIMO-UNet): a lower rate than SPAN's, fewer steps and the
# consistency term on; larger pairs, as its coarsest scale works at a
# quarter of the input.
DEBLUR = Settings(steps=150, learning_rate=5e-4, patch=48, consistency=1.0)

# Low-rank adapters start from zero and span little: they take a higher
# rate (for SPAN 5e-3 against 2e-3 measured best).
LOW_RANK_RATE_FACTOR = 2.5

WARMUP_STEPS = 10


def schedule(steps: int):
    """The learning rate over a short run: a cosine over the whole run,
    damped by a ramp over its first ten steps, never under 2% of the rate."""
    def rate(base: float, progress: float) -> float:
        step = progress * steps
        return base * max(min(1.0, step / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * progress)),
                          0.02)
    return rate


@dataclass
class Outcome:
    accepted: bool
    before: float                # held-out internal-pair Y-PSNR of the shipped network, dB
    after: float                 # and of the adapted one (the best checkpoint)
    steps: int                   # steps run; the kept weights are from `best_step`
    best_step: int
    seconds: float
    held_out: bool               # the check used pixels never trained on
    reason: str
    curve: list = field(default_factory=list)     # (step, dB) at each check
    state: dict | None = None    # the adapted weights, when accepted

    def report(self) -> dict:
        """What the adapt op's result says (JSON-safe)."""
        data = asdict(self)
        data.pop("state")
        data["gain"] = round(self.after - self.before, 3)
        data["before"], data["after"] = round(self.before, 3), round(self.after, 3)
        data["seconds"] = round(self.seconds, 2)
        return data


@torch.no_grad()
def evaluate(model: nn.Module, pairs: tuple[torch.Tensor, torch.Tensor]) -> float:
    low, high = pairs
    return batch_y_psnr(model(low), high)


def adapt(model: nn.Module, images: list[np.ndarray], degradation,
          settings: Settings = Settings(),
          progress: Callable[[float, str], None] | None = None,
          cancelled: Callable[[], bool] | None = None) -> Outcome:
    """Adapt a copy of `model` (left untouched) to `images` (uint8 RGB
    arrays), with pairs made by `degradation` (pairs.Downscale for an
    upscaler, pairs.Reblur for a deblurrer). Raises server.tiling.Cancelled
    when `cancelled()` turns true."""
    start = time.monotonic()
    report = progress or (lambda fraction, stage: None)
    stop = cancelled or (lambda: False)
    torch.manual_seed(settings.seed)
    scale = degradation.scale
    pairs = Pairs(images, degradation, settings.patch, settings.seed)
    device = next(model.parameters()).device
    check = tuple(t.to(device) for t in pairs.check)

    # Float32 copies: the served network may be in half precision, which
    # neither trains nor measures small gains reliably.
    shipped = _copy(model).eval()
    adapted = _copy(model)
    if settings.trainable == "low-rank":
        parameters = low_rank.attach(adapted, settings.rank)
        snapshot = low_rank.merged_state
    else:
        parameters = list(adapted.parameters())
        snapshot = _state
    target_side = settings.patch * 3 // 2

    def forward(networks, batch):
        net = networks["adapted"]
        low, high = batch
        outputs = {"pairs": net(low)}
        if settings.consistency:
            target = pairs.targets(max(2, settings.batch // 2), target_side).to(device)
            with torch.no_grad():
                outputs["reference"] = shipped(target)
            outputs["consistency"] = net(target)
        return outputs

    def loss(outputs, batch):
        total = F.l1_loss(outputs["pairs"], batch[1])
        if settings.consistency:
            total = total + settings.consistency * F.l1_loss(
                F.avg_pool2d(outputs["consistency"], scale),
                F.avg_pool2d(outputs["reference"], scale))
        return total, {}

    loop = Loop({"adapted": adapted}, forward, loss, lr=settings.learning_rate,
                schedule=schedule(settings.steps), parameters=parameters)

    report(0.0, "checking the shipped network on held-out pairs")
    before = evaluate(shipped, check)
    best, best_step, best_state = before, 0, None
    curve = [(0, round(before, 3))]
    check_every = max(1, settings.steps // max(1, settings.checks))
    for step in range(1, settings.steps + 1):
        if stop():
            raise Cancelled()
        batch = tuple(t.to(device) for t in pairs.batch(settings.batch))
        loop.step(batch, step / settings.steps, step)
        if step % check_every == 0 or step == settings.steps:
            adapted.eval()
            score = evaluate(adapted, check)
            curve.append((step, round(score, 3)))
            if score > best:
                best, best_step = score, step
                best_state = snapshot(adapted)
        report(step / settings.steps, "adapting: step %d of %d (held-out pairs %.2f dB, "
               "shipped %.2f dB)" % (step, settings.steps, curve[-1][1], before))

    gain = best - before
    accepted = best_state is not None and gain >= settings.min_gain
    if accepted:
        reason = "the adapted network restores the held-out pairs %.2f dB better" % gain
    else:
        reason = ("the adapted network was no better on the held-out pairs (%+.2f dB, at least "
                  "%+.2f dB needed); the shipped network is kept" % (gain, settings.min_gain))
    return Outcome(accepted=accepted, before=before, after=best if accepted else before,
                   steps=settings.steps, best_step=best_step if accepted else 0,
                   seconds=time.monotonic() - start, held_out=pairs.held_out, reason=reason,
                   curve=curve, state=best_state if accepted else None)


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _copy(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    clone.float()
    for param in clone.parameters():
        param.requires_grad_(True)
    return clone
