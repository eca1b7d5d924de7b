"""The MQTT wire format between gateways and workers: frames, the worker status, topics."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict

import pytest
from hypothesis import given, settings, strategies as st

from multipa_server import mqtt_protocol as w
from multipa_server.mqtt_protocol import Accepted, CancelMessage, JobMessage, ResultMessage, WireError, WorkerStatus

PCM = bytes(range(256)) * 4  # 512 samples, every byte value: base64 or any re-encoding would show
JOB = JobMessage("g1-7", "sess/3", 1, 16000, 1_700_000_000.5, PCM)
ASSESSMENT = {"transcript": "MIKE", "score": 0.82, "phones": [{"ipa": "m", "ok": True}], "note": None}


def frame(
    kind: bytes, header, body: bytes = b"", *, magic: bytes = b"MPAW", schema: int = 1, length: int | None = None
) -> bytes:
    """A frame built by hand, so that it can break any rule."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack(">4sBcI", magic, schema, kind, len(raw) if length is None else length) + raw + body


def job_header(**changes) -> dict:
    header = {"id": "g1-7", "turn": "sess/3", "attempt": 1, "sample_rate": 16000, "deadline": 1_700_000_000.5}
    header.update(changes)
    return {k: v for k, v in header.items() if v is not ...}


def result_header(**changes) -> dict:
    header = {
        "id": "g1-7",
        "attempt": 2,
        "worker": "gpu-1",
        "assess_ms": 12.5,
        "code": "audio_silent",
        "message": "no speech",
    }
    header.update(changes)
    return {k: v for k, v in header.items() if v is not ...}


def with_literal(header: dict, key: str, literal: str) -> bytes:
    """The header as JSON text with ``literal`` as the value of ``key``, e.g. 1e999, which json.dumps never writes."""
    return json.dumps({**header, key: "@@"}).replace('"@@"', literal).encode()


def rejected(payload: bytes) -> WireError:
    with pytest.raises(WireError) as info:
        w.decode(payload)
    assert info.value.code == "invalid_payload"
    return info.value


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        JOB,
        JobMessage("g1-8", "sess/4", 3, 48000, 1_700_000_060.0, b"\x01\x00", reference="MIKE LIKES THE ORANGE ONE"),
        Accepted("g1-7", 1, "gpu-1"),
        ResultMessage("g1-7", 2, "gpu-1", 812.5, assessment=ASSESSMENT),
        ResultMessage("g1-7", 1, "cpu-2", 3.0, code="audio_silent", message="no speech in the turn"),
        CancelMessage("g1-7"),
    ],
    ids=["job", "job-with-reference", "accepted", "result-assessed", "result-failed", "cancel"],
)
def test_every_message_kind_round_trips(message):
    payload = w.encode(message)
    assert payload[:4] == b"MPAW" and payload[4] == w.SCHEMA
    assert w.decode(payload) == message
    assert w.decode(bytearray(payload)) == message


def test_frame_layout_names_the_kind_and_the_header_length():
    for message, kind in [
        (JOB, b"J"),
        (Accepted("a", 1, "w"), b"A"),
        (ResultMessage("a", 1, "w", 0.0, code="x", message=""), b"R"),
        (CancelMessage("a"), b"C"),
    ]:
        payload = w.encode(message)
        magic, schema, got, length = struct.unpack_from(">4sBcI", payload)
        assert (magic, schema, got) == (b"MPAW", 1, kind)
        header = json.loads(payload[10 : 10 + length])
        assert header["id"] == message.id
        assert len(payload) == 10 + length + (len(message.pcm) if kind == b"J" else 0)


def test_the_job_audio_travels_as_raw_bytes_after_the_header():
    payload = w.encode(JOB)
    assert payload.endswith(PCM)
    length = struct.unpack_from(">I", payload, 6)[0]
    header = json.loads(payload[10 : 10 + length])
    assert "pcm" not in header and "reference" not in header  # None fields stay out of the header
    assert len(payload) == 10 + length + len(PCM)


