"""Unsupervised adaptation of a super-resolution network to the user's own
images: what the `adapt` op computes (docs/MODELS.md, "Adaptation to the
user's images", says why each part is there and what each was measured to do).

The loss, on a float32 copy of the network:

* internal pairs (server/internal_pairs.py): the user's images, reduced
  with the training degradations, must come back as they were (L1): the
  only term with a real target, and the one on by default;
* transport, after POUF (Tanwisuth et al., ICML 2023), weight `transport`:
  the distribution of the network's features on the user's images as they
  are (where the result is used, with no target) is aligned by conditional
  transport, both ways, with prototypes: the shipped network's features on
  the same crops ("shipped"), or its own on the pairs' inputs ("pairs");
* consistency, weight `consistency`: the adapted output on the user's
  images, reduced back to their size, stays with the shipped network's;
* L2-SP (Li et al., ICML 2018), weight `l2sp`: a pull towards the
  pretrained weights rather than towards zero.

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

from . import low_rank
from .internal_pairs import Pairs
from .tiling import Cancelled

LUMA = torch.tensor([65.481, 128.553, 24.966]) / 255.0   # BT.601, as scripts/degradations.py
SHAVE = 2


@dataclass(frozen=True)
class Settings:
    steps: int = 300
    learning_rate: float = 2e-3
    batch: int = 8
    patch: int = 32              # input side of a pair (for an upscaler, the target's
                                 # is patch * scale)
    layers: str = "all"          # "all"; "tail": the last block and what follows it;
                                 # "low-rank": adapters of rank `rank` on every convolution
    rank: int = 4
    # The three regularisers below are off by default: on the benchmark's
    # text and screenshots each one cut the gain (docs/MODELS.md has the
    # numbers), and the held-out check already guards against harm.
    l2sp: float = 0.0            # weight of the squared distance to the shipped weights
    transport: float = 0.0       # weight of the POUF-style feature transport
    consistency: float = 0.0     # weight of the low-pass consistency with the shipped output
    temperature: float = 0.1     # of the transport plans' softmax over cosine similarity
    prototypes: str = "shipped"  # transport towards features of: "shipped" (the shipped
                                 # network on the same crops) or "pairs" (the pairs' inputs)
    min_gain: float = 0.05       # dB on the held-out pairs, or the adaptation is rejected
    checks: int = 5              # evaluations on the held-out pairs during the run
    seed: int = 0


# A deblurrer (MIMO-UNet): a lower rate than SPAN's, fewer steps and the
# consistency term on, the only setting measured that did not lose on photos
# like its training ones (docs/MODELS.md, "The deblurrer"); larger pairs, as
# its coarsest scale works at a quarter of the input.
DEBLUR = Settings(steps=150, learning_rate=5e-4, patch=48, consistency=1.0)

# Low-rank adapters start from zero and span little: they take a higher
# rate (for SPAN 5e-3 against 2e-3 measured best; docs/MODELS.md).
LOW_RANK_RATE_FACTOR = 2.5


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


def trainable_names(model: nn.Module, layers: str) -> list[str]:
    """Which parameters adapt. For SPAN, "tail" is the last attention block,
    the convolution after it, the fusion and the upsampler: the part that
    turns features into pixels, about a quarter of the weights."""
    names = [name for name, _ in model.named_parameters()]
    if layers == "all":
        return names
    body = getattr(model, "body", None)
    if body is not None and hasattr(model, "upsample"):
        last = "body.%d." % (len(body) - 1)
        return [n for n in names if n.startswith((last, "tail.", "fuse.", "upsample."))]
    return names[-max(1, len(names) // 4):]


def y_psnr(output: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean Y-PSNR (BT.601, 8-bit scale, SHAVE px shaved) over a batch, as
    the benchmarks measure it; outputs are rounded to 8 bits first."""
    weights = LUMA.to(output).view(1, 3, 1, 1)
    out = (output.clamp(0, 1) * 255).round() / 255
    a = (out * weights).sum(1)[:, SHAVE:-SHAVE, SHAVE:-SHAVE] * 255
    b = (truth * weights).sum(1)[:, SHAVE:-SHAVE, SHAVE:-SHAVE] * 255
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(255.0 ** 2 / mse)).mean())


class FeatureTap:
    """Keeps the output of one layer (SPAN's fusion: the features the
    upsampler turns into pixels) from the last forward pass."""

    def __init__(self, module: nn.Module):
        self.value = None
        self.handle = module.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output):
        self.value = output

    def close(self):
        self.handle.remove()


def _sample_vectors(features: torch.Tensor, count: int, generator: torch.Generator):
    vectors = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    index = torch.randint(0, vectors.shape[0], (count,), generator=generator)
    return F.normalize(vectors[index], dim=1)


