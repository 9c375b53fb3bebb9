"""A stand-in for GIMP 2.10's gimpfu module, for testing the GIMP 2.10 plug-in
without a GIMP 2.10 (none with Python runs on these machines).

It copies what the plug-in can observe of GIMP 2.10, as read in GIMP's
gimp-2-10 sources (plug-ins/pygimp): register()'s checks and its renaming of
procedures, the PF_ and PDB argument types, the run modes (on_run is called
only for an interactive run), a failure in the function giving an execution
error, pixel regions addressed in drawable coordinates that take only byte
strings, 8-bit pixels whatever the image's precision, shadow buffers merged
through the selection, layer offsets, layer masks and the undo history.

Undo is modelled strictly: a step saves what it will change (a merged
shadow: that drawable; Scale Image: everything), and a write straight into a
drawable that is part of an image, without a step of the open undo group
having saved it, is recorded in `image.unsaved_writes`, because in GIMP that
write could never be undone. Everything the plug-in does is recorded in
`calls`, `messages` and `progress`.

It runs under Python 2.7 (as GIMP 2.10's Python does) and 3.
"""
from __future__ import division

import os
import struct

# -- types and constants (the values of GIMP 2.10's gimpenums) ----------------

PDB_INT32, PDB_INT16, PDB_INT8, PDB_FLOAT, PDB_STRING = 0, 1, 2, 3, 4
PDB_COLOR, PDB_ITEM, PDB_DISPLAY, PDB_IMAGE, PDB_LAYER = 10, 11, 12, 13, 14
PDB_CHANNEL, PDB_DRAWABLE, PDB_SELECTION, PDB_VECTORS = 15, 16, 17, 19

PF_INT8, PF_INT16, PF_INT32, PF_INT = PDB_INT8, PDB_INT16, PDB_INT32, PDB_INT32
PF_FLOAT, PF_STRING, PF_VALUE = PDB_FLOAT, PDB_STRING, PDB_STRING
PF_COLOR = PF_COLOUR = PDB_COLOR
PF_DISPLAY, PF_IMAGE, PF_LAYER = PDB_DISPLAY, PDB_IMAGE, PDB_LAYER
PF_CHANNEL, PF_DRAWABLE, PF_VECTORS = PDB_CHANNEL, PDB_DRAWABLE, PDB_VECTORS
PF_TOGGLE = PF_BOOL = 1000
PF_SLIDER, PF_SPINNER = 1001, 1002
PF_ADJUSTMENT = PF_SPINNER
PF_FONT, PF_FILE, PF_BRUSH, PF_PATTERN, PF_GRADIENT = 1003, 1004, 1005, 1006, 1007
PF_RADIO, PF_TEXT, PF_PALETTE, PF_FILENAME, PF_DIRNAME, PF_OPTION = (
    1008, 1009, 1010, 1011, 1012, 1013)

PDB_TYPES = {PF_TOGGLE: PDB_INT32, PF_SLIDER: PDB_FLOAT, PF_SPINNER: PDB_INT32,
             PF_OPTION: PDB_INT32}
for _type in (PF_FONT, PF_FILE, PF_BRUSH, PF_PATTERN, PF_GRADIENT, PF_RADIO, PF_TEXT,
              PF_PALETTE, PF_FILENAME, PF_DIRNAME):
    PDB_TYPES[_type] = PDB_STRING
for _type in (PDB_INT32, PDB_INT16, PDB_INT8, PDB_FLOAT, PDB_STRING, PDB_COLOR, PDB_DISPLAY,
              PDB_IMAGE, PDB_LAYER, PDB_CHANNEL, PDB_DRAWABLE, PDB_VECTORS):
    PDB_TYPES[_type] = _type

