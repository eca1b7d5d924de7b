"""``multipa-worker``: assesses turns for any number of gateways, through an MQTT broker.

It loads the models once, then connects (MQTT 5, reconnecting with back-off),
announces itself with a retained ``online`` status (its last will says
``offline``), and reads jobs through the shared subscription. Each job is
acknowledged at once (``Accepted``, so the gateway knows whom to re-send from),
queued, and assessed; up to ``--batch`` jobs that arrive within a few
milliseconds of each other go through the scoring network together. A job the
gateway withdrew, or whose deadline passed while it waited (the gateway has sent
it again by then), is skipped. SIGTERM or Ctrl-C: stop taking jobs, finish the
one running, say ``offline`` and exit 0; the gateway re-sends what was queued.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from multipa_core import settings as core_settings

from . import mqtt_link, settings
from . import mqtt_protocol as wire
from .exceptions import ConfigError, ServerError
from .mqtt_link import BrokerOptions

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

    def __init__(self, assess: AssessMany, broker: BrokerOptions, *, worker_id: str, device: str = "cpu", batch: int = 1) -> None:
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
        return wire.encode_status(wire.WorkerStatus(self.id, state, self.device, self.batch, socket.gethostname(), os.getpid()))

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then leave cleanly."""
        import aiomqtt

        will = aiomqtt.Will(wire.status_topic(self._prefix, self.id), self._status("offline"), qos=1, retain=True)
        link = asyncio.create_task(mqtt_link.session(self.broker, self.id, self._serve, self._lost, will=will, stop=self._stop_link))
        processor = asyncio.create_task(self._process())
        await stop.wait()
        self._taking = False
        await self._quietly(lambda c: c.unsubscribe(wire.jobs_subscription(self._prefix)))
        while self._busy:  # the batch running now still gets its answers out
            await asyncio.sleep(0.05)
        processor.cancel()  # it waits for the next job (a cancel inside a publish, which runs in asyncio.wait_for, can be lost on Python 3.11)
        await self._quietly(lambda c: c.publish(wire.status_topic(self._prefix, self.id), self._status("offline"), qos=1, retain=True))
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

        properties = Properties(PacketTypes.PUBLISH)
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
                    log.info("worker %s: job %s (turn %s, send %d) answered: %s", self.id, work.job.id, work.job.turn, work.job.attempt, result.code or "assessed")
                    await self._answer(work.reply_to, wire.encode(result), work.correlation, keep=True)
            finally:
                self._busy = False


def assessor_batch(assessor: Any, worker_id: str) -> AssessMany:
    """``assess`` for :class:`MqttWorker` over a multipa_core Assessor."""
    from multipa_core import audio
    from multipa_core.errors import MultipaError

    def assess(jobs: list[wire.JobMessage]) -> list[wire.ResultMessage]:
        started = time.perf_counter()
        turns: list[Any] = []
        for job in jobs:
            try:
                turns.append((audio.from_pcm16(job.pcm, job.sample_rate), job.reference))
            except MultipaError as exc:
                turns.append(exc)
        valid = [t for t in turns if not isinstance(t, MultipaError)]
        try:
            outcomes = iter(assessor.assess_many(valid))
        except Exception as exc:  # a bug must not take the worker down
            log.exception("worker: the assessment failed")
            failure = MultipaError(f"the assessment failed ({type(exc).__name__})")
            failure.code = "internal_error"
            outcomes = iter([failure] * len(valid))
        ms = round((time.perf_counter() - started) * 1000.0, 1)
        results = []
        for job, turn in zip(jobs, turns):
            outcome = turn if isinstance(turn, MultipaError) else next(outcomes)
            if isinstance(outcome, MultipaError):
                results.append(wire.ResultMessage(job.id, job.attempt, worker_id, ms, code=outcome.code, message=str(outcome)))
            else:
                results.append(wire.ResultMessage(job.id, job.attempt, worker_id, ms, assessment=outcome.to_dict()))
        return results

    return assess


# --- the command ----------------------------------------------------------------------