def conditional_transport(target: torch.Tensor, prototypes: torch.Tensor,
                          temperature: float) -> torch.Tensor:
    """Conditional transport (Zheng and Zhou, NeurIPS 2021; POUF's alignment)
    between two sets of unit vectors: each target vector is sent to the
    prototypes in proportion to its similarity with them, and each
    prototype to the targets, and both transports pay cosine distance."""
    similarity = target @ prototypes.T
    cost = 1.0 - similarity
    forward = torch.softmax(similarity / temperature, dim=1)
    backward = torch.softmax(similarity / temperature, dim=0)
    return (forward * cost).sum(1).mean() + (backward * cost).sum(0).mean()


@torch.no_grad()
def evaluate(model: nn.Module, pairs: tuple[torch.Tensor, torch.Tensor]) -> float:
    low, high = pairs
    return y_psnr(model(low), high)


def adapt(model: nn.Module, images: list[np.ndarray], degradation,
          settings: Settings = Settings(),
          progress: Callable[[float, str], None] | None = None,
          cancelled: Callable[[], bool] | None = None) -> Outcome:
    """Adapt a copy of `model` (left untouched) to `images` (uint8 RGB
    arrays), with pairs made by `degradation` (server/internal_pairs.py:
    Downscale for an upscaler, Reblur for a deblurrer). Raises
    server.tiling.Cancelled when `cancelled()` turns true."""
    start = time.monotonic()
    report = progress or (lambda fraction, stage: None)
    stop = cancelled or (lambda: False)
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    scale = degradation.scale
    pairs = Pairs(images, degradation, settings.patch, settings.seed)
    device = next(model.parameters()).device
    check = tuple(t.to(device) for t in pairs.check)

    # Float32 copies: the served network may be in half precision, which
    # neither trains nor measures small gains reliably.
    shipped = _copy(model).eval()
    adapted = _copy(model).train()
    if settings.layers == "low-rank":
        params = low_rank.attach(adapted, settings.rank)
        snapshot = low_rank.merged_state
    else:
        names = set(trainable_names(adapted, settings.layers))
        params = []
        for name, param in adapted.named_parameters():
            param.requires_grad_(name in names)
            if name in names:
                params.append(param)
        snapshot = _state
    anchors = [param.detach().clone() for param in params]
    optimiser = torch.optim.Adam(params, lr=settings.learning_rate)
    tap = FeatureTap(adapted.fuse) if hasattr(adapted, "fuse") and settings.transport else None
    shipped_tap = FeatureTap(shipped.fuse) if tap is not None else None

    report(0.0, "checking the shipped network on held-out pairs")
    before = evaluate(shipped, check)
    best, best_step, best_state = before, 0, None
    curve = [(0, round(before, 3))]
    check_every = max(1, settings.steps // max(1, settings.checks))
    target_side = settings.patch * 3 // 2
    try:
        for step in range(1, settings.steps + 1):
            if stop():
                raise Cancelled()
            # A short warm-up, then a cosine: the last steps only polish.
            t = step / settings.steps
            lr = settings.learning_rate * min(1.0, step / 10) * 0.5 * (1 + math.cos(math.pi * t))
            for group in optimiser.param_groups:
                group["lr"] = max(lr, settings.learning_rate * 0.02)

            low, high = (t.to(device) for t in pairs.batch(settings.batch))
            loss = F.l1_loss(adapted(low), high)
            prototypes = tap.value.detach() if tap is not None else None
            if settings.transport or settings.consistency:
                target = pairs.targets(max(2, settings.batch // 2), target_side).to(device)
                if tap is not None and settings.prototypes == "shipped":
                    with torch.no_grad():
                        reference = shipped(target)
                    prototypes = shipped_tap.value
                output = adapted(target)
                if settings.consistency:
                    if not (tap is not None and settings.prototypes == "shipped"):
                        with torch.no_grad():
                            reference = shipped(target)
                    loss = loss + settings.consistency * F.l1_loss(
                        F.avg_pool2d(output, scale), F.avg_pool2d(reference, scale))
                if tap is not None:
                    loss = loss + settings.transport * conditional_transport(
                        _sample_vectors(tap.value, 256, generator),
                        _sample_vectors(prototypes, 256, generator), settings.temperature)
            if settings.l2sp:
                drift = sum(((p - a) ** 2).sum() for p, a in zip(params, anchors))
                loss = loss + settings.l2sp * drift / len(params)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

            if step % check_every == 0 or step == settings.steps:
                adapted.eval()
                score = evaluate(adapted, check)
                adapted.train()
                curve.append((step, round(score, 3)))
                if score > best:
                    best, best_step = score, step
                    best_state = snapshot(adapted)
            report(step / settings.steps, "adapting: step %d of %d (held-out pairs %.2f dB, "
                   "shipped %.2f dB)" % (step, settings.steps, curve[-1][1], before))
    finally:
        if tap is not None:
            tap.close()
            shipped_tap.close()

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
    return clone
