"""Pixels between GIMP 2.10 layers and SharpFu frames, through pixel regions.

GIMP 2.10's Python-Fu sees every image as 8 bits per channel: its pixel
regions hand out and take byte strings (str in GIMP's Python 2.7) in the
layer's own layout (grey, grey+alpha, RGB, RGBA), whatever the image's
precision. So a 16-bit or 32-bit image can only be worked on in 8 bits, and
then only when the user says so (see check_precision).

Nothing here changes an image until apply(), which does it all inside one
undo group: a single Ctrl+Z restores the document.
"""
import sys

from gimpfu import gimp, pdb

from sharpfu_client import Frame, layers
from sharpfu_client.layers import Refusal, Region

ADD_MASK_SELECTION = 4           # GimpAddMaskType; its Python name changed in 2.10
ADD_MASK_BLACK = 1
MASK_DISCARD = 1                 # GimpMaskApplyMode
CHANNEL_OP_REPLACE = 2           # GimpChannelOps
HIGH_BIT_DEPTH = 200             # GimpPrecision: the 8-bit ones are 100 and 150
INDEXED = 2                      # GimpImageBaseType


def native(text):
    """Text GIMP 2.10's Python functions accept: a byte string under Python 2
    (the server's messages arrive as unicode there), str under Python 3."""
    if sys.version_info[0] < 3 and not isinstance(text, str):
        return text.encode("utf-8")
    return text


def read(drawable, region, name="image"):
    """The drawable's pixels inside `region` as an 8-bit Frame."""
    pixels = drawable.get_pixel_rgn(region.x, region.y, region.width, region.height,
                                    False, False)
    data = pixels[region.x:region.x + region.width, region.y:region.y + region.height]
    return Frame(data, region.width, region.height, drawable.bpp, "u8", name)


def as_string(data):
    """Pixel regions take only byte strings (str in Python 2)."""
    return data if isinstance(data, bytes) else memoryview(data).tobytes()


def write(drawable, frame, x, y, shadow):
    """Write a frame at (x, y). Through the shadow (shadow=True), GIMP merges
    it through the selection, feathering included, as one undo step; else it
    goes straight in, which only a step that saved the old pixels first
    (Scale Image) or a drawable nobody has seen yet may take."""
    pixels = drawable.get_pixel_rgn(x, y, frame.width, frame.height, True, shadow)
    pixels[x:x + frame.width, y:y + frame.height] = as_string(frame.data)
    drawable.flush()
    if shadow:
        drawable.merge_shadow(True)
    drawable.update(x, y, frame.width, frame.height)


def is_high_bit_depth(image):
    return pdb.gimp_image_get_precision(image) >= HIGH_BIT_DEPTH


def check_precision(image, accept_8_bit):
    if is_high_bit_depth(image) and not accept_8_bit:
        raise Refusal(
            "This image has more than 8 bits per channel, and GIMP 2.10's Python-Fu can only "
            "read and write 8 bits, so the result would lose that precision. Tick 'Work in 8 "
            "bits on a 16/32-bit image' in the dialog (or pass 1 for high-bit-depth-as-8-bit) "
            "to go on anyway, convert the image with Image > Precision > 8 bit integer, or use "
            "SharpFu in GIMP 3, which keeps the full precision.")


def layer_of(drawable):
    """The layer a drawable is, or whose mask it is."""
    if pdb.gimp_item_is_layer_mask(drawable):
        return pdb.gimp_layer_from_mask(drawable)
    return drawable


def check_layer(image, drawable, changes_layer=True):
    """Refuse what cannot be processed, before any work is done."""
    layers.check_drawable(
        native(drawable.name), indexed=image.base_type == INDEXED,
        mask_or_channel=pdb.gimp_item_is_layer_mask(drawable) or pdb.gimp_item_is_channel(
            drawable), group=pdb.gimp_item_is_group(drawable),
        locked=changes_layer and pdb.gimp_item_get_lock_content(drawable))


def check_size(image, scale):
    layers.check_scaled_size(image.width, image.height, scale)


class LayerChange(layers.Change):
    """One layer's part of a change (sharpfu_client.layers.Change), in 8
    bits. whole=True: the whole layer, whatever is selected (for a result
    that goes into a new image)."""

    def __init__(self, image, layer, scale, whole=False):
        self.image = image
        layers.Change.__init__(
            self, layer, native(layer.name), layer.width, layer.height, scale,
            None if whole or scale != 1 else pdb.gimp_drawable_mask_intersect(layer))

    def read(self):
        return read(self.layer, self.source)

    def take(self, frame):
        layers.Change.take(self, frame, self.layer.bpp, "u8")


def apply(image, changes, scale):
    """Write the answers of `changes` (LayerChanges of `image`, each with its
    pixels) into the image, as one undo step however many layers."""
    pdb.gimp_image_undo_group_start(image)
    try:
        if scale == 1:
            for change in changes:
                write(change.layer, change.answer_in_target(), change.target.x, change.target.y,
                      shadow=True)
        else:
            scale_image(image, changes, scale)
    finally:
        pdb.gimp_image_undo_group_end(image)
    gimp.displays_flush()


def scale_image(image, changes, scale):
    """Image > Scale Image by `scale`, with the model's pixels in the changed
    layers. The scale step's undo holds their old pixels, so the model's go
    straight in: through the shadow they would land only inside the
    selection, leaving GIMP's interpolation outside it."""
    pdb.gimp_image_scale(image, image.width * scale, image.height * scale)
    for change in changes:
        layer, pixels = change.layer, change.pixels
        if (layer.width, layer.height) != (pixels.width, pixels.height):
            raise RuntimeError("layer '%s' became %dx%d, not %dx%d" % (
                native(layer.name), layer.width, layer.height, pixels.width, pixels.height))
        write(layer, pixels, 0, 0, shadow=False)