def test_a_failed_result_with_an_empty_message_round_trips():
    message = ResultMessage("j", 1, "w", 0, code="internal_error", message="")
    assert w.decode(w.encode(message)) == message


def test_worker_status_round_trips_and_is_plain_json():
    status = WorkerStatus("gpu-1", "online", device="cuda", batch=8, host="box", pid=4242)
    payload = w.encode_status(status)
    assert json.loads(payload) == {
        "worker": "gpu-1",
        "state": "online",
        "device": "cuda",
        "batch": 8,
        "host": "box",
        "pid": 4242,
        "schema": 1,
    }
    assert w.decode_status(payload) == status
    offline = WorkerStatus("gpu-1", "offline")
    assert w.decode_status(w.encode_status(offline)) == offline


def test_status_defaults_for_missing_optional_fields():
    assert w.decode_status(b'{"worker": "w", "state": "online", "schema": 1}') == WorkerStatus("w", "online")


# --- rejections: frames ----------------------------------------------------------------


def test_short_payloads_are_rejected():
    for payload in (b"", b"MPAW", w.encode(CancelMessage("a"))[:9]):
        assert "too short" in str(rejected(payload))


def test_bad_magic_is_rejected():
    assert "magic" in str(rejected(frame(b"C", {"id": "a"}, magic=b"MPAX")))


@pytest.mark.parametrize("schema", [0, 2, 255])
def test_other_schemas_are_rejected(schema):
    assert "schema" in str(rejected(frame(b"C", {"id": "a"}, schema=schema)))


@pytest.mark.parametrize("kind", [b"j", b"X", b"\x00", b"S"])
def test_unknown_kinds_are_rejected(kind):
    assert "kind" in str(rejected(frame(kind, {"id": "a"})))


def test_a_header_length_beyond_the_payload_is_rejected():
    raw = json.dumps({"id": "a"}).encode()
    assert "length" in str(rejected(frame(b"C", raw, length=len(raw) + 1)))
    assert "length" in str(rejected(frame(b"C", raw, length=w.MAX_HEADER_BYTES + 1)))
    assert "length" in str(rejected(frame(b"C", raw, length=0xFFFFFFFF)))


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe{}",
        b"",
        b'{"id": NaN}',
        b'{"id": Infinity}',
        b'{"id": -Infinity}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["syntax", "not-utf8", "empty", "nan", "infinity", "minus-infinity", "deep-nesting"],
)
def test_a_header_that_is_not_json_is_rejected(raw):
    rejected(frame(b"C", raw))


@pytest.mark.parametrize("raw", [b"[]", b'"a"', b"1", b"null"])
def test_a_header_that_is_not_an_object_is_rejected(raw):
    assert "object" in str(rejected(frame(b"C", raw)))


@pytest.mark.parametrize(
    "kind, header",
    [
        (b"J", job_header(priority=1)),
        (b"J", job_header(pcm="AAAA")),
        (b"A", {"id": "a", "attempt": 1, "worker": "w", "extra": True}),
        (b"R", result_header(assessment_id="x")),
        (b"C", {"id": "a", "reason": "gone"}),
    ],
)
def test_unknown_fields_are_rejected(kind, header):
    body = PCM if kind == b"J" else b""
    assert "unknown field" in str(rejected(frame(kind, header, body)))


@pytest.mark.parametrize("rate", [22050, 0, -16000, "16000", 16000.0, True, None, ...])
def test_bad_sample_rates_are_rejected(rate):
    assert "sample_rate" in str(rejected(frame(b"J", job_header(sample_rate=rate), PCM)))


@pytest.mark.parametrize("deadline", ["soon", None, True, [1], ...])
def test_bad_deadlines_are_rejected(deadline):
    assert "deadline" in str(rejected(frame(b"J", job_header(deadline=deadline), PCM)))


