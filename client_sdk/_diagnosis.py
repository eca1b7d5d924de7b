"""Typed diagnosis inside a ``turn.assessed`` assessment (optional fields of ``multipa.v1``).

Servers before the diagnosis send none of these fields: every one has a default,
and :func:`multipa_client._events.to_dict` leaves out what was not sent, so an
old message goes through parse and back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._exceptions import InvalidEvent


@dataclass(frozen=True)
class NBest:
    """One of the likeliest phones heard where a canonical phone was expected."""

    phone: str  # ARPAbet
    ipa: str
    probability: float


@dataclass(frozen=True)
class Pause:
    """A silence between two words; times relative to the turn."""

    after_word: int  # index of the word before it
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Prosody:
    """Fluency and pitch details of a turn, each with a plain-language reading."""

    speaking_rate: float | None = None  # syllables per second, pauses included
    articulation_rate: float | None = None  # syllables per second, pauses left out
    phones_per_second: float | None = None
    pauses: tuple[Pause, ...] = ()
    longest_pause_ms: int = 0
    f0_range_semitones: float | None = None
    f0_median_hz: float | None = None
    monotone: bool = False
    readings: dict[str, str] = field(default_factory=dict)  # speaking_rate, pauses, pitch -> sentence


@dataclass(frozen=True)
class InsertedWord:
    """Closed mode: a word said that is not in the reference."""

    text: str
    start_ms: int
    end_ms: int
    after_word: int  # index of the reference word before it (-1: at the start)


@dataclass(frozen=True)
class Diagnosis:
    """Turn-level findings: ``errors`` (``monotone``), inserted words, prosody details."""

    errors: tuple[str, ...] = ()
    insertions: tuple[InsertedWord, ...] = ()
    prosody: Prosody | None = None


@dataclass(frozen=True)
class FeedbackItem:
    """One ranked thing to work on, with a sentence a chatbot can say as it is."""

    type: str  # mispronunciation, omission, insertion, unexpected_break, missing_break, monotone, stress
    sentence: str
    cost: float  # points of the 0-10 sentence scale it cost (the ranking key)
    word_index: int | None = None
    word: str | None = None
    detail: str | None = None  # mispronunciation: substitution, deletion, insertion or unclear
    phone_index: int | None = None
    expected: str | None = None
    expected_ipa: str | None = None
    heard: str | None = None
    heard_ipa: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None


def _typed(doc: dict[str, Any], key: str, kinds: tuple[type, ...], where: str, default: Any) -> Any:
    value = doc.get(key, default)
    if value is None or value is default:
        return value
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise InvalidEvent(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def parse_nbest(items: Any) -> tuple[NBest, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(
        NBest(str(x.get("phone", "")), str(x.get("ipa", "")), _float(x.get("probability")))
        for x in items
        if isinstance(x, dict)
    )


def parse_diagnosis(doc: Any) -> Diagnosis | None:
    """The ``diagnosis`` object of an assessment (None when the server sent none)."""
    if not isinstance(doc, dict):
        return None
    w = "diagnosis"
    prosody = None
    p = doc.get("prosody")
    if isinstance(p, dict):
        raw = p.get("pauses")
        pauses = tuple(
            Pause(_int(x.get("after_word"), 0), _int(x.get("start_ms"), 0), _int(x.get("end_ms"), 0))
            for x in (raw if isinstance(raw, list) else [])
            if isinstance(x, dict)
        )
        readings = p.get("readings")
        prosody = Prosody(
            _typed(p, "speaking_rate", (float,), "prosody", None), _typed(p, "articulation_rate", (float,), "prosody", None),
            _typed(p, "phones_per_second", (float,), "prosody", None), pauses, _typed(p, "longest_pause_ms", (int,), "prosody", 0),
            _typed(p, "f0_range_semitones", (float,), "prosody", None), _typed(p, "f0_median_hz", (float,), "prosody", None),
            _typed(p, "monotone", (bool,), "prosody", False), {k: v for k, v in (readings if isinstance(readings, dict) else {}).items() if isinstance(v, str)},
        )  # fmt: skip
    raw = doc.get("insertions")
    insertions = tuple(
        InsertedWord(
            str(x.get("text", "")), _int(x.get("start_ms"), 0), _int(x.get("end_ms"), 0), _int(x.get("after_word"), -1)
        )
        for x in (raw if isinstance(raw, list) else [])
        if isinstance(x, dict)
    )
    errors = tuple(e for e in (_typed(doc, "errors", (list,), w, []) or []) if isinstance(e, str))
    return Diagnosis(errors, insertions, prosody)


def parse_feedback(items: Any) -> tuple[FeedbackItem, ...] | None:
    """The ``feedback`` list of an assessment (None when the server sent none)."""
    if not isinstance(items, list):
        return None
    out = []
    for x in items:
        if not isinstance(x, dict) or not isinstance(x.get("type"), str) or not isinstance(x.get("sentence"), str):
            continue
        w = "feedback"
        out.append(
            FeedbackItem(
                x["type"], x["sentence"], _typed(x, "cost", (float,), w, 0.0), _typed(x, "word_index", (int,), w, None), _typed(x, "word", (str,), w, None),
                _typed(x, "detail", (str,), w, None), _typed(x, "phone_index", (int,), w, None), _typed(x, "expected", (str,), w, None),
                _typed(x, "expected_ipa", (str,), w, None), _typed(x, "heard", (str,), w, None), _typed(x, "heard_ipa", (str,), w, None),
                _typed(x, "start_ms", (int,), w, None), _typed(x, "end_ms", (int,), w, None),
            )
        )  # fmt: skip
    return tuple(out)
