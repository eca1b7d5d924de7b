"""One logical stream across server sessions: what to keep, what to send again, how to map events.

Plain bookkeeping without I/O (the client moves the bytes). The stream is the
audio the application gives, at the session rate, counted in samples from its
first one; a server session covers the stream from its ``offset`` on. When a
connection drops, the next session starts at the start of the earliest turn
that has no terminal event yet (:meth:`ReplayBuffer.resume`), so:

- audio of turns that already have their result is never assessed twice: it is
  before the resume point, or muted (zeros) in the resent span when results
  arrived out of order;
- events of the new session are mapped back to the stream's clock and to the
  turn ids the application already saw: a new server turn that overlaps a turn
  left without a result takes that turn's id (its ``turn.started`` is not sent
  twice);
- a turn left without a result that the resent audio does not form again fails
  explicitly with code ``connection_lost``; nothing vanishes.

Retention: audio from ``lead_in_ms`` before the earliest turn without a result
(on the server VAD's 30 ms frame grid, so the new session's VAD sees the
turn's onset as the first one did and cuts it the same way, its silence
before included); with none, from the end of the last turn, but at most
``idle_retain_s`` back (speech the server has heard but not yet announced as
a turn); never audio not yet sent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from ._events import (
    CONNECTION_LOST,
    Event,
    SessionEnded,
    SessionStarted,
    TurnAssessed,
    TurnEnded,
    TurnFailed,
    TurnStarted,
)


@dataclass
class Turn:
    """A turn as the application sees it (stream samples, the SDK's turn id)."""

    id: int
    start: int
    end: int | None = None  # set by turn.ended
    ended_sent: bool = False  # turn.ended went to the application
    outcome: str | None = None  # "assessed" or the failure code, once terminal
    session: int = 0  # the session whose server turn stands for it now
    reference: str | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None


@dataclass
class Control:
    """A control message at a stream position (sent before the audio from there)."""

    pos: int
    message: dict[str, Any]
    turn: Turn | None = None  # the turn a turn.reference applies to, once known


@dataclass
class ReplayBuffer:
    """Audio, controls and turns of one stream; see the module docstring.

    Args:
        rate: the session sample rate.
        idle_retain_s: audio kept when no turn is waiting for its result.
        lead_in_ms: audio resent before the earliest turn without a result.
    """

    rate: int
    idle_retain_s: float = 30.0
    lead_in_ms: int = 500
    session: int = 0  # index of the current server session
    offset: int = 0  # stream sample the current session starts at
    sent: int = 0  # stream samples sent to the current session
    end: int = 0  # stream samples received from the application
    turns: dict[int, Turn] = field(default_factory=dict)
    controls: list[Control] = field(default_factory=list)
    summaries: list[SessionEnded] = field(default_factory=list)
    _buf: bytearray = field(default_factory=bytearray)
    _base: int = 0  # stream sample of _buf[0]
    _checked: int = 0  # self.end when retention was last looked at
    _queue: list[Control] = field(default_factory=list)  # controls still to send in this session
    _server: dict[int, Turn] = field(default_factory=dict)  # server turn id (this session) -> turn
    _pending_reference: Control | None = None

    # --- input from the application ------------------------------------------------

    def add_audio(self, samples: np.ndarray) -> None:
        """Append int16 samples at the session rate."""
        self._buf += np.asarray(samples, dtype="<i2").tobytes()
        self.end += len(samples)
        if self.end - self._checked >= self.rate:  # a look at what may go, once a second of audio
            self._checked = self.end
            self._trim()

    def add_control(self, message: dict[str, Any]) -> None:
        """A control message at the current end of the stream (``turn.reference``, ``turn.end``, ``session.end``)."""
        control = Control(self.end, message)
        if message["type"] == "turn.reference":
            open_turns = [t for t in self.turns.values() if t.end is None and not t.done]
            if open_turns and open_turns[-1].reference is None:
                self._attach(control, open_turns[-1])  # the learner started before the reference came
            else:
                self._pending_reference = control  # a later one replaces it, as on the server
        self.controls.append(control)
        self._queue.append(control)

    def next_item(self, max_samples: int) -> tuple[Union[dict[str, Any], bytes], int] | None:
        """What to send next in this session and the stream position after it, or None."""
        if self._queue and self._queue[0].pos <= self.sent:
            return self._queue.pop(0).message, self.sent
        stop = min(self.end, self.sent + max_samples, *(c.pos for c in self._queue[:1]))
        if stop <= self.sent:
            return None
        return self._audio(self.sent, stop), stop

    # --- sessions --------------------------------------------------------------------

    def retain_from(self) -> int:
        """The earliest stream sample that may still be needed, on the VAD's 30 ms grid."""
        waiting = [t.start for t in self.turns.values() if not t.done]
        if waiting:
            point = max(0, min(waiting) - self.lead_in_ms * self.rate // 1000)
        else:
            last = max((t.end if t.end is not None else t.start for t in self.turns.values()), default=0)
            point = max(last, self.end - int(self.idle_retain_s * self.rate))
        step = self.rate * 3 // 100  # whole 30 ms frames (and so whole milliseconds) at every supported rate
        return max(self._base, min(point, self.sent) // step * step)

    def resume(self, at: int | None = None) -> tuple[int, int]:
        """Start the next session at :meth:`retain_from` (or at stream sample ``at``, down to
        the 30 ms grid); the (offset, samples to resend) of it."""
        step = self.rate * 3 // 100
        start = max(self.retain_from() if at is None else min(at, self.end) // step * step, self._base)
        self.session += 1
        self.offset = self.sent = start
        self._server = {}
        queue = []
        for c in self.controls:
            kind = c.message["type"]
            if kind == "turn.reference":
                if (c.turn is None and c is self._pending_reference) or (c.turn is not None and not c.turn.done):
                    queue.append(Control(max(c.pos, start), c.message, c.turn))
            elif c.pos >= start:
                queue.append(c)
        self._queue = sorted(queue, key=lambda c: c.pos)
        return start, self.end - start

    def on_event(self, event: Event) -> list[Event]:
        """A server event of the current session in, the events for the application out."""
        shift = self.offset * 1000 // self.rate  # exact: offsets lie on the 30 ms grid
        if isinstance(event, TurnStarted):
            return self._turn_started(event, shift)
        if isinstance(event, TurnEnded):
            turn = self._turn(event.turn_id, event.start_ms + shift)
            turn.start, turn.end = self._sample(event.start_ms + shift), self._sample(event.end_ms + shift)
            if turn.ended_sent:
                return []
            turn.ended_sent = True
            return [
                dataclasses.replace(
                    event, turn_id=turn.id, start_ms=event.start_ms + shift, end_ms=event.end_ms + shift
                )
            ]
        if isinstance(event, (TurnAssessed, TurnFailed)):
            turn = self._turn(event.turn_id, event.start_ms + shift)
            if turn.done:
                return []  # already answered (cannot happen with one server session per turn)
            turn.outcome = "assessed" if isinstance(event, TurnAssessed) else event.code
            if turn.end is None:
                turn.end = self._sample(event.end_ms + shift)
            self._trim()
            return [
                dataclasses.replace(
                    event, turn_id=turn.id, start_ms=event.start_ms + shift, end_ms=event.end_ms + shift
                )
            ]
        if isinstance(event, SessionEnded):
            out: list[Event] = [
                *self._lose(
                    self._unmatched(), "the connection dropped and the resent audio did not form this turn again"
                )
            ]
            self.summaries.append(event)
            return [*out, event if self.session == 0 else self.summary(event)]
        if isinstance(event, SessionStarted) and self.session > 0:
            return []  # the client reports a resumed session as Reconnected
        return [event]

    def server_stopped(self, event: SessionEnded) -> tuple[list[Event], int]:
        """The session ended because its server shut down (every turn it had is answered):
        the events for the application, and the stream sample where the server stopped reading."""
        out: list[Event] = [
            *self._lose(self._unmatched(), "the connection dropped and the resent audio did not form this turn again")
        ]
        self.summaries.append(event)
        return out, self.offset + event.audio_ms * self.rate // 1000

    def give_up(self, message: str) -> list[TurnFailed]:
        """Every turn without a result fails with ``connection_lost`` (no session will answer it)."""
        return self._lose([t for t in self.turns.values() if not t.done], message)

    def summary(self, last: SessionEnded) -> SessionEnded:
        """The stream's summary over all its sessions (``last``: the final session's)."""
        failures: dict[str, int] = {}
        for t in self.turns.values():
            if t.done and t.outcome != "assessed":
                failures[t.outcome or ""] = failures.get(t.outcome or "", 0) + 1
        assessed = sum(1 for t in self.turns.values() if t.outcome == "assessed")
        return SessionEnded(
            last.reason,
            len(self.turns),
            assessed,
            sum(failures.values()),
            self.offset * 1000 // self.rate + last.audio_ms,
            failures,
        )

    # --- internals -------------------------------------------------------------------

    def _sample(self, ms: int) -> int:
        return ms * self.rate // 1000

    def _attach(self, control: Control, turn: Turn) -> None:
        control.turn, turn.reference = turn, control.message["text"]

    def _unmatched(self) -> list[Turn]:
        return sorted(
            (t for t in self.turns.values() if not t.done and t.session < self.session), key=lambda t: t.start
        )

    def _turn_started(self, event: TurnStarted, shift: int) -> list[Event]:
        start = self._sample(event.start_ms + shift)
        out: list[Event] = []
        turn = None
        for old in self._unmatched():  # turns left without a result by a drop, in stream order
            if old.end is not None and old.end <= start:
                out += self._lose([old], "the connection dropped and the resent audio did not form this turn again")
                continue
            turn = old  # the same speech, cut again by the new session
            break
        if turn is None:
            turn = Turn(len(self.turns) + 1, start)
            self.turns[turn.id] = turn
            if self._pending_reference is not None:
                self._attach(self._pending_reference, turn)
                self._pending_reference = None
            out.append(dataclasses.replace(event, turn_id=turn.id, start_ms=event.start_ms + shift))
        turn.session = self.session
        self._server[event.turn_id] = turn
        return out

    def _turn(self, server_id: int, start_ms: int) -> Turn:
        turn = self._server.get(server_id)
        if turn is None:  # a terminal event without turn.started (not in multipa.v1): give it an id
            turn = Turn(len(self.turns) + 1, self._sample(start_ms), session=self.session)
            self.turns[turn.id] = turn
            self._server[server_id] = turn
        return turn

    def _lose(self, turns: list[Turn], message: str) -> list[TurnFailed]:
        out = []
        for t in turns:
            t.outcome = CONNECTION_LOST
            end = t.end if t.end is not None else max(t.start, self.sent)
            out.append(TurnFailed(t.id, t.start * 1000 // self.rate, end * 1000 // self.rate, CONNECTION_LOST, message))
        self._trim()
        return out

    def _audio(self, start: int, stop: int) -> bytes:
        chunk = np.frombuffer(self._buf, dtype="<i2", count=stop - start, offset=2 * (start - self._base)).copy()
        for t in self.turns.values():  # answered turns inside a resent span: zeros, so they are not assessed again
            if t.done and t.outcome != CONNECTION_LOST and t.end is not None and t.start < stop and t.end > start:
                chunk[max(t.start, start) - start : min(t.end, stop) - start] = 0
        return chunk.tobytes()

    def _trim(self) -> None:
        point = self.retain_from()
        if point - self._base >= self.rate:  # in steps of a second or more: deleting from a bytearray copies
            del self._buf[: 2 * (point - self._base)]
            self._base = point
            self.controls = [
                c
                for c in self.controls
                if c.pos >= point or (c.turn is not None and not c.turn.done) or c is self._pending_reference
            ]