@pytest.mark.parametrize("literal", ["1e999", "-1e999", "1" + "0" * 400, "-" + "1" * 4000])
def test_deadlines_beyond_a_float_are_rejected(literal):
    """1e999 parses as infinity, a 400-digit integer overflows a float: both are refused, never OverflowError."""
    message = str(rejected(frame(b"J", with_literal(job_header(), "deadline", literal), PCM)))
    assert "deadline" in message or "finite numbers" in message


def test_an_integer_deadline_is_accepted_as_a_float():
    job = w.decode(frame(b"J", job_header(deadline=1_700_000_000), PCM))
    assert job.deadline == 1_700_000_000.0 and type(job.deadline) is float


@pytest.mark.parametrize("reference", ["", "   ", 7, ["A"], "A" * (w.MAX_REFERENCE_CHARS + 1)])
def test_bad_references_are_rejected(reference):
    assert "reference" in str(rejected(frame(b"J", job_header(reference=reference), PCM)))


@pytest.mark.parametrize("pcm", [b"\x00", PCM + b"\x00"], ids=["one-byte", "odd"])
def test_odd_length_audio_is_rejected(pcm):
    assert "16-bit" in str(rejected(frame(b"J", job_header(), pcm)))


def test_empty_audio_is_rejected():
    assert "16-bit" in str(rejected(frame(b"J", job_header())))


@pytest.mark.parametrize(
    "kind, header",
    [(b"A", {"id": "a", "attempt": 1, "worker": "w"}), (b"R", result_header()), (b"C", {"id": "a"})],
)
def test_only_a_job_carries_a_body(kind, header):
    assert w.decode(frame(kind, header)).id  # valid without a body
    assert "body" in str(rejected(frame(kind, header, b"\x00\x00")))


def test_a_result_with_both_an_assessment_and_a_code_is_rejected():
    assert "either" in str(rejected(frame(b"R", result_header(assessment=ASSESSMENT))))
    assert "either" in str(rejected(frame(b"R", result_header(assessment=ASSESSMENT, code=..., message="x"))))
    assert "either" in str(rejected(frame(b"R", result_header(assessment=[1, 2], code=..., message=...))))


@pytest.mark.parametrize(
    "changes",
    [
        {"code": ...},
        {"code": ""},
        {"code": None},
        {"code": 500},
        {"message": ...},
        {"message": 5},
        {"code": ..., "message": ...},
    ],
    ids=["no-code", "empty-code", "null-code", "int-code", "no-message", "int-message", "neither"],
)
def test_a_failed_result_needs_a_code_and_a_message(changes):
    assert "code and a message" in str(rejected(frame(b"R", result_header(**changes))))


@pytest.mark.parametrize("assess_ms", [-1, -0.5, "12", None, True, ...])
def test_bad_assess_times_are_rejected(assess_ms):
    assert "assess_ms" in str(rejected(frame(b"R", result_header(assess_ms=assess_ms))))


@pytest.mark.parametrize("literal", ["1e999", "1" + "0" * 400])
def test_assess_times_beyond_a_float_are_rejected(literal):
    message = str(rejected(frame(b"R", with_literal(result_header(), "assess_ms", literal))))
    assert "assess_ms" in message or "finite numbers" in message


@pytest.mark.parametrize("attempt", [0, -1, 101, True, False, 1.0, "1", None, ...])
def test_bad_attempts_are_rejected(attempt):
    assert "attempt" in str(
        rejected(frame(b"A", {k: v for k, v in {"id": "a", "attempt": attempt, "worker": "w"}.items() if v is not ...}))
    )
    assert "attempt" in str(rejected(frame(b"J", job_header(attempt=attempt), PCM)))


def test_attempts_from_1_to_100_are_accepted():
    assert w.decode(frame(b"A", {"id": "a", "attempt": 1, "worker": "w"})).attempt == 1
    assert w.decode(frame(b"A", {"id": "a", "attempt": 100, "worker": "w"})).attempt == 100


@pytest.mark.parametrize("bad", ["a+b", "a#", "#", "a\0b", "", 7, None, "x" * (w.MAX_ID_CHARS + 1)])
def test_bad_ids_are_rejected(bad):
    rejected(frame(b"C", {"id": bad}))
    rejected(frame(b"J", job_header(id=bad), PCM))
    rejected(frame(b"J", job_header(turn=bad), PCM))
    rejected(frame(b"A", {"id": "a", "attempt": 1, "worker": bad}))
    rejected(frame(b"R", result_header(worker=bad)))


