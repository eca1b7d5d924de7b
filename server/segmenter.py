"""Cuts a client's audio stream into learner turns with webrtcvad.

Pure: PCM16 bytes in, turn events out; no I/O and no clock. The stream's own
sample count is the time base, so every time is stream-relative and a stream
fed in any chunking gives the same turns.

With ``vad.enabled`` the stream is classified in 30 ms frames (resampled to
16 kHz for webrtcvad). A turn opens when 80 % of the frames of the onset window
are speech; it starts ``pre_roll_ms`` before the first of them (never before the
previous turn's end). It becomes a turn, announced by :class:`SegmentStarted`,
once its speech spans ``min_turn_ms``; speech that stops sooner is a blip and
vanishes without an event. It ends ``post_roll_ms`` after the last speech frame
once ``hangover_ms`` of silence has passed, is split at ``max_turn_ms`` (the
next turn goes on from the split without pre-roll), or ends at once on
:meth:`Segmenter.end_turn` and :meth:`Segmenter.flush`.

With ``vad.enabled`` false (push-to-talk) a turn opens with the first audio
after the previous one and ends only on :meth:`Segmenter.end_turn`,
:meth:`Segmenter.flush` or at ``max_turn_ms``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from math import gcd
from typing import Protocol, Union

import numpy as np

from .exceptions import ConfigError
from .protocol import FRAME_MS, TurnEndReason, VadOptions

VAD_RATE = 16_000
ONSET_RATIO = 0.8  # share of speech frames in the onset window that opens a turn


@dataclass(frozen=True)
class SegmentStarted:
    """A turn is open (it will end in exactly one :class:`SegmentEnded`)."""

    index: int  # 1, 2, ... in stream order
    start_ms: int  # stream-relative, pre-roll included


@dataclass(frozen=True)
class SegmentEnded:
    """A turn is complete."""

    index: int
    start_ms: int
    end_ms: int
    reason: TurnEndReason
    audio: bytes  # PCM16 little-endian mono at the stream's rate, start to end


@dataclass(frozen=True)
class SegmentPaused:
    """The learner has stopped: if the silence holds, the turn ends exactly here.

    Emitted once per pause of an announced VAD turn, ``post_roll_ms`` into the
    silence, that is ``hangover_ms - post_roll_ms`` before the :class:`SegmentEnded`
    it predicts. ``audio`` is what that event will carry, so a turn can be assessed
    while the hang-over runs. Speech resuming (or a split, ``turn.end``, the end of
    the stream) makes it stale: the :class:`SegmentEnded` that comes then has another
    ``end_ms``.
    """

    index: int
    start_ms: int
    end_ms: int
    audio: bytes


SegmentEvent = Union[SegmentStarted, SegmentPaused, SegmentEnded]


@dataclass
class _Turn:
    start: int  # first sample, pre-roll included
    speech_start: int  # first sample of the first speech frame
    last_voiced_end: int  # sample after the last speech frame
    index: int = 0  # 0 until the turn is announced
    paused_at: int = -1  # last_voiced_end of the last SegmentPaused


class Segmenter:
    """Turn segmentation of one stream.

    Args:
        sample_rate: the stream's rate; one of :data:`multipa_server.protocol.SAMPLE_RATES`.
        options: the session's VAD options.

    Raises:
        ConfigError: webrtcvad is not installed.
    """

    def __init__(self, sample_rate: int, options: VadOptions | None = None) -> None:
        self.rate = sample_rate
        self.options = options or VadOptions()
        self._frame = sample_rate * FRAME_MS // 1000  # whole samples at every supported rate
        self._vad = _make_vad(self.options.aggressiveness) if self.options.enabled else None
        self._resampler = _Resampler(sample_rate, VAD_RATE) if sample_rate != VAD_RATE else None
        self._window: deque[bool] = deque(maxlen=max(1, self.options.onset_ms // FRAME_MS))
        self._buf = bytearray()  # PCM16 from sample _buf_start on
        self._buf_start = 0
        self._received = 0  # samples received
        self._analysed = 0  # samples classified by the VAD (whole frames)
        self._last_end = 0  # end of the previous turn: pre-roll never reaches into it
        self._count = 0  # turns announced
        self._open: _Turn | None = None

    @property
    def received_ms(self) -> int:
        """Audio received so far."""
        return self._ms(self._received)

    @property
    def turn_open(self) -> bool:
        """Whether a turn has been announced and not yet ended."""
        return self._open is not None and self._open.index > 0

    def feed(self, pcm: bytes) -> list[SegmentEvent]:
        """Take the next chunk of the stream (whole 16-bit samples, any length)."""
        if len(pcm) % 2:
            raise ValueError("PCM16 chunks must hold whole samples")
        events: list[SegmentEvent] = []
        if not pcm:
            return events
        if self._vad is None:
            if self._open is None:
                self._open = _Turn(self._received, self._received, self._received)
                events.append(self._announce(self._open))
            self._append(pcm)
            self._split_long(events, self._received)
        else:
            self._append(pcm)
            while self._analysed + self._frame <= self._received:
                self._step(self._classify(self._analysed), self._analysed + self._frame, events)
                self._analysed += self._frame
        self._trim()
        return events

    def end_turn(self, reason: TurnEndReason = TurnEndReason.CLIENT) -> list[SegmentEvent]:
        """End the turn in progress now (``turn.end``): no hang-over, no minimum length.

        A turn whose onset was seen but that was not yet announced is announced and
        ended; with no turn in progress nothing happens.
        """
        if self._open is None:
            return []
        events = self._split_tail()
        if self._open is None:
            return events
        if not self._open.index:
            events.append(self._announce(self._open))
        events.append(self._close(self._open, self._received, reason))
        return events

    def flush(self, reason: TurnEndReason = TurnEndReason.SESSION_END) -> list[SegmentEvent]:
        """End of stream: end an announced turn; an unannounced one is a blip and dropped."""
        events = self._split_tail() if self._open is not None else []
        if self._open is None or not self._open.index:
            self._open = None
            return events
        return [*events, self._close(self._open, self._received, reason)]

    # --- internals ----------------------------------------------------------------

    def _split_tail(self) -> list[SegmentEvent]:
        """Split at ``max_turn_ms`` audio received past the last whole VAD frame.

        The stub left after such a split is shorter than a frame: it is dropped,
        not made a turn of its own.
        """
        events: list[SegmentEvent] = []
        self._split_long(events, self._received)
        if events and self._open is not None and not self._open.index:
            self._open = None
        return events

    def _samples(self, ms: int) -> int:
        return ms * self.rate // 1000

    def _ms(self, samples: int) -> int:
        # floored, not rounded: two rounded ends of a turn of exactly max_turn_ms could be 1 ms further apart
        return samples * 1000 // self.rate

    def _append(self, pcm: bytes) -> None:
        self._buf += pcm
        self._received += len(pcm) // 2

    def _classify(self, start: int) -> bool:
        assert self._vad is not None
        offset = (start - self._buf_start) * 2
        frame = bytes(self._buf[offset : offset + self._frame * 2])
        if self._resampler is not None:
            frame = self._resampler(frame)
        return bool(self._vad.is_speech(frame, VAD_RATE))

    def _step(self, voiced: bool, end: int, events: list[SegmentEvent]) -> None:
        """Advance by one classified frame ending at sample ``end``."""
        o = self.options
        turn = self._open
        if turn is None:
            self._window.append(voiced)
            size = len(self._window)
            if size < self._window.maxlen or sum(self._window) < ONSET_RATIO * size:  # type: ignore[operator]
                return
            flags = list(self._window)
            first = flags.index(True)
            last = size - 1 - flags[::-1].index(True)
            speech_start = end - (size - first) * self._frame
            start = max(speech_start - self._samples(o.pre_roll_ms), self._last_end, 0)
            turn = self._open = _Turn(start, speech_start, end - (size - 1 - last) * self._frame)
            self._window.clear()
        elif voiced:
            turn.last_voiced_end = end
        if not turn.index and turn.last_voiced_end - turn.speech_start >= self._samples(o.min_turn_ms):
            events.append(self._announce(turn))
        silence, post_roll = end - turn.last_voiced_end, self._samples(o.post_roll_ms)
        # the post-roll never takes a turn past max_turn_ms (a turn off the frame grid can cross it here)
        stop = min(turn.last_voiced_end + post_roll, turn.start + self._samples(o.max_turn_ms))
        if (
            turn.index
            and turn.paused_at != turn.last_voiced_end
            and post_roll <= silence < self._samples(o.hangover_ms)
        ):
            turn.paused_at = turn.last_voiced_end
            events.append(self._pause(turn, stop))
        if end - turn.last_voiced_end >= self._samples(o.hangover_ms):
            stop = min(stop, end)
            if turn.index:
                events.append(self._close(turn, stop, TurnEndReason.SILENCE))
            else:
                self._open = None  # a blip
            return
        self._split_long(events, end)

    def _split_long(self, events: list[SegmentEvent], end: int) -> None:
        turn = self._open
        limit = self._samples(self.options.max_turn_ms)
        while turn is not None and end - turn.start >= limit:
            split = turn.start + limit
            if not turn.index:
                self._open = None  # never reached the minimum length within the maximum
                return
            events.append(self._close(turn, split, TurnEndReason.MAX_LENGTH))
            if end <= split:
                return
            # speech goes on: the next turn starts at the split, contiguous, without pre-roll
            turn = self._open = _Turn(split, split, max(turn.last_voiced_end, split))
            if self._vad is None:
                events.append(self._announce(turn))

    def _announce(self, turn: _Turn) -> SegmentStarted:
        self._count += 1
        turn.index = self._count
        return SegmentStarted(turn.index, self._ms(turn.start))

    def _pause(self, turn: _Turn, end: int) -> SegmentPaused:
        return SegmentPaused(turn.index, self._ms(turn.start), self._ms(end), self._audio(turn.start, end))

    def _close(self, turn: _Turn, end: int, reason: TurnEndReason) -> SegmentEnded:
        audio = self._audio(turn.start, end)
        self._open = None
        self._last_end = end
        self._window.clear()
        return SegmentEnded(turn.index, self._ms(turn.start), self._ms(end), reason, audio)

    def _audio(self, start: int, end: int) -> bytes:
        a, b = (start - self._buf_start) * 2, (end - self._buf_start) * 2
        assert a >= 0 and b <= len(self._buf), "turn audio was trimmed"
        return bytes(self._buf[a:b])

    def _trim(self) -> None:
        if self._open is not None:
            keep = self._open.start
        else:  # what a turn opening on the next frames may reach back to
            reach = (self._window.maxlen or 1) * self._frame + self._samples(self.options.pre_roll_ms) + self._frame
            keep = max(self._last_end, self._analysed - reach, 0)
        if self._vad is not None:  # a turn.end can close past the last whole frame: that frame is still to classify
            keep = min(keep, self._analysed)
        if keep - self._buf_start > self.rate:  # trim in chunks of a second or more: cheap
            del self._buf[: (keep - self._buf_start) * 2]
            self._buf_start = keep


class _Resampler:
    """PCM16 frames to another rate: scipy's polyphase filter, designed once, not per frame."""

    def __init__(self, source: int, target: int) -> None:
        from scipy.signal import firwin

        g = gcd(source, target)
        self.up, self.down = target // g, source // g
        longest = max(self.up, self.down)
        # the filter resample_poly designs by default, so this matches multipa_core.audio.resample
        self.taps = firwin(2 * 10 * longest + 1, 1.0 / longest, window=("kaiser", 5.0))

    def __call__(self, frame: bytes) -> bytes:
        from scipy.signal import resample_poly

        samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        out = resample_poly(samples, self.up, self.down, window=self.taps)
        return bytes(np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes())


class _Vad(Protocol):
    def is_speech(self, buf: bytes, sample_rate: int) -> bool: ...


def _make_vad(aggressiveness: int) -> _Vad:
    try:
        import webrtcvad
    except ImportError:
        raise ConfigError(
            "webrtcvad is missing; install the server extra: pip install 'multipa-live[server]'"
        ) from None
    vad: _Vad = webrtcvad.Vad(aggressiveness)
    return vad
