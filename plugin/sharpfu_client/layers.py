"""What both GIMP plug-ins (3 and 2.10) decide about layers and regions,
apart from GIMP itself: which layers and pixels a job may take, which part
of a layer goes to the server and which part of the answer comes back, and
the words for each refusal. Each plug-in asks its own GIMP's API the
questions and hands the answers in. Python 2.7 and 3.
"""
from __future__ import absolute_import, division

from .client import Frame

# Pixels of real image around a selection, so that the model sees what lies
# beyond its edge; cropped away again before writing.
CONTEXT = 128
MAX_IMAGE_SIZE = 524288          # GIMP_MAX_IMAGE_SIZE, pixels a side
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}


class Refusal(Exception):
    """A layer or image a plug-in cannot work on; `message` says why, for the user."""

    def __init__(self, message):
        Exception.__init__(self, message)
        self.message = message


class Declined(Refusal):
    """The user said no when asked (a very large result): nothing happens."""


class OutsideSelection(Refusal):
    """At 1x, the selection does not touch the layer: nothing to do."""


class Region(object):
    """A rectangle in layer coordinates."""

    def __init__(self, x, y, width, height):
        self.x, self.y, self.width, self.height = x, y, width, height

    def grown(self, margin, width, height):
        """This rectangle with `margin` pixels around it, kept inside width x height."""
        x, y = max(0, self.x - margin), max(0, self.y - margin)
        return Region(x, y, min(width, self.x + self.width + margin) - x,
                      min(height, self.y + self.height + margin) - y)

    def __repr__(self):
        return "Region(%d, %d, %d, %d)" % (self.x, self.y, self.width, self.height)


def crop(frame, left, top, width, height, name=None):
    """A new Frame holding a rectangle of `frame` (any format and channels);
    its data are bytes (a str in Python 2, which GIMP 2.10's pixel regions
    need). name: the new frame's, by default the old one's."""
    if left < 0 or top < 0 or left + width > frame.width or top + height > frame.height:
        raise ValueError("the crop lies outside the frame")
    pixel = frame.channels * SAMPLE_BYTES[frame.format]
    source = memoryview(frame.data)
    if source.ndim != 1 or source.itemsize != 1:
        source = source.cast("B")   # novermin - a numpy array, which only Python 3 passes
    row = frame.width * pixel
    parts = []
    for y in range(top, top + height):
        start = y * row + left * pixel
        parts.append(source[start:start + width * pixel].tobytes())
    return Frame(b"".join(parts), width, height, frame.channels, frame.format,
                 frame.name if name is None else name)


def check_subject(mask, title, layer_name):
    """Refuse a subject mask that is 0 everywhere (Select Subject found
    nothing to select), before the image changes: selecting nothing, or an
    all-black layer mask, would look like a failure that said nothing."""
    if not memoryview(mask.data).tobytes().strip(b"\0"):
        raise Refusal(NO_SUBJECT % (title, layer_name))


NO_SUBJECT = ("%s found no subject in layer '%s': the model's mask is empty, and the image is "
              "unchanged. It looks for one main subject in front of a background; a close-up "
              "that fills the picture, or a plain texture, has none.")


def check_drawable(name, indexed=False, mask_or_channel=False, group=False, locked=False):
    """Refuse what cannot be processed, before any work is done. name: the
    drawable's; the rest: what the plug-in's GIMP says about it (locked:
    its pixels are locked and the job would change them)."""
    if indexed:
        raise Refusal("SharpFu works on RGB and grayscale images; this one is indexed. Convert it "
                      "to RGB first (Image > Mode > RGB), then try again.")
    if mask_or_channel:
        raise Refusal("'%s' is a mask or channel. SharpFu works on a layer's pixels: select the "
                      "layer itself (click its thumbnail in the Layers dialog)." % name)
    if group:
        raise Refusal("'%s' is a layer group. Select one of the layers inside it." % name)
    if locked:
        raise Refusal("The pixels of layer '%s' are locked. Unlock them in the Layers dialog "
                      "(the lock icon), then try again." % name)


def check_scaled_size(width, height, scale, limit=MAX_IMAGE_SIZE):
    """Refuse a scale that would make the image larger than GIMP allows."""
    if max(width, height) * scale > limit:
        raise Refusal("At %dx the image would be larger than GIMP allows (%d pixels a side)." % (
            scale, limit))


