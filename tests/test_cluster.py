"""Several servers: jobs spread by ZeroMQ, fail-over, exactly one result each."""
from __future__ import annotations

import numpy as np
import pytest

from sharpfu_client import Cancelled, Frame, SharpFuError
from sharpfu_client.cluster import Cluster

pytestmark = pytest.mark.slow   # several live servers, some killed on purpose


def frames(count):
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture
def three(fresh_server):
    return [fresh_server() for _ in range(3)]


def cluster_of(servers, **kwargs) -> Cluster:
    return Cluster([s.endpoint for s in servers], config_path=str(servers[0].config_path),
                   **kwargs)


def test_jobs_are_spread_and_survive_a_dead_server(three):
    inputs = frames(12)
    with cluster_of(three, ack_timeout=3.0) as cluster:
        cluster.connect()
        jobs = [cluster.submit("echo", [Frame(a, 32, 24, 3)], {"delay": 0.6, "steps": 6})
                for a in inputs]
        results = {}
        while len(results) < 3:
            cluster.poll(0.1)
            results.update({i: cluster.result(j) for i, j in enumerate(jobs)
                            if j.finished and i not in results})
        three[1].kill()   # mid-batch: it holds queued and running jobs
        while len(results) < len(jobs):
            cluster.poll(0.1)
            results.update({i: cluster.result(j) for i, j in enumerate(jobs)
                            if j.finished and i not in results})
    for index, result in results.items():
        assert bytes(result.frame("image").data) == inputs[index].tobytes()
    served = [s.log().count("queued for client") for s in three]
    assert all(count > 0 for count in served), "ZeroMQ should deal jobs to every server"
    assert sum(j.attempts > 1 for j in jobs) >= 1, "the killed server's jobs went elsewhere"
    assert all(j.state == "done" for j in jobs)


def test_statuses_show_every_server_and_a_dead_one(three):
    three[2].kill()
    with cluster_of(three) as cluster:
        found = cluster.statuses(timeout=1.0)
    assert [endpoint for endpoint, _ in found] == [s.endpoint for s in three]
    assert all(isinstance(status, dict) for _, status in found[:2])
    assert isinstance(found[2][1], SharpFuError)


def test_cancel_reaches_the_server_that_has_the_job(three):
    with cluster_of(three) as cluster:
        job = cluster.submit("echo", [Frame(frames(1)[0], 32, 24, 3)], {"delay": 30, "steps": 300})
        while job.server is None:
            cluster.poll(0.05)
        cluster.cancel(job)
        with pytest.raises(Cancelled):
            cluster.wait(job)


def test_no_server_at_all(tmp_path):
    from server.scratch import free_port
    with Cluster(["tcp://127.0.0.1:%d" % free_port()], config={"client": {}}) as cluster:
        with pytest.raises(SharpFuError) as caught:
            cluster.connect()
    assert caught.value.code == "server_unavailable"
