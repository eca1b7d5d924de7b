"""Pipecat integration: pronunciation feedback inside a Pipecat bot (extra ``pipecat``).

:class:`PronunciationProcessor` sits right after the transport's input::

    Pipeline([transport.input(), PronunciationProcessor(URL, llm_note=True), stt,
              context.user(), llm, tts, transport.output(), context.assistant()])

It passes every frame on at once and unchanged (it runs in Pipecat's direct
mode, so a frame never waits in a queue of ours) and only copies the user's
``InputAudioRawFrame`` audio into a non-blocking queue. A background task
streams that audio through :class:`~multipa_client.MultipaClient` (downmixed to
mono and resampled to 16 kHz), and for each learner turn pushes a
:class:`PronunciationAssessmentFrame` or a :class:`PronunciationFailedFrame`
downstream, optionally with an RTVI server message for the app's client and a
note appended to the LLM context so the bot can react in its next reply.

Turns follow the bot's own turn taking by default (``turns="pipeline"``): the
audio between ``UserStartedSpeakingFrame`` and ``UserStoppedSpeakingFrame``
(plus ``pre_roll_ms`` before it, since the VAD confirms speech after it began)
is one server turn (``vad.enabled: false`` and ``turn.end``), so the feedback
belongs to the turn the LLM answers, and every learner turn gets exactly one
frame. ``turns="server"`` streams all audio and lets the server's VAD cut turns.

The bot never waits for or fails because of the server: a dropped connection is
resumed by the SDK; when the server cannot be reached the turn gets a
:class:`PronunciationFailedFrame` (``server_unavailable``), a warning is
logged, and the next turn tries again (no sooner than ``retry_after_s``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Union

import numpy as np

from ._audio import to_int16
from ._client import MultipaClient, ReconnectPolicy
from ._events import CONNECTION_LOST, Event, TurnAssessed, TurnFailed, VadOptions, to_dict
from ._exceptions import MissingDependency, MultipaClientError, ServerError
from ._transport import Transport

try:
    from pipecat.frames.frames import (
        CancelFrame,
        DataFrame,
        EndFrame,
        Frame,
        InputAudioRawFrame,
        LLMMessagesAppendFrame,
        StartFrame,
        SystemFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.processors.frameworks.rtvi import RTVIServerMessageFrame
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependency(
        f"multipa_client.pipecat needs Pipecat: pip install 'multipa-live[pipecat]' ({exc})"
    ) from None

if TYPE_CHECKING:  # the OpenAI message types, which Pipecat imports under type checking only
    from pipecat.processors.aggregators.llm_context import LLMStandardMessage

__all__ = [
    "SERVER_UNAVAILABLE",
    "PronunciationAssessmentFrame",
    "PronunciationFailedFrame",
    "PronunciationProcessor",
    "PronunciationReferenceFrame",
    "feedback_note",
]

log = logging.getLogger("multipa_client.pipecat")

SERVER_UNAVAILABLE = "server_unavailable"  # no server could be reached for the turn: it was not assessed
IDLE_TIMEOUT = "idle_timeout"  # the server closes a session after a silent minute; the next turn opens a new one
RATE = 16_000  # what the processor sends: the model's rate, so the server resamples nothing
SERVER_TURNS_KEPT = 8  # with turns="server", the recent learner turns a server turn can be labelled with


@dataclass
class PronunciationAssessmentFrame(DataFrame):
    """The server assessed a learner turn.

    Parameters:
        event: the SDK's typed ``turn.assessed`` event (scores, words, phones, latency).
        learner_turn: the pipeline's user turn it belongs to (1, 2, ... since the
            pipeline started); None for a server-cut turn outside any user turn.
    """

    event: TurnAssessed
    learner_turn: int | None = None
    interruptible: bool = field(default=False, init=False)  # feedback survives the user barging in


@dataclass
class PronunciationFailedFrame(DataFrame):
    """A learner turn got no assessment.

    Parameters:
        code: the protocol's turn code (``too_short``, ``reference_missing``, ...),
            ``connection_lost``, or ``server_unavailable`` (no server was reachable).
        message: a human sentence.
        learner_turn: as for :class:`PronunciationAssessmentFrame`.
        event: the ``turn.failed`` event when the server or the SDK sent one.
    """

    code: str
    message: str
    learner_turn: int | None = None
    event: TurnFailed | None = None
    interruptible: bool = field(default=False, init=False)


@dataclass
class PronunciationReferenceFrame(SystemFrame):
    """What the learner is expected to say next (closed response), e.g. the bot's last prompt.

    Push it into the pipeline before the processor (``task.queue_frame``); it is
    passed on like any frame. As the protocol's ``turn.reference``: it applies to
    the turn in progress if that has none yet, otherwise to the next one, and to one turn only.
    """

    text: str


def feedback_note(frame: PronunciationAssessmentFrame) -> str:
    """The default LLM-context note: what was heard, the scores and the words to practise."""
    a = frame.event.assessment
    s = a.sentence
    weak = [w.text for w in a.words if w.needs_improvement]
    words = f" Words to practise: {', '.join(weak)}." if weak else " No word stood out as mispronounced."
    return (
        f"Pronunciation feedback on the learner's last turn (from a pronunciation assessment service; "
        f'use it to encourage or correct the learner briefly, do not read it out): heard "{a.transcript.strip()}"; '
        f"scores out of 10: total {s.total:.1f}, accuracy {s.accuracy:.1f}, fluency {s.fluency:.1f}, prosody {s.prosody:.1f}.{words}"
    )


@dataclass
class _Turn:
    """A learner turn as the processor saw it."""

    number: int
    stream: int | None = None  # the SDK stream its audio went to; None: skipped (no server)
    start: int = 0  # its first sample in that stream (the pre-roll included)
    end: int | None = None  # one past its last sample; None while the learner speaks
    done: bool = False  # its frame was pushed


_AUDIO, _START, _STOP, _REFERENCE, _CLOSE = "audio", "start", "stop", "reference", "close"


class PronunciationProcessor(FrameProcessor):
    """Streams the user's audio to a MultiPA Live server; pushes feedback frames.

    Args:
        url: the server's stream endpoint, ``ws://HOST:PORT/v1/stream``.
        api_key: the server's API key, if it has keys.
        turns: ``"pipeline"`` (the pipeline's ``UserStarted/StoppedSpeakingFrame``
            delimit turns) or ``"server"`` (the server's VAD cuts them).
        mode: ``"open"`` or ``"closed"`` (every turn needs a reference).
        vad: server VAD options for ``turns="server"``; None: the server's defaults.
        pre_roll_ms: with ``turns="pipeline"``, audio sent from before the
            ``UserStartedSpeakingFrame`` (the VAD announces speech after it began).
        rtvi: also push an ``RTVIServerMessageFrame`` (``pronunciation.assessed`` /
            ``pronunciation.failed``) for the app's client.
        llm_note: also push an ``LLMMessagesAppendFrame`` with a note on the turn
            (``run_llm=False``: the bot reads it with the next user turn).
        note_role: the note's role, ``"system"`` or ``"developer"``.
        note: builds the note from the frame; :func:`feedback_note` by default.
        realtime: the audio arrives at real time (a live transport; the server checks
            the pace); False for a pipeline fed faster, e.g. from a file in a test.
        reconnect: the SDK's reconnect policy for a dropped connection.
        retry_after_s: after the server could not be reached, turns starting
            within this time are skipped without trying.
        end_timeout_s: on ``EndFrame``, how long to wait for the results of the
            turns in flight before passing it on (``CancelFrame`` waits for nothing).
        max_queued_frames: audio frames the background task may fall behind by;
            beyond that new audio is dropped (logged), never the bot's frames.
        metadata: logged with each session on the server.
        transport: the SDK transport (a ``FakeServer`` in tests).
        **kwargs: passed to ``FrameProcessor``.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        turns: str = "pipeline",
        mode: str = "open",
        vad: VadOptions | None = None,
        pre_roll_ms: int = 500,
        rtvi: bool = False,
        llm_note: bool = False,
        note_role: str = "system",
        note: Callable[[PronunciationAssessmentFrame], str] = feedback_note,
        realtime: bool = True,
        reconnect: Union[bool, ReconnectPolicy] = True,
        retry_after_s: float = 5.0,
        end_timeout_s: float = 3.0,
        max_queued_frames: int = 3000,
        metadata: dict[str, Any] | None = None,
        transport: Transport | None = None,
        **kwargs: Any,
    ) -> None:
        if turns not in ("pipeline", "server"):
            raise ValueError(f"turns must be 'pipeline' or 'server', got {turns!r}")
        if mode not in ("open", "closed"):
            raise ValueError(f"mode must be 'open' or 'closed', got {mode!r}")
        if note_role not in ("system", "developer"):
            raise ValueError(f"note_role must be 'system' or 'developer', got {note_role!r}")
        super().__init__(enable_direct_mode=True, **kwargs)  # no queue of ours in the audio path
        self.url, self.turns, self.rtvi, self.llm_note = url, turns, rtvi, llm_note
        self._note_role, self._note, self._retry_after_s, self._end_timeout_s = (
            note_role,
            note,
            retry_after_s,
            end_timeout_s,
        )
        if turns == "pipeline":  # the pipeline's turns, pushed to talk; long turns are split at 30 s
            vad = VadOptions(enabled=False, max_turn_ms=30_000)
        self._client_options: dict[str, Any] = dict(
            api_key=api_key,
            mode=mode,
            sample_rate=RATE,
            vad=vad,
            realtime=realtime,
            reconnect=reconnect,
            metadata={"integration": "pipecat", **(metadata or {})},
            transport=transport,
        )
        self._inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._max_queued = max_queued_frames
        self._pre_roll: collections.deque[tuple[tuple[Any, ...], float]] = collections.deque()  # (item, ms)
        self._pre_roll_ms, self._pre_roll_kept = pre_roll_ms, 0.0
        self._mono: _Mono | None = None  # the stream's (or, with pipeline turns, the turn's) converter
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0
        # the background task's state
        self._turns: list[_Turn] = []  # learner turns without their frame yet (with turns="server": the recent ones)
        self._count = 0  # learner turns so far
        self._current: _Turn | None = None  # the turn the learner is in
        self._stream = 0  # the number of the SDK stream in progress (0: none yet)
        self._fed = 0  # samples given to that stream
        self._reference: str | None = None  # set while no stream was open: sent with the next one
        self._retry_at = 0.0
        self._closing = False  # EndFrame: the stream ends with session.end, then the task

    # --- the audio path: never waits -------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, EndFrame):  # a graceful end: the turns in flight get their frames first
            await self._drain()
        await self.push_frame(frame, direction)  # before we look at it: nothing of ours delays a frame
        if isinstance(frame, InputAudioRawFrame):
            self._put((_AUDIO, frame.audio, frame.sample_rate, frame.num_channels))
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._put((_START,))
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._put((_STOP,))
        elif isinstance(frame, PronunciationReferenceFrame):
            self._put((_REFERENCE, frame.text))
        elif isinstance(frame, StartFrame):
            if self._task is None:
                self._task = self.create_task(self._run(), name=f"{self}::multipa")
        elif isinstance(frame, CancelFrame):
            await self._stop()

    def set_reference(self, text: str) -> None:
        """As a :class:`PronunciationReferenceFrame`, from the app's code (e.g. when the bot asks)."""
        if self._task is None:  # the pipeline has not started: the first stream takes it
            self._reference = text
        else:
            self._put((_REFERENCE, text))

    def _put(self, item: tuple[Any, ...]) -> None:
        if self._task is None:
            return
        if (
            item[0] == _AUDIO and self._inbox.qsize() >= self._max_queued
        ):  # the task is stuck: lose feedback, not the bot's audio
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 500 == 0:
                log.warning("pronunciation feedback is behind: %d audio frames dropped", self._dropped)
            return
        self._inbox.put_nowait(item)  # unbounded: turn boundaries are never dropped

    async def _drain(self) -> None:
        task = self._task
        if task is None:
            return
        self._put((_CLOSE,))
        try:
            await asyncio.wait_for(asyncio.shield(task), self._end_timeout_s)
        except Exception:  # timed out, or the task failed (it logged why)
            pass
        await self._stop()

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await self.cancel_task(task)

    async def cleanup(self) -> None:
        await super().cleanup()  # type: ignore[no-untyped-call]  # Pipecat's cleanup has no annotations
        await self._stop()

    # --- the background task ----------------------------------------------------------

    async def _run(self) -> None:
        """Open a stream when there is a turn to assess; on any failure, log and carry on."""
        loop = asyncio.get_running_loop()
        while await self._idle():
            self._stream += 1
            self._fed = 0
            code, message = CONNECTION_LOST, "the stream to the pronunciation server ended"
            try:
                async with MultipaClient(self.url, **self._client_options) as client:
                    if self._reference is not None:
                        await client.set_reference(self._reference)
                        self._reference = None
                    async with contextlib.aclosing(client.stream(self._source(client), sample_rate=RATE)) as events:
                        async for event in events:
                            await self._on_event(event)
            except asyncio.CancelledError:
                raise
            except ServerError as exc:
                if exc.code != IDLE_TIMEOUT:
                    log.warning("pronunciation server error: %s", exc)
                    self._retry_at = loop.time() + self._retry_after_s
                code, message = exc.code, str(exc)
            except MultipaClientError as exc:
                log.warning("pronunciation server unreachable, feedback skipped: %s", exc)
                self._retry_at = loop.time() + self._retry_after_s
                code, message = SERVER_UNAVAILABLE if self._fed == 0 else CONNECTION_LOST, str(exc)
            except Exception as exc:  # a bug of ours must not stop the bot either
                log.exception("pronunciation feedback failed")
                self._retry_at = loop.time() + self._retry_after_s
                code, message = "client_error", repr(exc)
            await self._end_stream(code, message)
            if self._closing:
                return

    async def _idle(self) -> bool:
        """Take items while no stream is open, until one should open (True) or the pipeline ends."""
        loop = asyncio.get_running_loop()
        while True:
            item = await self._inbox.get()
            kind = item[0]
            if kind == _AUDIO:
                self._keep_pre_roll(item)
                if self.turns == "server" and loop.time() >= self._retry_at:
                    return True  # the stream opens with this audio
            elif kind == _START and self._current is None:
                self._begin_turn()
                if self.turns == "pipeline" and loop.time() >= self._retry_at:
                    return True  # the stream opens with this turn's pre-roll
            elif kind == _STOP and self._current is not None:
                turn, self._current = self._current, None
                if self.turns == "pipeline":
                    await self._fail(
                        turn,
                        SERVER_UNAVAILABLE,
                        "the pronunciation server could not be reached; this turn was not assessed",
                    )
            elif kind == _REFERENCE:
                self._reference = item[1]
            elif kind == _CLOSE:
                self._closing = True
                return False

    async def _source(self, client: MultipaClient) -> AsyncIterator[np.ndarray]:
        """The stream's audio, item by item in arrival order, with the turn controls in place."""
        pipeline = self.turns == "pipeline"
        self._mono = None
        if self._current is not None and pipeline:  # opened at this turn's start
            self._current.stream, self._current.start = self._stream, 0
        for chunk in self._take_pre_roll():
            self._fed += len(chunk)
            yield chunk
        while True:
            item = await self._inbox.get()
            kind = item[0]
            if kind == _AUDIO:
                if pipeline and self._current is None:
                    self._keep_pre_roll(item)
                    continue
                chunk = self._convert(item)
                if len(chunk):
                    self._fed += len(chunk)
                    yield chunk
            elif kind == _START and self._current is None:
                turn = self._begin_turn()
                turn.stream, turn.start = self._stream, self._fed
                if pipeline:
                    self._mono = None  # each turn is resampled on its own and flushed at its end
                    for chunk in self._take_pre_roll():
                        self._fed += len(chunk)
                        yield chunk
            elif kind == _STOP and self._current is not None:
                turn, self._current = self._current, None
                if pipeline:
                    tail = self._mono.flush() if self._mono is not None else np.zeros(0, np.int16)
                    self._mono = None
                    if len(tail):
                        self._fed += len(tail)
                        yield tail
                    # the SDK took every sample of the turn before asking for more: turn.end goes right after them
                    turn.end = self._fed
                    await client.end_turn()
                else:
                    turn.end = self._fed
            elif kind == _REFERENCE:
                await client.set_reference(item[1])
            elif kind == _CLOSE:  # the SDK sends session.end: the turn in progress ends there and is assessed
                self._closing = True
                if self._current is not None:
                    if self._mono is not None and pipeline:
                        tail = self._mono.flush()
                        self._fed += len(tail)
                        if len(tail):
                            yield tail
                    self._current.end = self._fed
                return

    def _begin_turn(self) -> _Turn:
        self._count += 1
        self._current = turn = _Turn(self._count)
        self._turns.append(turn)
        if self.turns == "server":  # only labels: keep the recent ones
            del self._turns[:-SERVER_TURNS_KEPT]
        return turn

    def _keep_pre_roll(self, item: tuple[Any, ...]) -> None:
        """Keep the last ``pre_roll_ms`` of audio (whole frames) while no turn is being sent."""
        ms = len(item[1]) * 1000 / (2 * item[3] * item[2])
        self._pre_roll.append((item, ms))
        self._pre_roll_kept += ms
        while len(self._pre_roll) > 1 and self._pre_roll_kept - self._pre_roll[0][1] >= self._pre_roll_ms:
            self._pre_roll_kept -= self._pre_roll.popleft()[1]

    def _take_pre_roll(self) -> list[np.ndarray]:
        chunks = [self._convert(item) for item, _ in self._pre_roll]
        self._pre_roll.clear()
        self._pre_roll_kept = 0.0
        return [c for c in chunks if len(c)]

    def _convert(self, item: tuple[Any, ...]) -> np.ndarray:
        _, audio, rate, channels = item
        if self._mono is None or self._mono.rate != rate:
            self._mono = _Mono(rate)
        return self._mono.feed(audio, channels)

    async def _on_event(self, event: Event) -> None:
        log.debug("event %s", event)
        if isinstance(event, TurnAssessed):
            frame = PronunciationAssessmentFrame(event, self._owner(event))
            await self.push_frame(frame)
            if self.rtvi:
                data = {**to_dict(event), "type": "pronunciation.assessed", "learner_turn": frame.learner_turn}
                await self.push_frame(RTVIServerMessageFrame(data=data))
            if self.llm_note:
                note = self._note(frame)
                message: LLMStandardMessage
                if self._note_role == "system":
                    message = {"role": "system", "content": note}
                else:
                    message = {"role": "developer", "content": note}
                append = LLMMessagesAppendFrame(messages=[message], run_llm=False)
                append.interruptible = False  # a barge-in must not drop the note
                await self.push_frame(append)
        elif isinstance(event, TurnFailed):
            turn = self._owner(event)
            log.info("pronunciation turn %s failed: [%s] %s", turn, event.code, event.message)
            await self._push_failure(PronunciationFailedFrame(event.code, event.message, turn, event))

    def _owner(self, event: TurnAssessed | TurnFailed) -> int | None:
        """The learner turn of this stream that overlaps the server's turn most (marked done)."""
        best, overlap = None, 0.0
        for turn in self._turns:
            if turn.stream != self._stream:
                continue
            end_ms = float("inf") if turn.end is None else turn.end * 1000 / RATE
            shared = min(end_ms, event.end_ms) - max(turn.start * 1000 / RATE, event.start_ms)
            if shared > overlap:
                best, overlap = turn, shared
        if best is None:
            return None
        best.done = True
        if self.turns == "pipeline" and best.end is not None:
            self._turns.remove(best)
        return best.number

    async def _end_stream(self, code: str, message: str) -> None:
        """The stream is over: each turn it took that has no frame yet gets a failure frame."""
        for turn in list(self._turns):
            if turn.stream != self._stream:
                continue
            if turn.end is None:  # the learner is still speaking: the turn fails when it ends
                turn.stream = None
            elif self.turns == "server" or turn.done:
                self._turns.remove(turn)
            else:
                await self._fail(turn, code, message)
        self._pre_roll.clear()
        self._pre_roll_kept = 0.0

    async def _fail(self, turn: _Turn, code: str, message: str) -> None:
        if turn in self._turns:
            self._turns.remove(turn)
        turn.done = True
        await self._push_failure(PronunciationFailedFrame(code, message, turn.number))

    async def _push_failure(self, frame: PronunciationFailedFrame) -> None:
        await self.push_frame(frame)
        if self.rtvi:
            data = {
                "type": "pronunciation.failed",
                "learner_turn": frame.learner_turn,
                "code": frame.code,
                "message": frame.message,
            }
            await self.push_frame(RTVIServerMessageFrame(data=data))


class _Mono:
    """PCM16 frames of one rate and any channel count as mono int16 at :data:`RATE`.

    Resampled with soxr (a Pipecat dependency), which takes about 0.2 ms for a 20 ms
    frame where the SDK's numpy resampler takes about 10: this runs on the bot's event loop.
    """

    def __init__(self, rate: int) -> None:
        import soxr

        self.rate = rate
        self._soxr = soxr.ResampleStream(rate, RATE, 1, dtype="int16") if rate != RATE else None

    def feed(self, audio: bytes, channels: int) -> np.ndarray:
        samples = np.frombuffer(audio, "<i2")
        if channels > 1:
            samples = to_int16(samples[: len(samples) // channels * channels].reshape(-1, channels))
        return self._soxr.resample_chunk(samples) if self._soxr is not None else samples

    def flush(self) -> np.ndarray:
        return (
            self._soxr.resample_chunk(np.zeros(0, np.int16), last=True)
            if self._soxr is not None
            else np.zeros(0, np.int16)
        )
