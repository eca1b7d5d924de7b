"""The wire protocol of ``/v1/stream``, version ``multipa.v1``: parse, validate, serialise.

Plain code over ``str``/``bytes`` and dataclasses, in the sans-I/O style of
python-websockets: nothing here touches a socket or an event loop. Control
messages (client to server) and events (server to client) are JSON objects with
a ``type`` field in text frames; audio is PCM16 little-endian mono in binary
frames, checked by :mod:`multipa_server.session`. ``docs/protocol.md`` is the
reference for every message, field and code.

Parsing is strict: a field of the wrong type, a value out of range or a field
the message does not have fails with a :class:`ProtocolError`, and nothing
else escapes the parsers whatever the input.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Union

from .exceptions import ProtocolError

PROTOCOL_VERSION = "multipa.v1"
SAMPLE_RATES = (8000, 16000, 24000, 32000, 44100, 48000)
ENCODING = "pcm_s16le"
MAX_REFERENCE_CHARS = 1000
FRAME_MS = 30  # the VAD frame; every VAD duration is rounded down to whole frames


class ErrorCode(str, enum.Enum):
    """Codes of ``error`` events and of the failures the server adds to ``turn.failed``."""

    MALFORMED_JSON = "malformed_json"  # a text frame that is not a UTF-8 JSON document
    UNKNOWN_TYPE = "unknown_type"  # a ``type`` this protocol version does not have
    INVALID_MESSAGE = "invalid_message"  # a known type with missing, unknown or ill-typed fields
    UNSUPPORTED_VERSION = "unsupported_version"  # ``protocol`` names another version
    UNSUPPORTED_SAMPLE_RATE = "unsupported_sample_rate"
    UNSUPPORTED_FORMAT = "unsupported_format"  # an encoding other than pcm_s16le, or channels != 1
    AUDIO_BEFORE_START = "audio_before_start"
    INVALID_STATE = "invalid_state"  # a message that the session's state does not allow
    ODD_LENGTH_PCM = "odd_length_pcm"  # a binary frame that is not whole 16-bit samples
    FRAME_TOO_LARGE = "frame_too_large"
    TOO_FAST = "too_fast"  # realtime=true, but audio arrives faster than real time
    SESSION_TOO_LONG = "session_too_long"
    IDLE_TIMEOUT = "idle_timeout"
    START_TIMEOUT = "start_timeout"  # no session.start within start_timeout_s of connecting
    SHUTTING_DOWN = "shutting_down"
    INTERNAL_ERROR = "internal_error"
    OVERLOADED = "overloaded"  # turn.failed: the worker queue is full
    TOO_MANY_TURNS = "too_many_turns"  # turn.failed: the session's turns in flight are at the limit
    WORKER_CRASHED = "worker_crashed"  # turn.failed: the worker died twice on this turn
    WORKER_UNAVAILABLE = "worker_unavailable"  # turn.failed: no MQTT worker answered, after every re-send
    TIMEOUT = "timeout"  # turn.failed: the assessment took too long
    REFERENCE_MISSING = "reference_missing"  # turn.failed: closed mode, but no turn.reference
    AUDIO_TOO_SHORT = "audio_too_short"  # turn.failed: too short to assess (checked before any worker)
    CLIENT_DISCONNECTED = "client_disconnected"  # turn.failed (logged only): the client left
    SLOW_CONSUMER = "slow_consumer"  # close reason: the client stopped reading its events


class CloseCode(enum.IntEnum):
    """Websocket close codes the server uses; the close reason is the error code, if any."""

    NORMAL = 1000  # after session.end, once every turn has its terminal event
    GOING_AWAY = 1001  # server shutdown, after draining in-flight turns
    POLICY_VIOLATION = 1008  # a fatal protocol error, a limit or the idle timeout
    MESSAGE_TOO_BIG = 1009  # a frame over the size limit
    INTERNAL_ERROR = 1011  # a server bug


class Mode(str, enum.Enum):
    """How turns are assessed."""

    OPEN = "open"  # from the audio alone (a turn.reference still makes that one turn closed)
    CLOSED = "closed"  # against the turn.reference sent for each turn


class TurnEndReason(str, enum.Enum):
    """Why a turn ended."""

    SILENCE = "silence"  # the VAD hang-over passed
    MAX_LENGTH = "max_length"  # forced split at vad.max_turn_ms
    CLIENT = "client"  # turn.end
    SESSION_END = "session_end"  # the session ended (session.ended says why)


class SessionEndReason(str, enum.Enum):
    """Why a session ended."""

    CLIENT = "client"  # session.end
    ERROR = "error"  # a fatal error (the error event before it says which)
    IDLE = "idle"  # no client message for the idle timeout
    SHUTDOWN = "shutdown"  # the server is shutting down
    DISCONNECT = "disconnect"  # the client went away (logged; nobody to tell)


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_MESSAGE, message)


@dataclass(frozen=True)
class VadOptions:
    """Turn segmentation options (``session.start`` field ``vad``)."""

    enabled: bool = True  # false: push-to-talk, turns end on turn.end (or at max_turn_ms) only
    aggressiveness: int = 2  # webrtcvad mode: 0 lets most sound count as speech, 3 is strictest
    onset_ms: int = 240  # a turn starts once 80 % of the frames of this window are speech
    hangover_ms: int = 600  # this much silence after speech ends the turn
    min_turn_ms: int = 300  # speech spanning less (first to last voiced frame) is not a turn
    max_turn_ms: int = 20000  # longer turns are split here (the model's training range)
    pre_roll_ms: int = 200  # audio kept before the first speech frame, so onsets are not clipped
    post_roll_ms: int = 150  # audio kept after the last speech frame

    def __post_init__(self) -> None:
        _range("vad.aggressiveness", self.aggressiveness, 0, 3)
        _range("vad.onset_ms", self.onset_ms, FRAME_MS, 3000)
        _range("vad.hangover_ms", self.hangover_ms, FRAME_MS, 10000)
        _range("vad.min_turn_ms", self.min_turn_ms, 0, 10000)
        _range("vad.max_turn_ms", self.max_turn_ms, 1000, 30000)
        _range("vad.pre_roll_ms", self.pre_roll_ms, 0, 2000)
        _range("vad.post_roll_ms", self.post_roll_ms, 0, self.hangover_ms)
        if self.pre_roll_ms + self.min_turn_ms + self.post_roll_ms >= self.max_turn_ms:
            raise _invalid("vad.max_turn_ms must exceed pre_roll_ms + min_turn_ms + post_roll_ms")


def _range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise _invalid(f"{name} must be between {low} and {high}, got {value}")


# --- client messages ------------------------------------------------------------------


@dataclass
class SessionStart:
    """Opens the session: the audio format and the session's options."""

    type: ClassVar[str] = "session.start"
    sample_rate: int
    encoding: str = ENCODING
    channels: int = 1
    mode: Mode = Mode.OPEN
    vad: VadOptions = field(default_factory=VadOptions)
    realtime: bool = True  # true: a live source, paced at real time (checked)
    metadata: dict[str, Any] = field(default_factory=dict)  # free, logged
    protocol: str = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if self.protocol != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol {self.protocol!r} is not supported; this server speaks {PROTOCOL_VERSION}",
            )
        if self.sample_rate not in SAMPLE_RATES:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_SAMPLE_RATE,
                f"sample_rate {self.sample_rate} is not supported; use one of {', '.join(map(str, SAMPLE_RATES))}",
            )
        if self.encoding != ENCODING or self.channels != 1:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_FORMAT,
                f"audio must be {ENCODING} with 1 channel, got {self.encoding} with {self.channels}",
            )


