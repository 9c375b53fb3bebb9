"""Training batches made in worker processes, for the training scripts'
--workers option.

The batches are the costly part of a step on a GPU: PIL resampling, JPEG
round trips, blur kernels and composites all run on the CPU, one patch at a
time, while the network's step takes milliseconds. With --workers 0 (the
default, what the shipped CPU-trained weights used) the training process
makes each batch itself, exactly as before; with N workers, N processes
make them ahead of time.

Each worker receives the sampler by fork, so the photos it holds are shared
rather than pickled, and draws from its own random stream, seeded from the
run's seed and the worker's number: a run is reproducible for a given seed
and --workers, but batches differ between worker counts.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.utils.data


class _Endless(torch.utils.data.IterableDataset):
    def __init__(self, sampler: Any, draw: Callable[[Any], Any], seed: int):
        super().__init__()
        self.sampler, self.draw, self.seed = sampler, draw, seed

    def __iter__(self) -> Iterator:
        worker = torch.utils.data.get_worker_info()
        # Without a new stream every worker would repeat the same batches.
        self.sampler.rng = np.random.default_rng([self.seed, worker.id])
        while True:
            yield self.draw(self.sampler)


def batches(sampler: Any, draw: Callable[[Any], Any], seed: int, workers: int,
            pin_memory: bool = False) -> Iterator:
    """An endless stream of draw(sampler). `sampler` has an `rng` attribute
    (a numpy Generator) that draw uses; workers replace it with their own."""
    if workers <= 0:
        while True:
            yield draw(sampler)
    loader = torch.utils.data.DataLoader(
        _Endless(sampler, draw, seed), batch_size=None, num_workers=workers,
        multiprocessing_context="fork", prefetch_factor=4, pin_memory=pin_memory)
    yield from loader