def new_image(source, layer, frame):
    """A new image holding the frame as its one layer (a copy of `layer`, with
    its name, mode and opacity). Its history starts empty."""
    image = pdb.gimp_image_new(frame.width, frame.height, source.base_type)
    pdb.gimp_image_undo_disable(image)
    result = pdb.gimp_layer_new_from_drawable(layer, image)
    pdb.gimp_image_insert_layer(image, result, None, 0)
    pdb.gimp_layer_set_offsets(result, 0, 0)
    if (result.width, result.height) != (frame.width, frame.height):
        pdb.gimp_layer_scale(result, frame.width, frame.height, False)
    write(result, frame, 0, 0, shadow=False)
    pdb.gimp_image_undo_enable(image)
    return image


class MatteChange(object):
    """Refine Matte on one layer: its mask, or else the selection, is the
    coarse mask; the refined matte becomes the layer's mask."""

    def __init__(self, image, layer):
        self.image, self.layer = image, layer
        self.mask = layer.mask
        self.new_mask = None
        self.alpha = None
        if self.mask is None:
            if pdb.gimp_selection_is_empty(image):
                raise Refusal(
                    "Refine Matte needs a rough mask to start from: add a layer mask to '%s' "
                    "(Layer > Mask > Add Layer Mask) or select the subject roughly, then try "
                    "again." % native(layer.name))
            # A mask made from the selection lines up with the layer, offsets and
            # all; it is only added to the layer once the matte is in.
            self.new_mask = pdb.gimp_layer_create_mask(layer, ADD_MASK_SELECTION)

    def frames(self):
        whole = Region(0, 0, self.layer.width, self.layer.height)
        return [read(self.layer, whole), read(self.mask or self.new_mask, whole, "mask")]

    def take(self, frame):
        if (frame.width, frame.height, frame.channels, frame.format) != (
                self.layer.width, self.layer.height, 1, "u8"):
            raise Refusal("The SharpFu server answered with a %dx%d matte of %d channels "
                          "instead of %dx%d of 1; the image is unchanged." % (
                              frame.width, frame.height, frame.channels, self.layer.width,
                              self.layer.height))
        self.alpha = frame

    def discard(self):
        """After a failure: the unused mask made from the selection goes."""
        if self.new_mask is not None:
            pdb.gimp_item_delete(self.new_mask)
            self.new_mask = None

    def apply(self):
        pdb.gimp_image_undo_group_start(self.image)
        try:
            if self.mask is not None:
                # Through the shadow: one undo step, and a selection limits the change.
                write(self.mask, self.alpha, 0, 0, shadow=True)
            else:
                write(self.new_mask, self.alpha, 0, 0, shadow=False)
                pdb.gimp_layer_add_mask(self.layer, self.new_mask)
        finally:
            pdb.gimp_image_undo_group_end(self.image)
        gimp.displays_flush()


class SubjectChange(object):
    """Select Subject on one layer: the server's mask of the subject
    replaces the selection (result "selection") or becomes the layer's mask
    ("mask")."""

    def __init__(self, image, layer, result):
        self.image, self.layer, self.result = image, layer, result
        self.mask = None

    def frames(self):
        return [read(self.layer, Region(0, 0, self.layer.width, self.layer.height))]

    def take(self, frame):
        if (frame.width, frame.height, frame.channels, frame.format) != (
                self.layer.width, self.layer.height, 1, "u8"):
            raise Refusal("The SharpFu server answered with a %dx%d mask of %d channels "
                          "instead of %dx%d of 1; the image is unchanged." % (
                              frame.width, frame.height, frame.channels, self.layer.width,
                              self.layer.height))
        self.mask = frame

    def apply(self):
        pdb.gimp_image_undo_group_start(self.image)
        try:
            if self.result == "mask":
                self.replace_mask()
            else:
                self.replace_selection()
        finally:
            pdb.gimp_image_undo_group_end(self.image)
        gimp.displays_flush()

    def replace_mask(self):
        """A new mask holding the subject's, in place of any old one (written
        before it is added: the adding is the undo step)."""
        if self.layer.mask is not None:
            pdb.gimp_layer_remove_mask(self.layer, MASK_DISCARD)
        mask = pdb.gimp_layer_create_mask(self.layer, ADD_MASK_BLACK)
        write(mask, self.mask, 0, 0, shadow=False)
        pdb.gimp_layer_add_mask(self.layer, mask)

    def replace_selection(self):
        """Through a channel of the image's size, there for the moment:
        selecting it is the undo step that brings the old selection back.
        Outside the layer nothing is selected."""
        image, (x, y) = self.image, self.layer.offsets
        left, top = max(0, x), max(0, y)
        right = min(image.width, x + self.mask.width)
        bottom = min(image.height, y + self.mask.height)
        if right <= left or bottom <= top:
            pdb.gimp_selection_none(image)
            return
        channel = gimp.Channel(image, native(self.layer.name) + " (subject)", image.width,
                               image.height, 50.0, (0, 0, 0))
        pdb.gimp_image_insert_channel(image, channel, None, 0)
        try:
            inside = layers.crop(self.mask, left - x, top - y, right - left, bottom - top)
            # pixel regions take the channel's stored values, which selecting
            # it copies into the selection as they are
            write(channel, inside, left, top, shadow=False)
            pdb.gimp_image_select_item(image, CHANNEL_OP_REPLACE, channel)
        finally:
            pdb.gimp_image_remove_channel(image, channel)