RUN_INTERACTIVE, RUN_NONINTERACTIVE, RUN_WITH_LAST_VALS = 0, 1, 2
PLUGIN = 1
RGB, GRAY, INDEXED = 0, 1, 2
RGB_IMAGE, RGBA_IMAGE, GRAY_IMAGE, GRAYA_IMAGE, INDEXED_IMAGE, INDEXEDA_IMAGE = range(6)
PRECISION_U8_GAMMA, PRECISION_U16_GAMMA, PRECISION_FLOAT_GAMMA = 150, 250, 650
ADD_MASK_WHITE, ADD_MASK_BLACK, ADD_MASK_ALPHA = 0, 1, 2
ADD_MASK_SELECTION = 4
MASK_APPLY, MASK_DISCARD = 0, 1
CHANNEL_OP_ADD, CHANNEL_OP_SUBTRACT, CHANNEL_OP_REPLACE, CHANNEL_OP_INTERSECT = range(4)
CLIP_TO_IMAGE = 1
CHANNELS = {RGB_IMAGE: 3, RGBA_IMAGE: 4, GRAY_IMAGE: 1, GRAYA_IMAGE: 2, INDEXED_IMAGE: 1,
            INDEXEDA_IMAGE: 2}


class error(RuntimeError):
    pass


# -- what the plug-in did --------------------------------------------------------

calls = []        # (name, args) of every gimp. and pdb. call
messages = []     # gimp.message texts
progress = []     # ("init", text), ("update", fraction), ("text", text)
registered = {}   # procedure name -> its registration
queried = []      # the PDB signatures main() installed
displays = []     # images given a display
images = []       # every image alive, in the order made
files = {}        # path -> image, for gimp_file_load / gimp_file_save
_next_id = [1]


def reset():
    """Forget every image and recording (between tests)."""
    for listing in (calls, messages, progress, queried, displays, images):
        del listing[:]
    files.clear()


def _record(name, *args):
    calls.append((name, args))


def _new_id():
    _next_id[0] += 1
    return _next_id[0]


def _check_bytes(text, what):
    # pygimp parses text arguments with "s": a Python 2 unicode holding
    # anything beyond ASCII raises UnicodeEncodeError there.
    if not isinstance(text, str):
        raise TypeError("%s takes a str, not %s" % (what, type(text).__name__))


# -- images and drawables ------------------------------------------------------------

class Drawable(object):
    """Pixels (8-bit, rows top to bottom) with an optional shadow buffer."""

    def __init__(self, image, name, width, height, bpp):
        self.ID = _new_id()
        self.image = image
        self.name = name
        self.width, self.height, self.bpp = width, height, bpp
        self.pixels = bytearray(width * height * bpp)
        self.shadow = None
        self.offsets = (0, 0)
        self.valid = True

    def attached(self):
        return False

    def get_pixel_rgn(self, x, y, width, height, dirty=True, shadow=False):
        _record("drawable.get_pixel_rgn", self.name, x, y, width, height, dirty, shadow)
        if x < 0 or y < 0 or x + width > self.width or y + height > self.height:
            raise ValueError("pixel region %r outside the %dx%d drawable" % (
                (x, y, width, height), self.width, self.height))
        if shadow and self.shadow is None:
            self.shadow = bytearray(self.pixels)
        return PixelRgn(self, x, y, width, height, dirty, shadow)

    def flush(self):
        _record("drawable.flush", self.name)

    def update(self, x, y, width, height):
        _record("drawable.update", self.name, x, y, width, height)

    def merge_shadow(self, undo=True):
        """The shadow composited in through the selection, as GIMP does."""
        _record("drawable.merge_shadow", self.name, undo)
        if self.shadow is None:
            raise error("merge_shadow without a shadow buffer")
        if undo and self.attached():
            self.image.save_for_undo(self)
        selection = self.image.selection if self.image is not None else None
        if selection is not None and selection.empty():
            selection = None
        ox, oy = self.offsets
        for y in range(self.height):
            for x in range(self.width):
                weight = 255
                if selection is not None:
                    ix, iy = x + ox, y + oy
                    inside = 0 <= ix < selection.width and 0 <= iy < selection.height
                    weight = selection.pixels[iy * selection.width + ix] if inside else 0
                start = (y * self.width + x) * self.bpp
                for c in range(start, start + self.bpp):
                    old, new = self.pixels[c], self.shadow[c]
                    self.pixels[c] = (old * (255 - weight) + new * weight + 127) // 255
        self.shadow = None

    def state(self):
        return (self.width, self.height, self.offsets, bytes(self.pixels))

    def restore(self, state):
        self.width, self.height, self.offsets, pixels = state
        self.pixels = bytearray(pixels)

    def scaled(self, factor_x, factor_y):
        """Nearest-neighbour scaling, standing in for GIMP's interpolation."""
        width, height = int(round(self.width * factor_x)), int(round(self.height * factor_y))
        out = bytearray(width * height * self.bpp)
        for y in range(height):
            sy = min(self.height - 1, int(y / factor_y))
            for x in range(width):
                sx = min(self.width - 1, int(x / factor_x))
                src = (sy * self.width + sx) * self.bpp
                dst = (y * width + x) * self.bpp
                out[dst:dst + self.bpp] = self.pixels[src:src + self.bpp]
        self.width, self.height, self.pixels = width, height, out


