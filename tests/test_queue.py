"""Fair queueing between clients."""
import itertools

from hypothesis import given, strategies as st

from server.jobs import Job
from server.queue import FairQueue


def job(client, n):
    return Job(id="%s%d" % (client.decode(), n), client=client, op="echo", params={}, inputs={})


def test_clients_take_turns():
    queue = FairQueue()
    batch = [job(b"a", i) for i in range(5)]
    for j in batch:
        queue.put(j)
    single = job(b"b", 0)
    queue.put(single)
    order = [queue.get(0).id for _ in range(6)]
    assert order == ["a0", "b0", "a1", "a2", "a3", "a4"]


def test_remove_and_close():
    queue = FairQueue()
    first, second = job(b"a", 0), job(b"a", 1)
    queue.put(first)
    queue.put(second)
    assert queue.remove(first)
    assert not queue.remove(first)
    assert queue.get(0) is second
    assert queue.get(0.01) is None
    queue.close()
    assert queue.get(None) is None


@given(st.lists(st.sampled_from([b"a", b"b", b"c", b"d"]), min_size=1, max_size=30))
def test_position_predicts_the_order_jobs_run_in(clients):
    queue = FairQueue()
    counter = itertools.count()
    jobs = [job(c, next(counter)) for c in clients]
    for j in jobs:
        queue.put(j)
    predicted = {j.id: queue.position(j) for j in jobs}
    ran = [queue.get(0).id for _ in jobs]
    assert [predicted[i] for i in ran] == list(range(1, len(jobs) + 1))


def test_connections_of_one_session_share_one_turn():
    queue = FairQueue()
    flood = [Job(id="f%d" % n, client=b"conn%d" % n, op="echo", params={}, inputs={},
                 session="s" * 32) for n in range(5)]
    for j in flood:
        queue.put(j)
    single = job(b"gimp", 0)
    queue.put(single)
    assert [queue.get(0).id for _ in range(3)] == ["f0", "gimp0", "f1"]
