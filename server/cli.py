"""The ``multipa-server`` command: the streaming service with its embedded worker pool,
or, with ``--broker``, in front of ``multipa-worker`` processes reached through MQTT.

Prints where it listens once the workers are ready, then ``demo: URL`` (the page
a new user opens first); SIGTERM or Ctrl-C drains the turns in flight and exits
0. A configuration or model problem prints ``error [code]: sentence`` on stderr
and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Sequence

from . import mqtt_link, settings
from .app import Server, ServerOptions
from .exceptions import ServerError
from .local_pool import LocalPool, LocalPoolOptions
from .mqtt_link import add_broker_arguments, broker_from_args
from .mqtt_pool import MqttPool, MqttPoolOptions
from .session import SPECULATION_HANGOVERS, Limits
from .worker_cli import add_worker_arguments, check_batch, worker_options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multipa-server", description="Real-time pronunciation feedback over websockets (/v1/stream)."
    )
    parser.add_argument("--host", default=settings.host(), help="interface to listen on (MULTIPA_HOST)")
    parser.add_argument("--port", type=int, default=settings.port(), help="TCP port, 0 for any free one (MULTIPA_PORT)")
    parser.add_argument(
        "--workers",
        type=int,
        default=settings.workers(),
        help="worker processes, each loads the models once (MULTIPA_WORKERS)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        default=None,
        help="accepted API key, repeatable (or MULTIPA_API_KEYS, comma-separated)",
    )
    add_worker_arguments(parser)
    parser.add_argument(
        "--max-queue", type=int, default=16, help="turns waiting for a worker before new ones fail with overloaded"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=60.0, help="seconds a shutdown waits for turns in flight"
    )
    parser.add_argument(
        "--max-sessions", type=int, default=100, help="open sessions; more connections are refused with 503"
    )
    parser.add_argument(
        "--max-sessions-per-client",
        type=int,
        default=0,
        help="open sessions from one client address; more are refused with 429 (default 0: no cap; behind a proxy, also set --client-address-header)",
    )
    parser.add_argument(
        "--client-address-header",
        default=None,
        metavar="NAME",
        help="behind a reverse proxy: the header holding the client's address, e.g. X-Forwarded-For (its last entry is taken); only set it when every connection comes through that proxy",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=10.0,
        help="seconds a connection has to send session.start before it is closed (start_timeout)",
    )
    parser.add_argument(
        "--no-speculate",
        action="store_true",
        help="assess a turn only once it has ended (by default a turn is assessed on an idle worker from the learner's pause, while the hang-over runs)",
    )
    parser.add_argument(
        "--speculation-hangovers",
        type=float,
        default=SPECULATION_HANGOVERS,
        metavar="N",
        help="speculate while a session's jobs come back within N hang-overs (a loaded machine pauses it: a withdrawn speculation runs on); 0: at every pause",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every session and job")
    add_broker_arguments(
        parser,
        broker_help="dispatch turns to multipa-worker processes through this broker (mqtt://HOST:PORT or mqtts:// for TLS; MULTIPA_BROKER) instead of local workers",
    )
    group = parser.add_argument_group("MQTT gateway (with --broker)")
    group.add_argument(
        "--job-deadline", type=float, default=60.0, help="seconds a worker has to answer before the turn is sent again"
    )
    group.add_argument(
        "--max-attempts", type=int, default=3, help="sends of a turn before it fails with worker_unavailable"
    )
    group.add_argument(
        "--publish-events",
        action="store_true",
        help="also publish every session event to <prefix>/sessions/<session id>/events",
    )
    return parser


async def serve(options: ServerOptions, pool_options: LocalPoolOptions | MqttPoolOptions) -> int:
    """Run until SIGTERM/SIGINT; the exit status."""
    if isinstance(pool_options, MqttPoolOptions):
        pool = MqttPool(pool_options)
        server = Server(pool, options, publish=pool.publish_event if pool_options.publish_events else None)
        where = f"workers over MQTT at {pool_options.broker.url}"
    else:
        server = Server(LocalPool(pool_options), options)
        where = f"{pool_options.workers} worker{'s' * (pool_options.workers != 1)}, scorer {pool_options.worker.scorer}"
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(server.start())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # stopped while the models were loading
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await server.pool.close()
        return 0
    stopped.cancel()
    starting.result()  # raises the start error, if any
    print(f"multipa-server listening on {server.url} ({where}, auth {'on' if options.api_keys else 'off'})", flush=True)
    print(f"demo: {server.demo_url}", flush=True)
    await stop.wait()
    server.shutdown()
    await server.wait_closed()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = settings.validated(build_parser).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.workers < 1 or args.max_queue < 0 or args.max_sessions_per_client < 0 or args.start_timeout <= 0:
        print(
            "error [config_error]: --workers must be at least 1, --max-queue and --max-sessions-per-client at least 0, and --start-timeout positive",
            file=sys.stderr,
        )
        return 2
    try:
        check_batch(args.batch)
    except ServerError as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    api_keys = tuple(args.api_key) if args.api_key else settings.api_keys()
    # the cores are shared among the workers: N workers each using every core only thrash
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    worker = worker_options(args, threads=threads)
    pool_options: LocalPoolOptions | MqttPoolOptions = LocalPoolOptions(
        workers=args.workers, max_queue=args.max_queue, worker=worker
    )
    if args.broker:
        if args.job_deadline <= 0 or not 1 <= args.max_attempts <= 100:
            print(
                "error [config_error]: --job-deadline must be positive and --max-attempts from 1 to 100",
                file=sys.stderr,
            )
            return 2
        try:
            pool_options = MqttPoolOptions(
                broker=mqtt_link.checked(broker_from_args(args)),
                job_deadline_s=args.job_deadline,
                max_attempts=args.max_attempts,
                max_queue=args.max_queue,
                publish_events=args.publish_events,
            )
        except ServerError as exc:
            print(f"error [{exc.code}]: {exc}", file=sys.stderr)
            return 2
    options = ServerOptions(
        host=args.host,
        port=args.port,
        api_keys=api_keys,
        drain_timeout_s=args.drain_timeout,
        speculate=not args.no_speculate,
        speculation_hangovers=args.speculation_hangovers,
        max_sessions=args.max_sessions,
        max_sessions_per_client=args.max_sessions_per_client,
        client_address_header=args.client_address_header,
        limits=Limits(start_timeout_s=args.start_timeout),
    )
    try:
        return asyncio.run(serve(options, pool_options))
    except ServerError as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