def test_a_worker_id_names_a_topic_level_so_it_has_no_slash():
    assert "worker" in str(rejected(frame(b"A", {"id": "a", "attempt": 1, "worker": "gpu/1"})))
    assert "worker" in str(rejected(frame(b"R", result_header(worker="gpu/1"))))


def test_job_and_turn_ids_may_contain_a_slash():
    job = w.decode(frame(b"J", job_header(id="abc/1~2", turn="abc/1"), PCM))
    assert (job.id, job.turn) == ("abc/1~2", "abc/1")
    assert w.decode(frame(b"C", {"id": "abc/1~2"})) == CancelMessage("abc/1~2")


def test_an_assessment_with_an_infinite_number_is_rejected():
    rejected(frame(b"R", with_literal(result_header(code=..., message=...), "assessment", '{"score": 1e999}')))


def test_check_id_names_what_it_checks():
    assert w.check_id("gpu-1", "--id") == "gpu-1"
    with pytest.raises(WireError, match="--id"):
        w.check_id("a/b", "--id")
    assert w.check_id("a/b", "job id", topic_level=False) == "a/b"


# --- rejections: the worker status -----------------------------------------------------


def rejected_status(payload) -> WireError:
    with pytest.raises(WireError) as info:
        w.decode_status(payload)
    assert info.value.code == "invalid_payload"
    return info.value


def status(**changes) -> bytes:
    doc = {"worker": "w", "state": "online", "device": "cpu", "batch": 2, "host": "h", "pid": 1, "schema": 1}
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    "payload",
    [b"", b"{oops", b"\xff", b'{"worker": NaN}', b"[" * 100_000 + b"]" * 100_000, "not bytes", None],
    ids=["empty", "syntax", "not-utf8", "nan", "deep-nesting", "str", "none"],
)
def test_a_status_that_is_not_json_is_rejected(payload):
    rejected_status(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b'"online"',
        status(schema=...),
        status(schema=2),
        status(surprise=1),
        status(state="busy"),
        status(state=...),
        status(batch=0),
        status(batch=257),
        status(batch=True),
        status(batch=2.0),
        status(device=5),
        status(host=None),
        status(pid="1"),
        status(pid=True),
        status(worker=...),
        status(worker="a/b"),
        status(worker="a+"),
        status(worker="#"),
        status(worker="a\0"),
        status(worker=""),
    ],
)
def test_bad_statuses_are_rejected(payload):
    rejected_status(payload)


# --- properties ------------------------------------------------------------------------


def decodes_or_wire_error(payload) -> None:
    try:
        message = w.decode(payload)
    except WireError as exc:
        assert exc.code == "invalid_payload"
    else:
        assert isinstance(message, (JobMessage, Accepted, ResultMessage, CancelMessage))


ids = st.text(st.characters(blacklist_characters="+#/\0"), min_size=1, max_size=20)
messages = st.one_of(
    st.builds(
        JobMessage,
        id=ids,
        turn=ids,
        attempt=st.integers(1, 100),
        sample_rate=st.sampled_from(w.SAMPLE_RATES),
        deadline=st.floats(0, 2e9),
        pcm=st.binary(min_size=1, max_size=64).map(lambda b: b + b),
        reference=st.none() | st.text(min_size=1, max_size=30).filter(str.strip),
    ),
    st.builds(Accepted, id=ids, attempt=st.integers(1, 100), worker=ids),
    st.builds(
        ResultMessage,
        id=ids,
        attempt=st.integers(1, 100),
        worker=ids,
        assess_ms=st.floats(0, 1e6),
        assessment=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    ),
    st.builds(
        ResultMessage,
        id=ids,
        attempt=st.integers(1, 100),
        worker=ids,
        assess_ms=st.floats(0, 1e6),
        code=st.text(min_size=1, max_size=10),
        message=st.text(max_size=20),
    ),
    st.builds(CancelMessage, id=ids),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_generated_messages_round_trip(message):
    assert w.decode(w.encode(message)) == message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_wire_error(data):
    decodes_or_wire_error(data)
    decodes_or_wire_error(b"MPAW\x01" + data)  # past the magic and schema, to reach the later checks


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_damaged_frames_decode_or_raise_wire_error(message, data):
    payload = bytearray(w.encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(payload) - 1))
        payload[at] = data.draw(st.integers(0, 255))
    decodes_or_wire_error(bytes(payload))
    decodes_or_wire_error(bytes(payload[: data.draw(st.integers(0, len(payload)))]))


