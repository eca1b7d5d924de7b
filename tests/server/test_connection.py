"""The asyncio adapter over an in-memory pipe (no websocket), with pools that delay, drop and crash."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Awaitable, Callable

import numpy as np
import pytest

from multipa_server.connection import Connection
from multipa_server.exceptions import AssessmentError, TransportClosed, WorkerCrashedError
from multipa_server.memory_transport import memory_pipe
from multipa_server.pool import Job, JobResult, PoolStats, WorkerPool
from multipa_server.session import Limits, Session

RATE = 16_000


class FakeClient:
    """The client's end of a memory pipe: the test sends frames, ``sent`` collects what the server sent."""

    def __init__(self, capacity: int = 0) -> None:
        self.server, self.end = memory_pipe(capacity)  # the server's end goes to the Connection
        self.sent: list[dict] = []
        self.closed: tuple[int, str] | None = None  # the server's close code and reason, once read
        self.reading = True

    async def client(self, *frames) -> None:
        for frame in frames:
            await self.end.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def read(self) -> None:
        """Collect the server's messages until it closes (the test's client reads while ``reading``)."""
        while True:
            while not self.reading:
                await asyncio.sleep(0.01)
            try:
                self.sent.append(json.loads(await self.end.receive()))
            except TransportClosed as closed:
                self.closed = (closed.close_code, closed.reason)
                return

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.sent if e["type"] == kind]


class FakePool(WorkerPool):
    """Answers each job with ``behave(job)``; records submissions and cancellations."""

    def __init__(self, behave: Callable[[Job], Awaitable[JobResult]]) -> None:
        self.behave = behave
        self.submitted: list[str] = []
        self.cancelled: list[str] = []

    async def start(self) -> None:
        pass

    async def submit(self, job: Job) -> JobResult:
        self.submitted.append(job.id)
        try:
            return await self.behave(job)
        except asyncio.CancelledError:
            self.cancelled.append(job.id)
            raise

    async def close(self) -> None:
        pass

    def stats(self) -> PoolStats:
        return PoolStats(1, 1, 0, 0, 16, 0)


def turn_of(job: Job) -> int:
    return int(job.id.rsplit("/", 1)[1].split("~")[0])  # "<session>/<turn>" or "<session>/<turn>~<speculation>"


def ok(delay: float = 0.0):
    async def behave(job: Job) -> JobResult:
        await asyncio.sleep(delay)
        return JobResult({"mode": "open", "turn": turn_of(job)}, 0.0, delay * 1000, "fake")

    return behave


def speech_frames(turns: int, seconds: float = 0.5) -> list:
    """Push-to-talk turns: audio then turn.end, each."""
    frames: list = []
    for _ in range(turns):
        frames += [np.full(int(RATE * seconds), 1000, dtype=np.int16).tobytes(), {"type": "turn.end"}]
    return frames


START = {"type": "session.start", "sample_rate": RATE, "realtime": False, "vad": {"enabled": False}}


def run(
    pool: WorkerPool,
    script: Callable[[FakeClient, asyncio.Event], Awaitable[None]],
    *,
    limits: Limits | None = None,
    drain: float = 5.0,
    speculate: bool = False,
    capacity: int = 0,
    send_timeout: float = 30.0,
) -> FakeClient:
    async def main() -> FakeClient:
        client, shutdown = FakeClient(capacity), asyncio.Event()
        conn = Connection(
            client.server,
            Session("t", limits=limits, speculate=speculate),
            pool,
            shutdown=shutdown,
            drain_timeout_s=drain,
            send_timeout_s=send_timeout,
        )
        serving, reading = asyncio.create_task(conn.run()), asyncio.create_task(client.read())
        await script(client, shutdown)
        await asyncio.wait_for(serving, 10)
        await client.server.close()  # as websockets does when the handler returns (a no-op after the server's close)
        client.reading = True
        await asyncio.wait_for(reading, 10)
        return client

    return asyncio.run(main())