class Channel(Drawable):
    """A layer mask, the selection or a channel (gimp.Channel(image, name,
    width, height, opacity, color)): one byte a pixel, 0 when new."""

    def __init__(self, image, name, width, height, opacity=100.0, color=(0, 0, 0)):
        Drawable.__init__(self, image, name, width, height, 1)
        self.layer = None          # the layer whose mask it is, once added
        self.is_selection = False
        self.in_image = False      # a channel of the image (Channels dialog)
        self.has_alpha, self.is_rgb, self.is_gray, self.is_indexed = False, False, True, False
        self.type = GRAY_IMAGE

    def attached(self):
        return self.is_selection or self.in_image or (self.layer is not None
                                                      and self.layer.attached())

    def empty(self):
        return not any(self.pixels)


class Layer(Drawable):
    """gimp.Layer(image, name, width, height, type, opacity, mode)."""

    def __init__(self, image, name, width, height, type=RGB_IMAGE, opacity=100.0, mode=0):
        Drawable.__init__(self, image, name, width, height, CHANNELS[type])
        self.type = type
        self.opacity, self.mode = opacity, mode
        self.mask = None
        self.parent = None          # the image or group holding it
        self.layers = None          # a list for a layer group
        self.text = False
        self.lock_content = False

    has_alpha = property(lambda self: self.type in (RGBA_IMAGE, GRAYA_IMAGE, INDEXEDA_IMAGE))
    is_rgb = property(lambda self: self.type in (RGB_IMAGE, RGBA_IMAGE))
    is_gray = property(lambda self: self.type in (GRAY_IMAGE, GRAYA_IMAGE))
    is_indexed = property(lambda self: self.type in (INDEXED_IMAGE, INDEXEDA_IMAGE))

    def attached(self):
        return self.parent is not None and self.image is not None and self.image.valid

    def set_offsets(self, x, y):
        self.offsets = (x, y)

    def add_mask(self, mask):
        pdb.gimp_layer_add_mask(self, mask)

    def state(self):
        return (Drawable.state(self), self.mask, self.mask.state() if self.mask else None)

    def restore(self, state):
        own, mask, mask_state = state
        Drawable.restore(self, own)
        if self.mask is not None and self.mask is not mask:
            self.mask.layer = None
        self.mask = mask
        if mask is not None:
            mask.layer = self
            mask.restore(mask_state)