@settings(max_examples=300, deadline=None)
@given(
    messages,
    st.sampled_from(
        [
            "deadline",
            "assess_ms",
            "attempt",
            "sample_rate",
            "id",
            "worker",
            "code",
            "message",
            "assessment",
            "reference",
        ]
    ),
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.lists(st.integers(), max_size=2),
)
def test_any_header_value_decodes_or_raises_wire_error(message, field, value):
    fields = {k: v for k, v in asdict(message).items() if v is not None}
    body = fields.pop("pcm", b"")
    fields[field] = value
    kind = w.encode(message)[5:6]
    decodes_or_wire_error(frame(kind, json.dumps(fields).encode(), body))


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200)
    | st.builds(
        lambda s: json.dumps(s).encode(),
        st.dictionaries(
            st.sampled_from(["worker", "state", "device", "batch", "host", "pid", "schema", "x"]),
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
            max_size=8,
        ),
    )
)
def test_arbitrary_statuses_decode_or_raise_wire_error(data):
    try:
        result = w.decode_status(data)
    except WireError as exc:
        assert exc.code == "invalid_payload"
    else:
        assert isinstance(result, WorkerStatus) and w.decode_status(w.encode_status(result)) == result


# --- topics ----------------------------------------------------------------------------


def test_topics_under_a_prefix():
    assert w.jobs_topic("multipa/v1") == "multipa/v1/jobs"
    assert w.jobs_subscription("multipa/v1") == "$share/multipa-workers/multipa/v1/jobs"
    assert w.jobs_subscription("site-a") == f"$share/{w.SHARE_GROUP}/site-a/jobs"
    assert w.cancel_topic("p") == "p/cancel"
    assert w.results_topic("p", "gw1") == "p/gateways/gw1/results"
    assert w.status_topic("p") == "p/workers/+/status"
    assert w.status_topic("p", "gpu-1") == "p/workers/gpu-1/status"
    assert w.events_topic("p", "s1") == "p/sessions/s1/events"


@pytest.mark.parametrize("prefix", ["multipa/v1", "site-a", "a/b/c"])
def test_worker_of_status_topic_inverts_status_topic(prefix):
    assert w.worker_of_status_topic(prefix, w.status_topic(prefix, "gpu-1")) == "gpu-1"


@pytest.mark.parametrize(
    "topic",
    [
        "multipa/v1/workers//status",
        "multipa/v1/workers/a/b/status",
        "multipa/v1/workers/status",
        "other/workers/w/status",
        "multipa/v1/workers/w/state",
        "multipa/v1/jobs",
        "multipa/v1/workers/w/status/x",
        "",
    ],
)
def test_worker_of_status_topic_rejects_other_topics(topic):
    with pytest.raises(WireError):
        w.worker_of_status_topic("multipa/v1", topic)


def test_check_prefix_accepts_plain_prefixes():
    for prefix in ("multipa/v1", "a", "a/b-c_d.e"):
        assert w.check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "a/+", "a/#", "+", "/a", "a/", "a//b", "$SYS", "$share/g/a", "a\0b"])
def test_check_prefix_rejects_wildcards_and_empty_levels(prefix):
    with pytest.raises(WireError) as info:
        w.check_prefix(prefix)
    assert info.value.code == "invalid_payload"
