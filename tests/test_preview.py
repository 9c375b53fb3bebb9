"""The dialogs' preview apart from GIMP (sharpfu_client.preview): which
part of the layer it shows and sends, and its before and after cut out of
what comes back."""
import numpy as np
import pytest

from sharpfu_client import Frame
from sharpfu_client.layers import CONTEXT
from sharpfu_client.preview import ALIGN, SIDE, Crop


def box(region):
    return (region.x, region.y, region.width, region.height)


@pytest.mark.parametrize("scale, side", [(1, 256), (2, 128), (4, 64)])
def test_about_256_output_pixels_around_the_centre_with_context(scale, side):
    crop = Crop(2000, 1500, scale, (1000, 700))
    assert box(crop.target) == (1000 - side // 2, 700 - side // 2, side, side)
    assert side * scale == SIDE
    # CONTEXT or a little more (up to ALIGN - 1) before, CONTEXT after
    x, y = crop.target.x, crop.target.y
    assert x - CONTEXT - ALIGN < crop.source.x <= x - CONTEXT and crop.source.x % ALIGN == 0
    assert y - CONTEXT - ALIGN < crop.source.y <= y - CONTEXT and crop.source.y % ALIGN == 0
    assert crop.source.x + crop.source.width == x + side + CONTEXT
    assert crop.source.y + crop.source.height == y + side + CONTEXT


def test_near_an_edge_it_stays_inside_the_layer():
    crop = Crop(1000, 800, 2, (10, 790))
    assert box(crop.target) == (0, 800 - 128, 128, 128)
    assert box(crop.source) == (0, 800 - 128 - CONTEXT, 128 + CONTEXT, 128 + CONTEXT)
    crop = Crop(1000, 800, 1, (999.5, 0))
    assert box(crop.target) == (1000 - 256, 0, 256, 256)
    # 616 is 8 past a multiple of ALIGN
    assert box(crop.source) == (608, 0, 1000 - 608, 256 + CONTEXT)


def test_a_small_layer_is_shown_whole():
    crop = Crop(100, 40, 2, (50, 20))
    assert box(crop.target) == box(crop.source) == (0, 0, 100, 40)
    crop = Crop(300, 40, 4, (290, 20))
    assert box(crop.target) == (300 - 64, 0, 64, 40)


@pytest.mark.parametrize("origin", [(0, 0), (75, 13), (5, 300), (400, 400)])
def test_the_context_keeps_the_filters_alignment(origin):
    """At 1x with a selection, the filter sends from the selection's corner
    less its own context; a network that subsamples gives the same pixels
    only when the preview's corner lies a multiple of its stride from it."""
    for centre in ((263, 191), (40, 30), (700, 500), (130, 140)):
        crop = Crop(800, 600, 1, centre, origin)
        source, target = crop.source, crop.target
        assert (source.x - origin[0]) % ALIGN == 0 or source.x == 0
        assert (source.y - origin[1]) % ALIGN == 0 or source.y == 0
        assert 0 <= source.x <= target.x and 0 <= source.y <= target.y
        assert source.x + source.width >= target.x + target.width
        assert source.y + source.height >= target.y + target.height
        # all the context the layer has, up to CONTEXT, or from the filter's own corner
        assert target.x - source.x >= min(CONTEXT, target.x - origin[0] % ALIGN)
        assert target.y - source.y >= min(CONTEXT, target.y - origin[1] % ALIGN)


def coordinates(width, height):
    """A u16 frame whose pixels say where they are: (x, y)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x, y], axis=-1).astype("<u2")


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_before_and_after_are_cut_from_the_answer_at_the_target(scale):
    crop = Crop(900, 700, scale, (420, 333), (0, 0))
    source, target = crop.source, crop.target
    sent = coordinates(900, 700)[source.y:source.y + source.height,
                                 source.x:source.x + source.width]
    answer = sent.repeat(scale, 0).repeat(scale, 1)     # an "upscaler" that repeats pixels
    frame = Frame(answer.tobytes(), source.width * scale, source.height * scale, 2, "u16")
    shown = crop.shown(frame)
    assert (shown.width, shown.height) == (target.width * scale, target.height * scale)
    pixels = np.frombuffer(shown.data, "<u2").reshape(shown.height, shown.width, 2)
    assert pixels[0, 0].tolist() == [target.x, target.y]
    assert pixels[-1, -1].tolist() == [target.x + target.width - 1, target.y + target.height - 1]
    expected = coordinates(900, 700)[target.y:target.y + target.height,
                                     target.x:target.x + target.width]
    assert np.array_equal(pixels, expected.repeat(scale, 0).repeat(scale, 1))
    # the pixels sent, at 1x: the before of a filter that keeps the size
    unscaled = crop.shown(Frame(sent.tobytes(), source.width, source.height, 2, "u16"), 1)
    assert np.array_equal(np.frombuffer(unscaled.data, "<u2").reshape(expected.shape), expected)
