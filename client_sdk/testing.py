"""A fake server for testing an integration without a server, models or network.

:class:`FakeServer` is a :class:`~multipa_client._transport.Transport`: give it
to :class:`~multipa_client.MultipaClient` and it plays a recording of the real
server's messages (``recordings/*.jsonl``, captured by
``tests/client/record.py``) as the client streams: each recorded event is
released once the client has sent as much audio as the real client had when
the event arrived, the rest after ``session.end``. It can also refuse the
connection (401 or another status), end the session with a fatal error, and
drop the connection after a number of events, then serve the resumed session
the way the real server would: the turns that had no result yet, re-numbered
and with times relative to the new session, checking that the client resent
the right audio (``mismatches``)::

    fake = FakeServer("three_turns", drop_after=5)
    async with MultipaClient("ws://fake/v1/stream", transport=fake, realtime=False) as client:
        events = [e async for e in client.stream(silence_chunks, sample_rate=16000)]
    assert not fake.mismatches

The audio itself is never analysed: the recording decides what is said and scored.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ._exceptions import AuthenticationError, ConnectionRefused
from ._transport import Connection, lost

RECORDINGS = Path(__file__).resolve().parent / "recordings"
_TERMINAL = ("turn.assessed", "turn.failed")


@dataclass
class Recording:
    """A real session: its header and its events, each with the audio sent when it arrived."""

    header: dict[str, Any]
    events: list[dict[str, Any]]  # {"audio_ms": int, "after_end": bool, "event": {...}}

    @classmethod
    def load(cls, source: Union[str, Path]) -> "Recording":
        """A shipped recording by name (``"three_turns"``) or a ``.jsonl`` path."""
        path = Path(source)
        if not path.suffix:
            path = RECORDINGS / f"{source}.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return cls(lines[0], lines[1:])

    @property
    def audio_ms(self) -> int:
        """Length of the recorded stream."""
        return int(self.header["audio_ms"])


@dataclass
class FakeSession:
    """What one connection of the fake received."""

    start: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)  # control messages, in order
    audio: bytearray = field(default_factory=bytearray)  # PCM16 received
    offset_ms: int = 0  # the stream time this session resumed from


class FakeServer:
    """Plays a recorded session as a server would (see the module docstring).

    Args:
        recording: a shipped recording's name, a path, or a :class:`Recording`.
        api_key: the only key accepted (None: any).
        refuse: answer every connection with this HTTP status (401 raises AuthenticationError).
        drop_after: drop the first connection after this many events.
        shutdown_after: shut the first session down after this many events, as a stopping
            server does: ``error`` ``shutting_down``, the results of the turns it has (a turn
            in progress ends there), ``session.ended`` (reason ``shutdown``, the audio read
            until then), close.
        fatal: an error code to end the session with, right after ``session.started``.
    """

    def __init__(
        self,
        recording: Union[str, Path, Recording] = "three_turns",
        *,
        api_key: str | None = None,
        refuse: int | None = None,
        drop_after: int | None = None,
        shutdown_after: int | None = None,
        fatal: str | None = None,
    ) -> None:
        self.recording = recording if isinstance(recording, Recording) else Recording.load(recording)
        self.api_key, self.refuse, self.drop_after, self.shutdown_after, self.fatal = (
            api_key,
            refuse,
            drop_after,
            shutdown_after,
            fatal,
        )
        self.sessions: list[FakeSession] = []
        self.mismatches: list[str] = []  # resent audio that differs from what was first sent
        self.answered: set[int] = set()  # recorded turn ids whose result a client received

    async def connect(self, url: str, *, api_key: str | None) -> Connection:
        if self.refuse == 401 or (self.api_key is not None and api_key != self.api_key):
            raise AuthenticationError(f"{url}: the server refused the API key (401)")
        if self.refuse is not None:
            raise ConnectionRefused(f"{url}: the server answered {self.refuse}", status=self.refuse)
        session = FakeSession()
        self.sessions.append(session)
        first = len(self.sessions) == 1
        return _FakeConnection(
            self, session, self.drop_after if first else None, self.shutdown_after if first else None
        )


class _FakeConnection:
    def __init__(
        self, server: FakeServer, session: FakeSession, drop_after: int | None, shutdown_after: int | None
    ) -> None:
        self.server, self.session, self.drop_after, self.shutdown_after = server, session, drop_after, shutdown_after
        self._seen: dict[int, dict[str, Any]] = {}  # recorded turn -> its last event delivered
        self._audio_ms = 0  # the recorded audio position of the last event delivered
        self._out: asyncio.Queue[Union[dict[str, Any], None]] = asyncio.Queue()
        self._plan: list[dict[str, Any]] = []  # recorded events still to release, shifted
        self._delivered = 0
        self._closed = False
        self._ended = False  # session.end received
        self._finished = False  # session.ended queued
        self._terminal: list[dict[str, Any]] = []
        self._rate = 16000

    # --- Connection ------------------------------------------------------------------

    async def send(self, message: Union[str, bytes]) -> None:
        if self._closed:
            raise lost("the connection closed (code 1006)", 1006)
        if isinstance(message, (bytes, bytearray)):
            self._audio(bytes(message))
        else:
            self._control(json.loads(message))
        await asyncio.sleep(0)

    async def recv(self) -> str:
        if self._closed:
            raise lost("the connection closed (code 1006)", 1006)
        if self.drop_after is not None and self._delivered >= self.drop_after:
            self._closed = True  # the drop: whatever was queued is lost in transit
            raise lost("the connection closed (code 1006)", 1006)
        if self.shutdown_after is not None and self._delivered >= self.shutdown_after:
            self.shutdown_after = None
            self._shutdown()
        event = await self._out.get()
        if event is None:
            self._closed = True
            raise lost("the connection closed (code 1000)", 1000)
        self._delivered += 1
        self._audio_ms = max(self._audio_ms, event.get("_audio_ms", 0))
        if "_recorded_turn" in event:
            self._seen[event["_recorded_turn"]] = event
        if event["type"] in _TERMINAL:
            self.server.answered.add(event["_recorded_turn"])
        return json.dumps({k: v for k, v in event.items() if not k.startswith("_")})

    async def close(self) -> None:
        self._closed = True
        self._out.put_nowait(None)

    # --- the fake server -------------------------------------------------------------

    def _control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "session.start":
            self.session.start = message
            self._rate = int(message["sample_rate"])
            self.session.offset_ms = int(message.get("metadata", {}).get("resumed_from_ms", 0))
            started = next(e["event"] for e in self.server.recording.events if e["event"]["type"] == "session.started")
            self._out.put_nowait(
                {
                    **started,
                    "session_id": f"fake{len(self.server.sessions)}",
                    **{k: message[k] for k in ("sample_rate", "mode", "realtime") if k in message},
                }
            )
            if self.server.fatal:
                self._out.put_nowait(
                    {
                        "type": "error",
                        "code": self.server.fatal,
                        "message": "the fake server ends this session",
                        "fatal": True,
                    }
                )
                self._out.put_nowait(
                    {
                        "type": "session.ended",
                        "reason": "error",
                        "turns_started": 0,
                        "turns_assessed": 0,
                        "turns_failed": 0,
                        "audio_ms": 0,
                        "failures": {},
                    }
                )
                self._out.put_nowait(None)
                return
            self._plan = self._events_to_play()
            self._terminal = [e["event"] for e in self._plan if e["event"]["type"] in _TERMINAL]
            return
        self.session.messages.append(message)
        if kind == "ping":
            self._out.put_nowait({"type": "pong", "id": message.get("id")})
        elif kind == "session.end":
            self._ended = True
            self._release()

    def _events_to_play(self) -> list[dict[str, Any]]:
        """The recorded turn events not yet answered, renumbered and shifted into this session."""
        shift = self.session.offset_ms
        ids: dict[int, int] = {}
        plan = []
        for entry in self.server.recording.events:
            event = dict(entry["event"])
            if event["type"] not in ("turn.started", "turn.ended", *_TERMINAL):
                continue
            recorded = event["turn_id"]
            if recorded in self.server.answered:
                continue
            event["_recorded_turn"] = recorded
            event["_audio_ms"] = entry["audio_ms"]
            event["turn_id"] = ids.setdefault(recorded, len(ids) + 1)
            event["start_ms"] -= shift
            if "end_ms" in event:
                event["end_ms"] -= shift
            plan.append({**entry, "event": event})
        return plan

    def _shutdown(self) -> None:
        """What a server that stops sends: the results of the turns it has, then the end."""
        while not self._out.empty():
            self._out.get_nowait()  # released, but not yet sent: it never said them
        self._plan, self._finished = [], True
        shift = self.session.offset_ms
        stopped_ms = self._audio_ms - shift  # session time where it stopped reading
        events: list[dict[str, Any]] = [
            {
                "type": "error",
                "code": "shutting_down",
                "message": "the server is shutting down; turns in progress are still assessed",
                "fatal": True,
            }
        ]
        terminal = {e["_recorded_turn"]: e for e in self._terminal}
        for recorded, last in self._seen.items():
            if last["type"] in _TERMINAL:
                continue
            result = dict(terminal[recorded])
            if last["type"] == "turn.started":  # in progress: it ends where the reading stopped
                events.append(
                    {
                        "type": "turn.ended",
                        "turn_id": last["turn_id"],
                        "start_ms": last["start_ms"],
                        "end_ms": stopped_ms,
                        "reason": "session_end",
                        "_recorded_turn": recorded,
                    }
                )
                result["end_ms"] = stopped_ms
            events.append(result)
        done = [e for e in events if e["type"] in _TERMINAL] + [
            e for e in self._seen.values() if e["type"] in _TERMINAL
        ]
        failures: dict[str, int] = {}
        for e in done:
            if e["type"] == "turn.failed":
                failures[e["code"]] = failures.get(e["code"], 0) + 1
        failed = sum(failures.values())
        events.append(
            {
                "type": "session.ended",
                "reason": "shutdown",
                "turns_started": len(done),
                "turns_assessed": len(done) - failed,
                "turns_failed": failed,
                "audio_ms": stopped_ms,
                "failures": failures,
            }
        )
        for e in events:
            self._out.put_nowait(e)
        self._out.put_nowait(None)

    def _audio(self, data: bytes) -> None:
        if self.session.start is None:
            return
        if self.session.offset_ms and len(self.session.audio) < self._rate // 5 * 2 <= len(self.session.audio) + len(
            data
        ):
            self._check_resent(bytes(self.session.audio) + data)
        self.session.audio += data
        self._release()

    def _check_resent(self, head: bytes) -> None:
        """The first 200 ms of a resumed session must be the stream's audio at its offset
        (as far as the first session received it)."""
        first = self.server.sessions[0].audio
        at = self.session.offset_ms * self._rate // 1000 * 2
        size = min(self._rate // 5 * 2, len(first) - at)
        if size > 0 and first[at : at + size] != head[:size]:
            self.server.mismatches.append(
                f"session {len(self.server.sessions)}: the audio resent from {self.session.offset_ms} ms differs from the stream's"
            )

    def _release(self) -> None:
        if self._closed or self._finished:
            return
        stream_ms = self.session.offset_ms + len(self.session.audio) // 2 * 1000 // self._rate
        while self._plan and (
            self._ended or (not self._plan[0]["after_end"] and self._plan[0]["audio_ms"] <= stream_ms)
        ):
            self._out.put_nowait(self._plan.pop(0)["event"])
        if self._ended and not self._plan:
            failures: dict[str, int] = {}
            for e in self._terminal:
                if e["type"] == "turn.failed":
                    failures[e["code"]] = failures.get(e["code"], 0) + 1
            audio_ms = len(self.session.audio) // 2 * 1000 // self._rate
            done = len(self._terminal)
            self._out.put_nowait(
                {
                    "type": "session.ended",
                    "reason": "client",
                    "turns_started": done,
                    "turns_assessed": done - sum(failures.values()),
                    "turns_failed": sum(failures.values()),
                    "audio_ms": audio_ms,
                    "failures": failures,
                }
            )
            self._out.put_nowait(None)
            self._finished = True
