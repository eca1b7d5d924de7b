"""The asyncio client: stream audio to ``/v1/stream``, get typed events back as an async iterator.

One stream at a time per client. Each stream is one logical session: the
client sends ``session.start``, then audio and controls as the application
gives them, then ``session.end``; events come back as they arrive. When the
connection drops before ``session.ended``, the client reconnects with back-off
and resumes in a new session (see :mod:`multipa_client._replay` for what is
sent again and how events are mapped), unless ``reconnect`` is off.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import asdict, dataclass
from typing import Any, AsyncGenerator, AsyncIterator, Union

import numpy as np

from ._audio import DEFAULT_RATE, SAMPLE_RATES, Resampler, microphone, read_file, sounddevice, to_int16
from ._events import Error, Event, Reconnected, SessionEnded, SessionStarted, VadOptions, parse_event
from ._exceptions import AuthenticationError, ConnectionLost, ConnectionRefused, MultipaClientError, ServerError
from ._replay import ReplayBuffer
from ._transport import Connection, Transport, WebsocketTransport

MAX_REFERENCE_CHARS = 1000
SHUTTING_DOWN = "shutting_down"  # the fatal error of a server that stops: its session drains, the stream can resume
_END = object()


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a dropped connection is retried: exponential back-off with jitter."""

    attempts: int = 5  # tries per drop; 0 turns reconnecting off
    initial_delay_s: float = 0.5  # before the first try
    max_delay_s: float = 8.0  # the longest wait between tries
    multiplier: float = 2.0  # each wait is this much longer than the last

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt`` (1-based): full jitter in the upper half."""
        ceiling = min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


class MultipaClient:
    """A client of one MultiPA Live server.

    Args:
        url: the stream endpoint, ``ws://HOST:PORT/v1/stream``.
        api_key: sent as ``Authorization: Bearer``; None when the server has no keys.
        mode: ``"open"`` (audio alone) or ``"closed"`` (each turn needs :meth:`set_reference`).
        sample_rate: the session rate; None takes the source's rate when the server
            takes it (8000, 16000, 24000, 32000, 44100, 48000), else 16000, resampling here.
        vad: turn segmentation; None keeps the server's defaults.
        realtime: the default pace of streams: True sends no faster than real time
            (a live source; the server checks the pace), False as fast as possible.
        reconnect: resume after a dropped connection (True: :class:`ReconnectPolicy`
            defaults; False: never; or a policy).
        metadata: logged with the session on the server.
        chunk_ms: frame length used to send files and resent audio.
        transport: how to reach the server; a :class:`multipa_client.testing.FakeServer` in tests.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        mode: str = "open",
        sample_rate: int | None = None,
        vad: VadOptions | dict[str, Any] | None = None,
        realtime: bool = True,
        reconnect: Union[bool, ReconnectPolicy] = True,
        metadata: dict[str, Any] | None = None,
        chunk_ms: int = 100,
        transport: Transport | None = None,
    ) -> None:
        if mode not in ("open", "closed"):
            raise ValueError(f"mode must be 'open' or 'closed', got {mode!r}")
        if sample_rate is not None and sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))}, got {sample_rate}")
        if not 10 <= chunk_ms <= 1000:
            raise ValueError(f"chunk_ms must be between 10 and 1000, got {chunk_ms}")
        self.url, self.api_key, self.mode, self.sample_rate = url, api_key, mode, sample_rate
        self.vad, self.realtime, self.metadata, self.chunk_ms = vad, realtime, dict(metadata or {}), chunk_ms
        self.reconnect = (
            reconnect if isinstance(reconnect, ReconnectPolicy) else ReconnectPolicy(attempts=5 if reconnect else 0)
        )
        self.transport: Transport = transport or WebsocketTransport()
        self._idle: Connection | None = None  # opened by __aenter__, used by the first stream
        self._conn: Connection | None = None  # the current stream's connection
        self._replay: ReplayBuffer | None = None
        self._live = asyncio.Event()  # the current connection is open and caught up: send as audio comes
        self._lock = asyncio.Lock()  # one sender of frames at a time
        self._reference: str | None = None  # set before any stream: sent with the next one

    async def __aenter__(self) -> "MultipaClient":
        """Connect now, so a wrong key or an unreachable server fails here.

        Raises:
            AuthenticationError: the server refused the key.
            ConnectionRefused: the server could not be reached or refused the connection.
        """
        self._idle = await self.transport.connect(self.url, api_key=self.api_key)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close any open connection."""
        for conn in (self._idle, self._conn):
            if conn is not None:
                try:
                    await conn.close()
                except Exception:  # closing a broken connection must not mask the real error
                    pass
        self._idle = self._conn = None

    # --- streams ---------------------------------------------------------------------

    def stream_file(self, path: str | os.PathLike[str], *, realtime: bool | None = None) -> AsyncGenerator[Event, None]:
        """Stream a WAV (or, with soundfile, FLAC/OGG) file; events as they come.

        Args:
            realtime: pace at real time (True) or send as fast as possible (False);
                None: the client's ``realtime``.

        Raises:
            AudioError, MissingDependency: the file cannot be read.
            plus what :meth:`stream` raises.
        """
        samples, rate = read_file(path)
        return self.stream(_chunks(samples, rate * self.chunk_ms // 1000), sample_rate=rate, realtime=realtime)

    async def stream(
        self, chunks: Any, *, sample_rate: int, realtime: bool | None = None
    ) -> AsyncGenerator[Event, None]:
        """Stream audio; events as they come, ending with ``session.ended``.

        Args:
            chunks: an async (or plain) iterator of PCM16 bytes or numpy arrays
                (int16, or float in [-1, 1]; mono, or (frames, channels)).
            sample_rate: the rate of ``chunks``; resampled when the session's differs.
            realtime: as for :meth:`stream_file`.

        Raises:
            AuthenticationError, ConnectionRefused: (re)connecting was refused.
            ServerError: a fatal ``error`` event ended the session (after its events).
            ConnectionLost: the connection dropped and could not be resumed; every
                turn without a result got ``turn.failed`` (``connection_lost``) first.
        """
        realtime = self.realtime if realtime is None else realtime
        rate = self.sample_rate or (sample_rate if sample_rate in SAMPLE_RATES else DEFAULT_RATE)
        async for event in self._run(_converted(chunks, sample_rate, rate), rate, realtime):
            yield event

    def stream_microphone(
        self, *, sample_rate: int = DEFAULT_RATE, block_ms: int = 20, device: int | str | None = None
    ) -> AsyncGenerator[Event, None]:
        """Stream the microphone (needs the ``mic`` extra) until the iterator is closed.

        Raises:
            MissingDependency: sounddevice is not installed (raised here, before connecting).
        """
        sounddevice()
        return self.stream(
            microphone(sample_rate, block_ms=block_ms, device=device), sample_rate=sample_rate, realtime=True
        )

    async def end_turn(self) -> None:
        """End the turn in progress now (push-to-talk release).

        Raises:
            MultipaClientError: no stream is in progress.
        """
        await self._control({"type": "turn.end"})

    async def set_reference(self, text: str) -> None:
        """The sentence the learner is expected to say next (or is saying): a closed-response turn.

        Raises:
            ValueError: empty, or longer than 1000 characters.
        """
        if not text.strip() or len(text) > MAX_REFERENCE_CHARS:
            raise ValueError(f"a reference must be 1 to {MAX_REFERENCE_CHARS} characters and not blank")
        if self._replay is None:
            self._reference = text
            return
        await self._control({"type": "turn.reference", "text": text})

    # --- internals -------------------------------------------------------------------

    def _start_message(self, rate: int, realtime: bool, *, resumed_from_ms: int | None = None) -> str:
        message: dict[str, Any] = {
            "type": "session.start",
            "sample_rate": rate,
            "mode": self.mode,
            "realtime": realtime,
        }
        metadata = dict(self.metadata)
        if resumed_from_ms is not None:  # in the server's log, and what a fake server needs to follow
            metadata["resumed_from_ms"] = resumed_from_ms
        if self.vad is not None:
            message["vad"] = asdict(self.vad) if isinstance(self.vad, VadOptions) else dict(self.vad)
        if metadata:
            message["metadata"] = metadata
        return json.dumps(message)

    async def _control(self, message: dict[str, Any]) -> None:
        if self._replay is None:
            raise MultipaClientError(f"{message['type']} needs a stream in progress")
        self._replay.add_control(message)
        await self._flush()

    async def _run(self, source: AsyncIterator[np.ndarray], rate: int, realtime: bool) -> AsyncIterator[Event]:
        if self._replay is not None:
            raise MultipaClientError("this client is already streaming; one stream at a time")
        replay = self._replay = ReplayBuffer(rate)
        if self._reference is not None:
            replay.add_control({"type": "turn.reference", "text": self._reference})
            self._reference = None
        out: asyncio.Queue[Any] = asyncio.Queue()
        tasks: list[asyncio.Task[None]] = []
        try:
            self._conn = await self._open(rate, realtime)
            self._live.set()
            tasks = [
                asyncio.create_task(self._receive(replay, rate, out)),
                asyncio.create_task(self._send(replay, source, rate, realtime, out)),
            ]
            while True:
                item = await out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._live.clear()
            self._replay = None
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    await conn.close()
                except Exception:
                    pass

    async def _open(self, rate: int, realtime: bool) -> Connection:
        """A connection with ``session.start`` sent: the idle one from ``__aenter__`` if it still works."""
        conn, self._idle = self._idle, None
        if conn is not None:
            try:
                await conn.send(self._start_message(rate, realtime))
                return conn
            except ConnectionLost:
                pass  # e.g. closed by the server's idle timeout: open a fresh one
        conn = await self.transport.connect(self.url, api_key=self.api_key)
        await conn.send(self._start_message(rate, realtime))
        return conn

    async def _send(
        self,
        replay: ReplayBuffer,
        source: AsyncIterator[np.ndarray],
        rate: int,
        realtime: bool,
        out: asyncio.Queue[Any],
    ) -> None:
        loop = asyncio.get_running_loop()
        began = None
        try:
            async for chunk in source:
                if realtime:  # never ahead of the clock: a chunk goes out when its first sample is due
                    began = loop.time() if began is None else began
                    await asyncio.sleep(max(0.0, began + replay.end / rate - loop.time()))
                replay.add_audio(chunk)
                await self._flush()
            replay.add_control({"type": "session.end"})
            await self._flush()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the source failed (a bad chunk, a missing dependency)
            out.put_nowait(exc)

    async def _flush(self, conn: Connection | None = None) -> None:
        """Send what is due; with ``conn`` (resuming) also while not live."""
        replay = self._replay
        async with self._lock:
            while replay is not None and (conn is not None or self._live.is_set()):
                target = conn or self._conn
                item = replay.next_item(replay.rate * self.chunk_ms // 1000)
                if item is None or target is None:
                    return
                data, upto = item
                session = replay.session
                try:
                    await target.send(json.dumps(data) if isinstance(data, dict) else data)
                except ConnectionLost:
                    self._live.clear()  # the receiver sees the drop and resumes
                    if conn is not None:
                        raise
                    return
                if replay.session == session:
                    replay.sent = upto

    async def _receive(self, replay: ReplayBuffer, rate: int, out: asyncio.Queue[Any]) -> None:
        fatal: Error | None = None
        stopping = False  # the server is shutting down and the stream will resume elsewhere
        conn = self._conn
        try:
            while conn is not None:
                try:
                    text = await conn.recv()
                except ConnectionLost as exc:
                    self._live.clear()
                    conn = await self._resume(replay, rate, out, cause=str(exc))
                    stopping = False
                    continue
                event = parse_event(text)
                if isinstance(event, Error) and event.fatal and event.code == SHUTTING_DOWN and self.reconnect.attempts:
                    stopping = True  # it drains this session's turns, then the stream goes on in a new one
                    self._live.clear()  # it reads no more audio: keep it for the next session
                    continue
                if stopping and isinstance(event, SessionEnded):
                    events, stopped_at = replay.server_stopped(event)
                    for e in events:
                        out.put_nowait(e)
                    conn = await self._resume(
                        replay, rate, out, cause=f"the server shut down ({SHUTTING_DOWN})", at=stopped_at
                    )
                    stopping = False
                    continue
                if isinstance(event, Error) and event.fatal:
                    fatal = event
                for e in replay.on_event(event):
                    out.put_nowait(e)
                if isinstance(event, SessionEnded):
                    break
            if fatal is not None:
                out.put_nowait(ServerError(fatal.code, fatal.message))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            out.put_nowait(exc)
        out.put_nowait(_END)

    async def _resume(
        self, replay: ReplayBuffer, rate: int, out: asyncio.Queue[Any], *, cause: str, at: int | None = None
    ) -> Connection:
        """Reconnect with back-off and resend what has no result yet (or the stream from ``at``,
        where a stopping server stopped reading); raises after the last try."""
        policy = self.reconnect
        last: Exception = ConnectionLost(cause)
        for attempt in range(1, policy.attempts + 1):
            await asyncio.sleep(policy.delay(attempt))
            try:
                conn = await self.transport.connect(self.url, api_key=self.api_key)
            except AuthenticationError as exc:
                last = exc
                break  # the same key will not work next time either
            except ConnectionRefused as exc:
                last = exc
                continue
            old, self._conn = self._conn, conn
            if old is not None:
                try:
                    await old.close()
                except Exception:
                    pass
            offset, backlog = replay.resume(at)
            try:
                # a backlog goes out faster than real time, so a resumed session is never paced
                await conn.send(self._start_message(rate, False, resumed_from_ms=offset * 1000 // rate))
                started = parse_event(await conn.recv())
                if not isinstance(started, SessionStarted):
                    for e in replay.on_event(started):
                        out.put_nowait(e)
                    raise ServerError(
                        getattr(started, "code", "invalid_state"),
                        getattr(started, "message", f"the server answered {started.type} to session.start"),
                    )
                out.put_nowait(
                    Reconnected(attempt, started.session_id, offset * 1000 // rate, backlog * 1000 // rate, cause)
                )
                await self._flush(conn)  # the backlog, and whatever arrived meanwhile
                self._live.set()
                return conn
            except ConnectionLost as exc:
                last = exc
                continue
        for e in replay.give_up(f"the connection dropped and could not be resumed: {last}"):
            out.put_nowait(e)
        if isinstance(last, AuthenticationError):
            raise last
        raise ConnectionLost(
            f"the connection dropped ({cause}) and {policy.attempts} reconnect attempt{'s' * (policy.attempts != 1)} failed: {last}"
        )


async def _chunks(samples: np.ndarray, size: int) -> AsyncIterator[np.ndarray]:
    for i in range(0, len(samples), max(1, size)):
        yield samples[i : i + size]


async def _converted(chunks: Any, source_rate: int, rate: int) -> AsyncIterator[np.ndarray]:
    """int16 mono at ``rate`` from any supported chunk type, sync or async iterator."""
    resampler = Resampler(source_rate, rate) if source_rate != rate else None
    if hasattr(chunks, "__aiter__"):
        async for chunk in chunks:
            samples = to_int16(chunk)
            yield resampler.feed(samples) if resampler else samples
    else:
        for chunk in chunks:
            samples = to_int16(chunk)
            yield resampler.feed(samples) if resampler else samples
            await asyncio.sleep(0)
    if resampler is not None:
        yield resampler.flush()