class Change(object):
    """One layer's part of a change. `source` (layer coordinates) goes to the
    server; `target`, inside it, is what the answer replaces. `pixels` holds
    the answer once it is in.

    selection: None for the whole layer (above 1x, or for a result that
    goes elsewhere), else what GIMP's mask_intersect says for the layer:
    (found, x, y, width, height)."""

    def __init__(self, layer, name, width, height, scale, selection=None):
        self.layer, self.scale = layer, scale
        self.target = self.source = Region(0, 0, width, height)
        self.pixels = None
        if scale == 1 and selection is not None:
            found, x, y, w, h = selection
            if not found:
                raise OutsideSelection(
                    "The selection does not touch layer '%s', so there is nothing to do. Select "
                    "part of the layer, or nothing (Select > None) to work on all of it." % name)
            self.target = Region(x, y, w, h)
            self.source = self.target.grown(CONTEXT, width, height)

    def take(self, frame, channels=None, sample=None):
        """Keep the server's answer, once it is known to fit: scale times the
        source's size (and, when given, that many channels in that format)."""
        width, height = self.source.width * self.scale, self.source.height * self.scale
        if (frame.width, frame.height) != (width, height) or (
                channels is not None and (frame.channels, frame.format) != (channels, sample)):
            raise Refusal("The SharpFu server answered with a %dx%d image of %d channels instead "
                          "of %dx%d%s; the image is unchanged." % (
                              frame.width, frame.height, frame.channels, width, height,
                              "" if channels is None else " of %d" % channels))
        self.pixels = frame

    def answer_in_target(self):
        """The part of the answer that replaces `target` (at 1x)."""
        target, source = self.target, self.source
        return crop(self.pixels, target.x - source.x, target.y - source.y, target.width,
                    target.height)


def walk(layers, is_group, children, is_locked, locked=False):
    """Every layer holding pixels of its own, also inside groups, top to
    bottom, and whether its pixels are locked (by itself or by a group).
    is_group, children, is_locked: the plug-in's GIMP's answers for a layer."""
    for layer in layers:
        lock = locked or bool(is_locked(layer))
        if is_group(layer):
            for found in walk(children(layer), is_group, children, is_locked, lock):
                yield found
        else:
            yield layer, lock


# -- how large a result will be --------------------------------------------------

MAX_RESULT_PIXELS = 64 * 1000 * 1000     # larger results are asked about first


def free_memory():
    """Bytes of memory free for new work (Linux: MemAvailable), or None
    where this cannot be told."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (IOError, OSError, ValueError, IndexError):
        pass
    return None


class ResultSize(object):
    """What a job will make: `width` x `height` pixels (the image's, or the
    new image's) and `nbytes` of pixels GIMP will hold for it."""

    def __init__(self, width, height, nbytes):
        self.width, self.height, self.nbytes = width, height, nbytes

    def words(self):
        pixels = self.width * self.height
        return u"%d \u00d7 %d pixels%s, %s" % (
            self.width, self.height,
            u" (%s)" % megapixels(pixels) if pixels >= 100000 else u"", amount(self.nbytes))

    def too_large(self, free=None):
        """Why the result needs a confirmation, or None."""
        pixels = self.width * self.height
        if pixels > MAX_RESULT_PIXELS:
            return (u"The result would be %d \u00d7 %d pixels (%s), more than the %s "
                    u"SharpFu makes without asking, and would take %s of memory." % (
                        self.width, self.height, megapixels(pixels),
                        megapixels(MAX_RESULT_PIXELS), amount(self.nbytes)))
        if free is not None and self.nbytes > free:
            return (u"The result would take %s of memory, and only %s is free." % (
                amount(self.nbytes), amount(free)))
        return None


def megapixels(pixels):
    return u"%.1f megapixels" % (pixels / 1e6) if pixels < 10e6 else \
        u"%d megapixels" % round(pixels / 1e6)


def amount(nbytes):
    for unit, size in ((u"GB", 1e9), (u"MB", 1e6), (u"kB", 1e3)):
        if nbytes >= size:
            return u"%.1f %s" % (nbytes / size, unit) if nbytes < 10 * size else \
                u"%d %s" % (round(nbytes / size), unit)
    return u"%d bytes" % nbytes
