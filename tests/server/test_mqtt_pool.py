"""The MQTT gateway pool and the worker's broker side, over a real (private) Mosquitto.

The workers here are real :class:`MqttWorker` objects with a stand-in for the models
(the assessment is a dict naming the job), so the tests take seconds; the real models
over MQTT are in test_mqtt_e2e.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from multipa_server import mqtt_protocol as wire
from multipa_server.exceptions import OverloadedError, WorkerUnavailableError
from multipa_server.mqtt_link import broker_options
from multipa_server.mqtt_pool import MqttPool, MqttPoolOptions
from multipa_server.mqtt_worker import MqttWorker
from multipa_server.pool import Job
from multipa_server.protocol import SessionEndReason, SessionEnded

pytestmark = pytest.mark.broker

PCM = b"\x01\x00" * 1600


class Fake:
    """The stand-in for the models: answers after ``delay`` s, or holds while ``hold`` is clear."""

    def __init__(self, name: str, delay: float = 0.05) -> None:
        self.name, self.delay = name, delay
        self.hold = threading.Event()
        self.hold.set()
        self.seen: list[str] = []

    def __call__(self, jobs: list[wire.JobMessage]) -> list[wire.ResultMessage]:
        self.hold.wait(30)
        time.sleep(self.delay)
        self.seen += [j.turn for j in jobs]
        out = []
        for j in jobs:
            if j.reference == "reject me":
                out.append(
                    wire.ResultMessage(
                        j.id, j.attempt, self.name, 1.0, code="audio_silent", message="the turn is silent"
                    )
                )
            else:
                out.append(
                    wire.ResultMessage(
                        j.id,
                        j.attempt,
                        self.name,
                        1.0,
                        assessment={"turn": j.turn, "worker": self.name, "batch": len(jobs)},
                    )
                )
        return out


class Running:
    """Workers running in this loop, each stopped on exit."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.tasks: dict[str, tuple[asyncio.Event, asyncio.Task]] = {}
        self.workers: dict[str, MqttWorker] = {}

    def start(self, fake: Fake, batch: int = 1) -> MqttWorker:
        worker = MqttWorker(fake, broker_options(self.url, prefix=self.prefix), worker_id=fake.name, batch=batch)
        stop = asyncio.Event()
        self.tasks[fake.name] = (stop, asyncio.create_task(worker.run(stop)))
        self.workers[fake.name] = worker
        return worker

    async def stop(self, name: str) -> None:
        stop, task = self.tasks.pop(name)
        stop.set()
        await asyncio.wait_for(task, 30)

    async def stop_all(self) -> None:
        for name in list(self.tasks):
            await self.stop(name)


def pool_for(url: str, prefix: str, **options) -> MqttPool:
    return MqttPool(MqttPoolOptions(broker=broker_options(url, prefix=prefix), **options))


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def job(n: int, reference: str | None = None) -> Job:
    return Job(f"s/{n}", PCM, 16000, reference)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_two_workers_share_the_jobs_of_concurrent_turns(mosquitto):
    async def main():
        workers = Running(mosquitto.url, "t/share")
        a, b = Fake("a", 0.2), Fake("b", 0.2)
        workers.start(a), workers.start(b)
        pool = pool_for(mosquitto.url, "t/share")
        await pool.start()
        await until(lambda: pool.stats().ready == 2)
        results = await asyncio.gather(*(pool.submit(job(i)) for i in range(8)))
        assert [r.assessment["turn"] for r in results] == [f"s/{i}" for i in range(8)]
        assert all(r.attempts == 1 and r.worker == r.assessment["worker"] for r in results)
        assert a.seen and b.seen and len(a.seen) + len(b.seen) == 8
        rejected = pool.submit(job(9, reference="reject me"))
        with pytest.raises(Exception) as failure:
            await rejected
        assert getattr(failure.value, "code", None) == "audio_silent"
        stats = pool.stats()
        assert (stats.workers, stats.ready, stats.busy, stats.queued) == (2, 2, 0, 0)
        await pool.close()
        await workers.stop_all()

    run(main())


def test_a_worker_gone_mid_job_is_replaced_and_its_late_answer_ignored(mosquitto):
    async def main():
        workers = Running(mosquitto.url, "t/gone")
        stuck = Fake("stuck")
        stuck.hold.clear()
        stuck_worker = workers.start(stuck)
        pool = pool_for(mosquitto.url, "t/gone")
        await pool.start()
        await until(lambda: pool.stats().ready == 1)
        pending = asyncio.create_task(pool.submit(job(1)))
        await until(lambda: any(e.worker == "stuck" for e in pool._inflight.values()))
        # a dead worker takes no more jobs, and the broker publishes its last will: do both
        import aiomqtt

        stuck_worker._taking = False
        await stuck_worker._client.unsubscribe(wire.jobs_subscription("t/gone"))
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as other:
            await other.publish(
                wire.status_topic("t/gone", "stuck"),
                wire.encode_status(wire.WorkerStatus("stuck", "offline")),
                qos=1,
                retain=True,
            )
        await until(lambda: pool.stats().workers == 0)
        workers.start(Fake("healthy"))
        result = await pending
        assert (result.worker, result.attempts) == ("healthy", 2)
        stuck.hold.set()  # its answer to the first send arrives late
        await until(lambda: pool.stats().extra["duplicates"] == 1)
        assert pool.stats().extra["resent"] == 1
        await pool.close()
        await workers.stop_all()

    run(main())


