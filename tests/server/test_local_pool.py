"""The embedded pool with real worker processes running a fake worker (no models): dispatch,
crash and retry, the bounded queue, timeouts, cancellation and closing."""

from __future__ import annotations

import asyncio
import time

import pytest

from multipa_server.exceptions import (
    AssessmentError,
    JobTimeoutError,
    OverloadedError,
    PoolClosedError,
    PoolStartError,
    WorkerCrashedError,
)
from multipa_server.local_pool import LocalPool, LocalPoolOptions
from multipa_server.pool import Job
from multipa_server.worker import WorkerOptions

from . import fake_worker


def job(name: str, reference: str | None = None) -> Job:
    return Job(name, b"\x00\x01" * 100, 16000, reference)


def with_pool(test, **options):
    """Run ``test(pool)`` against a started pool, always closing it."""

    async def main():
        pool = LocalPool(LocalPoolOptions(**options), target=fake_worker.main)
        await pool.start()
        try:
            return await asyncio.wait_for(test(pool), 60)
        finally:
            await pool.close()

    return asyncio.run(main())


def test_jobs_go_to_idle_workers():
    async def test(pool):
        results = await asyncio.gather(*(pool.submit(job(f"j{i}", "sleep:0.3")) for i in range(4)))
        assert [r.assessment["job"] for r in results] == ["j0", "j1", "j2", "j3"]
        assert len({r.assessment["pid"] for r in results}) == 2  # both workers took jobs
        assert all(r.attempts == 1 and r.assess_ms >= 300 for r in results)
        assert max(r.queue_ms for r in results) >= 250  # two of them waited for a worker
        stats = pool.stats()
        assert (stats.workers, stats.ready, stats.busy, stats.queued, stats.restarts) == (2, 2, 0, 0, 0)

    with_pool(test, workers=2)


def test_waiting_jobs_go_to_a_worker_together_up_to_its_batch(tmp_path):
    async def test(pool):
        first = asyncio.create_task(pool.submit(job("first", "sleep:0.5")))
        await asyncio.sleep(0.2)
        waiting = [asyncio.create_task(pool.submit(job(f"w{i}", "reject" if i == 2 else None))) for i in range(5)]
        assert (await first).assessment["batch"] == 1
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert [r.assessment["batch"] for r in results[:2]] == [4, 4]  # four in the first batch
        assert isinstance(results[2], AssessmentError) and results[2].code == "audio_silent"  # alone in failing
        assert results[3].assessment["batch"] == 4 and results[4].assessment["batch"] == 1
        assert [r.assessment["job"] for r in results if not isinstance(r, Exception)] == ["w0", "w1", "w3", "w4"]
        # a batch a worker died on: each of its jobs is sent again alone
        crashed = await asyncio.gather(
            pool.submit(job("slow", "sleep:0.3")),
            *(pool.submit(job(f"c{i}", f"crash-once:{tmp_path / 'm'}" if i == 0 else None)) for i in range(3)),
        )
        assert [r.attempts for r in crashed] == [1, 2, 2, 2] and {r.assessment["batch"] for r in crashed[1:]} == {1}

    with_pool(test, workers=1, worker=WorkerOptions(batch=4))


def test_a_crashed_worker_is_replaced_and_the_job_retried_once(tmp_path):
    async def test(pool):
        result = await pool.submit(job("once", f"crash-once:{tmp_path / 'marker'}"))
        assert result.attempts == 2 and pool.stats().restarts == 1
        with pytest.raises(WorkerCrashedError) as info:
            await pool.submit(job("always", "crash"))
        assert info.value.code == "worker_crashed"
        assert (await pool.submit(job("after"))).assessment["job"] == "after"  # the pool still serves
        assert pool.stats().ready == 1

    with_pool(test, workers=1)


def test_a_full_queue_fails_fast_with_overloaded():
    async def test(pool):
        running = asyncio.create_task(pool.submit(job("running", "sleep:1")))
        await asyncio.sleep(0.2)
        queued = asyncio.create_task(pool.submit(job("queued")))
        await asyncio.sleep(0.05)
        assert pool.stats().queued == 1
        started = time.perf_counter()
        with pytest.raises(OverloadedError) as info:
            await pool.submit(job("third"))
        assert info.value.code == "overloaded" and time.perf_counter() - started < 0.1
        assert (await running).assessment["job"] == "running" and (await queued).assessment["job"] == "queued"

    with_pool(test, workers=1, max_queue=1)


