"""What weights carry about themselves, and what a benchmark says about
the machine it ran on.

Shipped weights come in pairs, NAME.safetensors and its record NAME.json:
what they are for (ops, scale, the catalog method they serve under) and how
they were made (commands, data, commit, device, duration, the runs behind
the weights they started from, validation numbers).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def write_weights(weights_dir: Path, name: str, tensors: dict[str, torch.Tensor],
                  record: dict, trained_by: str) -> Path:
    """NAME.safetensors and its record NAME.json in `weights_dir`; the file
    must rebuild, through the registry's detection, into the network the
    record names. Returns the weights' path."""
    from safetensors.torch import save_file

    from models import registry
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / (name + ".safetensors")
    save_file(tensors, str(path), metadata={"architecture": record["architecture"],
                                            "trained_by": trained_by})
    loaded = registry.load(path)
    if loaded.architecture.name != record["architecture"] \
            or loaded.params != record["hyper_parameters"]:
        raise RuntimeError("%s rebuilds as %s %s, not as its record says" % (
            path, loaded.architecture.name, loaded.params))
    record = dict(record, parameters=sum(v.numel() for v in tensors.values()))
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print("wrote %s (%d parameters) and its record" % (path, record["parameters"]), flush=True)
    return path


def git_commit() -> dict:
    def git(*args):
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        except OSError:   # no git at all
            return ""
        return done.stdout if done.returncode == 0 else ""
    commit = git("rev-parse", "HEAD").strip()
    if not commit:
        # A copy of the working tree without .git (the GPU machine's): the
        # commit comes from whoever started the run, or stays unknown.
        return {"commit": os.environ.get("SHARPFU_COMMIT") or None,
                "uncommitted_changes_in_models_or_training": None}
    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    ours = [p for p in changed if p.startswith(("models/", "training/", "scripts/"))]
    return {"commit": commit, "uncommitted_changes_in_models_or_training": ours}


def training_history(weights: Path) -> list[dict]:
    """The runs behind `weights` (--init), newest first, from the record
    beside them: GPU runs start from the shipped weights and replace them,
    and the record is then the only place the earlier runs are named."""
    record = Path(weights).with_suffix(".json")
    if not record.is_file():
        return []
    training = json.loads(record.read_text()).get("training", {})
    return [{"weights": str(weights), **{key: training.get(key) for key in (
        "steps", "training_seconds", "commands", "git", "device")}}] + list(
        (training.get("init") or {}).get("earlier_runs") or training.get("earlier_runs") or [])


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return "GPU: %s" % torch.cuda.get_device_name(device)
    return "CPU: %s, %d torch threads (%d cores visible), nice %d" % (
        cpu_name(), threads, os.cpu_count() or 0, os.nice(0))


def machine() -> str:
    """The machine, for a benchmark's record: CPU, cores, memory, system."""
    import psutil
    return "%s, %d cores, %.0f GiB RAM, %s" % (cpu_name(), os.cpu_count() or 0,
                                              psutil.virtual_memory().total / 2 ** 30,
                                              platform.platform(terse=True))
