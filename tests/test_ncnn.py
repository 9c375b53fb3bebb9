"""SharpFu's own ncnn reader and converter (models/ncnn.py,
models/ncnn_convert.py): small synthetic ncnn models written by the tests
round-trip into the networks they came from, without ncnn; bad files are
refused with a reason. The check against ncnn itself is in
test_ncnn_official.py (slow, needs the `ncnn` package)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ncnn_writer
from models import community, ncnn, ncnn_convert, registry
from models.span_official import SPANOfficial


@pytest.fixture(scope="module")
def spandrel():
    return community.spandrel()


def small_span(spandrel, scale=2, channels=8, seed=0):
    from spandrel.architectures.SPAN import SPAN
    torch.manual_seed(seed)
    model = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=channels, upscale=scale)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.5)
    return model.eval()


def image(size=20, seed=1):
    return ncnn_convert.probe(size, seed)


@pytest.mark.parametrize("scale", [2, 4])
def test_span_round_trip(spandrel, scale):
    """The authors' SPAN (spandrel's, in their training layout) written as
    ncnn folds each Conv3XC; the conversion is SharpFu's network of the
    folded kernels, computing exactly what the graph computes."""
    model = small_span(spandrel, scale)
    param, weights = ncnn_writer.span(model)
    graph = ncnn.read(param, weights)
    assert [layer.stored_as for layer in graph.convolutions] == ["float16"] * 22
    converted = ncnn_convert.convert(graph)
    assert converted.architecture == "span-official" and converted.scale == scale
    # the folded kernels read back are the float16-rounded ones written
    model.conv_1.update_params()
    assert torch.equal(converted.state_dict["conv_1.eval_conv.weight"],
                       model.conv_1.eval_conv.weight.half().float())
    rebuilt = registry.build(converted.state_dict)
    assert isinstance(rebuilt.model, SPANOfficial)
    assert rebuilt.params == {"scale": scale, "channels": 8}
    assert not any(".sk." in key or ".conv." in key for key in converted.state_dict)
    x = image()
    with torch.no_grad():
        from_graph = ncnn.run(graph, x)
        assert torch.equal(rebuilt.model(x), from_graph)
        # and the graph computes what the original network computes, up to
        # the float16 rounding of its weights
        assert (model(x) - from_graph).abs().max() < 0.05
    assert from_graph.shape == (1, 3, 20 * scale, 20 * scale)


def test_converted_span_trains_as_the_plain_network_it_is(spandrel):
    """Fine-tuning trains the folded 3x3 kernels directly: training mode
    computes what evaluation computes, and every kernel gets a gradient."""
    converted = ncnn_convert.convert(ncnn.read(*ncnn_writer.span(small_span(spandrel))))
    model = registry.build(converted.state_dict).model
    x = image()
    with torch.no_grad():
        evaluated = model.eval()(x)
    model.train()
    trained = model(x)
    assert torch.equal(trained, evaluated)
    trained.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_the_authors_training_layout_is_left_to_spandrel(spandrel):
    """A SPAN .pth in the authors' training layout (Conv3XC branches beside
    eval_conv) is spandrel's SPAN, not SharpFu's folded one."""
    loaded = registry.build(small_span(spandrel).state_dict())
    assert loaded.architecture.name == "spandrel:SPAN" and loaded.spec.scale == 2
    assert loaded.spec.exact_tiles and loaded.spec.receptive_radius == 21


def test_compact_round_trip(spandrel):
    from spandrel.architectures.Compact import Compact
    torch.manual_seed(3)
    model = ncnn_writer.half_rounded(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=4,
                                             upscale=4)).eval()
    graph = ncnn.read(*ncnn_writer.compact(model))
    converted = ncnn_convert.convert(graph)
    assert converted.architecture == "spandrel:Compact" and converted.scale == 4
    x = image()
    with torch.no_grad():
        assert (model(x) - ncnn.run(graph, x)).abs().max() < 1e-5
        assert torch.equal(registry.build(converted.state_dict).model(x),
                           model(x).clamp(0, 1))   # spandrel clamps what it returns
    for key, value in model.state_dict().items():
        assert torch.equal(converted.state_dict[key], value), key


def test_rrdb_round_trip(spandrel):
    from spandrel.architectures.ESRGAN import ESRGAN
    torch.manual_seed(4)
    channels, growth, blocks = 8, 32, 1   # spandrel fixes the growth at 32
    state = {}

    def conv(key, out, inp):
        state[key + ".weight"] = (torch.randn(out, inp, 3, 3) * 0.1).half().float()
        state[key + ".bias"] = torch.randn(out) * 0.01

    conv("conv_first", channels, 3)
    for b in range(blocks):
        for r in (1, 2, 3):
            for c in range(1, 6):
                conv("body.%d.rdb%d.conv%d" % (b, r, c), growth if c < 5 else channels,
                     channels + (c - 1) * growth)
    for key in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(key, channels, channels)
    conv("conv_last", 3, channels)
    graph = ncnn.read(*ncnn_writer.rrdb(state, blocks))
    converted = ncnn_convert.convert(graph)
    assert converted.architecture == "spandrel:ESRGAN" and converted.scale == 4
    assert set(converted.state_dict) == set(state)
    model = registry.build(state).model
    assert isinstance(model.net, ESRGAN)
    x = image(12)
    with torch.no_grad():
        assert (model.net(x) - ncnn.run(graph, x)).abs().max() < 1e-5


def test_float32_and_table_weights_are_read():
    w = ncnn_writer.Writer()
    w.layer("Input", "in", [], ["data"])
    w.layer("Convolution", "a", ["data"], ["a"], "0=1 1=1 5=0 6=3")
    w.data += (0).to_bytes(4, "little")
    w.floats([1.0, 2.0, 3.0])
    w.layer("Convolution", "b", ["a"], ["output"], "0=1 1=1 5=0 6=1")
    w.data += (0x01020304).to_bytes(4, "little")    # any other tag: a value table
    table = np.zeros(256, np.float32)
    table[7] = -0.5
    w.floats(table)
    w.data += bytes([7, 0, 0, 0])
    graph = ncnn.read(*w.files())
    assert graph.layers[1].stored_as == "float32"
    assert graph.layers[2].weights["weight"].ravel().tolist() == [-0.5]
    x = torch.ones(1, 3, 2, 2)
    assert torch.allclose(ncnn.run(graph, x), torch.full((1, 1, 2, 2), -3.0))


def test_damaged_and_foreign_files_are_refused(spandrel):
    param, weights = ncnn_writer.span(small_span(spandrel))
    with pytest.raises(ncnn.NcnnError, match="ends early"):
        ncnn.read(param, weights[:-8])
    with pytest.raises(ncnn.NcnnError, match="does not belong"):
        ncnn.read(param, weights + b"\0" * 8)
    with pytest.raises(ncnn.NcnnError, match="not an ncnn .param"):
        ncnn.read(b"hello\n", weights)
    with pytest.raises(ncnn.NcnnError, match="Deconvolution"):
        ncnn.read(param.replace(b"Swish", b"Deconvolution", 1), weights)
    with pytest.raises(ncnn.NcnnError, match="int8"):
        ncnn.read(param, weights[:12] + (0x000D4B38).to_bytes(4, "little") + weights[16:])


def test_span_with_other_normalisation_is_refused(spandrel):
    param, weights = ncnn_writer.span(small_span(spandrel))
    other = np.array([0.5, 0.5, 0.5], "<f4").tobytes()
    with pytest.raises(ncnn_convert.ConversionError, match="normalise"):
        ncnn_convert.convert(ncnn.read(param, other + weights[12:]))


def test_miswired_graph_fails_the_check(spandrel):
    """A graph whose layers are SPAN's but wired otherwise converts to
    weights that do not reproduce it: the check catches that."""
    param, weights = ncnn_writer.span(small_span(spandrel))
    rewired = param.replace(b"feature tail b1_out b6_1a", b"feature tail b1_out b6_1")
    with pytest.raises(ncnn_convert.ConversionError, match="differs"):
        ncnn_convert.convert(ncnn.read(rewired, weights))
