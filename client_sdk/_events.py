"""Typed server events of ``multipa.v1`` (``docs/protocol.md``), parsed leniently.

The server is strict about what it reads; a client must be lenient about what
it is sent, because the protocol may add optional fields and event types within
a version. So fields the SDK does not know are ignored, an event type it does
not know becomes an :class:`UnknownEvent` (never an error), and only a known
event with a missing or ill-typed field raises :class:`InvalidEvent`.

Score aspects are lenient too: a sentence or word score this SDK has no field
for (a newer server's aspect) is kept, by its wire name, in ``extra``; the
``scores`` property gives every aspect of a word or a sentence in one mapping.

Times (``start_ms``, ``end_ms``) of turn events are milliseconds of the
client's stream from its first sample; word and phone times inside an
:class:`Assessment` are relative to the turn's start.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Callable, ClassVar, Union

from ._diagnosis import Diagnosis, FeedbackItem, NBest, parse_diagnosis, parse_feedback, parse_nbest
from ._exceptions import InvalidEvent

# codes the SDK itself puts in turn.failed (the server's codes are in docs/protocol.md)
CONNECTION_LOST = "connection_lost"  # the connection dropped and the turn's audio could not be assessed again


@dataclass(frozen=True)
class VadOptions:
    """Turn segmentation (``session.start`` field ``vad``); the server's defaults."""

    enabled: bool = True  # false: push-to-talk, turns end on end_turn() only
    aggressiveness: int = 2  # webrtcvad mode, 0 to 3 (3 is strictest about what is speech)
    onset_ms: int = 240  # a turn opens once 80 % of this window is speech
    hangover_ms: int = 600  # this much silence ends the turn
    min_turn_ms: int = 300  # shorter speech is a blip, not a turn
    max_turn_ms: int = 20000  # longer turns are split here
    pre_roll_ms: int = 200  # audio kept before the first speech frame
    post_roll_ms: int = 150  # audio kept after the last speech frame


@dataclass(frozen=True)
class Phone:
    """One phone of a word (ARPAbet with stress digit); times relative to the turn."""

    phone: str
    start_ms: int
    end_ms: int
    probability: float  # the aligner's confidence that this phone was said (0..1)
    ipa: str | None = None  # the phone in IPA (None: an older server)
    heard: str | None = None  # the phone heard in its place; None for a deletion (error "deletion") or no diagnosis
    heard_ipa: str | None = None
    error: str | None = None  # none, substitution, deletion (None: not diagnosed)
    nbest: tuple[NBest, ...] = ()  # the likeliest phones there, best first


@dataclass(frozen=True)
class Word:
    """Scores of one target word, 0 to 10; times relative to the turn."""

    text: str
    start_ms: int
    end_ms: int
    accuracy: float
    stress: float
    total: float
    needs_improvement: bool  # the server's mark: well below typical scores
    phones: tuple[Phone, ...] = ()
    ipa: str | None = None  # the canonical pronunciation in IPA
    errors: tuple[str, ...] | None = (
        None  # error types: mispronunciation, omission, unexpected_break, missing_break (None: no diagnosis)
    )
    inserted_phones: tuple[dict[str, Any], ...] = ()  # phones heard but not in the word: position, phone, ipa
    stress_check: dict[str, Any] | None = None  # expected_syllable, heard_syllable, ok; None when it cannot be told
    extra: dict[str, float] = field(default_factory=dict)  # aspect scores this SDK has no field for (a newer server)

    @property
    def scores(self) -> dict[str, float]:
        """Every aspect score of the word by its wire name: accuracy, stress, total and those in ``extra``."""
        return {"accuracy": self.accuracy, "stress": self.stress, "total": self.total, **self.extra}


@dataclass(frozen=True)
class SentenceScores:
    """Sentence scores, 0 to 10; ``completeness`` only for closed turns."""

    accuracy: float
    fluency: float
    prosody: float
    total: float
    completeness: float | None = None
    extra: dict[str, float] = field(default_factory=dict)  # aspect scores this SDK has no field for (a newer server)

    @property
    def scores(self) -> dict[str, float]:
        """Every aspect score by its wire name: the four (five when closed) above and those in ``extra``."""
        known = {"accuracy": self.accuracy, "fluency": self.fluency, "prosody": self.prosody, "total": self.total}
        if self.completeness is not None:
            known["completeness"] = self.completeness
        return {**known, **self.extra}


@dataclass(frozen=True)
class Assessment:
    """What ``multipa assess --json`` gives for a turn's audio."""

    mode: str  # "open" or "closed"
    transcript: str  # what was recognized
    target_transcript: str  # what the learner meant (or the reference in closed mode)
    sentence: SentenceScores
    words: tuple[Word, ...]
    duration_ms: int
    timings_ms: dict[str, float] = field(default_factory=dict)  # worker stage -> milliseconds
    diagnosis: Diagnosis | None = None  # turn-level errors, inserted words, prosody (None: an older server)
    feedback: tuple[FeedbackItem, ...] | None = None  # at most three ranked items; empty when nothing needs work


@dataclass(frozen=True)
class Latency:
    """Where a turn's time went on the server, in milliseconds."""

    queue: float  # waiting for a worker
    assess: float  # on the worker
    total: float  # from turn.ended to turn.assessed
    head_start: float | None = None  # assessed speculatively: it began this long before turn.ended


@dataclass(frozen=True)
class SessionStarted:
    """The session is open: the effective options and the server's limits."""

    type: ClassVar[str] = "session.started"
    session_id: str
    sample_rate: int
    mode: str
    realtime: bool
    vad: VadOptions
    limits: dict[str, float]
    protocol: str = "multipa.v1"


@dataclass(frozen=True)
class TurnStarted:
    """Speech was detected: a turn is open."""

    type: ClassVar[str] = "turn.started"
    turn_id: int
    start_ms: int


@dataclass(frozen=True)
class TurnEnded:
    """The turn's audio is complete and queued; ``reason``: silence, max_length, client, session_end."""

    type: ClassVar[str] = "turn.ended"
    turn_id: int
    start_ms: int
    end_ms: int
    reason: str


@dataclass(frozen=True)
class TurnAssessed:
    """A turn's feedback."""

    type: ClassVar[str] = "turn.assessed"
    turn_id: int
    start_ms: int
    end_ms: int
    assessment: Assessment
    latency_ms: Latency


@dataclass(frozen=True)
class TurnFailed:
    """A turn that gets no assessment; ``code`` is machine-readable, ``message`` for people."""

    type: ClassVar[str] = "turn.failed"
    turn_id: int
    start_ms: int
    end_ms: int
    code: str
    message: str


@dataclass(frozen=True)
class SessionEnded:
    """The last event of a stream: a summary."""

    type: ClassVar[str] = "session.ended"
    reason: str  # client, error, idle, shutdown
    turns_started: int
    turns_assessed: int
    turns_failed: int
    audio_ms: int
    failures: dict[str, int] = field(default_factory=dict)  # code -> turns


@dataclass(frozen=True)
class Error:
    """A rejected message (``fatal`` false) or the reason the session ends (``fatal`` true)."""

    type: ClassVar[str] = "error"
    code: str
    message: str
    fatal: bool = False


@dataclass(frozen=True)
class Pong:
    """The answer to a ping."""

    type: ClassVar[str] = "pong"
    id: str | None = None


@dataclass(frozen=True)
class Reconnected:
    """Not a server event: the SDK resumed the stream in a new session after a drop.

    The audio from ``resumed_from_ms`` (the start of the earliest turn without its
    result) was sent again; turns that already had their result were not.
    """

    type: ClassVar[str] = "client.reconnected"
    attempt: int  # 1 for the first try after this drop
    session_id: str  # the new server session
    resumed_from_ms: int  # stream time the new session starts at
    resent_ms: int  # audio sent again (what the server had not answered for)
    cause: str  # why the previous connection ended


@dataclass(frozen=True)
class UnknownEvent:
    """An event type this SDK version does not know (a newer server); ``data`` is the whole message."""

    type: str
    data: dict[str, Any]


Event = Union[
    SessionStarted,
    TurnStarted,
    TurnEnded,
    TurnAssessed,
    TurnFailed,
    SessionEnded,
    Error,
    Pong,
    Reconnected,
    UnknownEvent,
]
TurnResult = Union[TurnAssessed, TurnFailed]


# --- parsing ---------------------------------------------------------------------------


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in doc or doc[key] is None and default is not ...:
        if default is ...:
            raise InvalidEvent(f"{where}: missing field {key!r}")
        return default
    value = doc[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise InvalidEvent(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _obj(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    return _get(doc, key, dict, where)  # type: ignore[no-any-return]


def _numbers(value: dict[str, Any], where: str) -> dict[str, float]:
    return {
        k: _get(value, k, float, where)
        for k in value
        if isinstance(value[k], (int, float)) and not isinstance(value[k], bool)
    }


_WORD_NUMBERS = ("start_ms", "end_ms", "accuracy", "stress", "total")  # a word's number fields that have a field here
_SENTENCE_ASPECTS = ("accuracy", "fluency", "prosody", "total", "completeness")


def _extra_scores(doc: dict[str, Any], known: tuple[str, ...]) -> dict[str, float]:
    """The number fields of a word or sentence object that are not in ``known``: aspects of a
    newer server (``docs/protocol.md``: every other number there is an aspect score)."""
    return {
        k: float(v)
        for k, v in doc.items()
        if k not in known and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _phone(doc: dict[str, Any]) -> Phone:
    w = "phone"
    return Phone(
        _get(doc, "phone", str, w), _get(doc, "start_ms", int, w), _get(doc, "end_ms", int, w), _get(doc, "probability", float, w),
        _get(doc, "ipa", str, w, None), _get(doc, "heard", str, w, None), _get(doc, "heard_ipa", str, w, None), _get(doc, "error", str, w, None),
        parse_nbest(doc.get("nbest")),
    )  # fmt: skip


def _word(doc: dict[str, Any]) -> Word:
    w = "word"
    phones = tuple(_phone(p) for p in _get(doc, "phones", list, w, []) if isinstance(p, dict))
    return Word(
        _get(doc, "text", str, w), _get(doc, "start_ms", int, w), _get(doc, "end_ms", int, w),
        _get(doc, "accuracy", float, w), _get(doc, "stress", float, w), _get(doc, "total", float, w),
        _get(doc, "needs_improvement", bool, w, False), phones, _get(doc, "ipa", str, w, None),
        tuple(e for e in doc["errors"] if isinstance(e, str)) if isinstance(doc.get("errors"), list) else None,
        tuple(p for p in _get(doc, "inserted_phones", list, w, []) if isinstance(p, dict)), _get(doc, "stress_check", dict, w, None),
        _extra_scores(doc, _WORD_NUMBERS),
    )  # fmt: skip


def parse_assessment(doc: dict[str, Any]) -> Assessment:
    """An ``assessment`` object (also what ``multipa assess --json`` prints)."""
    w = "assessment"
    s = _obj(doc, "sentence", w)
    sentence = SentenceScores(
        _get(s, "accuracy", float, "sentence"),
        _get(s, "fluency", float, "sentence"),
        _get(s, "prosody", float, "sentence"),
        _get(s, "total", float, "sentence"),
        _get(s, "completeness", float, "sentence", None),
        _extra_scores(s, _SENTENCE_ASPECTS),
    )
    words = tuple(_word(x) for x in _get(doc, "words", list, w) if isinstance(x, dict))
    return Assessment(_get(doc, "mode", str, w), _get(doc, "transcript", str, w), _get(doc, "target_transcript", str, w), sentence, words, _get(doc, "duration_ms", int, w), _numbers(_get(doc, "timings_ms", dict, w, {}), "timings_ms"),
        parse_diagnosis(doc.get("diagnosis")), parse_feedback(doc.get("feedback")),
    )  # fmt: skip


def _session_started(d: dict[str, Any]) -> SessionStarted:
    w = "session.started"
    vad_doc = _obj(d, "vad", w)
    vad = VadOptions(**{f.name: _get(vad_doc, f.name, type(f.default), "vad", f.default) for f in fields(VadOptions)})
    return SessionStarted(
        _get(d, "session_id", str, w),
        _get(d, "sample_rate", int, w),
        _get(d, "mode", str, w),
        _get(d, "realtime", bool, w),
        vad,
        _numbers(_obj(d, "limits", w), "limits"),
        _get(d, "protocol", str, w, "multipa.v1"),
    )


def _turn_assessed(d: dict[str, Any]) -> TurnAssessed:
    w = "turn.assessed"
    lat = _obj(d, "latency_ms", w)
    latency = Latency(
        _get(lat, "queue", float, "latency_ms", 0.0),
        _get(lat, "assess", float, "latency_ms", 0.0),
        _get(lat, "total", float, "latency_ms", 0.0),
        _get(lat, "head_start", (int, float), "latency_ms", None),
    )
    return TurnAssessed(
        _get(d, "turn_id", int, w),
        _get(d, "start_ms", int, w),
        _get(d, "end_ms", int, w),
        parse_assessment(_obj(d, "assessment", w)),
        latency,
    )


def _session_ended(d: dict[str, Any]) -> SessionEnded:
    w = "session.ended"
    failures = {k: v for k, v in _get(d, "failures", dict, w, {}).items() if isinstance(v, int)}
    return SessionEnded(
        _get(d, "reason", str, w),
        _get(d, "turns_started", int, w),
        _get(d, "turns_assessed", int, w),
        _get(d, "turns_failed", int, w),
        _get(d, "audio_ms", int, w),
        failures,
    )


_PARSERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "session.started": _session_started,
    "turn.started": lambda d: TurnStarted(
        _get(d, "turn_id", int, "turn.started"), _get(d, "start_ms", int, "turn.started")
    ),
    "turn.ended": lambda d: TurnEnded(
        _get(d, "turn_id", int, "turn.ended"),
        _get(d, "start_ms", int, "turn.ended"),
        _get(d, "end_ms", int, "turn.ended"),
        _get(d, "reason", str, "turn.ended"),
    ),
    "turn.assessed": _turn_assessed,
    "turn.failed": lambda d: TurnFailed(
        _get(d, "turn_id", int, "turn.failed"),
        _get(d, "start_ms", int, "turn.failed"),
        _get(d, "end_ms", int, "turn.failed"),
        _get(d, "code", str, "turn.failed"),
        _get(d, "message", str, "turn.failed", ""),
    ),
    "session.ended": _session_ended,
    "error": lambda d: Error(
        _get(d, "code", str, "error"), _get(d, "message", str, "error", ""), _get(d, "fatal", bool, "error", False)
    ),
    "pong": lambda d: Pong(_get(d, "id", str, "pong", None)),
}


def parse_event(data: str | bytes | dict[str, Any]) -> Event:
    """One server event from its JSON text (or the decoded object).

    Raises:
        InvalidEvent: not a JSON object with a string ``type``, or a known type
            with a missing or ill-typed field. An unknown type is not an error.
    """
    if isinstance(data, dict):
        doc = data
    else:
        try:
            doc = json.loads(data)
        except (ValueError, TypeError) as exc:
            raise InvalidEvent(f"a server message is not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise InvalidEvent("a server message must be a JSON object with a string 'type'")
    parser = _PARSERS.get(doc["type"])
    if parser is None:
        return UnknownEvent(doc["type"], doc)
    return parser(doc)


def to_dict(event: Event) -> dict[str, Any]:
    """An event as the JSON object of the protocol (tuples become lists; ``type`` first)."""
    if isinstance(event, UnknownEvent):
        return dict(event.data)
    assert is_dataclass(event)
    return {"type": event.type, **_plain(asdict(event))}


_ABSENT_WHEN_NONE = ("completeness", "head_start", "ipa", "diagnosis", "feedback", "prosody")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        drop = {k for k in _ABSENT_WHEN_NONE if k in value and value[k] is None}
        if "probability" in value and "error" in value and value["error"] is None:
            drop |= {"heard", "heard_ipa", "error", "nbest"}  # a phone from a server without the diagnosis
        if "needs_improvement" in value and value.get("errors") is None:
            drop |= {"errors", "inserted_phones", "stress_check"}
        extra = value.get("extra") if "total" in value else None  # a word's or a sentence's unknown aspects ...
        if isinstance(extra, dict):
            drop.add("extra")
        plain = {k: _plain(v) for k, v in value.items() if k not in drop}
        return {**plain, **extra} if isinstance(extra, dict) else plain  # ... go back beside the known ones
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