class Image(object):
    """gimp.Image(width, height, base_type)."""

    def __init__(self, width, height, base_type=RGB):
        self.ID = _new_id()
        self.width, self.height, self.base_type = width, height, base_type
        self.precision = PRECISION_U8_GAMMA
        self.layers = []                     # top to bottom
        self.active_layer = None
        self.selection = Channel(self, "selection", width, height)
        self.selection.is_selection = True
        self.channels = []                   # the Channels dialog's, top to bottom
        self.filename = None
        self.name = "Untitled"
        self.valid = True
        self.undo_enabled = True
        self.undo_stack = []                 # closed groups: [(saved thing, state), ...]
        self.open_group = None               # the group being recorded, or None
        self.group_depth = 0
        self.unsaved_writes = []             # writes no undo step could revert
        images.append(self)

    # -- what a test looks at ---------------------------------------------------

    def all_layers(self):
        found = []

        def walk(layers):
            for layer in layers:
                found.append(layer)
                if layer.layers is not None:
                    walk(layer.layers)
        walk(self.layers)
        return found

    def snapshot(self):
        """Everything a user could see of the image, for comparing."""
        return (self.width, self.height, bytes(self.selection.pixels),
                [(layer.name, layer.width, layer.height, layer.offsets, layer.type,
                  bytes(layer.pixels), bytes(layer.mask.pixels) if layer.mask else None)
                 for layer in self.all_layers()],
                [(channel.name, bytes(channel.pixels)) for channel in self.channels])

    def insert_layer(self, layer, parent=None, position=0):
        pdb.gimp_image_insert_layer(self, layer, parent, position)

    # -- undo ----------------------------------------------------------------------

    def save_for_undo(self, thing):
        """A step that is about to change `thing` (a drawable, or the image
        itself for Scale Image) saves it first."""
        if not self.undo_enabled:
            return
        state = self.whole_state() if thing is self else thing.state()
        if self.open_group is not None:
            self.open_group.append((thing, state))
        else:
            self.undo_stack.append([(thing, state)])

    def whole_state(self):
        return (self.width, self.height, bytes(self.selection.pixels),
                [(layer, layer.state()) for layer in self.all_layers()], list(self.layers),
                list(self.channels))

    def saved_in_open_group(self, drawable):
        if self.open_group is None:
            return False
        for thing, _ in self.open_group:
            if thing is self or thing is drawable or (
                    isinstance(drawable, Channel) and thing is drawable.layer):
                return True
        return False

    def undo(self):
        """Edit > Undo: revert the last step or group."""
        group = self.undo_stack.pop()
        for thing, state in reversed(group):
            if thing is self:
                width, height, selection, layers, top, channels = state
                for channel in self.channels:
                    channel.in_image = False
                self.channels = channels
                for channel in channels:
                    channel.in_image = True
                self.width, self.height = width, height
                self.selection.width, self.selection.height = width, height
                self.selection.pixels = bytearray(selection)
                for layer, layer_state in layers:
                    layer.restore(layer_state)
                self.layers = top
            else:
                thing.restore(state)

    def steps(self):
        return len(self.undo_stack)


class PixelRgn(object):
    """drawable.get_pixel_rgn(): rgn[x1:x2, y1:y2] in drawable coordinates,
    read as and assigned from byte strings (str in Python 2)."""

    def __init__(self, drawable, x, y, width, height, dirty, shadow):
        self.drawable = drawable
        self.x, self.y, self.w, self.h = x, y, width, height
        self.bpp = drawable.bpp
        self.dirty, self.shadow = dirty, shadow

    def _box(self, key):
        xs, ys = key
        x1, x2 = xs.start, xs.stop
        y1, y2 = ys.start, ys.stop
        if not (self.x <= x1 <= x2 <= self.x + self.w and self.y <= y1 <= y2 <= self.y + self.h):
            raise IndexError("slice %r outside the pixel region %r" % (
                key, (self.x, self.y, self.w, self.h)))
        return x1, x2, y1, y2

    def _buffer(self):
        return self.drawable.shadow if self.shadow else self.drawable.pixels

    def __getitem__(self, key):
        x1, x2, y1, y2 = self._box(key)
        buffer, d, bpp = self._buffer(), self.drawable, self.bpp
        return bytes(b"".join(bytes(buffer[(y * d.width + x1) * bpp:(y * d.width + x2) * bpp])
                              for y in range(y1, y2)))

    def __setitem__(self, key, value):
        if type(value) is not bytes:
            raise TypeError("must assign string to subscript")
        if not self.dirty:
            raise error("the pixel region is not writable (dirty=False)")
        x1, x2, y1, y2 = self._box(key)
        d, bpp, row = self.drawable, self.bpp, (x2 - x1) * self.bpp
        if len(value) != row * (y2 - y1):
            raise ValueError("%d bytes for a %dx%d region of %d bytes a pixel" % (
                len(value), x2 - x1, y2 - y1, bpp))
        if not self.shadow and d.attached():
            image = d.image
            if image.undo_enabled and not image.saved_in_open_group(d):
                image.unsaved_writes.append(d.name)
        buffer = self._buffer()
        for i, y in enumerate(range(y1, y2)):
            start = (y * d.width + x1) * bpp
            buffer[start:start + row] = value[i * row:(i + 1) * row]


