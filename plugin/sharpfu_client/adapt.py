"""Adapting an upscaler or a deblurrer to the user's own images (the
server's `adapt` op, docs/PROTOCOL.md "Adaptation"), for the plug-ins and
the command line.

    samples = sample_tiles(frames)            # tiles of the user's images
    adaptation = adapt(client, samples, scale=2)
    client.run("upscale", [frame], {"scale": 2, "method": adaptation.model})

    samples = sample_tiles(frames, side=TILE_SIDE["deblur"])
    adaptation = adapt(client, samples, task="deblur")
    client.run("deblur", [frame], {"method": adaptation.model})

`adaptation.model` names the adapted network when the server kept it, or
the shipped network when its safeguard rejected the adaptation, so it can
always be passed on as the method. Python 2.7 and 3, standard library only.
"""
from __future__ import absolute_import, division

from . import layers
from .client import Frame
from .errors import Cancelled, ServerUnavailable, SharpFuError

MAX_SAMPLES = 32          # the server's limit on frames per adapt job
DEFAULT_TILE = 256        # pixels: enough context for a few hundred pairs
DEFAULT_TILES = 16
# The server cuts a deblurrer's pairs from the samples reduced to half size
# (where the photo's own blur is half as wide), with room around each for
# the blur: twice the side keeps as many pairs.
TILE_SIDE = {"upscale": DEFAULT_TILE, "deblur": 2 * DEFAULT_TILE}


def task_for(op, scale):
    """Which network adapting before an op fits: the deblurrer for deblur
    and for sharpen at 1x (no upscaler runs there), else the upscaler, which
    does most of the work at 2x and 4x."""
    return "deblur" if op == "deblur" or (scale or 1) < 2 else "upscale"


class Adaptation(object):
    """What an adapt job reported (the result's `adaptation` object)."""

    def __init__(self, report):
        self.report = dict(report or {})

    def __getattr__(self, name):
        try:
            return self.__dict__["report"][name]
        except KeyError:
            raise AttributeError(name)

    def describe(self):
        """One line for a person."""
        r = self.report
        verdict = "accepted" if r.get("accepted") else "rejected"
        line = "adaptation %s: internal-pair PSNR %.2f -> %.2f dB (%+.2f dB) on %d sample(s)" % (
            verdict, r.get("before", 0.0), r.get("after", 0.0),
            r.get("after", 0.0) - r.get("before", 0.0), r.get("samples", 0))
        if r.get("cached"):
            line += ", from the server's cache"
        else:
            line += ", %.1f s" % r.get("seconds", 0.0)
        if not r.get("accepted"):
            line += "; the shipped model was used"
        return line


def crop(frame, left, top, width, height, name="sample"):
    """A new Frame holding a rectangle of `frame` (any format and channels)."""
    return layers.crop(frame, left, top, width, height, name)


def sample_tiles(frames, tiles=DEFAULT_TILES, side=DEFAULT_TILE):
    """Up to `tiles` (at most MAX_SAMPLES) square tiles of at most `side`
    pixels, spread over `frames` (whole images): the middle of each first,
    then corners, so that a few images or a long batch both give the server
    a fair sample of what it will be asked to upscale."""
    tiles = min(tiles, MAX_SAMPLES)
    if not frames:
        return []
    places = ((0.5, 0.5), (0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0))
    chosen = []
    for rank in range(len(places)):
        for frame in frames:
            if len(chosen) >= tiles:
                return chosen
            width, height = min(side, frame.width), min(side, frame.height)
            if rank and width == frame.width and height == frame.height:
                continue   # the whole frame went in already
            fx, fy = places[rank]
            left = int(round((frame.width - width) * fx))
            top = int(round((frame.height - height) * fy))
            chosen.append(crop(frame, left, top, width, height))
    return chosen


def adapt(client, samples, scale=2, steps=None, save=False, method=None, progress=None,
          cancelled=None, compressed=True, task="upscale", trainable="all"):
    """Run an adapt job on `client` (a Client, or a Cluster: then on every
    one of its servers, since an adapted network lives where it was made);
    returns an Adaptation. Raises SharpFuError as any job does.

    task: "upscale" adapts the upscaler for `scale`; "deblur" the deblurrer
    (`scale` is then ignored). compressed: whether the images were ever
    saved as JPEG (or WebP, ...); say False for clean ones (PNG screenshots,
    renders, raw frames). trainable: "all" the network's weights, or
    "low-rank" adapters (about 15% as many weights; smaller gains)."""
    params = {"save": bool(save), "compressed": bool(compressed)}
    if task == "upscale":
        params["scale"] = scale
    else:
        params["task"] = task   # servers before deblur adaptation know only upscalers
    if trainable != "all":
        params["trainable"] = trainable
    if steps is not None:
        params["steps"] = steps
    if method is not None:
        params["method"] = method
    samples = [Frame(s.data, s.width, s.height, s.channels, s.format, "sample")
               for s in samples]
    controls = getattr(client, "controls", None)
    if not controls:
        result = client.run("adapt", samples, params, progress=progress, cancelled=cancelled)
        return Adaptation(result.header.get("adaptation"))
    # Every server adapts the same samples the same way, and names the
    # result by its content, so one name serves the whole batch; where the
    # servers' verdicts differ (their arithmetic may), the shipped network
    # is the safe common choice.
    found = []
    for control in controls.values():
        try:
            result = control.run("adapt", samples, params, progress=progress,
                                 cancelled=cancelled)
        except Cancelled:
            raise
        except SharpFuError:
            continue   # that server is down: the batch will not use it either
        found.append(Adaptation(result.header.get("adaptation")))
    if not found:
        raise ServerUnavailable("No SharpFu server could adapt the model.")
    if len(set(a.model for a in found)) > 1:
        first = found[0]
        first.report.update(model=first.base, accepted=False, after=first.before)
        return first
    return found[0]
