"""The MQTT side of ``multipa-worker``: jobs from the broker to the worker runtime, answers back.

The command (:mod:`multipa_server.worker_cli`) loads the models once
(:mod:`multipa_server.runtime`), then :class:`MqttWorker` connects (MQTT 5, reconnecting with back-off),
announces itself with a retained ``online`` status (its last will says
``offline``), and reads jobs through the shared subscription. Each job is
acknowledged at once (``Accepted``, so the gateway knows whom to re-send from),
queued, and assessed; up to ``--batch`` jobs that arrive within a few
milliseconds of each other are assessed together (one encoder and scorer pass). A job the
gateway withdrew, or whose deadline passed while it waited (the gateway has sent
it again by then), is skipped. SIGTERM or Ctrl-C: stop taking jobs, finish the
one running, say ``offline`` and exit 0; the gateway re-sends what was queued.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from . import mqtt_link
from . import mqtt_protocol as wire
from .mqtt_link import BrokerOptions
from .runtime import Done, Runtime

log = logging.getLogger(__name__)

BATCH_WINDOW_S = 0.005  # how long a first job waits for others to batch with
CANCELLED_MEMORY = 1024  # withdrawn job ids remembered


@dataclass(frozen=True)
class _Work:
    job: wire.JobMessage
    reply_to: str  # the gateway's response topic
    correlation: bytes


AssessMany = Callable[[list[wire.JobMessage]], list[wire.ResultMessage]]


class MqttWorker:
    """The broker side of a worker: jobs in, answers out; ``assess`` does the work (in a thread).

    Args:
        assess: answers a batch of jobs, one result each, in order (blocking; it runs in a thread).
        broker: where the broker is.
        worker_id: a name unique among the workers.
        device: announced in the status.
        batch: most jobs assessed together.
    """

    def __init__(
        self, assess: AssessMany, broker: BrokerOptions, *, worker_id: str, device: str = "cpu", batch: int = 1
    ) -> None:
        self.assess = assess
        self.broker = broker
        self.id = worker_id
        self.device = device
        self.batch = batch
        self._prefix = broker.prefix
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._unsent: list[tuple[str, bytes, bytes]] = []  # answers that found the connection down
        self._client: Any = None
        self._connected = asyncio.Event()
        self._taking = True
        self._stop_link = asyncio.Event()
        self._busy = False  # a batch is being assessed
        self.done = 0  # jobs answered, for logs and tests

    def _status(self, state: str) -> bytes:
        return wire.encode_status(
            wire.WorkerStatus(self.id, state, self.device, self.batch, socket.gethostname(), os.getpid())
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then leave cleanly."""
        import aiomqtt

        will = aiomqtt.Will(wire.status_topic(self._prefix, self.id), self._status("offline"), qos=1, retain=True)
        link = asyncio.create_task(
            mqtt_link.session(self.broker, self.id, self._serve, self._lost, will=will, stop=self._stop_link)
        )
        processor = asyncio.create_task(self._process())
        await stop.wait()
        self._taking = False
        await self._quietly(lambda c: c.unsubscribe(wire.jobs_subscription(self._prefix)))
        while self._busy:  # the batch running now still gets its answers out
            await asyncio.sleep(0.05)
        processor.cancel()  # it waits for the next job (a cancel inside a publish, which runs in asyncio.wait_for, can be lost on Python 3.11)
        await self._quietly(
            lambda c: c.publish(wire.status_topic(self._prefix, self.id), self._status("offline"), qos=1, retain=True)
        )
        self._stop_link.set()
        link.cancel()
        await asyncio.gather(link, processor, return_exceptions=True)

    async def _quietly(self, call: Callable[[Any], Any]) -> None:
        """A goodbye step, when connected: bounded, and never an error (the will covers us)."""
        if self._client is None:
            return
        try:
            await asyncio.wait_for(call(self._client), 3.0)
        except Exception as exc:
            log.warning("worker %s: leaving the broker: %s", self.id, exc or type(exc).__name__)

    async def _serve(self, client: Any) -> None:
        await client.subscribe(wire.cancel_topic(self._prefix), qos=1)
        if self._taking:
            await client.subscribe(wire.jobs_subscription(self._prefix), qos=1)
        await client.publish(wire.status_topic(self._prefix, self.id), self._status("online"), qos=1, retain=True)
        self._client = client
        self._connected.set()
        log.info("worker %s online at %s, jobs from %s", self.id, self.broker.url, wire.jobs_subscription(self._prefix))
        unsent, self._unsent = self._unsent, []
        for topic, payload, correlation in unsent:
            await self._answer(topic, payload, correlation, keep=True)
        async for message in client.messages:
            try:
                self._receive(message)
            except Exception:
                log.exception("worker: handling a message on %s failed", message.topic)

    def _lost(self) -> None:
        self._client = None
        self._connected.clear()

    def _receive(self, message: Any) -> None:
        properties = message.properties
        reply_to = getattr(properties, "ResponseTopic", None)
        correlation = getattr(properties, "CorrelationData", None) or b""
        try:
            decoded = wire.decode(bytes(message.payload))
        except wire.WireError as exc:
            log.warning("worker: ignored a malformed message on %s: %s", message.topic, exc)
            return
        if isinstance(decoded, wire.CancelMessage):
            self._cancelled[decoded.id] = None
            while len(self._cancelled) > CANCELLED_MEMORY:
                self._cancelled.popitem(last=False)
            return
        if not isinstance(decoded, wire.JobMessage):
            return
        if not reply_to:
            log.warning("worker: job %s has no response topic; dropped", decoded.id)
            return
        log.info("worker %s: accepted job %s (turn %s, send %d)", self.id, decoded.id, decoded.turn, decoded.attempt)
        self._queue.put_nowait(_Work(decoded, reply_to, correlation))
        accepted = wire.encode(wire.Accepted(decoded.id, decoded.attempt, self.id))
        asyncio.get_running_loop().create_task(self._answer(reply_to, accepted, correlation, keep=False))

    async def _answer(self, topic: str, payload: bytes, correlation: bytes, *, keep: bool) -> None:
        """Publish to a gateway; ``keep``: when the connection is down, send it after reconnecting
        (results are worth it; acceptances are stale by then)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: no annotations
        properties.CorrelationData = correlation
        client = self._client
        if client is not None:
            try:
                await client.publish(topic, payload, qos=1, properties=properties)
                return
            except Exception as exc:
                log.warning("worker: could not answer on %s (%s); will retry after reconnecting", topic, exc)
        if keep:
            self._unsent.append((topic, payload, correlation))

    async def _process(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self.batch > 1 and self._queue.qsize() < self.batch - 1:
                await asyncio.sleep(BATCH_WINDOW_S)  # others arriving together join it
            while len(batch) < self.batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            now = time.time()
            live = [w for w in batch if w.job.id not in self._cancelled and w.job.deadline > now]
            for w in batch:
                if w not in live:
                    log.info("worker: skipped job %s (withdrawn or past its deadline)", w.job.id)
            if not live:
                continue
            self._busy = True  # until the answers are out: a stop must not cancel a publish halfway
            try:
                results = await asyncio.to_thread(self.assess, [w.job for w in live])
                for work, result in zip(live, results):
                    self.done += 1
                    log.info(
                        "worker %s: job %s (turn %s, send %d) answered: %s",
                        self.id,
                        work.job.id,
                        work.job.turn,
                        work.job.attempt,
                        result.code or "assessed",
                    )
                    await self._answer(work.reply_to, wire.encode(result), work.correlation, keep=True)
            finally:
                self._busy = False


def runtime_batch(runtime: Runtime, worker_id: str) -> AssessMany:
    """``assess`` for :class:`MqttWorker` over the worker runtime: its answers as result messages."""

    def assess(jobs: list[wire.JobMessage]) -> list[wire.ResultMessage]:
        started = time.perf_counter()
        answers = runtime.answer(jobs)
        ms = round((time.perf_counter() - started) * 1000.0, 1)
        return [
            wire.ResultMessage(job.id, job.attempt, worker_id, ms, assessment=answer.assessment)
            if isinstance(answer, Done)
            else wire.ResultMessage(job.id, job.attempt, worker_id, ms, code=answer.code, message=answer.message)
            for job, answer in zip(jobs, answers)
        ]

    return assess
