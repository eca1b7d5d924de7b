"""The websocket server: ``/v1/stream``, ``GET /healthz``, ``GET /metrics``, the browser SDK
(``GET /sdk/<file>``) and its demo (``GET /demo``), auth and shutdown.

Built on websockets' asyncio server. Plain HTTP requests and the API key check
are answered in its ``process_request`` hook, before any websocket handshake,
so a refused client never gets to send audio. Each accepted connection gets a
:class:`~multipa_server.session.Session` driven by a
:class:`~multipa_server.connection.Connection`; assessment runs in the pool's
workers, never on the event loop.

Shutdown (:meth:`Server.shutdown`, wired to SIGTERM and SIGINT by the CLI): stop
listening, tell every session (each finishes its open turn and drains its
turns in flight, then closes with 1001), then close the pool.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Callable
from http import HTTPStatus
from urllib.parse import parse_qs

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from . import static
from .connection import Connection
from .exceptions import ConfigError, TransportClosed
from .metrics import Metrics
from .pool import WorkerPool
from .protocol import PROTOCOL_VERSION, ServerEvent
from .session import SPECULATION_HANGOVERS, Limits, Session

log = logging.getLogger(__name__)

STREAM_PATH = "/v1/stream"


@dataclass(frozen=True)
class ServerOptions:
    """Where the server listens and what it allows."""

    host: str = "127.0.0.1"  # interface to listen on
    port: int = 8765  # TCP port; 0 picks a free one (see Server.port)
    api_keys: tuple[str, ...] = ()  # accepted keys; empty turns authentication off
    limits: Limits = field(default_factory=Limits)  # per-session limits
    drain_timeout_s: float = 60.0  # on shutdown, how long unfinished turns may still take
    max_outbox: int = 256  # events queued for a client that does not read; more disconnect it (slow_consumer)
    send_timeout_s: float = 30.0  # a send blocked this long disconnects the client (slow_consumer)
    max_sessions: int = 100  # open websocket sessions; more are refused with 503 before the upgrade
    max_sessions_per_client: int = 0  # open sessions from one client address; more are refused with 429 (0: no cap)
    client_address_header: str | None = (
        None  # behind a proxy: the header it puts the client's address in (X-Forwarded-For: its last entry)
    )
    speculate: bool = True  # assess a VAD turn at the learner's pause, on an idle worker, while the hang-over runs
    speculation_hangovers: float = SPECULATION_HANGOVERS  # ... while jobs come back within this many (0: always)


class Server:
    """The streaming service in front of a worker pool.

    Args:
        pool: where turns are assessed; :meth:`start` starts it, shutdown closes it.
        options: listening address, API keys and limits.
        publish: called with the session id and every event of that session, sent or not.
    """

    def __init__(
        self,
        pool: WorkerPool,
        options: ServerOptions | None = None,
        *,
        publish: Callable[[str, ServerEvent], None] | None = None,
    ) -> None:
        self.pool = pool
        self.publish = publish  # also hands every session event elsewhere (the MQTT fan-out)
        self.options = options or ServerOptions()
        self.metrics = Metrics()
        self._ws: WsServer | None = None
        self._shutdown = asyncio.Event()
        self._closed = asyncio.Event()
        self._stopping: asyncio.Task[None] | None = None
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, str] = (
            weakref.WeakKeyDictionary()
        )  # past the session limit checks -> client address

    async def start(self) -> None:
        """Start the pool (models load here), then listen.

        Raises:
            PoolStartError: the workers could not load the models.
            ConfigError: the address cannot be listened on.
        """
        await self.pool.start()
        limits = self.options.limits
        try:
            self._ws = await self._listen(limits)
        except OSError as exc:
            await self.pool.close()
            raise ConfigError(
                f"cannot listen on {self.options.host}:{self.options.port}: {exc.strerror or exc}"
            ) from None

    async def _listen(self, limits: Limits) -> WsServer:
        return await serve(
            self._handle,
            self.options.host,
            self.options.port,
            process_request=self._process_request,
            # frames up to 8x the limit reach the session, which answers frame_too_large;
            # beyond that websockets closes with 1009 without reading them
            max_size=8 * max(limits.max_frame_bytes, limits.max_text_bytes),
            compression=None,  # PCM does not compress; deflate would only cost CPU
        )

    @property
    def port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        assert self._ws is not None, "start() first"
        return int(self._ws.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The stream endpoint."""
        return f"ws://{self.options.host}:{self.port}{STREAM_PATH}"

    @property
    def demo_url(self) -> str:
        """The demo page, for people."""
        return static.demo_url(self.options.host, self.port)

    def shutdown(self) -> None:
        """Begin a graceful shutdown (idempotent; safe from a signal handler)."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop())

    async def wait_closed(self) -> None:
        """Return once a shutdown has completed."""
        await self._closed.wait()

    async def _stop(self) -> None:
        log.info("shutting down: draining sessions")
        self._shutdown.set()
        if self._ws is not None:
            self._ws.close(close_connections=False)  # stop listening; sessions close themselves
            try:
                await asyncio.wait_for(self._ws.wait_closed(), self.options.drain_timeout_s + 15.0)
            except asyncio.TimeoutError:
                log.error("sessions did not close in time")
        await self.pool.close()
        log.info("shut down")
        self._closed.set()

    async def _handle(self, ws: ServerConnection) -> None:
        session = Session(
            uuid.uuid4().hex[:12],
            limits=self.options.limits,
            speculate=self.options.speculate,
            speculation_hangovers=self.options.speculation_hangovers,
        )
        log.info("session %s: connected from %s", session.id, ws.remote_address)
        self.metrics.session_opened()
        observe = self.metrics.observe
        if self.publish is not None:
            publish, metrics = self.publish, self.metrics.observe

            def observe(event: ServerEvent) -> None:
                metrics(event)
                publish(session.id, event)

        try:
            await Connection(
                WebsocketTransport(ws),
                session,
                self.pool,
                shutdown=self._shutdown,
                drain_timeout_s=self.options.drain_timeout_s,
                observe=observe,
                max_outbox=self.options.max_outbox,
                send_timeout_s=self.options.send_timeout_s,
            ).run()
        finally:
            self._admitted.pop(ws, None)
            self.metrics.session_closed()
            log.info("session %s: closed", session.id)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.method != "GET":
            response = _respond(
                connection,
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{request.method[:16]} is not allowed here; every endpoint answers GET only\n",
            )
            response.headers["Allow"] = "GET"
            return response
        try:
            return self._route(connection, request)
        except MultipleValuesError as exc:  # headers.get() on a header sent twice: a bad request, not a server error
            name = str(exc.args[0]) if exc.args else "a"
            return _respond(
                connection, HTTPStatus.BAD_REQUEST, f"the {name[:64]} header appears more than once; send it once\n"
            )

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path == "/healthz":
            stats = self.pool.stats()
            healthy = stats.ready > 0 and not self._shutdown.is_set()
            body = {
                "status": "ok" if healthy else ("draining" if self._shutdown.is_set() else "unavailable"),
                "protocol": PROTOCOL_VERSION,
                "workers_ready": stats.ready,
                "workers": stats.workers,
                "queued": stats.queued,
            }
            return _respond(
                connection,
                HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE,
                json.dumps(body) + "\n",
                "application/json",
            )
        if path == "/metrics":
            text = self.metrics.render(self.pool.stats(), draining=self._shutdown.is_set())
            return _respond(connection, HTTPStatus.OK, text, "text/plain; version=0.0.4; charset=utf-8")
        name = static.route(path)
        if name is not None:  # the SDK and the demo are public: the page asks the user for the key
            return static.respond(connection, request, name)
        if path != STREAM_PATH:
            return _respond(
                connection,
                HTTPStatus.NOT_FOUND,
                f"not found; the stream is at {STREAM_PATH}, the demo page at {static.DEMO_PATH}\n",
            )
        if self.options.api_keys and not self._authorized(request.headers, query):
            response = _respond(
                connection,
                HTTPStatus.UNAUTHORIZED,
                "a valid API key is required (Authorization: Bearer KEY, or ?api_key=KEY)\n",
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            log.info("refused a connection from %s: no valid API key", connection.remote_address)
            return response
        # counted here, not in the handler: a flood of handshakes at once must not overshoot
        open_now = [a for c, a in list(self._admitted.items()) if c.protocol.state in (State.CONNECTING, State.OPEN)]
        if len(open_now) >= self.options.max_sessions:
            response = _respond(
                connection,
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"the server is at its limit of {self.options.max_sessions} sessions; try again later\n",
            )
            response.headers["Retry-After"] = "5"
            log.warning("refused a connection from %s: %d sessions open", connection.remote_address, len(open_now))
            return response
        client = self._client_address(connection, request.headers)
        cap = self.options.max_sessions_per_client
        if cap and open_now.count(client) >= cap:
            response = _respond(
                connection,
                HTTPStatus.TOO_MANY_REQUESTS,
                f"{cap} sessions from your address are open already; close one first\n",
            )
            response.headers["Retry-After"] = "5"
            log.warning("refused a connection from %s: %d sessions open from that address", client, cap)
            return response
        self._admitted[connection] = client
        return None

    def _client_address(self, connection: ServerConnection, headers: Headers) -> str:
        """The client's address: the peer's, or behind a proxy the last one it put in its header."""
        if self.options.client_address_header:
            values = ",".join(headers.get_all(self.options.client_address_header))
            hops = [h.strip() for h in values.split(",") if h.strip()]
            if hops:
                return hops[-1]  # the proxy's own entry; those before it are the client's to forge
        peer = connection.remote_address
        return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)

    def _authorized(self, headers: Headers, query: str) -> bool:
        offered: list[str] = parse_qs(query).get("api_key", [])
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            offered.append(token.strip())
        # compare every pair in constant time: no early exit that timing could reveal
        matches = [hmac.compare_digest(o.encode(), k.encode()) for o in offered for k in self.options.api_keys]
        return any(matches)


class WebsocketTransport:
    """websockets' server connection as a :class:`~multipa_server.transport.Transport`.

    Its ``ConnectionClosed`` becomes :class:`~multipa_server.exceptions.TransportClosed`
    with the close code and reason the client sent (1006 when it sent none), and
    ``abort`` drops the TCP connection under it.
    """

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws

    async def receive(self) -> str | bytes:
        try:
            return await self.ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def send(self, message: str) -> None:
        try:
            await self.ws.send(message)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self.ws.close(code, reason)
        except ConnectionClosed:
            pass

    def abort(self) -> None:
        self.ws.transport.abort()


def _closed(exc: ConnectionClosed) -> TransportClosed:
    frame = exc.rcvd  # the client's close frame; none when the TCP connection just dropped
    if frame is None:
        return TransportClosed(str(exc), close_code=1006)
    return TransportClosed(str(exc), close_code=frame.code, reason=frame.reason)


def _respond(connection: ServerConnection, status: HTTPStatus, text: str, content_type: str | None = None) -> Response:
    response = connection.respond(status, text)
    if content_type is not None:
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = content_type
    return response
