"""The distributed worker pool: jobs to ``multipa-worker`` processes anywhere, through an MQTT broker.

The gateway (this pool, inside ``multipa-server --broker``) publishes each job
with QoS 1 to the jobs topic, which workers read through an MQTT 5 shared
subscription so that each job reaches one worker. Answers come back on the
gateway's own response topic, matched by correlation data. Workers announce
themselves with a retained status and a last will; the gateway keeps at most as
many jobs in flight as the online workers take at once (the sum of their
batch sizes) and queues the rest, bounded by ``max_queue``.

Nothing is lost silently. Each job has an id and a deadline per attempt. When
the worker that accepted it goes offline, when its deadline passes, or when the
broker connection drops, the job is sent again, up to ``max_attempts`` sends;
then the turn fails with ``worker_unavailable``. Whichever answer of whichever
attempt comes first counts; later duplicates are ignored. A job that waited a
whole deadline without any worker online fails the same way, so with no worker
at all turns fail after one deadline instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import mqtt_link
from . import mqtt_protocol as wire
from .exceptions import AssessmentError, OverloadedError, PoolClosedError, PoolStartError, WorkerUnavailableError
from .mqtt_link import BrokerOptions
from .pool import FairQueue, Job, JobResult, PoolStats, WorkerPool
from .protocol import ServerEvent, serialize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttPoolOptions:
    """The broker, deadlines and bounds of the gateway."""

    broker: BrokerOptions = field(default_factory=BrokerOptions)
    job_deadline_s: float = 60.0  # per send: a job not answered by then is sent again
    max_attempts: int = 3  # sends of one job before it fails with worker_unavailable
    max_queue: int = 16  # jobs waiting for a free worker; beyond, new turns fail with overloaded
    connect_timeout_s: float = 30.0  # start() fails when the broker cannot be reached by then
    publish_events: bool = False  # fan every session event out to <prefix>/sessions/<id>/events


@dataclass
class _Entry:
    key: str
    job: Job
    future: asyncio.Future[JobResult]
    submitted: float  # loop time
    attempts: int = 0  # sends so far
    sent_at: float = 0.0  # loop time of the last send
    worker: str | None = None  # who accepted the last send
    accepted_at: float | None = None
    timer: asyncio.TimerHandle | None = None


class MqttPool(WorkerPool):
    """The gateway side of the MQTT worker pool."""

    def __init__(self, options: MqttPoolOptions | None = None) -> None:
        self.options = options or MqttPoolOptions()
        self.gateway = f"gw-{uuid.uuid4().hex[:12]}"
        self._prefix = self.options.broker.prefix
        self._results = wire.results_topic(self._prefix, self.gateway)
        self._client: Any = None  # the connected aiomqtt client, if any
        self._connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._workers: dict[str, wire.WorkerStatus] = {}  # online workers, from their retained status
        self._queue: FairQueue[_Entry] = FairQueue(
            lambda e: e.job.session, self.options.max_queue
        )  # waiting to be sent (first time or again)
        self._inflight: dict[str, _Entry] = {}  # sent, not answered
        self._background: set[asyncio.Task[Any]] = set()
        self._seq = 0
        self._closed = False
        self._counts = {"resent": 0, "duplicates": 0, "unavailable": 0, "reconnects": 0, "events_dropped": 0}

    # --- WorkerPool ---------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            mqtt_link.session(self.options.broker, self.gateway, self._serve, self._lost, stop=self._stop)
        )
        try:
            await asyncio.wait_for(self._connected.wait(), self.options.connect_timeout_s)
        except asyncio.TimeoutError:
            await self.close()
            raise PoolStartError(
                f"cannot reach the MQTT broker at {self.options.broker.url} within {self.options.connect_timeout_s:.0f} s"
            ) from None
        log.info("gateway %s connected to %s, topics under %s/", self.gateway, self.options.broker.url, self._prefix)

    async def submit(self, job: Job) -> JobResult:
        displaced = self._queue.admit(self._closed, job.session)
        if displaced is not None:
            self._finish(
                displaced,
                OverloadedError(
                    "the queue is full and this session has more turns waiting than others; try again later"
                ),
            )
        loop = asyncio.get_running_loop()
        self._seq += 1
        entry = _Entry(f"{self.gateway}-{self._seq}", job, loop.create_future(), loop.time())
        self._queue.append(entry)
        self._arm(entry)
        self._dispatch()
        try:
            return await asyncio.shield(entry.future)
        except asyncio.CancelledError:
            self._withdraw(entry)
            raise

    async def close(self) -> None:
        self._closed = True
        for entry in [*self._queue, *self._inflight.values()]:
            self._finish(entry, PoolClosedError("the worker pool shut down before the assessment"))
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._background):
            task.cancel()

    def stats(self) -> PoolStats:
        online = len(self._workers) if self._connected.is_set() else 0
        extra = {
            "connected": float(self._connected.is_set()),
            "capacity": float(self._capacity()),
            "inflight": float(len(self._inflight)),
        }
        extra.update({k: float(v) for k, v in self._counts.items()})
        return PoolStats(
            len(self._workers),
            online,
            min(len(self._inflight), online),
            len(self._queue),
            self.options.max_queue,
            0,
            extra,
        )

    # --- the event fan-out --------------------------------------------------------

    def publish_event(self, session_id: str, event: ServerEvent) -> None:
        """Publish a session event to its topic (QoS 1); dropped, and counted, while disconnected."""
        if not self.options.publish_events:
            return
        if self._client is None:
            self._counts["events_dropped"] += 1
            return
        self._spawn(self._publish(wire.events_topic(self._prefix, session_id), serialize(event).encode()))

    # --- the broker connection ----------------------------------------------------

    async def _serve(self, client: Any) -> None:
        await client.subscribe(self._results, qos=1)
        await client.subscribe(wire.status_topic(self._prefix), qos=1)
        self._client = client
        self._connected.set()
        self._dispatch()
        async for message in client.messages:
            try:
                self._receive(str(message.topic), bytes(message.payload))
            except Exception:  # one bad message must not end the connection
                log.exception("gateway: handling a message on %s failed", message.topic)

    def _lost(self) -> None:
        """The broker connection is gone: whatever was sent may be lost with it."""
        was_connected = self._connected.is_set()
        self._client = None
        self._connected.clear()
        self._workers.clear()  # the statuses come again, retained, on reconnect
        if not was_connected:
            return
        self._counts["reconnects"] += 1
        self._resend(list(self._inflight.values()), "the broker connection dropped")

    def _receive(self, topic: str, payload: bytes) -> None:
        if topic == self._results:
            try:
                message = wire.decode(payload)
            except wire.WireError as exc:
                log.warning("gateway: ignored a malformed answer: %s", exc)
                return
            if isinstance(message, wire.Accepted):
                self._accepted(message)
            elif isinstance(message, wire.ResultMessage):
                self._answered(message)
            return
        try:
            worker = wire.worker_of_status_topic(self._prefix, topic)
            status = wire.decode_status(payload) if payload else None
        except wire.WireError as exc:
            log.warning("gateway: ignored a status on %s: %s", topic, exc)
            return
        if status is not None and status.state == "online":
            if worker not in self._workers:
                log.info(
                    "worker %s online (%s, batch %d, %s pid %d)",
                    worker,
                    status.device,
                    status.batch,
                    status.host,
                    status.pid,
                )
            self._workers[worker] = status
            self._dispatch()
        elif self._workers.pop(worker, None) is not None:
            log.warning("worker %s went offline", worker)
            self._worker_gone(worker)

    # --- job bookkeeping ----------------------------------------------------------

    def _capacity(self) -> int:
        return sum(s.batch for s in self._workers.values()) if self._connected.is_set() else 0

    def _dispatch(self) -> None:
        while self._queue and self._client is not None and len(self._inflight) < self._capacity():
            entry = self._queue.popleft()
            entry.attempts += 1
            entry.worker, entry.accepted_at = None, None
            entry.sent_at = asyncio.get_running_loop().time()
            self._inflight[entry.key] = entry
            self._arm(entry)
            if entry.attempts > 1:
                self._counts["resent"] += 1
                log.warning(
                    "job %s (turn %s): send %d of %d",
                    entry.key,
                    entry.job.id,
                    entry.attempts,
                    self.options.max_attempts,
                )
            message = wire.JobMessage(
                entry.key,
                entry.job.id,
                entry.attempts,
                entry.job.sample_rate,
                time.time() + self.options.job_deadline_s,
                entry.job.pcm,
                entry.job.reference,
            )
            self._spawn(self._publish(wire.jobs_topic(self._prefix), wire.encode(message), correlation=entry.key))

    async def _publish(self, topic: str, payload: bytes, *, correlation: str | None = None) -> None:
        client = self._client
        if client is None:
            return  # the job stays in flight; the reconnect re-sends it
        properties = None
        if correlation is not None:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: no annotations
            properties.ResponseTopic = self._results
            properties.CorrelationData = correlation.encode()
        try:
            await client.publish(topic, payload, qos=1, properties=properties)
        except Exception as exc:  # aiomqtt.MqttError: the connection dropped; _lost re-sends
            log.warning("gateway: publishing to %s failed: %s", topic, exc)

    def _arm(self, entry: _Entry) -> None:
        """(Re)start the deadline of the entry's current wait."""
        if entry.timer is not None:
            entry.timer.cancel()
        entry.timer = asyncio.get_running_loop().call_later(
            self.options.job_deadline_s, self._expired, entry, entry.attempts
        )

    def _expired(self, entry: _Entry, attempt: int) -> None:
        if entry.future.done() or entry.attempts != attempt:
            return
        if self._inflight.pop(entry.key, None) is not None:
            self._retry(entry, f"no answer within {self.options.job_deadline_s:g} s")
        else:  # it waited a whole deadline in the queue: no worker could take it
            self._unavailable(entry, f"no worker was free to take the turn within {self.options.job_deadline_s:g} s")

    def _retry(self, entry: _Entry, why: str) -> None:
        """Queue an unanswered job to be sent again, or fail it when its sends are used up."""
        if entry.future.done():
            return
        if entry.attempts >= self.options.max_attempts:
            self._unavailable(entry, f"{why}, after {entry.attempts} sends")
            return
        log.warning("job %s (turn %s): %s; it will be sent again", entry.key, entry.job.id, why)
        self._queue.appendleft(entry)  # first in line: it has waited longest
        self._arm(entry)
        self._dispatch()

    def _unavailable(self, entry: _Entry, why: str) -> None:
        self._counts["unavailable"] += 1
        log.error("job %s (turn %s) failed: %s", entry.key, entry.job.id, why)
        self._finish(entry, WorkerUnavailableError(f"no worker could assess the turn: {why}"))

    def _worker_gone(self, worker: str) -> None:
        """Re-send what the worker had accepted, and what was sent but not yet accepted by anyone
        (the broker may have routed it to that worker)."""
        self._resend(
            [e for e in self._inflight.values() if e.worker in (worker, None)], f"worker {worker} went offline"
        )

    def _resend(self, entries: list[_Entry], why: str) -> None:
        """Take sent jobs out of flight and queue them again, the oldest first in line."""
        for entry in sorted(entries, key=lambda e: e.submitted, reverse=True):
            del self._inflight[entry.key]
            self._retry(entry, why)

    def _accepted(self, message: wire.Accepted) -> None:
        entry = self._inflight.get(message.id)
        if entry is not None and message.attempt == entry.attempts:
            entry.worker, entry.accepted_at = message.worker, asyncio.get_running_loop().time()

    def _answered(self, message: wire.ResultMessage) -> None:
        entry = self._inflight.get(message.id) or next((e for e in self._queue if e.key == message.id), None)
        if entry is None or entry.future.done():
            self._counts["duplicates"] += 1
            log.info("gateway: ignored a duplicate or late answer to job %s from %s", message.id, message.worker)
            return
        if message.assessment is None:
            self._finish(
                entry, AssessmentError(message.code or "internal_error", message.message or "the worker failed")
            )
        else:
            loop = asyncio.get_running_loop()
            started = entry.accepted_at or entry.sent_at
            result = JobResult(
                message.assessment,
                _ms(started - entry.submitted),
                _ms(loop.time() - started),
                message.worker,
                entry.attempts,
            )
            self._finish(entry, result)
        self._dispatch()

    def _withdraw(self, entry: _Entry) -> None:
        """The submitter stopped waiting: forget the job and tell the workers."""
        sent = entry.key in self._inflight
        self._finish(entry, None)
        if sent:
            self._spawn(self._publish(wire.cancel_topic(self._prefix), wire.encode(wire.CancelMessage(entry.key))))
        self._dispatch()

    def _finish(self, entry: _Entry, outcome: JobResult | BaseException | None) -> None:
        """Settle a job (None: withdrawn) and forget it, wherever it was."""
        if entry.timer is not None:
            entry.timer.cancel()
        self._inflight.pop(entry.key, None)
        if entry in self._queue:
            self._queue.remove(entry)
        if entry.future.done():
            return
        if outcome is None:
            entry.future.cancel()
        elif isinstance(outcome, BaseException):
            entry.future.set_exception(outcome)
        else:
            entry.future.set_result(outcome)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000.0, 1)
