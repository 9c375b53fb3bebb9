"""The dialogs' preview, apart from GIMP: which part of the layer it shows,
how much around it goes to the server, and its before and after taken out
of what comes back. Python 2.7 and 3.

The preview's pixels are the filter's on that part of the layer: the job
is the filter's (same op, method, scale and strength), and it carries
CONTEXT pixels of the layer around the part shown, more than any shipped
network reads (SPAN: 21, MIMO-UNet: 32), so that the tiler's margins and the
network's padding at the edges of what is sent fall outside it. A network
that subsamples gives the same pixels only for shifts by multiples of its
stride; the context starts as far from the filter's own corner as a
multiple of ALIGN, which covers strides up to ALIGN. They may differ
slightly where fully transparent pixels are (the server fills them from
the whole of what it gets) and for a network whose reach exceeds CONTEXT.
"""
from __future__ import absolute_import, division

from .layers import CONTEXT, Region, crop

SIDE = 256     # output pixels a side, about, that the preview shows
ALIGN = 16


class Crop(object):
    """The preview of a width x height layer at `scale`: `target` (layer
    coordinates), about SIDE output pixels a side around `centre` and
    inside the layer, is shown; `source`, it with up to CONTEXT pixels
    around, goes to the server. origin: the corner of what the filter sends
    (layer coordinates; (0, 0) for the whole layer)."""

    def __init__(self, width, height, scale, centre, origin=(0, 0), side=SIDE):
        self.scale = scale
        w, h = min(width, -(-side // scale)), min(height, -(-side // scale))
        x = min(max(0, int(round(centre[0] - w / 2.0))), width - w)
        y = min(max(0, int(round(centre[1] - h / 2.0))), height - h)
        self.target = Region(x, y, w, h)
        left, top = _corner(x, origin[0]), _corner(y, origin[1])
        self.source = Region(left, top, min(width, x + w + CONTEXT) - left,
                             min(height, y + h + CONTEXT) - top)

    def shown(self, frame, scale=None):
        """The target's part of a frame of the source (an answer at the
        crop's scale, or scale=1: the pixels sent)."""
        scale = self.scale if scale is None else scale
        target, source = self.target, self.source
        return crop(frame, (target.x - source.x) * scale, (target.y - source.y) * scale,
                    target.width * scale, target.height * scale)

    def __repr__(self):
        return "Crop(target=%r, source=%r, scale=%d)" % (self.target, self.source, self.scale)


def _corner(start, origin):
    """Where the context before `start` begins: CONTEXT before it, or less,
    not before 0, and as far from `origin` as a multiple of ALIGN (at 0
    when no such place lies between 0 and start)."""
    corner = start - CONTEXT
    corner -= (corner - origin) % ALIGN
    if corner < 0:
        corner = origin % ALIGN
    return corner if corner <= start else 0
