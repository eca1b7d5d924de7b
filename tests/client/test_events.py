"""Event parsing: the real server's recorded messages, unknown types and fields, malformed events."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from multipa_client import (
    InvalidEvent,
    Pong,
    SessionEnded,
    SessionStarted,
    TurnAssessed,
    TurnFailed,
    UnknownEvent,
    VadOptions,
    parse_event,
    to_dict,
)
from multipa_client.testing import Recording


def recorded() -> list[dict]:
    return [line["event"] for line in Recording.load("three_turns").events]


def test_every_recorded_event_parses_and_serialises_back_to_the_same_json():
    events = recorded()
    parsed = [parse_event(json.dumps(e)) for e in events]
    assert [type(p).type for p in parsed] == [e["type"] for e in events]
    # the dataclasses hold every field the real server sends, with the same values
    assert [to_dict(p) for p in parsed] == events


def test_the_recorded_assessment_is_typed_down_to_the_phones():
    assessed = [p for p in map(parse_event, recorded()) if isinstance(p, TurnAssessed)]
    assert [a.turn_id for a in assessed] == [1, 2, 3]
    a = assessed[0].assessment
    assert a.mode == "open" and a.transcript and 0 <= a.sentence.total <= 10 and a.sentence.completeness is None
    assert a.words and all(w.phones and isinstance(w.needs_improvement, bool) for w in a.words)
    assert all(0 <= p.probability <= 1 and p.start_ms <= p.end_ms for w in a.words for p in w.phones)
    lat = assessed[0].latency_ms  # a speculative head start is assessing time spent before the turn ended
    assert lat.total + (lat.head_start or 0.0) >= lat.assess > 0
    started = parse_event(recorded()[0])
    assert (
        isinstance(started, SessionStarted)
        and started.vad == VadOptions()
        and started.limits["max_frame_bytes"] == 131072
    )


def test_closed_mode_completeness_is_kept():
    event = next(e for e in recorded() if e["type"] == "turn.assessed")
    event = {
        **event,
        "assessment": {
            **event["assessment"],
            "mode": "closed",
            "sentence": {**event["assessment"]["sentence"], "completeness": 8.0},
        },
    }
    parsed = parse_event(event)
    assert isinstance(parsed, TurnAssessed) and parsed.assessment.sentence.completeness == 8.0
    assert to_dict(parsed) == event


def test_aspects_the_sdk_does_not_know_are_kept_and_serialised_back():
    """A newer server may score more aspects: the SDK keeps them in ``extra`` and never raises."""
    event = next(e for e in recorded() if e["type"] == "turn.assessed")
    a = event["assessment"]
    words = [{**a["words"][0], "intonation": 6.5, "linking": 9}, *a["words"][1:]]
    event = {**event, "assessment": {**a, "sentence": {**a["sentence"], "rhythm": 7.25}, "words": words}}
    parsed = parse_event(json.dumps(event))
    assert isinstance(parsed, TurnAssessed)
    sentence, word = parsed.assessment.sentence, parsed.assessment.words[0]
    assert sentence.extra == {"rhythm": 7.25} and sentence.completeness is None
    assert sentence.scores == {
        **{k: a["sentence"][k] for k in ("accuracy", "fluency", "prosody", "total")},
        "rhythm": 7.25,
    }
    assert word.extra == {"intonation": 6.5, "linking": 9.0} and parsed.assessment.words[1].extra == {}
    assert word.scores == {"accuracy": word.accuracy, "stress": word.stress, "total": word.total, **word.extra}
    assert to_dict(parsed) == event  # the unknown aspects go back where they came from


def test_a_closed_turns_scores_include_completeness_and_unknown_sentence_numbers_are_aspects():
    event = next(e for e in recorded() if e["type"] == "turn.assessed")
    a = event["assessment"]
    sentence = {**a["sentence"], "completeness": 8.0, "pace": 3, "note": "not a score", "flag": True}
    parsed = parse_event({**event, "assessment": {**a, "mode": "closed", "sentence": sentence}})
    assert isinstance(parsed, TurnAssessed)
    assert parsed.assessment.sentence.extra == {"pace": 3.0}  # numbers only: a string or a boolean is no score
    assert parsed.assessment.sentence.scores["completeness"] == 8.0


def test_an_unknown_event_type_is_passed_through():
    message = {"type": "turn.hint", "turn_id": 2, "text": "slow down"}
    event = parse_event(json.dumps(message))
    assert event == UnknownEvent("turn.hint", message) and to_dict(event) == message


def test_unknown_fields_are_ignored_and_optional_ones_defaulted():
    event = parse_event(
        {
            "type": "turn.failed",
            "turn_id": 2,
            "start_ms": 4000,
            "end_ms": 4200,
            "code": "audio_too_short",
            "message": "short",
            "retry_after_s": 3,
        }
    )
    assert event == TurnFailed(2, 4000, 4200, "audio_too_short", "short")
    assert parse_event('{"type": "pong"}') == Pong(None)
    ended = parse_event(
        {
            "type": "session.ended",
            "reason": "client",
            "turns_started": 0,
            "turns_assessed": 0,
            "turns_failed": 0,
            "audio_ms": 0,
        }
    )
    assert isinstance(ended, SessionEnded) and ended.failures == {}


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1, 2]",
        '{"turn_id": 1}',
        '{"type": "turn.started", "turn_id": 1}',
        '{"type": "turn.started", "turn_id": "1", "start_ms": 0}',
        '{"type": "turn.started", "turn_id": true, "start_ms": 0}',
        '{"type": "error", "code": 5, "message": "x"}',
    ],
)
def test_malformed_events_raise_invalid_event(message):
    with pytest.raises(InvalidEvent):
        parse_event(message)


def test_a_malformed_assessment_says_which_field():
    event = next(e for e in recorded() if e["type"] == "turn.assessed")
    broken = json.loads(json.dumps(event))
    del broken["assessment"]["words"][0]["accuracy"]
    with pytest.raises(InvalidEvent, match="accuracy"):
        parse_event(broken)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
known = st.sampled_from(
    [
        "session.started",
        "turn.started",
        "turn.ended",
        "turn.assessed",
        "turn.failed",
        "session.ended",
        "error",
        "pong",
        "turn.future",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    kind=known,
    fields=st.dictionaries(
        st.sampled_from(
            [
                "turn_id",
                "start_ms",
                "end_ms",
                "reason",
                "code",
                "message",
                "fatal",
                "id",
                "assessment",
                "latency_ms",
                "vad",
                "limits",
                "session_id",
                "sample_rate",
                "mode",
                "realtime",
                "turns_started",
                "turns_assessed",
                "turns_failed",
                "audio_ms",
                "failures",
            ]
        ),
        json_values,
    ),
)
def test_whatever_a_server_sends_parses_or_raises_invalid_event(kind, fields):
    try:
        event = parse_event(json.dumps({"type": kind, **fields}))
    except InvalidEvent:
        return
    assert event.type == kind and json.dumps(to_dict(event))
