"""A stand-in for the select op's network (server.methods.SubjectMethod),
for tests: the bright part of the picture is the subject, found as a
segmentation network would find it, at a coarse resolution, so that its edge
is soft and a little off."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from server.methods import SubjectMethod

COARSE = 8      # the mask is worked out on cells of this many pixels a side
LAYERS = 10


class FakeSubject(SubjectMethod):
    name = "fake-subject"
    title = "Test subject finder (bright is subject)"
    description = "For tests only: the bright part of the picture, found coarsely."

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[int, ...]] = []    # the shape of every picture it was given
        self.answer = None        # for tests of a broken network: what it returns instead
        # layers it passes the picture through, as a network would (their
        # forward hooks report progress)
        self.layers = torch.nn.Sequential(*[torch.nn.Identity() for _ in range(LAYERS)])
        self.finished = 0         # calls that got to the end

    def networks(self, scale: int) -> list[torch.nn.Module]:
        return [self.layers]

    def subject(self, image: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(image.shape))
        if self.answer is not None:
            return self.answer
        bright = (self.layers(image).mean(1, keepdim=True) > 0.5).float()
        self.finished += 1
        height, width = image.shape[-2:]
        cells = (max(1, height // COARSE), max(1, width // COARSE))
        coarse = F.interpolate(bright, size=cells, mode="area")
        return F.interpolate(coarse, size=(height, width), mode="bilinear",
                             align_corners=False).clamp(0, 1)