def assert_one_terminal_each(transport: FakeClient) -> None:
    started = [e["turn_id"] for e in transport.of("turn.started")]
    terminal = Counter(e["turn_id"] for e in transport.sent if e["type"] in ("turn.assessed", "turn.failed"))
    assert started and set(terminal) == set(started) and set(terminal.values()) == {1}, (started, terminal)
    assert transport.sent[-1]["type"] == "session.ended"


def test_results_out_of_order_each_delivered_once():
    delays = {1: 0.3, 2: 0.05, 3: 0.15}

    async def behave(job: Job) -> JobResult:
        return await ok(delays[turn_of(job)])(job)

    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await t.client(START, *speech_frames(3), {"type": "session.end"})

    t = run(FakePool(behave), script)
    assert_one_terminal_each(t)
    assert [e["turn_id"] for e in t.of("turn.assessed")] == [2, 3, 1]
    assert t.sent[-1]["turns_assessed"] == 3 and t.closed == (1000, "")


def test_crashes_and_bugs_become_turn_failures():
    async def behave(job: Job) -> JobResult:
        n = turn_of(job)
        if n == 1:
            raise WorkerCrashedError("the worker died on this turn 2 times")
        if n == 2:
            raise RuntimeError("a bug in a pool")
        if n == 3:
            raise AssessmentError("audio_silent", "the audio is silent")
        return await ok()(job)

    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await t.client(START, *speech_frames(4), {"type": "session.end"})

    t = run(FakePool(behave), script)
    assert_one_terminal_each(t)
    assert {e["turn_id"]: e["code"] for e in t.of("turn.failed")} == {
        1: "worker_crashed",
        2: "internal_error",
        3: "audio_silent",
    }
    assert [e["turn_id"] for e in t.of("turn.assessed")] == [4]
    assert "Traceback" not in json.dumps(t.sent)


