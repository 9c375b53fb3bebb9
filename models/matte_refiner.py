"""Mask-guided iterative matte refiner, after Mask2Alpha (Liu, "Enhancing
Image Matting in Real-World Scenes with Mask-Guided Iterative Refinement",
arXiv 2502.17093), scaled down to a few hundred thousand parameters for a CPU.

Input: an image and a coarse mask of its subject (binary or soft, possibly a
dozen pixels off, with holes and stray blobs). Output: an alpha matte at the
same size. Three ideas are taken from the paper:

* A classical prior. Beside the image and the mask the network is given
  a local colour-line estimate made from them (`colour_prior`: within 8 px
  of the mask's edge, where each pixel's colour falls between the mean
  foreground and background colours nearby), and its first alpha is a
  correction of that estimate's logit. The classical estimate already
  snaps a mask that is a few pixels off onto colour edges; the network
  learns what it gets wrong (texture, hair, holes, blobs), which a network
  this small, trained this briefly on a CPU, learns much faster than the
  whole mapping.
* Mask-guided features. The mask enters the encoder with the image, and at
  1/8 scale a feature-selection step compares each pixel's features with the
  foreground and the background nearby, as the mask describes them (masked
  means over a 200 px window at 1/1), so features of "like the subject" and
  "like its surroundings" are told apart where colour alone is ambiguous.
  The paper does this with attention over self-supervised ViT features;
  local masked means keep the cost linear and the result independent of
  anything far away.
* Iterative refinement with a one-way state. A first alpha comes from the
  decoder; then `iterations` passes of one shared refinement step each
  predict a correction and a confidence per pixel. A pixel whose confidence
  passes `settle` (0.9, stored with the weights) is settled and never
  changes again (the paper's
  unidirectional state transition), so each pass works only on the
  uncertain band: hair, fur, blurred edges, glass, holes.
* Sparse work. At inference the passes run only on the 32 px blocks that
  still hold an unsettled pixel (with their context), the paper's sparse
  refinement; the result equals the dense computation (tested), and the
  cost of later passes falls with the band.

The number of iterations is an argument of forward(); the network is
trained with a loss on every pass, so each one is a usable result.

Deviations: no ViT (none can be trained or shipped here), a small U-Net
encoder-decoder instead; the paper's high-resolution detail stage is
models/guided_upsampler.py.

Input sides must be multiples of 8 (three stride-2 stages); the server pads.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

MULTIPLE = 8
# About how far (working-resolution px) an output pixel sees: 33 px at 1/8
# scale (the encoder's dilations, the prototype window, the context blocks),
# the finer layers, and the colour prior's band and window.
RECEPTIVE_RADIUS = 8 * 33 + 24 + 24
BLOCK = 32            # side of the blocks the sparse passes work on
PROTOTYPE_WINDOW = 12  # radius, in 1/8-scale pixels, of the masked means
PRIOR_BAND, PRIOR_WINDOW = 8, 16   # the colour-line prior's unknown band and window


def colour_prior(image: torch.Tensor, mask: torch.Tensor, band: int = PRIOR_BAND,
                 window: int = PRIOR_WINDOW) -> torch.Tensor:
    """Local colour-line alpha: pixels more than `band` px inside (outside)
    the mask's edge are foreground (background); one in between gets where
    its colour falls on the line from the mean background to the mean
    foreground colour within `window` px. Where a side is missing or both
    look alike, the mask itself."""
    hard = (mask > 0.5).float()
    size = 2 * band + 1
    fg = -F.max_pool2d(-hard, size, stride=1, padding=band)
    bg = 1.0 - F.max_pool2d(hard, size, stride=1, padding=band)
    fg_weight, bg_weight = box_mean(fg, window), box_mean(bg, window)
    fg_colour = box_mean(image * fg, window) / fg_weight.clamp_min(1e-6)
    bg_colour = box_mean(image * bg, window) / bg_weight.clamp_min(1e-6)
    line = fg_colour - bg_colour
    length2 = (line * line).sum(1, keepdim=True)
    projected = ((image - bg_colour) * line).sum(1, keepdim=True) / (length2 + 1e-4)
    usable = (fg_weight > 1e-3) & (bg_weight > 1e-3) & (length2 > 1e-3) & (fg < 0.5) & (bg < 0.5)
    return torch.where(usable, projected.clamp(0.0, 1.0), mask)


class ResBlock(nn.Module):
    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.c1 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.leaky_relu(self.c1(x), 0.1))


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    size = 2 * radius + 1
    x = F.avg_pool2d(x, (size, 1), stride=1, padding=(radius, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, size), stride=1, padding=(0, radius), count_include_pad=False)


class MaskGuidedSelection(nn.Module):
    """Each pixel's features against the local foreground and background
    prototypes (masked means); the similarities gate the features."""

    def __init__(self, channels: int):
        super().__init__()
        self.gate = nn.Conv2d(channels + 3, channels, 1)
        self.mix = nn.Conv2d(channels + 3, channels, 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weight_fg = box_mean(mask, PROTOTYPE_WINDOW)
        weight_bg = box_mean(1 - mask, PROTOTYPE_WINDOW)
        fg = box_mean(features * mask, PROTOTYPE_WINDOW) / weight_fg.clamp_min(1e-3)
        bg = box_mean(features * (1 - mask), PROTOTYPE_WINDOW) / weight_bg.clamp_min(1e-3)
        like_fg = F.cosine_similarity(features, fg, 1, 1e-4).unsqueeze(1) * (weight_fg > 1e-3)
        like_bg = F.cosine_similarity(features, bg, 1, 1e-4).unsqueeze(1) * (weight_bg > 1e-3)
        cues = torch.cat([features, like_fg, like_bg, mask], 1)
        return features * torch.sigmoid(self.gate(cues)) + self.mix(cues)


class RefineStep(nn.Module):
    """One refinement pass: (features, alpha, coarse mask, confidence) ->
    (alpha correction in logits, confidence logit). Receptive radius
    RADIUS px, which the sparse passes take as context."""

    RADIUS = 1 + 2 + 1 + 1

    def __init__(self, features: int, channels: int):
        super().__init__()
        # Unpadded: the caller pads by RADIUS once, so a block cut out with
        # that much context gives exactly what the whole image gives.
        self.c1 = nn.Conv2d(features + 3, channels, 3)
        self.c2 = nn.Conv2d(channels, channels, 3, dilation=2)
        self.c3 = nn.Conv2d(channels, channels, 3)
        self.out = nn.Conv2d(channels, 2, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.c1(state), 0.1)
        x = F.leaky_relu(self.c2(x), 0.1)
        x = F.leaky_relu(self.c3(x), 0.1)
        return self.out(x)


class MatteRefiner(nn.Module):
    def __init__(self, channels: int = 32, iterations: int = 3, settle: float = 0.9):
        super().__init__()
        c1, c2, c4, c8 = channels // 2, channels * 3 // 4, channels, channels * 3 // 2
        self.iterations = iterations
        # Confidence above which a pixel settles; saved with the weights, as
        # the threshold they were trained with (scripts/train_matte.py
        # records how often settled pixels are right).
        self.register_buffer("settle", torch.tensor(float(settle)))
        self.stem = nn.Conv2d(5, c1, 3, padding=1)
        self.down2 = nn.Sequential(nn.Conv2d(c1 + 1, c2, 3, stride=2, padding=1), ResBlock(c2))
        self.down4 = nn.Sequential(nn.Conv2d(c2 + 1, c4, 3, stride=2, padding=1), ResBlock(c4))
        self.down8 = nn.Sequential(nn.Conv2d(c4 + 1, c8, 3, stride=2, padding=1),
                                   ResBlock(c8, 2), ResBlock(c8, 4))
        self.select = MaskGuidedSelection(c8)
        self.context = nn.Sequential(ResBlock(c8, 8), ResBlock(c8, 2))
        self.up4 = nn.Sequential(nn.Conv2d(c8 + c4, c4, 3, padding=1), ResBlock(c4))
        self.up2 = nn.Sequential(nn.Conv2d(c4 + c2, c2, 3, padding=1), ResBlock(c2))
        self.up1 = nn.Sequential(nn.Conv2d(c2 + c1 + 5, c1, 3, padding=1), ResBlock(c1))
        self.first = nn.Conv2d(c1, 1, 3, padding=1)
        self.step = RefineStep(c1, c1)
        self.features = c1

    def encode(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features at full size and the first alpha logits."""
        prior = colour_prior(image, mask)
        x = torch.cat([image - 0.5, mask - 0.5, prior - 0.5], 1)
        m2 = F.avg_pool2d(mask, 2)
        m4 = F.avg_pool2d(m2, 2)
        m8 = F.avg_pool2d(m4, 2)
        f1 = F.leaky_relu(self.stem(x), 0.1)
        f2 = self.down2(torch.cat([f1, mask - 0.5], 1))
        f4 = self.down4(torch.cat([f2, m2 - 0.5], 1))
        f8 = self.down8(torch.cat([f4, m4 - 0.5], 1))
        f8 = self.context(self.select(f8, m8))
        up = F.interpolate(f8, scale_factor=2, mode="bilinear", align_corners=False)
        f4 = self.up4(torch.cat([up, f4], 1))
        up = F.interpolate(f4, scale_factor=2, mode="bilinear", align_corners=False)
        f2 = self.up2(torch.cat([up, f2], 1))
        up = F.interpolate(f2, scale_factor=2, mode="bilinear", align_corners=False)
        features = self.up1(torch.cat([up, f1, x], 1))
        # Starting from the prior's own logit, the decoder learns a correction.
        logits = self.first(features) + torch.logit(prior.clamp(0.02, 0.98))
        return features, logits

    def forward(self, image: torch.Tensor, mask: torch.Tensor, iterations: int | None = None,
                sparse: bool | None = None) -> list[dict]:
        """image (n, 3, h, w) and mask (n, 1, h, w) in [0, 1], h and w
        multiples of 8 -> one dict per pass (the first from the decoder):
        alpha, confidence (probability that alpha is right), settled (bool).
        sparse: run passes only on blocks with unsettled pixels (default:
        when not training)."""
        iterations = self.iterations if iterations is None else iterations
        sparse = (not self.training) if sparse is None else sparse
        features, logits = self.encode(image, mask)
        confidence = torch.zeros_like(logits)
        settled = torch.zeros_like(logits, dtype=torch.bool)
        passes = [{"alpha": torch.sigmoid(logits), "confidence": confidence, "settled": settled}]
        for _ in range(iterations):
            state = torch.cat([features, torch.sigmoid(logits) - 0.5, mask - 0.5,
                               torch.sigmoid(confidence) - 0.5], 1)
            state = F.pad(state, (RefineStep.RADIUS,) * 4, mode="replicate")
            out = self._sparse_step(state, settled) if sparse else self.step(state)
            delta, confidence = out[:, :1], out[:, 1:]
            logits = torch.where(settled, logits, logits + delta)
            # One way only: a settled pixel stays settled, with its value.
            settled = settled | (torch.sigmoid(confidence) > self.settle)
            passes.append({"alpha": torch.sigmoid(logits), "confidence": torch.sigmoid(confidence),
                           "settled": settled})
        return passes

    def _sparse_step(self, padded: torch.Tensor, settled: torch.Tensor) -> torch.Tensor:
        """self.step on the BLOCK x BLOCK blocks that hold an unsettled pixel
        (`padded` is the state padded by RADIUS); zeros elsewhere (those
        outputs are never used: settled pixels keep their value)."""
        r = RefineStep.RADIUS
        n, _, h, w = settled.shape
        if float(settled.float().mean()) < 0.5:
            return self.step(padded)   # mostly unsettled: dense is cheaper
        out = padded.new_zeros(n, 2, h, w)
        open_blocks = (~settled).float()
        bh, bw = -(-h // BLOCK), -(-w // BLOCK)
        open_blocks = F.pad(open_blocks, (0, bw * BLOCK - w, 0, bh * BLOCK - h))
        active = F.max_pool2d(open_blocks, BLOCK).bool()
        for b, _, by, bx in active.nonzero(as_tuple=False).tolist():
            y, x = by * BLOCK, bx * BLOCK
            y1, x1 = min(y + BLOCK, h), min(x + BLOCK, w)
            window = padded[b:b + 1, :, y:y1 + 2 * r, x:x1 + 2 * r]
            out[b:b + 1, :, y:y1, x:x1] = self.step(window)
        return out


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
