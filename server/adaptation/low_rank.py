"""Low-rank adapters for convolutions (LoRA: Hu et al., ICLR 2022, with the
convolutional form many later works use): a frozen kernel W plus a change
U·D of rank r, where D is a convolution of W's shape with r outputs and U a
1x1 convolution back to W's outputs. U starts at zero, so an adapted network
starts exactly as the shipped one, and a step can only move each kernel
within an r-dimensional family.

The change merges into the kernel exactly (W + U·D is one convolution), so
what adaptation keeps is a plain state dict of the original network, with
the original names: an adapted model loads, tiles and runs in half precision
like the shipped one, and nothing of this module is needed to serve it.
"""
from __future__ import annotations

import torch
from torch import nn


class LowRankConv(nn.Module):
    def __init__(self, conv: nn.Conv2d, rank: int):
        super().__init__()
        if conv.groups != 1:
            raise ValueError("grouped convolutions take no low-rank adapter")
        self.conv = conv
        rank = min(rank, conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1],
                   conv.out_channels)
        self.down = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, stride=conv.stride,
                              padding=conv.padding, dilation=conv.dilation, bias=False,
                              padding_mode=conv.padding_mode)
        self.up = nn.Conv2d(rank, conv.out_channels, 1, bias=False)
        nn.init.zeros_(self.up.weight)
        self.down.to(conv.weight)
        self.up.to(conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.up(self.down(x))

    def merged_weight(self) -> torch.Tensor:
        return self.conv.weight + torch.einsum("or,rikl->oikl", self.up.weight[:, :, 0, 0],
                                               self.down.weight)


def attach(model: nn.Module, rank: int) -> list[nn.Parameter]:
    """Freeze `model`, wrap every convolution in a LowRankConv, and return
    the parameters to train: the adapters and the convolutions' biases (a
    bias is as cheap to adapt as a rank, and shifts what a layer passes on)."""
    for param in model.parameters():
        param.requires_grad_(False)
    convs = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Conv2d)]
    trainable = []
    for name, conv in convs:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        adapter = LowRankConv(conv, rank)
        setattr(parent, child, adapter)
        trainable += [adapter.down.weight, adapter.up.weight]
        if conv.bias is not None:
            conv.bias.requires_grad_(True)
            trainable.append(conv.bias)
    return trainable


def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of `model` with every adapter merged into its kernel,
    under the names the network had before `attach`."""
    adapters = {name: module for name, module in model.named_modules()
                if isinstance(module, LowRankConv)}
    state = {key: value.detach().clone() for key, value in model.state_dict().items()
             if not any(key.startswith(name + ".") for name in adapters)}
    for name, adapter in adapters.items():
        state[name + ".weight"] = adapter.merged_weight().detach().clone()
        if adapter.conv.bias is not None:
            state[name + ".bias"] = adapter.conv.bias.detach().clone()
    return state