def test_a_stuck_job_times_out_and_its_worker_is_replaced():
    async def test(pool):
        started = time.perf_counter()
        with pytest.raises(JobTimeoutError) as info:
            await pool.submit(job("stuck", "sleep:60"))
        assert info.value.code == "timeout" and time.perf_counter() - started < 5
        assert (await pool.submit(job("next"))).assessment["job"] == "next"
        assert pool.stats().restarts == 1

    with_pool(test, workers=1, job_timeout_s=1.0)


def test_worker_errors_pass_their_code_through():
    async def test(pool):
        with pytest.raises(AssessmentError) as info:
            await pool.submit(job("silent", "reject"))
        assert info.value.code == "audio_silent" and "silent" in str(info.value)
        assert pool.stats().restarts == 0

    with_pool(test, workers=1)


def test_cancelling_a_queued_job_withdraws_it():
    async def test(pool):
        running = asyncio.create_task(pool.submit(job("running", "sleep:0.5")))
        await asyncio.sleep(0.1)
        queued = asyncio.create_task(pool.submit(job("queued")))
        await asyncio.sleep(0.05)
        assert pool.stats().queued == 1
        queued.cancel()
        await asyncio.sleep(0.05)
        assert pool.stats().queued == 0
        await running

    with_pool(test, workers=1)


def test_closing_fails_queued_jobs_with_shutting_down():
    async def main():
        pool = LocalPool(LocalPoolOptions(workers=1), target=fake_worker.main)
        await pool.start()
        running = asyncio.create_task(pool.submit(job("running", "sleep:30")))
        queued = asyncio.create_task(pool.submit(job("queued")))
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        await pool.close()
        assert time.perf_counter() - started < 15
        for task in (running, queued):
            with pytest.raises(PoolClosedError):
                await task
        with pytest.raises(PoolClosedError):
            await pool.submit(job("late"))

    asyncio.run(main())


@pytest.mark.parametrize("how", ["fail", "die"])
def test_a_worker_that_cannot_start_fails_the_start(how):
    async def main():
        pool = LocalPool(LocalPoolOptions(workers=1, worker=WorkerOptions(scorer=how)), target=fake_worker.main)
        with pytest.raises(PoolStartError) as info:
            await pool.start()
        return str(info.value)

    message = asyncio.run(main())
    assert ("model_files" in message) if how == "fail" else ("exited" in message)


def test_a_worker_that_dies_while_idle_is_replaced_at_once():
    """Issue 19 (3): an idle worker killed with SIGKILL stayed dead (and /healthz 503) until a job hit its pipe."""
    import os
    import signal

    async def test(pool):
        pid = next(s.process.pid for s in pool._slots)
        os.kill(pid, signal.SIGKILL)
        for _ in range(300):
            await asyncio.sleep(0.1)
            stats = pool.stats()
            if stats.ready == 1 and stats.restarts == 1:
                break
        assert (pool.stats().ready, pool.stats().restarts) == (1, 1), (
            "no job was submitted: only the watch can have replaced it"
        )
        assert next(s.process.pid for s in pool._slots) != pid
        assert (await pool.submit(job("after"))).assessment["job"] == "after"

    with_pool(test, workers=1)


def test_a_crash_looping_worker_is_restarted_with_a_growing_back_off(caplog):
    async def test(pool):
        for _ in range(400):
            await asyncio.sleep(0.05)
            if sum("backing off 2 s" in r.getMessage() for r in caplog.records):
                break
        backoffs = [r.getMessage() for r in caplog.records if "backing off" in r.getMessage()]
        assert any("backing off 1 s" in m for m in backoffs) and any("backing off 2 s" in m for m in backoffs), backoffs
        assert pool.stats().restarts <= 5

    caplog.set_level("WARNING", logger="multipa_server.local_pool")
    with_pool(test, workers=1, worker=WorkerOptions(scorer="die-idle:0.2"))


def test_the_queue_takes_sessions_in_turn():
    """A session's backlog waits behind one job of each other session, not in front of them."""

    async def test(pool):
        done: list[str] = []

        async def run(name: str, what: str | None = None) -> None:
            await pool.submit(job(name, what))
            done.append(name)

        blocker = asyncio.create_task(run("x/1", "sleep:0.5"))  # the one worker is busy
        await asyncio.sleep(0.2)
        greedy = [asyncio.create_task(run(f"greedy/{i}")) for i in range(3)]
        await asyncio.sleep(0.05)
        quiet = asyncio.create_task(run("quiet/1"))
        await asyncio.gather(blocker, *greedy, quiet)
        assert done.index("quiet/1") <= 2, done  # after x/1 and at most one greedy turn

    with_pool(test, workers=1)
