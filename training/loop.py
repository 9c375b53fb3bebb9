"""The one training loop: every SharpFu network is trained by it, and the
server's adaptation to the user's images takes its steps with it.

A training script declares a `Task` (its networks, its data, its loss, how
it validates and what it exports) and hands it to `train`, which owns the
rest:

* the step (`Loop`): Adam, a schedule that warms up and then follows a
  cosine down to a floor, the forward pass in bfloat16 autocast on request
  (--bf16, for a GPU's tensor cores; losses are always taken in float32:
  the deblurrer's FFT has no bfloat16 and CUDA's autocast refuses the
  matte's cross-entropy), gradient clipping when the task asks for it, and
  an exponential moving average of the weights (EMA), which is what is
  validated and exported: steadier and usually a little better than the
  last step's weights, which matters in a short run;
* the run (`train`): batches made in the training process or ahead in
  worker processes (training/batches.py), a budget of training time on
  whose clock the schedule runs, or of steps (--steps: on a machine shared
  with other jobs the clock says little about how far a run got, and the
  same command then makes the same run), validation every so often on the training
  device, checkpoint.pt in the run folder every few minutes (a run started
  again with the same --run resumes from it), log.jsonl (loss, learning
  rate and validation over time), and at the end the weights with their
  record: how they were made (commands, data, commit, device, duration,
  the runs behind the weights they started from) and what they achieved.

Training lowers its own priority (nice 19, unless --no-nice) to leave the
machine usable, and the scripts ask OpenMP for passive waiting
(OMP_WAIT_POLICY=PASSIVE, which must be set before torch loads): threads
that spin while they wait for a descheduled sibling made each step 5 to 7
times slower on a shared machine than threads that sleep.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .batches import batches
from .record import describe_device, git_commit, training_history


# -- the step -----------------------------------------------------------------------------

def learning_rate(base: float, progress: float, warmup: float = 0.02,
                  floor: float = 0.01) -> float:
    """Linear warm-up over the first `warmup` of the budget, then a cosine
    from `base` down to `floor` x `base` (progress runs from 0 to 1)."""
    if progress < warmup:
        return base * max(progress / warmup, 0.01)
    t = min((progress - warmup) / (1.0 - warmup), 1.0)
    return base * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))


class EMA:
    """Exponential moving average of a network's weights."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # Short-memory at first, so the average is not dominated by the start.
        decay = min(self.decay, (1 + step) / (10 + step))
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.shadow[key].lerp_(value, 1.0 - decay)
            else:
                self.shadow[key].copy_(value)


