"""The pools' fair queue: the session asking least first, a per-session share, and the greedy session's turn displaced first."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from multipa_server.exceptions import OverloadedError, PoolClosedError
from multipa_server.pool import FairQueue, Job


def queue(max_queue: int = 8, share: float = 0.5) -> FairQueue[Job]:
    return FairQueue(lambda j: j.session, max_queue, share)


def add(q: FairQueue[Job], name: str) -> Job | None:
    displaced = q.admit(False, name.partition("/")[0])
    j = Job(name, b"", 16000)
    q.append(j)
    return displaced


def test_the_session_asking_least_goes_first():
    q = queue()
    for name in ("a/1", "a/2", "a/3", "b/1", "c/1", "b/2"):
        add(q, name)
    order = [q.popleft().id for _ in range(len(q))]
    assert order == ["c/1", "b/1", "a/1", "b/2", "a/2", "a/3"]


def test_busy_sessions_take_turns():
    q = queue(max_queue=16)
    for i in range(4):
        add(q, f"a/{i}")
        add(q, f"b/{i}")
    order = []
    for i in range(4, 8):  # each refills its lane after a job of it is served, as a session pushing turns does
        job = q.popleft()
        order.append(job.session)
        add(q, f"{job.session}/{i}")
    assert order == ["a", "b", "a", "b"]


def test_a_quiet_sessions_turn_goes_ahead_of_busy_backlogs():
    """Issue 19 (fairness): with seven sessions pushing turns, a quiet session's turn waited
    for one turn of each of them (72 s on 2 cores); it waits for none now."""
    now = [0.0]
    q: FairQueue[Job] = FairQueue(lambda j: j.session, 64, 0.25, clock=lambda: now[0])
    for i in range(3):
        for s in "abcdefg":
            add(q, f"{s}/{i}")
    for _ in range(7):  # each busy session has had a turn served
        q.popleft()
        now[0] += 3.0
    add(q, "quiet/1")
    assert q[0].id == "quiet/1" and q.popleft().id == "quiet/1"
    assert len({q.popleft().session for _ in range(7)}) == 7  # the busy ones still take turns


def test_service_is_forgotten_over_time():
    now = [0.0]
    q: FairQueue[Job] = FairQueue(lambda j: j.session, 64, 1.0, clock=lambda: now[0])
    for i in range(4):
        add(q, f"a/{i}")
    for _ in range(4):
        q.popleft()
    add(q, "b/1")
    add(q, "a/9")
    assert q[0].id == "b/1"  # a was served just now
    now[0] += 3600.0
    add(q, "c/1")
    assert [q.popleft().id for _ in range(3)] == ["b/1", "a/9", "c/1"]  # an hour later a's past counts for nothing


def test_a_retry_goes_first():
    q = queue()
    add(q, "a/1")
    add(q, "b/1")
    q.appendleft(Job("b/0", b"", 16000))
    assert q[0].id == "b/0" and [q.popleft().id for _ in range(3)] == ["b/0", "a/1", "b/1"]


def test_a_session_holds_at_most_its_share():
    q = queue(max_queue=8, share=0.25)
    add(q, "b/1")
    add(q, "a/1")
    add(q, "a/2")
    with pytest.raises(OverloadedError, match="this session"):
        add(q, "a/3")
    assert add(q, "c/1") is None
    alone = queue(max_queue=8, share=0.25)
    for i in range(8):  # alone, a session may use the whole queue
        add(alone, f"a/{i}")


def test_a_full_queue_displaces_the_greediest_sessions_newest_turn():
    """Issue 19 (fairness): 8 sessions pushing turns; a quiet one lost 2 of 3 turns to overloaded."""
    q = queue(max_queue=4, share=0.75)
    for name in ("greedy/1", "greedy/2", "greedy/3", "other/1"):
        add(q, name)
    displaced = add(q, "quiet/1")
    assert displaced is not None and displaced.id == "greedy/3"
    assert sorted(j.id for j in q) == ["greedy/1", "greedy/2", "other/1", "quiet/1"]
    displaced = add(q, "quiet2/1")  # greedy holds 2, the newcomer 0
    assert displaced is not None and displaced.id == "greedy/2"
    with pytest.raises(OverloadedError):  # every session holds one: nobody to displace
        add(q, "late/1")
    with pytest.raises(PoolClosedError):
        q.admit(True, "x")


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.booleans()), max_size=60))
def test_bounded_and_consistent(ops):
    q = queue(max_queue=6, share=0.5)
    n = 0
    for session, put in ops:
        if put:
            try:
                add(q, f"{session}/{n}")
            except OverloadedError:
                pass
            n += 1
        elif q:
            q.popleft()
        assert len(q) == len(list(q)) <= 6