class Display(object):
    def __init__(self, image):
        _record("gimp.Display", image.ID)
        displays.append(image)


# -- the gimp module ---------------------------------------------------------------------

class _GimpModule(object):
    Image, Layer, Channel, Drawable, Display = Image, Layer, Channel, Drawable, Display
    error = error

    @staticmethod
    def message(text):
        _check_bytes(text, "gimp.message")
        _record("gimp.message", text)
        messages.append(text)

    @staticmethod
    def progress_init(text=None):
        if text is not None:
            _check_bytes(text, "gimp.progress_init")
        progress.append(("init", text))

    @staticmethod
    def progress_update(fraction):
        progress.append(("update", float(fraction)))

    @staticmethod
    def displays_flush():
        _record("gimp.displays_flush")

    @staticmethod
    def image_list():
        return [image for image in images if image.valid]


gimp = _GimpModule()


# -- the PDB ------------------------------------------------------------------------------------

def _pnm_read(path):
    with open(path, "rb") as handle:
        data = handle.read()
    fields = data.split(None, 4)
    kind, width, height = fields[0], int(fields[1]), int(fields[2])
    channels = {b"P5": 1, b"P6": 3}[kind]
    pixels = data[len(data) - width * height * channels:]
    return width, height, channels, pixels


def _pnm_write(path, width, height, channels, pixels):
    with open(path, "wb") as handle:
        handle.write(("P%d\n%d %d\n255\n" % (5 if channels == 1 else 6, width, height))
                     .encode("ascii"))
        handle.write(bytes(pixels))


