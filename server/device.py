"""The compute device: which one, how much memory it has free, and what an
out-of-memory failure looks like on it."""
from __future__ import annotations

import psutil
import torch


class DeviceError(Exception):
    pass


def select(preference: str = "auto") -> torch.device:
    """CUDA when present, else the CPU; or exactly what the user asked for."""
    if preference in ("", "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise DeviceError("Unknown device %r; use auto, cpu, cuda, cuda:N or mps." % preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("Device %r was asked for, but this torch build sees no CUDA GPU "
                          "(torch %s). Use --device cpu, or reinstall with install.py on a "
                          "machine with an NVIDIA driver." % (preference, torch.__version__))
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError("There is no GPU %r; this machine has %d." % (
            preference, torch.cuda.device_count()))
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("Device 'mps' was asked for, but Metal is not available here.")
    return device


def half_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The arithmetic networks run in: fp16 or bf16 on GPUs, fp32 on the CPU
    (where half precision is slower, not faster)."""
    if precision == "fp32" or device.type == "cpu":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    return torch.float16


def memory(device: torch.device) -> tuple[int, int]:
    """(free, total) bytes of the device's memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)
    info = psutil.virtual_memory()
    return info.available, info.total


def describe(device: torch.device, precision: str) -> dict:
    free, total = memory(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = "Apple Metal"
    else:
        name = "CPU (%d threads)" % torch.get_num_threads()
    return {"type": device.type, "name": name, "index": device.index,
            "network_precision": str(half_dtype(device, precision)).replace("torch.", ""),
            "memory_free": free, "memory_total": total, "torch": torch.__version__}


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text
                                                or "can't allocate memory" in text)


def release_cached(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