def test_no_worker_fails_after_the_deadline_and_a_full_queue_at_once(mosquitto):
    async def main():
        pool = pool_for(mosquitto.url, "t/none", job_deadline_s=1.0, max_queue=1)
        await pool.start()
        started = time.monotonic()
        first = asyncio.create_task(pool.submit(job(1)))
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError):
            await pool.submit(job(2))
        with pytest.raises(WorkerUnavailableError) as failure:
            await first
        assert 0.9 < time.monotonic() - started < 5.0
        assert failure.value.code == "worker_unavailable" and "no worker" in str(failure.value)
        await pool.close()

    run(main())


def test_an_unanswered_job_is_sent_max_attempts_times_then_fails(mosquitto):
    async def main():
        workers = Running(mosquitto.url, "t/deadline")
        mute = Fake("mute")
        mute.hold.clear()
        workers.start(mute, batch=4)
        pool = pool_for(mosquitto.url, "t/deadline", job_deadline_s=0.5, max_attempts=3)
        await pool.start()
        await until(lambda: pool.stats().ready == 1)
        with pytest.raises(WorkerUnavailableError) as failure:
            await pool.submit(job(1))
        assert "after 3 sends" in str(failure.value)
        assert pool.stats().extra["resent"] == 2
        mute.hold.set()
        await pool.close()
        await workers.stop_all()

    run(main())


def test_a_broker_restart_mid_turn_recovers_or_fails_explicitly(mosquitto):
    async def main():
        workers = Running(mosquitto.url, "t/restart")
        slow = Fake("slow", delay=1.5)
        workers.start(slow)
        pool = pool_for(mosquitto.url, "t/restart", job_deadline_s=20.0)
        await pool.start()
        await until(lambda: pool.stats().ready == 1)
        pending = asyncio.create_task(pool.submit(job(1)))
        await until(lambda: any(e.worker == "slow" for e in pool._inflight.values()))
        mosquitto.stop()
        await until(lambda: pool.stats().extra["connected"] == 0.0)
        assert pool.stats().ready == 0
        mosquitto.start()
        result = await asyncio.wait_for(pending, 30)  # re-sent after the reconnect, or the kept answer
        assert result.assessment["turn"] == "s/1"
        again = await pool.submit(job(2))  # the session goes on
        assert again.assessment["turn"] == "s/2"
        assert pool.stats().extra["reconnects"] == 1
        # a turn whose sends are used up when the broker goes away fails, it does not hang
        strict = pool_for(mosquitto.url, "t/restart", job_deadline_s=20.0, max_attempts=1)
        await strict.start()
        await until(lambda: strict.stats().ready == 1)
        doomed = asyncio.create_task(strict.submit(job(3)))
        await until(lambda: bool(strict._inflight))
        mosquitto.stop()
        with pytest.raises(WorkerUnavailableError) as failure:
            await asyncio.wait_for(doomed, 10)
        # mosquitto sends the workers' wills as it stops, or the connection just drops
        assert "after 1 sends" in str(failure.value)
        mosquitto.start()
        await strict.close()
        await pool.close()
        await workers.stop_all()

    run(main())


def test_a_withdrawn_job_is_skipped_by_the_worker(mosquitto):
    async def main():
        workers = Running(mosquitto.url, "t/cancel")
        fake = Fake("w", delay=0.5)
        worker = workers.start(fake, batch=1)
        pool = pool_for(mosquitto.url, "t/cancel")
        await pool.start()
        await until(lambda: pool.stats().ready == 1)
        pool.stats  # capacity 1: the second job waits in the gateway, so send both by hand
        pool._workers["w"] = wire.WorkerStatus("w", "online", batch=2)
        first = asyncio.create_task(pool.submit(job(1)))
        second = asyncio.create_task(pool.submit(job(2)))
        await until(lambda: len(pool._inflight) == 2 and all(e.worker for e in pool._inflight.values()))
        second.cancel()
        assert (await first).assessment["turn"] == "s/1"
        await asyncio.sleep(0.8)
        assert fake.seen == ["s/1"] and worker.done == 1
        await pool.close()
        await workers.stop_all()

    run(main())