class _Pdb(object):
    """The PDB procedures the plug-in calls, by their Python-Fu names."""

    def __getattr__(self, name):
        raise AttributeError("the gimpfu double has no pdb.%s: add it when the plug-in "
                             "needs it" % name)

    def gimp_image_undo_group_start(self, image):
        _record("pdb.gimp_image_undo_group_start", image.ID)
        if image.group_depth == 0:
            image.open_group = []
        image.group_depth += 1

    def gimp_image_undo_group_end(self, image):
        _record("pdb.gimp_image_undo_group_end", image.ID)
        if image.group_depth == 0:
            raise error("undo group end without a start")
        image.group_depth -= 1
        if image.group_depth == 0:
            if image.open_group:
                image.undo_stack.append(image.open_group)
            image.open_group = None

    def gimp_image_undo_disable(self, image):
        _record("pdb.gimp_image_undo_disable", image.ID)
        image.undo_enabled = False
        return True

    def gimp_image_undo_enable(self, image):
        _record("pdb.gimp_image_undo_enable", image.ID)
        image.undo_enabled = True
        return True

    def gimp_image_get_precision(self, image):
        return image.precision

    def gimp_image_is_valid(self, image):
        return bool(image.valid)

    def gimp_item_is_valid(self, item):
        return bool(item.valid and (item.image is None or item.image.valid))

    def gimp_item_is_group(self, item):
        return isinstance(item, Layer) and item.layers is not None

    def gimp_item_is_text_layer(self, item):
        return isinstance(item, Layer) and item.text

    def gimp_item_is_layer_mask(self, item):
        return isinstance(item, Channel) and item.layer is not None

    def gimp_item_is_channel(self, item):
        return isinstance(item, Channel)

    def gimp_item_get_lock_content(self, item):
        return bool(getattr(item, "lock_content", False))

    def gimp_selection_is_empty(self, image):
        return image.selection.empty()

    def gimp_item_delete(self, item):
        _record("pdb.gimp_item_delete", item.name)
        if item.attached():
            raise error("an item in an image cannot be deleted")
        item.valid = False

    def gimp_layer_from_mask(self, mask):
        return mask.layer

    def gimp_drawable_mask_intersect(self, drawable):
        """(non_empty, x, y, width, height): the selection's bounds within the
        drawable; all of it when nothing is selected."""
        selection = drawable.image.selection
        ox, oy = drawable.offsets
        if selection.empty():
            return (True, 0, 0, drawable.width, drawable.height)
        xs, ys = [], []
        for y in range(selection.height):
            for x in range(selection.width):
                if selection.pixels[y * selection.width + x]:
                    xs.append(x - ox)
                    ys.append(y - oy)
        x1, y1 = max(0, min(xs)), max(0, min(ys))
        x2, y2 = min(drawable.width, max(xs) + 1), min(drawable.height, max(ys) + 1)
        if x2 <= x1 or y2 <= y1:
            return (False, 0, 0, 0, 0)
        return (True, x1, y1, x2 - x1, y2 - y1)

    def gimp_image_scale(self, image, width, height):
        """Image > Scale Image: every layer, mask and offset, and the selection."""
        _record("pdb.gimp_image_scale", image.ID, width, height)
        image.save_for_undo(image)
        fx, fy = width / image.width, height / image.height
        for layer in image.all_layers():
            layer.scaled(fx, fy)
            layer.offsets = (int(round(layer.offsets[0] * fx)), int(round(layer.offsets[1] * fy)))
            if layer.mask is not None:
                layer.mask.scaled(fx, fy)
        image.selection.scaled(fx, fy)
        image.width, image.height = width, height

    def gimp_layer_create_mask(self, layer, mask_type):
        """A new mask for the layer, not added yet."""
        _record("pdb.gimp_layer_create_mask", layer.name, mask_type)
        mask = Channel(layer.image, layer.name + " mask", layer.width, layer.height)
        if mask_type == ADD_MASK_WHITE:
            mask.pixels = bytearray(b"\xff" * (layer.width * layer.height))
        elif mask_type == ADD_MASK_SELECTION:
            selection, (ox, oy) = layer.image.selection, layer.offsets
            for y in range(layer.height):
                for x in range(layer.width):
                    ix, iy = x + ox, y + oy
                    if 0 <= ix < selection.width and 0 <= iy < selection.height:
                        mask.pixels[y * layer.width + x] = selection.pixels[iy * selection.width
                                                                            + ix]
        elif mask_type != ADD_MASK_BLACK:
            raise error("the double does not make masks of type %r" % mask_type)
        return mask

    def gimp_layer_remove_mask(self, layer, mode):
        _record("pdb.gimp_layer_remove_mask", layer.name, mode)
        if layer.mask is None:
            raise error("layer '%s' has no mask" % layer.name)
        if mode != MASK_DISCARD:
            raise error("the double only discards masks")
        if layer.attached():
            layer.image.save_for_undo(layer)
        layer.mask.layer, layer.mask = None, None

    def gimp_image_insert_channel(self, image, channel, parent, position):
        _record("pdb.gimp_image_insert_channel", image.ID, channel.name, position)
        if channel.image is not image or (channel.width, channel.height) != (image.width,
                                                                           image.height):
            raise error("the channel belongs to another image or has another size")
        image.save_for_undo(image)      # its undo removes the channel, pixels and all
        image.channels.insert(position, channel)
        channel.in_image = True

    def gimp_image_remove_channel(self, image, channel):
        _record("pdb.gimp_image_remove_channel", image.ID, channel.name)
        if channel not in image.channels:
            raise error("the channel is not in the image")
        image.save_for_undo(image)
        image.channels.remove(channel)
        channel.in_image = False

    def gimp_image_select_item(self, image, operation, item):
        """Only CHANNEL_OP_REPLACE with a channel of the image: the channel's
        values become the selection's."""
        _record("pdb.gimp_image_select_item", image.ID, operation, item.name)
        if operation != CHANNEL_OP_REPLACE or not getattr(item, "in_image", False):
            raise error("the double only replaces the selection with a channel of the image")
        image.save_for_undo(image.selection)
        image.selection.pixels = bytearray(item.pixels)

    def gimp_selection_none(self, image):
        _record("pdb.gimp_selection_none", image.ID)
        image.save_for_undo(image.selection)
        image.selection.pixels = bytearray(len(image.selection.pixels))

    def gimp_layer_add_mask(self, layer, mask):
        _record("pdb.gimp_layer_add_mask", layer.name)
        if layer.mask is not None:
            raise error("layer '%s' already has a mask" % layer.name)
        if (mask.width, mask.height) != (layer.width, layer.height):
            raise error("the mask's size differs from the layer's")
        if layer.attached():
            layer.image.save_for_undo(layer)
        layer.mask, mask.layer = mask, layer

    def gimp_image_new(self, width, height, base_type):
        _record("pdb.gimp_image_new", width, height, base_type)
        return Image(width, height, base_type)

    def gimp_layer_new_from_drawable(self, drawable, image):
        _record("pdb.gimp_layer_new_from_drawable", drawable.name, image.ID)
        layer = Layer(image, drawable.name, drawable.width, drawable.height, drawable.type,
                      drawable.opacity, drawable.mode)
        layer.pixels = bytearray(drawable.pixels)
        layer.offsets = drawable.offsets
        return layer

    def gimp_layer_scale(self, layer, width, height, local_origin):
        _record("pdb.gimp_layer_scale", layer.name, width, height, local_origin)
        if layer.attached():
            layer.image.save_for_undo(layer)
        layer.scaled(width / layer.width, height / layer.height)

    def gimp_layer_set_offsets(self, layer, x, y):
        _record("pdb.gimp_layer_set_offsets", layer.name, x, y)
        if layer.attached():
            layer.image.save_for_undo(layer)
        layer.offsets = (x, y)

    def gimp_image_insert_layer(self, image, layer, parent, position):
        _record("pdb.gimp_image_insert_layer", image.ID, layer.name, position)
        if layer.image is not image:
            raise error("the layer belongs to another image")
        if image.undo_enabled:
            image.save_for_undo(image)
        image.layers.insert(position, layer)
        layer.parent = image
        if image.active_layer is None:
            image.active_layer = layer

    def gimp_display_new(self, image):
        Display(image)
        return len(displays)

    def gimp_progress_set_text(self, text):
        _check_bytes(text, "gimp_progress_set_text")
        progress.append(("text", text))

    def gimp_image_delete(self, image):
        _record("pdb.gimp_image_delete", image.ID)
        image.valid = False

    def gimp_file_load(self, filename, raw_filename):
        """Loads the double's one file format, binary PPM and PGM."""
        _record("pdb.gimp_file_load", filename)
        try:
            width, height, channels, pixels = _pnm_read(filename)
        except (IOError, OSError, ValueError, KeyError, IndexError):
            raise RuntimeError("Procedure 'gimp-file-load' returned no return values")
        image = Image(width, height, RGB if channels == 3 else GRAY)
        image.filename = filename
        image.name = os.path.basename(filename)
        layer = Layer(image, image.name, width, height,
                      RGB_IMAGE if channels == 3 else GRAY_IMAGE)
        layer.pixels = bytearray(pixels)
        layer.parent = image
        image.layers.append(layer)
        image.active_layer = layer
        return image

    def gimp_image_merge_visible_layers(self, image, merge_type):
        _record("pdb.gimp_image_merge_visible_layers", image.ID, merge_type)
        if len(image.layers) != 1:
            raise error("the double merges only single-layer images")
        return image.layers[0]

    def gimp_file_save(self, image, drawable, filename, raw_filename):
        """Saves the drawable as PPM or PGM, whatever the name says."""
        _record("pdb.gimp_file_save", image.ID, drawable.name, filename)
        channels = CHANNELS[drawable.type]
        if drawable.has_alpha:
            raise error("the double saves no alpha")
        _pnm_write(filename, drawable.width, drawable.height, channels, drawable.pixels)