@dataclass
class TurnReference:
    """The sentence the learner is expected to say in the current or next turn."""

    type: ClassVar[str] = "turn.reference"
    text: str

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise _invalid("turn.reference text is empty")
        if len(self.text) > MAX_REFERENCE_CHARS:
            raise _invalid(f"turn.reference text is longer than {MAX_REFERENCE_CHARS} characters")
        from multipa_core.asr import normalize_word  # the words the pipeline scores, found its way

        if not any(normalize_word(token) for token in self.text.split()):
            raise _invalid(
                "turn.reference text has no word that can be scored (letters a-z or digits); emoji, punctuation and other scripts are not assessed"
            )


@dataclass
class TurnEnd:
    """Ends the turn in progress now (push-to-talk), without waiting for the hang-over."""

    type: ClassVar[str] = "turn.end"


@dataclass
class SessionEnd:
    """No more audio: finish the open turn, deliver every result, then close."""

    type: ClassVar[str] = "session.end"


@dataclass
class Ping:
    """Asks for a ``pong`` carrying the same ``id``."""

    type: ClassVar[str] = "ping"
    id: Union[str, None] = None


ClientMessage = Union[SessionStart, TurnReference, TurnEnd, SessionEnd, Ping]
CLIENT_MESSAGES: dict[str, type] = {c.type: c for c in (SessionStart, TurnReference, TurnEnd, SessionEnd, Ping)}

# --- server events --------------------------------------------------------------------


@dataclass
class SessionStarted:
    """The session is open; echoes the effective options and the server's limits."""

    type: ClassVar[str] = "session.started"
    session_id: str
    sample_rate: int
    mode: Mode
    realtime: bool
    vad: VadOptions
    limits: dict[str, float]
    protocol: str = PROTOCOL_VERSION


@dataclass
class TurnStarted:
    """Speech was detected (or push-to-talk audio arrived): a turn is open."""

    type: ClassVar[str] = "turn.started"
    turn_id: int
    start_ms: int  # stream-relative, pre-roll included


