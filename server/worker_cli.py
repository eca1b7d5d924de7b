"""The ``multipa-worker`` command: assesses turns for any number of gateways, through an MQTT broker.

It checks its options, loads the models once on its device (:mod:`multipa_server.runtime`),
then serves jobs through :class:`~multipa_server.mqtt_worker.MqttWorker` until SIGTERM or
Ctrl-C. A configuration or model problem prints ``error [code]: sentence`` on stderr and
exits 2, before any connection.
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
from typing import Sequence

from multipa_core import settings as core_settings

from . import mqtt_link, settings
from . import mqtt_protocol as wire
from .exceptions import ConfigError, ServerError
from .mqtt_link import add_broker_arguments, broker_from_args
from .mqtt_worker import MqttWorker, runtime_batch
from .runtime import MAX_BATCH, Failed, WorkerOptions, start


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multipa-worker", description="Assess turns for multipa-server gateways, through an MQTT broker."
    )
    add_broker_arguments(parser, broker_help="mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS (MULTIPA_BROKER)")
    add_worker_arguments(parser)
    parser.add_argument("--id", default=None, help="worker name, unique among the workers (default HOST-PID)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every job")
    return parser


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """What a worker loads and how it runs, shared by multipa-worker and multipa-server."""
    parser.add_argument(
        "--device",
        default=core_settings.device(),
        choices=list(core_settings.DEVICES),
        help="where every model runs; auto picks CUDA when present (MULTIPA_DEVICE)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=settings.batch(),
        help="most turns a worker assesses together: the encoders and the scoring network run once for them (MULTIPA_BATCH; 1 by default, more on a GPU)",
    )
    parser.add_argument("--scorer", default=settings.scorer(), help="scorer checkpoint name or path (MULTIPA_SCORER)")
    parser.add_argument(
        "--asr-target",
        default=core_settings.asr_target(),
        metavar="NAME_OR_DIR",
        help="ASR_t: a Whisper registry name or CTranslate2 Whisper directory; by default the scorer checkpoint's, "
        "and another than the one it was trained with fails at start with model_mismatch (MULTIPA_ASR_TARGET)",
    )
    parser.add_argument(
        "--asr-recognized",
        default=core_settings.asr_recognized(),
        metavar="NAME_OR_DIR",
        help="ASR_r, the same way (MULTIPA_ASR_RECOGNIZED)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=core_settings.threads(),
        help="CPU threads for the models (0: all cores; MULTIPA_THREADS)",
    )


def worker_options(args: argparse.Namespace, *, threads: int) -> WorkerOptions:
    """The options of :func:`add_worker_arguments`, as a worker takes them."""
    return WorkerOptions(
        scorer=args.scorer,
        device=args.device,
        threads=threads,
        batch=args.batch,
        asr_target=args.asr_target,
        asr_recognized=args.asr_recognized,
    )


def check_batch(batch: int) -> None:
    """Raises ConfigError for a batch size out of range."""
    if not 1 <= batch <= MAX_BATCH:
        raise ConfigError(f"--batch must be from 1 to {MAX_BATCH}")


async def _serve(worker: MqttWorker) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker._connected.wait(), 30.0)
        print(
            f"multipa-worker {worker.id} ready on {worker.device} (batch {worker.batch}); broker {worker.broker.url}, topics under {worker.broker.prefix}/",
            flush=True,
        )
    except asyncio.TimeoutError:
        print(
            f"multipa-worker {worker.id}: the broker at {worker.broker.url} is not reachable yet; retrying",
            file=sys.stderr,
            flush=True,
        )
    await runner
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = settings.validated(build_parser).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    worker_id = args.id or re.sub(r"[^A-Za-z0-9_.-]", "-", f"{socket.gethostname()}-{os.getpid()}")
    try:
        if not args.broker:
            raise ConfigError("--broker mqtt://HOST:PORT is required (or MULTIPA_BROKER)")
        check_batch(args.batch)
        broker = broker_from_args(args)
        try:
            wire.check_id(worker_id, "--id")
        except wire.WireError as exc:
            raise ConfigError(str(exc)) from None
        mqtt_link.checked(broker)  # a bad certificate path fails now, not at each reconnect
        runtime = start(worker_options(args, threads=args.threads))
        if isinstance(runtime, Failed):
            print(f"error [{runtime.code}]: {runtime.message}", file=sys.stderr)
            return 2
        worker = MqttWorker(
            runtime_batch(runtime, worker_id), broker, worker_id=worker_id, device=runtime.device, batch=args.batch
        )
        return asyncio.run(_serve(worker))
    except (ServerError, wire.WireError) as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