def _as_float(value: Any) -> Any:
    """Floating tensors (in nested lists, tuples and dicts) as float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _as_float(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_as_float(v) for v in value)
    return value


class Loop:
    """Optimises `networks` (name -> module) with Adam on a schedule.

    `forward(networks, batch)` runs the networks (in autocast when bf16);
    `loss(outputs, batch)` -> (loss, {part: float}) is taken in float32.
    `schedule(lr, progress)`: the learning rate at a point of the budget.
    `parameters`: what trains (default: every parameter of the networks)."""

    def __init__(self, networks: dict[str, nn.Module], forward: Callable, loss: Callable, *,
                 lr: float, schedule: Callable[[float, float], float] = learning_rate,
                 clip: float | None = None, ema: float | None = None, bf16: bool = False,
                 parameters: list[torch.Tensor] | None = None):
        self.networks, self.forward, self.loss = networks, forward, loss
        self.base_lr, self.schedule, self.clip, self.bf16 = lr, schedule, clip, bf16
        if parameters is None:
            parameters = [p for net in networks.values() for p in net.parameters()]
        self.parameters = [p for p in parameters if p.requires_grad]
        self.optimiser = torch.optim.Adam(self.parameters, lr=lr)
        self.emas = {name: EMA(net, ema) for name, net in networks.items()} if ema else {}
        self.device = self.parameters[0].device
        self.lr = lr

    def step(self, batch: Any, progress: float, step: int) -> tuple[float, dict]:
        """One optimisation step at `progress` (0 to 1) of the budget; `step`
        counts from 1. Returns the loss and its parts."""
        self.lr = self.schedule(self.base_lr, progress)
        for group in self.optimiser.param_groups:
            group["lr"] = self.lr
        for net in self.networks.values():
            net.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            outputs = self.forward(self.networks, batch)
        loss, parts = self.loss(_as_float(outputs), batch)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            # Deep residual networks without normalisation: an odd batch must
            # not throw the weights off.
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip)
        self.optimiser.step()
        for name, ema in self.emas.items():
            ema.update(self.networks[name], step)
        return loss.item(), parts

    def averaged(self) -> dict[str, dict[str, torch.Tensor]]:
        """name -> the weights to validate and export (the EMA's, if kept)."""
        if self.emas:
            return {name: ema.shadow for name, ema in self.emas.items()}
        return {name: net.state_dict() for name, net in self.networks.items()}

    def state(self) -> dict:
        return {"networks": {name: net.state_dict() for name, net in self.networks.items()},
                "optimiser": self.optimiser.state_dict(),
                "ema": {name: ema.shadow for name, ema in self.emas.items()}}

    def restore(self, state: dict) -> None:
        for name, net in self.networks.items():
            net.load_state_dict(state["networks"][name])
        self.optimiser.load_state_dict(state["optimiser"])
        for name, ema in self.emas.items():
            ema.shadow = {k: v.to(self.device) for k, v in state["ema"][name].items()}


# -- what a training script declares -----------------------------------------------------------

class Task:
    """A network (or several trained together), its data and its loss.

    Subclasses set `name` and `hyper_parameters` (enough to rebuild the
    networks; a resumed run takes them from its checkpoint) and implement
    the methods below. `args` are the script's parsed options (`options`
    adds the common ones)."""

    name = ""
    clip: float | None = None       # gradient-norm clipping, or none
    ema = True                      # keep (and export) an average of the weights

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.hyper_parameters: dict = {}

    def build(self) -> dict[str, nn.Module]:
        """The networks, freshly initialised, for self.hyper_parameters."""
        raise NotImplementedError

    def start_from(self, networks: dict[str, nn.Module], path: Path) -> dict:
        """Take the weights in `path` (--init) into `networks`; says what was taken."""
        raise NotImplementedError

    def history_of(self, path: Path) -> Path:
        """The weights file (of --init) whose record names the runs behind it."""
        return path

    def data(self) -> dict:
        """How the training data is made, for the record (a "recipe" entry,
        if any, is compared when a run resumes: a change is recorded)."""
        raise NotImplementedError

    def sampler(self, seed: int) -> Any:
        """An object with an `rng` (numpy Generator) that `draw` uses."""
        raise NotImplementedError

    def draw(self, sampler: Any) -> Any:
        """One batch of tensors (or dicts, lists of them), on the CPU."""
        raise NotImplementedError

    def forward(self, networks: dict[str, nn.Module], batch: Any) -> Any:
        raise NotImplementedError

    def loss(self, outputs: Any, batch: Any) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def validate(self, networks: dict[str, nn.Module]) -> tuple[dict, dict]:
        """(a summary for the log and the record's curve, the full result)
        for the averaged networks, in eval mode on the training device."""
        raise NotImplementedError

    def summary(self, point: dict) -> str:
        """One line of a validation summary for the console."""
        return json.dumps(point)

    def export(self, weights: dict[str, dict[str, torch.Tensor]], training: dict,
               validation: dict, curve: list[dict]) -> None:
        """Write the weights with their records (see `write_weights`)."""
        raise NotImplementedError


def options(parser: argparse.ArgumentParser, *, minutes: float, lr: float, batch: int,
            ema: float = 0.999, validate_every: float = 300.0) -> None:
    """The options every training script takes, with the script's defaults."""
    from models import registry
    parser.add_argument("--photos", type=Path, action="append",
                        help="folder of training photos (repeatable; default: %s)"
                        % ", ".join(map(str, _default_photos())))
    parser.add_argument("--run", type=Path, required=True,
                        help="folder for the checkpoint and log (resumed if it has one)")
    parser.add_argument("--weights-dir", type=Path, default=registry.WEIGHTS_DIR,
                        help="where the weights and their records are written at the end")
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--ema", type=float, default=ema)
    parser.add_argument("--clip", type=float, default=None,
                        help="clip the gradient norm at this value (default: the task's "
                             "choice; fine-tuning pretrained weights wants it)")
    parser.add_argument("--minutes", type=float, default=minutes,
                        help="training time (the learning-rate schedule runs on this clock)")
    parser.add_argument("--steps", type=int, default=0,
                        help="train for this many steps instead, the schedule running on "
                             "them (--minutes is then ignored)")
    parser.add_argument("--init", type=Path, help="start from these weights")
    parser.add_argument("--validate-every", type=float, default=validate_every, help="seconds")
    parser.add_argument("--checkpoint-every", type=float, default=300.0, help="seconds")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that make batches ahead (0: the training process "
                             "makes them itself, as on the 2-core CPU; a GPU needs several)")
    parser.add_argument("--bf16", action="store_true",
                        help="run the forward pass in bfloat16 autocast (for a GPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-nice", action="store_true",
                        help="keep this process's priority (by default it lowers itself to "
                             "nice 19, to leave the machine usable)")
    parser.add_argument("--export-only", action="store_true",
                        help="write the weights and records from the run's checkpoint and exit")


def _default_photos() -> list[Path]:
    from .photos import DEFAULT_PHOTOS
    return DEFAULT_PHOTOS


# -- the run -------------------------------------------------------------------------------

def train(task: Task) -> None:
    args = task.args
    args.photos = args.photos or _default_photos()
    if not args.no_nice:
        os.nice(19)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    args.run.mkdir(parents=True, exist_ok=True)
    checkpoint_path, log_path = args.run / "checkpoint.pt", args.run / "log.jsonl"
    command = shlex.join([Path(sys.executable).name] + sys.argv)

    state = None
    if checkpoint_path.exists():
        # Our own checkpoint: tensors and plain containers only, read safely.
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if state["meta"]["hyper_parameters"] != task.hyper_parameters:
            print("note: resuming a run of %s; the options that differ are ignored"
                  % state["meta"]["hyper_parameters"], flush=True)
        task.hyper_parameters = state["meta"]["hyper_parameters"]
    elif args.export_only:
        raise SystemExit("%s has no checkpoint to export" % args.run)

    networks = {name: net.to(device) for name, net in task.build().items()}
    init = None
    if state is None and args.init:
        init = task.start_from(networks, args.init)
        from models.download import sha256_of
        # a file, or a folder of weights (the matte task starts both its
        # networks from models/weights/): each file's sha256 then
        started = Path(args.init)
        digest = ({p.name: sha256_of(p) for p in sorted(started.glob("*.safetensors"))}
                  if started.is_dir() else sha256_of(started))
        init = dict(init, weights=str(args.init), sha256=digest,
                    earlier_runs=training_history(task.history_of(args.init)))
        print("started from %s" % args.init, flush=True)
    clip = args.clip or task.clip
    loop = Loop(networks, task.forward, task.loss, lr=args.lr, clip=clip,
                ema=args.ema if task.ema else None, bf16=args.bf16)

    def schedule() -> dict:
        return {"batch": args.batch, "planned_steps": args.steps,
                "optimiser": "Adam, lr %g, warm-up then cosine to 1%% over the training "
                             "%s%s" % (args.lr, "steps" if args.steps else "time",
                                       ", gradient norm clipped at %g" % clip if clip else ""),
                "ema": args.ema if task.ema else None}

    if state is not None:
        loop.restore(state["loop"])
        if not args.export_only:
            state["meta"]["commands"].append(command)
        print("resumed at step %d, %.0f s trained" % (state["step"], state["elapsed"]), flush=True)
    else:
        state = {"step": 0, "elapsed": 0.0, "meta": {
            "commands": [command],
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git": git_commit(),
            "device": describe_device(device, torch.get_num_threads()),
            "hyper_parameters": task.hyper_parameters,
            "init": init,
            "schedule": schedule(),
            "data": dict(task.data(), folders=[str(p) for p in args.photos],
                         source="scripts/fetch_training_photos.py rebuilds the folders from "
                                "public packages (see their ATTRIBUTION.md)")}}
    curve = [json.loads(line)["val"] for line in open(log_path)] if log_path.exists() else []
    curve = [c for c in curve if c is not None]

    def evaluate() -> tuple[dict, dict]:
        # float32 on the training device: validating on the CPU would hold a GPU up
        shadows = task.build()
        for name, net in shadows.items():
            net.load_state_dict(loop.averaged()[name])
            net.to(device).eval()
        with torch.inference_mode():
            point, full = task.validate(shadows)
        return dict(point, step=state["step"], seconds=round(state["elapsed"], 1)), full

    def save() -> None:
        state["loop"] = loop.state()
        torch.save(state, checkpoint_path.with_suffix(".tmp"))
        os.replace(checkpoint_path.with_suffix(".tmp"), checkpoint_path)

    def export(validation: dict) -> None:
        meta = state["meta"]
        # The run's own schedule, kept in its checkpoint: an --export-only
        # command line need not repeat the options the run was trained with
        training = {"commands": meta["commands"], "data": meta["data"], "git": meta["git"],
                    "device": meta["device"], "torch": torch.__version__,
                    "started": meta["started"], "training_seconds": round(state["elapsed"], 1),
                    "steps": state["step"], **(meta.get("schedule") or schedule()),
                    "init": meta.get("init")}
        task.export({name: {k: v.detach().float().contiguous().cpu() for k, v in w.items()}
                     for name, w in loop.averaged().items()}, training, validation, curve)

    if args.export_only:
        export(evaluate()[1])
        return

    data = state["meta"]["data"]
    recipe = task.data().get("recipe")
    in_force = (data.get("recipe_changes") or [{"recipe": data.get("recipe")}])[-1]["recipe"]
    if recipe != in_force:
        print("note: the data recipe changes from step %d on; the record keeps both"
              % state["step"], flush=True)
        data.setdefault("recipe_changes", []).append({"from_step": state["step"],
                                                      "recipe": recipe})
    seed = args.seed + state["step"]
    stream = batches(task.sampler(seed), task.draw, seed, args.workers,
                     pin_memory=device.type == "cuda")
    budget = args.minutes * 60.0

    def progress() -> float:
        return state["step"] / args.steps if args.steps else state["elapsed"] / budget

    print("training %s: %d parameters, %s" % (
        task.name, sum(p.numel() for net in networks.values() for p in net.parameters()),
        state["meta"]["device"]), flush=True)
    log = open(log_path, "a")
    full = None
    if not curve:
        point, full = evaluate()
        curve.append(point)
        log.write(json.dumps({"step": 0, "seconds": 0.0, "loss": None, "val": point}) + "\n")
        log.flush()
    last_val = last_save = state["elapsed"]
    losses, parts = [], []
    while progress() < 1.0:
        started = time.perf_counter()
        batch = _to(next(stream), device)
        loss, part = loop.step(batch, progress(), state["step"] + 1)
        state["step"] += 1
        losses.append(loss)
        parts.append(part)
        state["elapsed"] += time.perf_counter() - started
        done = progress() >= 1.0
        if done or state["elapsed"] - last_val >= args.validate_every:
            point, full = evaluate()
            curve.append(point)
            means = {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}
            entry = {"step": state["step"], "seconds": round(state["elapsed"], 1),
                     "loss": float(np.mean(losses)), **means, "lr": loop.lr, "val": point}
            log.write(json.dumps(entry) + "\n")
            log.flush()
            print("step %d  %.0f s  loss %.4f  lr %.2e  %s" % (
                state["step"], state["elapsed"], entry["loss"], loop.lr, task.summary(point)),
                flush=True)
            losses, parts = [], []
            last_val = state["elapsed"]
        if done or state["elapsed"] - last_save >= args.checkpoint_every:
            save()
            last_save = state["elapsed"]
    log.close()
    save()
    if full is None or curve[-1]["step"] != state["step"]:
        full = evaluate()[1]
    export(full)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch
