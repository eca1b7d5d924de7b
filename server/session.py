"""One client session as a state machine, without I/O.

The connection adapter (:mod:`multipa_server.connection`) feeds a
:class:`Session` whatever happens (text and binary frames, job outcomes, the
idle timeout, shutdown, disconnect) and carries out the :data:`Action` list it
returns, in order: send an event, submit a turn to the pool, close. Nothing
here awaits, sleeps or touches a socket; time comes from an injected clock.

The invariant the tests hold it to: every turn announced by ``turn.started``
gets exactly one ``turn.assessed`` or ``turn.failed``, whatever ends the
session, and ``session.ended`` comes after all of them.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Union

from multipa_core.audio import MIN_SECONDS

from .exceptions import ProtocolError
from .pool import Job, JobResult
from .protocol import (
    CloseCode,
    Error,
    ErrorCode,
    Mode,
    Ping,
    Pong,
    ServerEvent,
    SessionEnd,
    SessionEnded,
    SessionEndReason,
    SessionStart,
    SessionStarted,
    TurnAssessed,
    TurnEnd,
    TurnEnded,
    TurnEndReason,
    TurnFailed,
    TurnReference,
    TurnStarted,
    parse_client_message,
)
from .segmenter import SegmentEnded, SegmentEvent, SegmentPaused, Segmenter, SegmentStarted


class SessionState(enum.Enum):
    """Where a session is in its life."""

    AWAITING_START = "awaiting_start"  # connected, no session.start yet
    STREAMING = "streaming"  # audio flows and is cut into turns
    DRAINING = "draining"  # no more input; waiting for the turns in flight
    CLOSED = "closed"  # session.ended emitted


@dataclass(frozen=True)
class Limits:
    """What one session may do."""

    max_frame_bytes: int = 131072  # largest binary (audio) frame
    max_text_bytes: int = 65536  # largest text (control) frame
    max_session_s: float = 3600.0  # audio one session may stream
    max_turns_in_flight: int = 4  # turns awaiting assessment; more fail with too_many_turns
    idle_timeout_s: float = 60.0  # no client message this long (and no turn in flight) ends the session
    start_timeout_s: float = 10.0  # a connection without session.start this long after connecting is closed
    realtime_lead_ms: float = 2000.0  # how far a realtime client's audio may run ahead of the clock
    realtime_rate: float = 1.02  # audio rate a realtime client may sustain, relative to real time (clock drift)


@dataclass
class Send:
    """Send this event to the client."""

    event: ServerEvent


@dataclass
class Submit:
    """Submit this turn to the pool; report back with ``job_succeeded``/``job_failed``
    (passing ``job.id``)."""

    turn_id: int
    job: Job
    speculative: bool = False  # the turn has not ended yet: run it only on an idle worker


@dataclass
class Cancel:
    """Withdraw the job with this id (a speculation that went stale); its outcome is ignored."""

    job_id: str


@dataclass
class Close:
    """Close the connection (always the last action)."""

    code: CloseCode
    reason: str


Action = Union[Send, Submit, Cancel, Close]


@dataclass
class _Speculation:
    """A job submitted at a pause, before the turn ended."""

    job_id: str
    end_ms: int
    audio_bytes: int
    reference: str | None
    submitted_at: float
    result: JobResult | None = None  # arrived before the turn ended


@dataclass
class _Turn:
    id: int
    start_ms: int
    end_ms: int = 0
    reference: str | None = None
    ended: bool = False  # turn.ended emitted
    ended_at: float | None = None  # clock time of turn.ended (latency counts from here)
    submitted_at: float | None = None  # clock time of the Submit that assesses it
    done: bool = False  # terminal event emitted
    speculation: _Speculation | None = None
    speculations: int = 0  # submitted so far (job ids)


@dataclass
class _Ending:
    reason: SessionEndReason
    close: CloseCode
    close_reason: str = ""


def _plain(code: str) -> str:
    """An ErrorCode member as its plain string (enum members hash by name, not value)."""
    return str(getattr(code, "value", code))


_FATAL_CLOSE = {
    ErrorCode.FRAME_TOO_LARGE.value: CloseCode.MESSAGE_TOO_BIG,
    ErrorCode.INTERNAL_ERROR.value: CloseCode.INTERNAL_ERROR,
}


SPECULATION_HANGOVERS = 2.0  # speculate while a job comes back within this many hang-overs
JOB_MS_WEIGHT = 0.3  # of the newest job in the running estimate of how long jobs take to come back


class Session:
    """The protocol of one connection.

    Args:
        session_id: shown to the client and in logs.
        limits: what the session may do.
        clock: monotonic seconds (injected so tests control time).
        speculate: submit a VAD turn when the learner pauses (:class:`SegmentPaused`),
            so its assessment runs during the hang-over; used when the turn then ends
            exactly there, withdrawn otherwise. A withdrawn speculation still runs to its
            end on its worker, so speculation pauses while this session's jobs take
            longer than ``speculation_hangovers`` hang-overs to come back (a loaded machine;
            0: never pause): a stale one would hold the next turns back longer than a right one saves.
    """

    def __init__(
        self,
        session_id: str,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        speculate: bool = False,
        speculation_hangovers: float = SPECULATION_HANGOVERS,
    ) -> None:
        self.id = session_id
        self.limits = limits or Limits()
        self.speculate = speculate
        self.speculation_hangovers = speculation_hangovers
        self.state = SessionState.AWAITING_START
        self.start: SessionStart | None = None
        self._clock = clock
        self._actions: list[Action] = []
        self._segmenter: Segmenter | None = None
        # per-step work must not grow with the session's history: only unfinished turns are
        # kept, and the counts below are kept up to date rather than counted
        self._turns: dict[int, _Turn] = {}  # unfinished turns (announced, no terminal event yet)
        self._open_turn: _Turn | None = None  # announced and not yet ended (at most one)
        self._submitted: set[int] = set()  # unfinished turns with a job that assesses them
        self._started = 0  # turns announced
        self._pending_reference: str | None = None
        self._first_audio_at: float | None = None
        self._audio_samples = 0
        self._ending: _Ending | None = None
        self._failures: Counter[str] = Counter()
        self._no_dispatch: tuple[str, str] | None = None  # once set, ended turns fail with this code and message
        self._pending_audio: dict[int, bytes] = {}  # turns riding on a speculation: their audio, for a retry
        self._job_ms: float | None = None  # how long a job takes to come back (queue + assessment), smoothed

    # --- outputs ------------------------------------------------------------------

    def actions(self) -> list[Action]:
        """The actions produced since the last call, in order."""
        out, self._actions = self._actions, []
        return out

    @property
    def in_flight(self) -> int:
        """Turns submitted and not yet finished."""
        return len(self._submitted)

    @property
    def unfinished(self) -> int:
        """Turns announced and without their terminal event."""
        return len(self._turns)

    # --- inputs -------------------------------------------------------------------

    def receive_text(self, data: str | bytes) -> None:
        """A text frame from the client."""
        if self.state is SessionState.CLOSED:
            return
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
        if size > self.limits.max_text_bytes:
            return self._fatal(
                ErrorCode.FRAME_TOO_LARGE, f"text frames are limited to {self.limits.max_text_bytes} bytes"
            )
        try:
            message = parse_client_message(data)
        except ProtocolError as exc:
            if exc.message_type == SessionStart.type:
                if self.state is SessionState.AWAITING_START:
                    return self._fatal(exc.code, str(exc))  # without a valid start there is no session
                return self._error(ErrorCode.INVALID_STATE, "the session has already started")
            if exc.message_type is None and self.state is SessionState.AWAITING_START:
                # unreadable before any session: taken as a malformed session.start, which is fatal
                return self._fatal(exc.code, f"{exc}; the first message must be a session.start")
            return self._error(exc.code, str(exc))
        if isinstance(message, Ping):
            self._send(Pong(message.id))
        elif self.state is SessionState.DRAINING:
            return  # the session is ending; whatever the client still says changes nothing
        elif isinstance(message, SessionStart):
            self._start(message)
        elif self.state is SessionState.AWAITING_START:
            if isinstance(message, SessionEnd):
                self._end(SessionEndReason.CLIENT, CloseCode.NORMAL)
            else:
                self._error(ErrorCode.INVALID_STATE, f"{message.type} before session.start")
        elif isinstance(message, TurnReference):
            self._reference(message.text)
        elif isinstance(message, TurnEnd):
            assert self._segmenter is not None
            self._segments(self._segmenter.end_turn())
        elif isinstance(message, SessionEnd):
            self._end(SessionEndReason.CLIENT, CloseCode.NORMAL)

    def receive_audio(self, data: bytes) -> None:
        """A binary frame (PCM16) from the client."""
        if self.state in (SessionState.CLOSED, SessionState.DRAINING):
            return  # frames already on the wire when the session ended
        if self.state is SessionState.AWAITING_START:
            return self._fatal(ErrorCode.AUDIO_BEFORE_START, "binary audio arrived before session.start")
        assert self.start is not None and self._segmenter is not None
        if len(data) > self.limits.max_frame_bytes:
            return self._fatal(
                ErrorCode.FRAME_TOO_LARGE,
                f"audio frames are limited to {self.limits.max_frame_bytes} bytes, got {len(data)}",
            )
        if len(data) % 2:
            return self._fatal(ErrorCode.ODD_LENGTH_PCM, f"a frame of {len(data)} bytes is not whole 16-bit samples")
        rate = self.start.sample_rate
        total = self._audio_samples + len(data) // 2
        if total > self.limits.max_session_s * rate:
            return self._fatal(
                ErrorCode.SESSION_TOO_LONG, f"a session may stream {self.limits.max_session_s:.0f} s of audio"
            )
        if self.start.realtime:
            now = self._clock()
            if self._first_audio_at is None:
                self._first_audio_at = now
            allowed_ms = (
                now - self._first_audio_at
            ) * 1000.0 * self.limits.realtime_rate + self.limits.realtime_lead_ms
            if total * 1000.0 / rate > allowed_ms:
                return self._fatal(
                    ErrorCode.TOO_FAST, "audio arrives faster than real time; send realtime=false for recorded audio"
                )
        self._audio_samples = total
        self._segments(self._segmenter.feed(data))

    def job_succeeded(self, turn_id: int, result: JobResult, job_id: str | None = None) -> None:
        """The pool assessed a submitted turn (ignored if the turn already failed or the job went stale)."""
        took = result.queue_ms + result.assess_ms
        self._job_ms = took if self._job_ms is None else (1 - JOB_MS_WEIGHT) * self._job_ms + JOB_MS_WEIGHT * took
        turn = self._turns.get(turn_id)
        if turn is None or turn.done:
            return
        spec = turn.speculation
        if spec is not None and job_id == spec.job_id and turn.submitted_at is None:
            spec.result = result  # early: the turn has not ended yet
            return
        if turn.submitted_at is None or (job_id is not None and job_id != self._job_id(turn)):
            return
        self._assessed(turn, result)

    def job_failed(self, turn_id: int, code: str, message: str, job_id: str | None = None) -> None:
        """The pool gave up on a submitted turn (ignored if the turn already has its outcome).

        A speculation that fails is dropped: the turn is submitted again when it ends
        (or at once, if it already has).
        """
        turn = self._turns.get(turn_id)
        if turn is None or turn.done:
            return
        spec = turn.speculation
        if spec is not None and job_id == spec.job_id:
            turn.speculation = None
            if turn.submitted_at is not None:  # adopted, then failed: one ordinary attempt
                self._set_submitted(turn, None)
                self._dispatch(turn, self._pending_audio.pop(turn.id))
            return
        if turn.submitted_at is None or (job_id is not None and job_id != self._job_id(turn)):
            return
        self._fail(turn, code, message)
        self._maybe_finish()

    def idle(self) -> None:
        """The client has sent nothing for the idle timeout."""
        if self.state in (SessionState.AWAITING_START, SessionState.STREAMING) and not self.in_flight:
            self._fatal(
                ErrorCode.IDLE_TIMEOUT,
                f"no message for {self.limits.idle_timeout_s:.0f} s",
                reason=SessionEndReason.IDLE,
            )

    def start_timeout(self) -> None:
        """``start_timeout_s`` have passed since the client connected."""
        if self.state is SessionState.AWAITING_START:
            self._fatal(
                ErrorCode.START_TIMEOUT, f"no session.start within {self.limits.start_timeout_s:g} s of connecting"
            )

    def shutdown(self) -> None:
        """The server is going away: finish the open turn, drain, close with 1001."""
        if self.state in (SessionState.AWAITING_START, SessionState.STREAMING):
            self._send(
                Error(
                    ErrorCode.SHUTTING_DOWN.value,
                    "the server is shutting down; turns in progress are still assessed",
                    fatal=True,
                )
            )
            self._end(SessionEndReason.SHUTDOWN, CloseCode.GOING_AWAY, ErrorCode.SHUTTING_DOWN.value)

    def abort(self, code: ErrorCode, message: str, close: CloseCode) -> None:
        """Give up waiting: every unfinished turn fails with ``code``, then the session closes."""
        if self.state is SessionState.CLOSED:
            return
        self._no_dispatch = (code.value, message)
        if self.state is not SessionState.DRAINING:
            self._send(Error(code.value, message, fatal=True))
            self._end(SessionEndReason.ERROR, close, code.value)
        assert self._ending is not None
        self._ending.close, self._ending.close_reason = close, code.value
        for turn in list(self._turns.values()):
            if not turn.done:
                self._fail(turn, code.value, message)
        self._maybe_finish()

    def disconnected(self) -> None:
        """The client is gone: unfinished turns fail with ``client_disconnected`` (for the log)."""
        if self.state is SessionState.CLOSED:
            return
        gone = (ErrorCode.CLIENT_DISCONNECTED.value, "the client disconnected before the turn was assessed")
        self._no_dispatch = gone
        if self.state is not SessionState.DRAINING:
            self._end(SessionEndReason.DISCONNECT, CloseCode.NORMAL)
        assert self._ending is not None
        self._ending.reason = SessionEndReason.DISCONNECT
        for turn in list(self._turns.values()):
            if not turn.done:
                self._fail(turn, *gone)
        self._maybe_finish()

    # --- internals ----------------------------------------------------------------

    def _send(self, event: ServerEvent) -> None:
        self._actions.append(Send(event))

    def _error(self, code: str, message: str) -> None:
        self._send(Error(_plain(code), message, fatal=False))

    def _fatal(self, code: str, message: str, *, reason: SessionEndReason = SessionEndReason.ERROR) -> None:
        code = _plain(code)
        self._send(Error(code, message, fatal=True))
        self._end(reason, _FATAL_CLOSE.get(code, CloseCode.POLICY_VIOLATION), code)

    def _start(self, message: SessionStart) -> None:
        if self.state is not SessionState.AWAITING_START:
            return self._error(ErrorCode.INVALID_STATE, "the session has already started")
        self.start = message
        self._segmenter = Segmenter(message.sample_rate, message.vad)
        self.state = SessionState.STREAMING
        limits: dict[str, float] = asdict(self.limits)
        self._send(SessionStarted(self.id, message.sample_rate, message.mode, message.realtime, message.vad, limits))

    def _reference(self, text: str) -> None:
        if self._open_turn is not None and self._open_turn.reference is None:
            self._open_turn.reference = text  # the learner started before the reference arrived
        else:
            self._pending_reference = text

    def _segments(self, events: list[SegmentEvent]) -> None:
        for event in events:
            if isinstance(event, SegmentStarted):
                turn = _Turn(event.index, event.start_ms, reference=self._pending_reference)
                self._pending_reference = None
                self._turns[turn.id] = self._open_turn = turn
                self._started += 1
                self._send(TurnStarted(turn.id, turn.start_ms))
            elif isinstance(event, SegmentPaused):
                self._paused(event)
            else:
                self._turn_ended(event)

    def _paused(self, event: SegmentPaused) -> None:
        turn = self._turns.get(event.index)
        assert self.start is not None
        if (
            turn is None
            or not self.speculate
            or self._no_dispatch is not None
            or self.state is not SessionState.STREAMING
        ):
            return
        if self._too_short(event.audio):
            return
        budget = self.speculation_hangovers * self.start.vad.hangover_ms
        if self._job_ms is not None and budget and self._job_ms > budget:
            return  # a loaded machine: a withdrawn speculation would keep a worker from the turns behind it
        if (
            self.start.mode is Mode.CLOSED and turn.reference is None
        ) or self.in_flight >= self.limits.max_turns_in_flight:
            return  # it will fail (or queue) when it ends; no point running it now
        self._withdraw(turn)
        turn.speculations += 1
        spec = _Speculation(
            f"{self.id}/{turn.id}~{turn.speculations}", event.end_ms, len(event.audio), turn.reference, self._clock()
        )
        turn.speculation = spec
        self._actions.append(
            Submit(turn.id, Job(spec.job_id, event.audio, self.start.sample_rate, turn.reference), speculative=True)
        )

    def _withdraw(self, turn: _Turn) -> None:
        if turn.speculation is not None:
            self._actions.append(Cancel(turn.speculation.job_id))
            turn.speculation = None

    def _turn_ended(self, event: SegmentEnded) -> None:
        turn = self._turns.get(event.index)
        if turn is None:
            return
        if self._open_turn is turn:
            self._open_turn = None
        turn.end_ms, turn.ended, turn.ended_at = event.end_ms, True, self._clock()
        self._send(TurnEnded(turn.id, turn.start_ms, turn.end_ms, event.reason))
        assert self.start is not None
        spec = turn.speculation
        if spec is not None and (
            self._no_dispatch is not None
            or (spec.end_ms, spec.audio_bytes, spec.reference) != (event.end_ms, len(event.audio), turn.reference)
        ):
            self._withdraw(turn)  # the turn went on after the pause, or the reference changed
            spec = None
        if self._no_dispatch is not None:
            self._fail(turn, *self._no_dispatch)
        elif self.start.mode is Mode.CLOSED and turn.reference is None:
            self._fail(
                turn,
                ErrorCode.REFERENCE_MISSING.value,
                "closed mode: send turn.reference before (or while) the learner speaks",
            )
        elif self._too_short(event.audio):  # a worker would only say so: no job for it
            seconds = len(event.audio) / 2 / self.start.sample_rate
            self._fail(
                turn,
                ErrorCode.AUDIO_TOO_SHORT.value,
                f"the turn lasts {seconds:.2f} s; at least {MIN_SECONDS} s is needed",
            )
        elif self.in_flight >= self.limits.max_turns_in_flight:
            self._withdraw(turn)
            self._fail(
                turn,
                ErrorCode.TOO_MANY_TURNS.value,
                f"{self.limits.max_turns_in_flight} turns of this session are already waiting for assessment",
            )
        elif spec is not None:  # assessed (or being assessed) since the pause
            self._set_submitted(turn, spec.submitted_at)
            if spec.result is not None:
                self._assessed(turn, spec.result)
            else:
                self._pending_audio[turn.id] = event.audio  # kept in case the speculation fails
        else:
            self._dispatch(turn, event.audio)

    def _dispatch(self, turn: _Turn, audio: bytes) -> None:
        assert self.start is not None
        self._set_submitted(turn, self._clock())
        self._actions.append(Submit(turn.id, Job(self._job_id(turn), audio, self.start.sample_rate, turn.reference)))

    def _set_submitted(self, turn: _Turn, at: float | None) -> None:
        turn.submitted_at = at
        if at is None:
            self._submitted.discard(turn.id)
        else:
            self._submitted.add(turn.id)

    def _too_short(self, audio: bytes) -> bool:
        assert self.start is not None
        return len(audio) // 2 < MIN_SECONDS * self.start.sample_rate

    def _done(self, turn: _Turn) -> None:
        turn.done = True
        self._turns.pop(turn.id, None)
        self._submitted.discard(turn.id)
        self._pending_audio.pop(turn.id, None)
        if self._open_turn is turn:
            self._open_turn = None

    def _job_id(self, turn: _Turn) -> str:
        """The id of the job whose outcome is the turn's."""
        return turn.speculation.job_id if turn.speculation is not None else f"{self.id}/{turn.id}"

    def _assessed(self, turn: _Turn, result: JobResult) -> None:
        now = self._clock()
        ended_at = turn.ended_at if turn.ended_at is not None else now
        latency = {
            "queue": round(result.queue_ms, 1),
            "assess": round(result.assess_ms, 1),
            "total": round((now - ended_at) * 1000.0, 1),
        }
        if turn.speculation is not None:
            latency["head_start"] = round((ended_at - turn.speculation.submitted_at) * 1000.0, 1)
        self._done(turn)
        self._send(TurnAssessed(turn.id, turn.start_ms, turn.end_ms, result.assessment, latency))
        self._maybe_finish()

    def _fail(self, turn: _Turn, code: str, message: str) -> None:
        self._withdraw(turn)
        self._done(turn)
        self._failures[code] += 1
        self._send(TurnFailed(turn.id, turn.start_ms, turn.end_ms, code, message))

    def _end(self, reason: SessionEndReason, close: CloseCode, close_reason: str = "") -> None:
        """Stop taking input; the open turn ends (and is submitted); drain."""
        if self.state in (SessionState.DRAINING, SessionState.CLOSED):
            return
        self._ending = _Ending(reason, close, close_reason)
        if self._segmenter is not None:
            self._segments(self._segmenter.flush(TurnEndReason.SESSION_END))
        self.state = SessionState.DRAINING
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.state is not SessionState.DRAINING or self.unfinished:
            return
        assert self._ending is not None
        failed = sum(self._failures.values())
        rate = self.start.sample_rate if self.start else 16000
        self._send(
            SessionEnded(
                self._ending.reason,
                self._started,
                self._started - failed,
                failed,
                int(round(self._audio_samples * 1000 / rate)),
                dict(self._failures),
            )
        )
        if self._ending.reason is not SessionEndReason.DISCONNECT:
            self._actions.append(Close(self._ending.close, self._ending.close_reason))
        self.state = SessionState.CLOSED
