"""SharpFu's results written back into an image, as one undo step.

Shared by the filters (one layer) and AI Batch (every layer of an image). At
1x a layer changes only inside the selection, through GIMP's shadow buffer,
so that a feathered selection blends the result in as GIMP's own filters do.
Above 1x the image is scaled as Image > Scale Image does: the processed
layers get the model's pixels, the others, layer masks and the selection
GIMP's interpolation, and offsets scale with the image.
"""
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

import gimp_pixels  # noqa: E402
from sharpfu_client import layers  # noqa: E402


class LayerChange(layers.Change):
    """One layer's part of a change (sharpfu_client.layers.Change), read in
    the image's own precision. With whole=True (for a result that goes
    elsewhere) the whole layer, whatever is selected."""

    def __init__(self, image, layer, scale, whole=False):
        self.image = image
        layers.Change.__init__(self, layer, layer.get_name(), layer.get_width(),
                               layer.get_height(), scale,
                               None if whole or scale != 1 else layer.mask_intersect())

    def read(self):
        """The pixels to send, as a Frame in the image's own precision."""
        return gimp_pixels.read(self.layer, self.source, gimp_pixels.sample_format(self.image))


def result_size(image, layer, scale, whole_image=True):
    """The ResultSize of a job at `scale`: the whole image scaled (in place;
    every layer grows), or only `layer` (a result that opens as a new image)."""
    if not whole_image:
        width, height = layer.get_width() * scale, layer.get_height() * scale
        return layers.ResultSize(width, height, width * height * layer.get_bpp())
    every = [found for found, _ in layers.walk(
        image.get_layers(), lambda item: item.is_group(), lambda item: item.get_children(),
        lambda item: False)]
    nbytes = sum(item.get_width() * item.get_height() * item.get_bpp() for item in every)
    return layers.ResultSize(image.get_width() * scale, image.get_height() * scale,
                             nbytes * scale * scale)


def guard(size, title, interactive, allowed, confirm):
    """Refuse a very large result (layers.ResultSize.too_large) unless a
    user at the dialog confirms it (confirm(title, question) says True) or a
    script allowed it; Refusal otherwise, before anything is done."""
    reason = size.too_large(layers.free_memory())
    if reason is None or allowed:
        return
    if interactive:
        if confirm(title, reason + " Go on?"):
            return
        raise layers.Declined(reason)
    raise layers.Refusal(reason + " The image is unchanged. To go on anyway, pass allow-large "
                         "(true), or use a smaller scale or selection.")


def check_size(image, scale):
    """Refuse a scale that would make the image larger than GIMP allows."""
    layers.check_scaled_size(image.get_width(), image.get_height(), scale, Gimp.MAX_IMAGE_SIZE)


def apply(image, changes, scale):
    """Write the answers of `changes` (LayerChanges of `image`, each with its
    pixels) into the image: one undo step, however many layers."""
    image.undo_group_start()
    try:
        if scale == 1:
            for change in changes:
                gimp_pixels.write_undoable(change.layer, change.answer_in_target(),
                                           change.target.x, change.target.y)
        else:
            scale_image(image, changes, scale)
    finally:
        image.undo_group_end()
    Gimp.displays_flush()


def scale_image(image, changes, scale):
    """Image > Scale Image by `scale`, with the model's pixels in the changed layers."""
    Gimp.context_push()     # image.scale() interpolates with the context's (the user's) choice
    try:
        image.scale(image.get_width() * scale, image.get_height() * scale)
    finally:
        Gimp.context_pop()
    for change in changes:
        layer, pixels = change.layer, change.pixels
        if (layer.get_width(), layer.get_height()) != (pixels.width, pixels.height):
            raise RuntimeError("layer '%s' became %dx%d, not %dx%d" % (
                layer.get_name(), layer.get_width(), layer.get_height(), pixels.width,
                pixels.height))
        # The scale step's undo already holds the layer's old pixels, so this
        # write needs no undo step of its own. merge_shadow() would add one (a
        # second copy of the enlarged layer in memory) and would write only
        # inside the selection, leaving GIMP's interpolation outside it.
        gimp_pixels.write_direct(layer, pixels)
