"""The wire protocol as pure functions over bytes: parsing, validation, serialisation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from multipa_server import protocol as p
from multipa_server.exceptions import ProtocolError

CODES = {c.value for c in p.ErrorCode}

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def parse(data):
    return p.parse_client_message(data)


def code_of(data) -> str:
    with pytest.raises(ProtocolError) as info:
        parse(data)
    return info.value.code


# --- the documented examples -------------------------------------------------------


def test_session_start_defaults_and_round_trip():
    msg = parse(b'{"type": "session.start", "sample_rate": 48000}')
    assert msg == p.SessionStart(48000)
    assert msg.mode is p.Mode.OPEN and msg.realtime and msg.vad == p.VadOptions()
    assert parse(p.serialize(msg)) == msg


def test_session_start_with_every_field():
    doc = {
        "type": "session.start",
        "protocol": "multipa.v1",
        "sample_rate": 44100,
        "encoding": "pcm_s16le",
        "channels": 1,
        "mode": "closed",
        "realtime": False,
        "vad": {
            "enabled": True,
            "aggressiveness": 3,
            "onset_ms": 150,
            "hangover_ms": 900,
            "min_turn_ms": 400,
            "max_turn_ms": 15000,
            "pre_roll_ms": 300,
            "post_roll_ms": 100,
        },
        "metadata": {"learner": "x", "nested": [1, {"a": None}]},
    }
    msg = parse(json.dumps(doc))
    assert msg.mode is p.Mode.CLOSED and not msg.realtime and msg.vad.hangover_ms == 900
    assert json.loads(p.serialize(msg)) == doc


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            '{"type": "turn.reference", "text": "MIKE LIKES THE ORANGE ONE"}',
            p.TurnReference("MIKE LIKES THE ORANGE ONE"),
        ),
        ('{"type": "turn.end"}', p.TurnEnd()),
        ('{"type": "session.end"}', p.SessionEnd()),
        ('{"type": "ping"}', p.Ping()),
        ('{"type": "ping", "id": "42"}', p.Ping("42")),
    ],
)
def test_other_client_messages(text, expected):
    assert parse(text) == expected
    assert parse(text.encode()) == expected


@pytest.mark.parametrize(
    "data, code",
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"", "malformed_json"),
        (b'{"type": "ping", "id": NaN}', "malformed_json"),
        (b'{"type": "ping", "id": 1e999}', "malformed_json"),
        (b"[1, 2]", "invalid_message"),
        (b'"session.start"', "invalid_message"),
        (b"{}", "invalid_message"),
        (b'{"type": 7}', "invalid_message"),
        (b'{"type": "session.begin"}', "unknown_type"),
        (b'{"type": "session.start"}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": "16000"}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": 16000.0}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": true}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": 22050}', "unsupported_sample_rate"),
        (b'{"type": "session.start", "sample_rate": 16000, "encoding": "opus"}', "unsupported_format"),
        (b'{"type": "session.start", "sample_rate": 16000, "channels": 2}', "unsupported_format"),
        (b'{"type": "session.start", "sample_rate": 16000, "protocol": "multipa.v2"}', "unsupported_version"),
        (b'{"type": "session.start", "sample_rate": 16000, "mode": "semi"}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": 16000, "realtime": 1}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": 16000, "samplerate": 8000}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": 16000, "metadata": []}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": 16000, "vad": {"aggressiveness": 4}}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": 16000, "vad": {"hangover": 500}}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": 16000, "vad": {"max_turn_ms": 40000}}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": 16000, "vad": {"post_roll_ms": 900}}', "invalid_message"),
        (b'{"type": "session.start", "sample_rate": 16000, "vad": []}', "invalid_message"),
        (b'{"type": "turn.reference"}', "invalid_message"),
        (b'{"type": "turn.reference", "text": "   "}', "invalid_message"),
        (b'{"type": "turn.reference", "text": ["A"]}', "invalid_message"),
        (b'{"type": "ping", "id": 5}', "invalid_message"),
        (b'{"type": "turn.end", "now": true}', "invalid_message"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
    ],
)
def test_bad_messages_get_their_code(data, code):
    assert code_of(data) == code


def test_errors_name_the_message_type_when_readable():
    with pytest.raises(ProtocolError) as info:
        parse(b'{"type": "session.start", "sample_rate": 22050}')
    assert info.value.message_type == "session.start"
    with pytest.raises(ProtocolError) as info:
        parse(b"{oops")
    assert info.value.message_type is None


def test_reference_length_limit():
    assert (
        code_of(json.dumps({"type": "turn.reference", "text": "A" * (p.MAX_REFERENCE_CHARS + 1)})) == "invalid_message"
    )
    assert parse(json.dumps({"type": "turn.reference", "text": "A" * p.MAX_REFERENCE_CHARS})).text.startswith("A")


def test_codes_and_close_codes_are_stable():
    """Clients switch on these strings and numbers: changing one is a protocol version bump."""
    assert p.PROTOCOL_VERSION == "multipa.v1"
    assert {c.name: int(c) for c in p.CloseCode} == {
        "NORMAL": 1000,
        "GOING_AWAY": 1001,
        "POLICY_VIOLATION": 1008,
        "MESSAGE_TOO_BIG": 1009,
        "INTERNAL_ERROR": 1011,
    }
    assert {
        "malformed_json",
        "unknown_type",
        "audio_before_start",
        "odd_length_pcm",
        "unsupported_sample_rate",
        "frame_too_large",
        "too_fast",
        "overloaded",
        "worker_crashed",
    } <= CODES


def test_every_code_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    for code in CODES:
        assert f"`{code}`" in doc, code
    for close in p.CloseCode:
        assert str(int(close)) in doc
    for kind in (*p.CLIENT_MESSAGES, *p.SERVER_EVENTS):
        assert f"`{kind}`" in doc, kind


# --- properties ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_errors(data):
    try:
        msg = parse(data)
    except ProtocolError as exc:
        assert exc.code in CODES
    else:
        assert type(msg).type in p.CLIENT_MESSAGES


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([*p.CLIENT_MESSAGES, "bogus", ""]),
    st.dictionaries(
        st.sampled_from(
            [
                "sample_rate",
                "encoding",
                "channels",
                "mode",
                "vad",
                "realtime",
                "metadata",
                "protocol",
                "text",
                "id",
                "extra",
            ]
        ),
        json_values,
        max_size=6,
    ),
)
def test_arbitrary_json_objects_raise_only_protocol_errors(kind, fields):
    doc = {"type": kind, **fields}
    for data in (json.dumps(doc), json.dumps(doc).encode()):
        try:
            msg = parse(data)
        except ProtocolError as exc:
            assert exc.code in CODES
        else:
            assert type(msg).type == kind


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([f.name for f in p.VadOptions.__dataclass_fields__.values()] + ["junk"]),
        json_values,
        max_size=8,
    )
)
def test_arbitrary_vad_options_raise_only_protocol_errors(vad):
    try:
        parse(json.dumps({"type": "session.start", "sample_rate": 16000, "vad": vad}))
    except ProtocolError as exc:
        assert exc.code == "invalid_message"


def _valid_vad(draw):
    hangover = draw(st.integers(30, 10000))
    return p.VadOptions(
        enabled=draw(st.booleans()),
        aggressiveness=draw(st.integers(0, 3)),
        onset_ms=draw(st.integers(30, 3000)),
        hangover_ms=hangover,
        min_turn_ms=draw(st.integers(0, 3000)),
        max_turn_ms=draw(st.integers(10000, 30000)),
        pre_roll_ms=draw(st.integers(0, 2000)),
        post_roll_ms=draw(st.integers(0, min(hangover, 2000))),
    )


text = st.text(max_size=30)
client_messages = st.one_of(
    st.builds(
        p.SessionStart,
        sample_rate=st.sampled_from(p.SAMPLE_RATES),
        mode=st.sampled_from(p.Mode),
        vad=st.composite(lambda draw: _valid_vad(draw))(),
        realtime=st.booleans(),
        metadata=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    ),
    # a reference holds a word that can be scored, whatever surrounds it
    st.builds(
        p.TurnReference,
        text=st.tuples(st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True), st.text(max_size=40)).map(" ".join),
    ),
    st.just(p.TurnEnd()),
    st.just(p.SessionEnd()),
    st.builds(p.Ping, id=st.none() | text),
)
server_events = st.one_of(
    st.builds(
        p.SessionStarted,
        session_id=text,
        sample_rate=st.sampled_from(p.SAMPLE_RATES),
        mode=st.sampled_from(p.Mode),
        realtime=st.booleans(),
        vad=st.just(p.VadOptions()),
        limits=st.dictionaries(text, st.integers(0, 10**6), max_size=3),
    ),
    st.builds(p.TurnStarted, turn_id=st.integers(1, 10**6), start_ms=st.integers(0, 10**8)),
    st.builds(
        p.TurnEnded,
        turn_id=st.integers(1),
        start_ms=st.integers(0),
        end_ms=st.integers(0),
        reason=st.sampled_from(p.TurnEndReason),
    ),
    st.builds(
        p.TurnAssessed,
        turn_id=st.integers(1),
        start_ms=st.integers(0),
        end_ms=st.integers(0),
        assessment=st.dictionaries(text, json_values, max_size=4),
        latency_ms=st.dictionaries(text, st.floats(0, 1e6), max_size=3),
    ),
    st.builds(
        p.TurnFailed, turn_id=st.integers(1), start_ms=st.integers(0), end_ms=st.integers(0), code=text, message=text
    ),
    st.builds(
        p.SessionEnded,
        reason=st.sampled_from(p.SessionEndReason),
        turns_started=st.integers(0),
        turns_assessed=st.integers(0),
        turns_failed=st.integers(0),
        audio_ms=st.integers(0),
        failures=st.dictionaries(text, st.integers(0), max_size=3),
    ),
    st.builds(p.Error, code=st.sampled_from(sorted(CODES)), message=text, fatal=st.booleans()),
    st.builds(p.Pong, id=st.none() | text),
)


@settings(max_examples=300, deadline=None)
@given(client_messages)
def test_client_messages_round_trip(msg):
    wire = p.serialize(msg)
    wire.encode("utf-8")  # always encodable, even with lone surrogates in strings
    assert parse(wire) == msg
    assert parse(wire.encode()) == msg


@settings(max_examples=300, deadline=None)
@given(server_events)
def test_server_events_round_trip(event):
    wire = p.serialize(event)
    assert json.loads(wire)["type"] == event.type
    assert p.parse_event(wire) == event


def test_events_are_not_client_messages():
    assert code_of(p.serialize(p.Pong("1"))) == "unknown_type"
    with pytest.raises(ProtocolError):
        p.parse_event(p.serialize(p.Ping("1")))