def test_shutdown_drains_in_flight_turns_then_closes_1001():
    async def script(t: FakeClient, shutdown: asyncio.Event) -> None:
        await t.client(
            START, *speech_frames(1), np.full(RATE // 2, 1000, dtype=np.int16).tobytes()
        )  # turn 2 still open
        while len(t.of("turn.started")) < 2:
            await asyncio.sleep(0.01)
        shutdown.set()

    pool = FakePool(ok(0.3))
    t = run(pool, script)
    assert_one_terminal_each(t)
    assert t.of("error")[0]["code"] == "shutting_down"
    assert [e["turn_id"] for e in t.of("turn.assessed")] == [1, 2]  # the open turn too
    assert t.sent[-1]["reason"] == "shutdown" and t.closed == (1001, "shutting_down")


def test_a_dropped_job_fails_at_the_drain_timeout():
    async def never(job: Job) -> JobResult:
        await asyncio.Event().wait()
        raise AssertionError

    async def script(t: FakeClient, shutdown: asyncio.Event) -> None:
        await t.client(START, *speech_frames(2))
        while len(t.of("turn.ended")) < 2:
            await asyncio.sleep(0.01)
        shutdown.set()

    pool = FakePool(never)
    t = run(pool, script, drain=0.2)
    assert_one_terminal_each(t)
    assert [e["code"] for e in t.of("turn.failed")] == ["shutting_down", "shutting_down"]
    assert t.closed == (1001, "shutting_down") and sorted(pool.cancelled) == ["t/1", "t/2"]


def test_client_vanishing_mid_turn_withdraws_its_jobs_and_logs_them(caplog):
    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await t.client(START, *speech_frames(1), np.full(RATE // 2, 1000, dtype=np.int16).tobytes())
        while not t.of("turn.ended") or len(t.of("turn.started")) < 2:
            await asyncio.sleep(0.01)
        t.end.abort()  # the client vanishes

    pool = FakePool(ok(5.0))
    with caplog.at_level(logging.INFO, logger="multipa_server.connection"):
        t = run(pool, script)
    assert pool.submitted == ["t/1"] and pool.cancelled == ["t/1"]
    assert not t.of("turn.assessed") and not t.of("turn.failed")  # nobody to send them to ...
    logged = caplog.text
    assert (
        logged.count('"code":"client_disconnected"') == 2 and '"turn_id":1' in logged and '"turn_id":2' in logged
    )  # ... so they are logged


def test_a_send_failing_counts_as_a_disconnect(caplog):
    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await t.client(START, *speech_frames(1))
        while not t.of("turn.ended"):
            await asyncio.sleep(0.01)

        async def refuse(message: str) -> None:
            raise TransportClosed("the peer is gone")

        t.server.send = refuse  # the client's side still looks open: only the send fails

    pool = FakePool(ok(0.2))
    with caplog.at_level(logging.WARNING, logger="multipa_server.connection"):
        run(pool, script)
    assert "left before receiving turn.assessed of turn 1" in caplog.text


def test_a_client_that_does_not_read_is_closed_with_slow_consumer_then_dropped():
    async def script(t: FakeClient, _: asyncio.Event) -> None:
        t.reading = False  # two unread events fill the pipe; the third send blocks
        await t.client(START, *speech_frames(1))

    t = run(FakePool(ok()), script, capacity=2, send_timeout=0.3)
    assert t.closed == (1008, "slow_consumer") and t.sent == []  # the abort dropped what was unread


def test_idle_timeout_closes_the_session():
    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await t.client(START)

    t = run(FakePool(ok()), script, limits=Limits(idle_timeout_s=0.2))
    assert t.of("error")[0]["code"] == "idle_timeout" and t.closed == (1008, "idle_timeout")
    assert t.sent[-1] == {
        "type": "session.ended",
        "reason": "idle",
        "turns_started": 0,
        "turns_assessed": 0,
        "turns_failed": 0,
        "audio_ms": 0,
        "failures": {},
    }


def test_a_bug_in_the_session_gives_internal_error_not_a_traceback(monkeypatch):
    def broken(self, data):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(Session, "receive_audio", broken)

    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await t.client(START, b"\x00\x00")

    t = run(FakePool(ok()), script)
    assert t.of("error")[-1]["code"] == "internal_error" and t.closed == (1011, "internal_error")
    assert "oops" not in json.dumps(t.sent)


@pytest.mark.parametrize("turns", [5])
def test_many_turns_with_random_delays_and_failures(turns):
    rng = np.random.default_rng(3)
    plan = {i + 1: (float(rng.uniform(0, 0.2)), bool(rng.random() < 0.3)) for i in range(turns)}

    async def behave(job: Job) -> JobResult:
        delay, crash = plan[turn_of(job)]
        await asyncio.sleep(delay)
        if crash:
            raise WorkerCrashedError("crashed")
        return await ok()(job)

    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await t.client(START, *speech_frames(turns), {"type": "session.end"})

    t = run(FakePool(behave), script, limits=Limits(max_turns_in_flight=turns))
    assert_one_terminal_each(t)
    assert {e["turn_id"] for e in t.of("turn.failed")} == {n for n, (_, crash) in plan.items() if crash}


# --- speculation through the adapter -------------------------------------------------


class BusyPool(FakePool):
    """Every worker is busy: a speculation must not be submitted."""

    def stats(self) -> PoolStats:
        return PoolStats(1, 1, 1, 0, 16, 0)


def vad_conversation(pause_s: float) -> bytes:
    from .speech import silence, utterance
    from .test_segmenter import noisy

    audio = np.concatenate(
        [silence(0.5), utterance("004820045"), silence(pause_s), utterance("001350134"), silence(2.0)]
    )
    return noisy(audio).tobytes()


def test_speculative_jobs_run_on_idle_workers_and_stale_ones_are_cancelled():
    pcm = vad_conversation(0.1)
    start = {**START, "vad": {"enabled": True, "hangover_ms": 1500}}

    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await t.client(start)
        for i in range(0, len(pcm), 3200):  # 100 ms frames, a little faster than real time
            await t.client(pcm[i : i + 3200])
            await asyncio.sleep(0.01)
        await t.client({"type": "session.end"})

    pool = FakePool(ok(1.0))
    t = run(pool, script, speculate=True)
    assert_one_terminal_each(t)
    assert len(t.of("turn.started")) == 1
    assert pool.submitted[0] in pool.cancelled and "~" in pool.submitted[0], (pool.submitted, pool.cancelled)
    assert pool.submitted[-1] not in pool.cancelled

    busy = BusyPool(ok(0.0))
    t = run(busy, script, speculate=True)
    assert_one_terminal_each(t)
    assert busy.submitted == ["t/1"], "no speculation without an idle worker; the turn is submitted when it ends"


class WaitingPool(FakePool):
    """A worker is idle but another session's turn waits in the queue (about to take it)."""

    def stats(self) -> PoolStats:
        return PoolStats(2, 2, 1, 1, 16, 0)


def test_speculation_yields_while_any_turn_waits():
    """Issue 18: a speculation must never cost another session's turn: with a turn waiting
    for a worker, a learner's pause submits nothing; the turn goes in when it ends."""
    pcm = vad_conversation(0.1)
    start = {**START, "vad": {"enabled": True, "hangover_ms": 1500}}

    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await t.client(start)
        for i in range(0, len(pcm), 3200):
            await t.client(pcm[i : i + 3200])
            await asyncio.sleep(0.01)
        await t.client({"type": "session.end"})

    waiting = WaitingPool(ok(0.0))
    t = run(waiting, script, speculate=True)
    assert_one_terminal_each(t)
    assert waiting.submitted == ["t/1"], waiting.submitted
    assert not t.of("turn.failed")


def test_speculation_never_takes_the_worker_another_session_is_using():
    """Issue 18, with the real embedded pool and a fake worker process: while another
    session's turn holds the only worker, this session's pauses submit nothing; its turn
    goes in when it ends, waits its turn, and is assessed."""
    from multipa_server.local_pool import LocalPool, LocalPoolOptions

    from . import fake_worker

    class Recording(LocalPool):
        submitted: list[str] = []

        async def submit(self, job: Job) -> JobResult:
            self.submitted.append(job.id)
            return await super().submit(job)

    pool = Recording(LocalPoolOptions(workers=1), target=fake_worker.main)
    pcm = vad_conversation(0.1)
    start = {**START, "vad": {"enabled": True, "hangover_ms": 1500}}

    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await pool.start()
        other = asyncio.create_task(pool.submit(Job("other/1", b"\0" * 3200, RATE, "sleep:3")))
        while not pool.stats().busy:
            await asyncio.sleep(0.01)
        await t.client(start)
        for i in range(0, len(pcm), 3200):
            await t.client(pcm[i : i + 3200])
            await asyncio.sleep(0.01)
        await t.client({"type": "session.end"})
        assert (await other).worker
        while not t.of("session.ended"):
            await asyncio.sleep(0.05)
        await pool.close()

    t = run(pool, script, speculate=True)
    assert_one_terminal_each(t)
    assert pool.submitted == ["other/1", "t/1"], pool.submitted
    assert len(t.of("turn.assessed")) == 1


def test_a_skipped_speculation_submits_the_turn_in_the_same_step():
    """Issue 19 (2): one frame holds the pause and the end while the worker is busy; the
    turn's own job must reach the pool at once, not at the client's next message."""
    from .speech import silence, utterance
    from .test_segmenter import noisy

    frame = noisy(np.concatenate([silence(0.3), utterance("004820045")[: 2 * RATE], silence(1.75)])).tobytes()
    assert len(frame) <= Limits().max_frame_bytes
    start = {**START, "vad": {"enabled": True}}

    async def script(t: FakeClient, _: asyncio.Event) -> None:
        await t.client(start, frame)  # then nothing
        for _ in range(200):
            if t.of("turn.assessed"):
                break
            await asyncio.sleep(0.01)
        assert t.of("turn.assessed"), f"the turn waited for the client's next message: {busy.submitted}"
        await t.client({"type": "session.end"})

    busy = BusyPool(ok(0.0))
    t = run(busy, script, speculate=True)
    assert_one_terminal_each(t)
    assert busy.submitted == ["t/1"]