pdb = _Pdb()
gimp.pdb = pdb


# -- register() and main(), as gimpfu 2.10 has them -------------------------------------------

def _letter_check(text):
    allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    return all(ch in allowed for ch in text)


def register(proc_name, blurb, help, author, copyright, date, label, imagetypes, params,
             results, function, menu=None, domain=None, on_query=None, on_run=None):
    if not _letter_check(proc_name):
        raise error("procedure name contains illegal characters")
    for ent in params:
        if len(ent) < 4:
            raise error("parameter definition must contain at least 4 elements")
        if type(ent[0]) != int:
            raise error("parameter types must be integers")
        if not _letter_check(ent[1]):
            raise error("parameter name contains illegal characters")
        if ent[0] in (PF_OPTION, PF_RADIO, PF_SLIDER, PF_SPINNER) and len(ent) < 5:
            raise error("parameter %s needs its choices or bounds" % ent[1])
    for ent in results:
        if len(ent) < 3 or type(ent[0]) != int or not _letter_check(ent[1]):
            raise error("bad result definition %r" % (ent,))
    if not proc_name.startswith(("python-", "python_", "extension-", "extension_", "plug-in-",
                                 "plug_in_", "file-", "file_")):
        proc_name = "python-fu-" + proc_name
    if menu is None:
        raise error("the double supports only registrations with menu=")
    registered[proc_name] = dict(blurb=blurb, help=help, author=author, copyright=copyright,
                                 date=date, label=label, imagetypes=imagetypes,
                                 params=list(params), results=list(results), function=function,
                                 menu=menu, on_run=on_run)


