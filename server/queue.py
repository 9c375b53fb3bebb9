"""The job queue: fair between clients, first come first served within one.

A client that sends a hundred jobs (a batch) must not starve one that sends a
single job (a GIMP user waiting on a dialog): clients take turns, one job
each, in the order they first had work queued. A client is a job's flow
(Job.flow): its session, or its connection when it names none."""
from __future__ import annotations

import threading
from collections import OrderedDict, deque

from .jobs import Job


class FairQueue:
    def __init__(self):
        self._lock = threading.Condition()
        self._clients: OrderedDict[tuple, deque[Job]] = OrderedDict()
        self._closed = False

    def put(self, job: Job) -> None:
        with self._lock:
            self._clients.setdefault(job.flow, deque()).append(job)
            self._lock.notify()

    def get(self, timeout: float | None = None) -> Job | None:
        """The next job, or None on timeout or once closed."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._clients or self._closed, timeout):
                return None
            if self._closed:
                return None
            client, jobs = next(iter(self._clients.items()))
            job = jobs.popleft()
            del self._clients[client]
            if jobs:
                self._clients[client] = jobs   # back of the line
            job.state = "running"
            return job

    def remove(self, job: Job) -> bool:
        """Take a queued job out; False when it is no longer queued."""
        with self._lock:
            jobs = self._clients.get(job.flow)
            if not jobs or job not in jobs:
                return False
            jobs.remove(job)
            if not jobs:
                del self._clients[job.flow]
            return True

    def position(self, job: Job) -> int:
        """1 for the job that runs next, 2 for the one after, ..."""
        with self._lock:
            jobs = self._clients.get(job.flow)
            if not jobs or job not in jobs:
                return 0
            depth = jobs.index(job)
            turn = list(self._clients).index(job.flow)
            # Each client ahead in the rotation runs depth + 1 jobs before
            # ours, each one behind runs depth; none runs more than it has.
            return 1 + depth + sum(min(len(queued), depth + (index < turn))
                                   for index, queued in enumerate(self._clients.values())
                                   if queued is not jobs)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._clients.values())

    def jobs(self) -> list[Job]:
        with self._lock:
            return [job for q in self._clients.values() for job in q]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
