"""Reading weights from disk, safely.

Pickle files can run arbitrary code when loaded, so weights are read only
from safetensors files, or from PyTorch checkpoints through
torch.load(weights_only=True), which refuses anything but tensors and plain
containers. Nothing here ever unpickles freely.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

SAFETENSORS = (".safetensors",)
TORCH_CHECKPOINTS = (".pth", ".pt", ".pkl", ".ckpt", ".bin")


class WeightsError(Exception):
    """A weights file that cannot be used; the message says why, for the user."""


def load_state_dict(path: str | Path, container_keys: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Tensors by name from a safetensors file or a PyTorch checkpoint.

    container_keys: where a checkpoint may nest its state dict (e.g. "model"
    in the official MIMO-UNet release, "params_ema" in BasicSR's)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError("%s does not exist." % path)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS:
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except Exception as error:  # noqa: BLE001 - the library raises several kinds
            raise WeightsError("%s is not a valid safetensors file (%s)." % (path, error))
    if suffix not in TORCH_CHECKPOINTS:
        raise WeightsError("%s: weights must be .safetensors or a PyTorch checkpoint (%s)."
                           % (path, ", ".join(TORCH_CHECKPOINTS)))
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise WeightsError("%s cannot be loaded safely: it holds more than weights, or is "
                           "damaged (%s)." % (path, str(error).splitlines()[0]))
    for key in container_keys:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise WeightsError("%s does not hold a state dict (names to tensors)." % path)
    return loaded