def test_jobs_that_arrive_together_are_batched(mosquitto):
    async def main():
        workers = Running(mosquitto.url, "t/batch")
        fake = Fake("big", delay=0.3)
        workers.start(fake, batch=4)
        pool = pool_for(mosquitto.url, "t/batch")
        await pool.start()
        await until(lambda: pool.stats().ready == 1)
        results = await asyncio.gather(*(pool.submit(job(i)) for i in range(5)))
        sizes = [r.assessment["batch"] for r in results]
        assert max(sizes) > 1 and sorted(set(sizes)) != [1], sizes
        await pool.close()
        await workers.stop_all()

    run(main())


def test_garbage_on_the_topics_hurts_nobody(mosquitto):
    import aiomqtt

    async def main():
        workers = Running(mosquitto.url, "t/garbage")
        workers.start(Fake("w"))
        pool = pool_for(mosquitto.url, "t/garbage")
        await pool.start()
        await until(lambda: pool.stats().ready == 1)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as rogue:
            for payload in (
                b"",
                b"MPAW",
                b"\xff" * 100,
                wire.encode(wire.CancelMessage("x"))[:-1],
                b"MPAW\x01J\x00\x00\x00\x02{}",
            ):
                await rogue.publish(wire.jobs_topic("t/garbage"), payload, qos=1)
                await rogue.publish(pool._results, payload, qos=1)
                await rogue.publish(wire.status_topic("t/garbage", "odd"), payload, qos=1)
        result = await pool.submit(job(1))
        assert result.assessment["turn"] == "s/1" and pool.stats().ready == 1
        await pool.close()
        await workers.stop_all()

    run(main())


def test_session_events_are_published_when_asked(mosquitto):
    import aiomqtt

    async def main():
        pool = pool_for(mosquitto.url, "t/events", publish_events=True)
        await pool.start()
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as listener:
            await listener.subscribe(wire.events_topic("t/events", "+"), qos=1)
            event = SessionEnded(
                reason=SessionEndReason.CLIENT, turns_started=0, turns_assessed=0, turns_failed=0, audio_ms=0
            )
            pool.publish_event("abc123", event)
            message = await asyncio.wait_for(anext(aiter(listener.messages)), 5)
            assert str(message.topic) == "t/events/sessions/abc123/events"
            assert b'"session.ended"' in bytes(message.payload)
        await pool.close()

    run(main())


def test_a_graceful_worker_stop_says_offline(mosquitto):
    async def main():
        workers = Running(mosquitto.url, "t/stop")
        workers.start(Fake("w"))
        pool = pool_for(mosquitto.url, "t/stop")
        await pool.start()
        await until(lambda: pool.stats().ready == 1)
        await workers.stop("w")
        await until(lambda: pool.stats().ready == 0)
        await pool.close()

    run(main())


def test_start_fails_clearly_without_a_broker():
    async def main():
        pool = MqttPool(MqttPoolOptions(broker=broker_options("mqtt://127.0.0.1:9"), connect_timeout_s=1.0))
        with pytest.raises(Exception) as failure:
            await pool.start()
        assert failure.value.code == "worker_start_failed" and "127.0.0.1:9" in str(failure.value)

    run(main())


def test_the_machines_broker_on_1883():
    """What `.ci/run` promises: a broker on 127.0.0.1:1883 that a gateway and a worker use."""
    import socket

    with socket.socket() as probe:
        probe.settimeout(1.0)
        if probe.connect_ex(("127.0.0.1", 1883)) != 0:
            from .broker import missing

            missing("no MQTT broker on 127.0.0.1:1883")

    async def main():
        prefix = f"t/system-{time.monotonic_ns()}"
        workers = Running("mqtt://127.0.0.1:1883", prefix)
        workers.start(Fake("w"))
        pool = pool_for("mqtt://127.0.0.1:1883", prefix)
        await pool.start()
        await until(lambda: pool.stats().ready == 1)
        assert (await pool.submit(job(1))).assessment["turn"] == "s/1"
        await pool.close()
        await workers.stop_all()

    run(main())


def test_tls_with_the_brokers_ca_and_a_clear_failure_without_it(tmp_path):
    from .broker import Mosquitto, certificates

    ca, cert, key = certificates(tmp_path)
    broker = Mosquitto(tmp_path, tls=(ca, cert, key))
    try:

        async def main():
            workers = Running(broker.url, "t/tls")
            worker = MqttWorker(Fake("w"), broker_options(broker.url, prefix="t/tls", ca_file=str(ca)), worker_id="w")
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            pool = MqttPool(MqttPoolOptions(broker=broker_options(broker.url, prefix="t/tls", ca_file=str(ca))))
            await pool.start()
            await until(lambda: pool.stats().ready == 1)
            assert (await pool.submit(job(1))).assessment["turn"] == "s/1"
            await pool.close()
            stop.set()
            await task
            # the system's CAs do not know this broker: the start fails, it does not hang
            untrusted = MqttPool(
                MqttPoolOptions(broker=broker_options(broker.url, prefix="t/tls"), connect_timeout_s=2.0)
            )
            with pytest.raises(Exception) as failure:
                await untrusted.start()
            assert failure.value.code == "worker_start_failed"
            del workers

        run(main())
    finally:
        broker.stop()