@dataclass
class TurnEnded:
    """The turn's audio is complete and queued for assessment."""

    type: ClassVar[str] = "turn.ended"
    turn_id: int
    start_ms: int
    end_ms: int
    reason: TurnEndReason


@dataclass
class TurnAssessed:
    """A turn's assessment (``multipa assess --json``) and where the time went."""

    type: ClassVar[str] = "turn.assessed"
    turn_id: int
    start_ms: int
    end_ms: int
    assessment: dict[str, Any]
    latency_ms: dict[str, float]  # queue, assess, total (turn.ended to this event)


@dataclass
class TurnFailed:
    """A turn that got no assessment, and why."""

    type: ClassVar[str] = "turn.failed"
    turn_id: int
    start_ms: int
    end_ms: int
    code: str
    message: str


@dataclass
class SessionEnded:
    """The session's last event: a summary."""

    type: ClassVar[str] = "session.ended"
    reason: SessionEndReason
    turns_started: int
    turns_assessed: int
    turns_failed: int
    audio_ms: int  # audio received
    failures: dict[str, int] = field(default_factory=dict)  # code -> turns


@dataclass
class Error:
    """A client mistake or a server condition; ``fatal`` errors end the session."""

    type: ClassVar[str] = "error"
    code: str
    message: str
    fatal: bool = False


@dataclass
class Pong:
    """The answer to ``ping``."""

    type: ClassVar[str] = "pong"
    id: Union[str, None] = None


ServerEvent = Union[SessionStarted, TurnStarted, TurnEnded, TurnAssessed, TurnFailed, SessionEnded, Error, Pong]
SERVER_EVENTS: dict[str, type] = {
    c.type: c for c in (SessionStarted, TurnStarted, TurnEnded, TurnAssessed, TurnFailed, SessionEnded, Error, Pong)
}

# --- bytes <-> dataclasses ----------------------------------------------------------


def parse_client_message(data: str | bytes) -> ClientMessage:
    """Parse one text frame from a client.

    Raises:
        ProtocolError: ``malformed_json``, ``unknown_type``, ``invalid_message`` or a
            ``session.start`` code (``unsupported_sample_rate``, ...); its
            ``message_type`` names the type when it was readable.
    """
    return typing.cast(ClientMessage, _parse(data, CLIENT_MESSAGES))


def parse_event(data: str | bytes) -> ServerEvent:
    """Parse one server event (for clients and tests); strict like :func:`parse_client_message`."""
    return typing.cast(ServerEvent, _parse(data, SERVER_EVENTS))


def serialize(message: ClientMessage | ServerEvent) -> str:
    """One client message or server event as a JSON text frame."""
    body = {"type": message.type}
    body.update({f.name: _encode(getattr(message, f.name)) for f in fields(message)})
    # ASCII escapes: a lone surrogate a client sent (say, in a ping id) cannot break UTF-8 encoding
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, VadOptions):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a float")
    return value


def _parse(data: str | bytes, registry: dict[str, type]) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError, TypeError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ProtocolError(
            ErrorCode.MALFORMED_JSON, f"a text frame must hold one JSON object ({type(exc).__name__})"
        ) from None
    if not isinstance(doc, dict):
        raise _invalid("a message must be a JSON object")
    kind = doc.get("type")
    if not isinstance(kind, str):
        raise _invalid("a message needs a string field 'type'")
    cls = registry.get(kind)
    if cls is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {kind[:64]!r}; known: {', '.join(registry)}",
            message_type=kind,
        )
    try:
        return _build(cls, {k: v for k, v in doc.items() if k != "type"}, kind)
    except ProtocolError as exc:
        exc.message_type = kind
        raise


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, doc: dict[str, Any], where: str) -> Any:
    hints = _hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(k for k in doc if k not in names)
    if unknown:
        raise _invalid(f"{where}: unknown field {unknown[0][:64]!r}")
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in doc:
            values[f.name] = _decode(hints[f.name], doc[f.name], f"{where}.{f.name}")
        elif f.default is MISSING and f.default_factory is MISSING:
            raise _invalid(f"{where}: missing field {f.name!r}")
    return cls(**values)


def _decode(hint: Any, value: Any, where: str) -> Any:
    """Check one JSON value against a field's type; the only types our messages use."""
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return _decode(inner, value, where)
    if origin is dict:
        _, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise _invalid(f"{where} must be an object")
        return {k: _decode(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _invalid(f"{where} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(f"{where} must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid(f"{where} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _invalid(f"{where} must be a string")
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise _invalid(f"{where} must be one of {', '.join(str(m.value) for m in hint)}") from None
    if hint is VadOptions:
        if not isinstance(value, dict):
            raise _invalid(f"{where} must be an object")
        return _build(VadOptions, value, where)
    raise TypeError(f"no decoder for {hint!r}")  # a programming error, never input-dependent