def main():
    """Installs every registered procedure, as GIMP's query would."""
    for name, entry in sorted(registered.items()):
        params = [(PDB_INT32, "run-mode", "The run mode")] + [
            (PDB_TYPES[p[0]], p[1], p[2].replace("_", "")) for p in entry["params"]]
        queried.append((name, entry["menu"], entry["label"], params,
                        [(PDB_TYPES[r[0]], r[1], r[2]) for r in entry["results"]]))


def run(proc_name, run_mode, *args):
    """Call a procedure as GIMP would: RUN_INTERACTIVE with the values the
    user confirmed in the dialog, RUN_NONINTERACTIVE as a script does.
    Returns ("success", return values) or ("execution-error", exception)."""
    entry = registered[proc_name]
    params = entry["params"]
    if len(args) != len(params):
        return ("calling-error", "%s takes %d arguments, not %d" % (proc_name, len(params),
                                                                    len(args)))
    for param, value in zip(params, args):
        kind, name = param[0], param[1]
        if kind == PF_OPTION and not 0 <= value < len(param[4]):
            return ("calling-error", "%s: %r is not one of its options" % (name, value))
        if kind == PF_RADIO and value not in [v for _, v in param[4]]:
            return ("calling-error", "%s: %r is not one of its choices" % (name, value))
    if run_mode == RUN_INTERACTIVE and entry["on_run"] is not None:
        entry["on_run"]()
    try:
        values = entry["function"](*args)
    except Exception as exception:       # pygimp: PyErr_Print, GIMP_PDB_EXECUTION_ERROR
        return ("execution-error", exception)
    if run_mode != RUN_NONINTERACTIVE:
        gimp.displays_flush()
    if not entry["results"]:
        values = ()
    elif len(entry["results"]) == 1 or not isinstance(values, tuple):
        values = (values,)
    if len(values) != len(entry["results"]):
        return ("execution-error", "returned %d values for %d results" % (
            len(values), len(entry["results"])))
    return ("success", values)


def make_layer(image, name, width, height, type, pixels, offsets=(0, 0), position=None):
    """A test helper: a layer with these pixels, added to the image as if the
    user had made it (no undo step)."""
    layer = Layer(image, name, width, height, type)
    layer.pixels = bytearray(pixels)
    layer.offsets = offsets
    layer.parent = image
    image.layers.insert(len(image.layers) if position is None else position, layer)
    if image.active_layer is None:
        image.active_layer = layer
    return layer


def struct_pixels(values):
    return struct.pack("%dB" % len(values), *values)