def add_broker_arguments(parser: argparse.ArgumentParser, *, broker_help: str) -> None:
    """The broker options, shared by multipa-worker and multipa-server."""
    group = parser.add_argument_group("MQTT broker")
    group.add_argument("--broker", default=os.environ.get("MULTIPA_BROKER"), help=broker_help)
    group.add_argument("--username", default=os.environ.get("MULTIPA_MQTT_USERNAME"), help="broker user name (MULTIPA_MQTT_USERNAME)")
    group.add_argument("--password", default=os.environ.get("MULTIPA_MQTT_PASSWORD"), help="broker password (MULTIPA_MQTT_PASSWORD; safer than the flag)")
    group.add_argument("--tls", action="store_true", help="connect with TLS (implied by mqtts://)")
    group.add_argument("--ca-file", help="CA bundle that signed the broker's certificate (default: the system's)")
    group.add_argument("--cert-file", help="client certificate, for brokers that require one")
    group.add_argument("--key-file", help="the client certificate's key")
    group.add_argument("--prefix", default=wire.DEFAULT_PREFIX, help=f"topic prefix (default {wire.DEFAULT_PREFIX})")


def broker_from_args(args: argparse.Namespace) -> BrokerOptions:
    """BrokerOptions from the parsed broker arguments; raises ConfigError."""
    return mqtt_link.broker_options(args.broker, tls=args.tls, username=args.username, password=args.password, ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file, prefix=args.prefix)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multipa-worker", description="Assess turns for multipa-server gateways, through an MQTT broker.")
    add_broker_arguments(parser, broker_help="mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS (MULTIPA_BROKER)")
    parser.add_argument("--device", default=core_settings.device(), choices=["auto", "cpu", "cuda"], help="where the models run; auto picks CUDA when present (MULTIPA_DEVICE)")
    parser.add_argument("--batch", type=int, default=1, help="most turns assessed together (they share the scoring network's pass); 1 by default")
    parser.add_argument("--scorer", default=settings.scorer(), help="scorer checkpoint name or path (MULTIPA_SCORER)")
    parser.add_argument("--threads", type=int, default=core_settings.threads(), help="CPU threads for the models (0: all cores; MULTIPA_THREADS)")
    parser.add_argument("--id", default=None, help="worker name, unique among the workers (default HOST-PID)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every job")
    return parser


async def _serve(worker: MqttWorker) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker._connected.wait(), 30.0)
        print(f"multipa-worker {worker.id} ready on {worker.device} (batch {worker.batch}); broker {worker.broker.url}, topics under {worker.broker.prefix}/", flush=True)
    except asyncio.TimeoutError:
        print(f"multipa-worker {worker.id}: the broker at {worker.broker.url} is not reachable yet; retrying", file=sys.stderr, flush=True)
    await runner
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.broker:
        print("error [config_error]: --broker mqtt://HOST:PORT is required (or MULTIPA_BROKER)", file=sys.stderr)
        return 2
    if not 1 <= args.batch <= 256:
        print("error [config_error]: --batch must be from 1 to 256", file=sys.stderr)
        return 2
    worker_id = args.id or re.sub(r"[^A-Za-z0-9_.-]", "-", f"{socket.gethostname()}-{os.getpid()}")
    try:
        broker = broker_from_args(args)
        try:
            wire.check_id(worker_id, "--id")
        except wire.WireError as exc:
            raise ConfigError(str(exc)) from None
        mqtt_link.checked(broker)  # a bad certificate path fails now, not at each reconnect
        from multipa_core.asr import resolve_device
        from multipa_core.assess import Assessor
        from multipa_core.errors import MultipaError
        from multipa_core.pipeline import PipelineOptions

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        try:
            assessor = Assessor(PipelineOptions(device=args.device, threads=args.threads), scorer=args.scorer)
            assessor.warm_up()
        except MultipaError as exc:
            print(f"error [{exc.code}]: {exc}", file=sys.stderr)
            return 2
        worker = MqttWorker(assessor_batch(assessor, worker_id), broker, worker_id=worker_id, device=resolve_device(args.device), batch=args.batch)
        return asyncio.run(_serve(worker))
    except (ServerError, wire.WireError) as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
