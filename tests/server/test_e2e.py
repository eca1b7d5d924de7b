"""End to end: the real `multipa-server` (one worker, real models) and real websocket clients."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from multipa_server.protocol import VadOptions
from multipa_server.segmenter import SegmentEnded, Segmenter

from .speech import RATE, UTTERANCES, conversation, utterance
from .test_segmenter import noisy
from .wsclient import Outcome, ServerProcess, converse, http_get, talk

pytestmark = pytest.mark.models

KEY = "test-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
UTTS = list(UTTERANCES)


@pytest.fixture(scope="module")
def server(scorer, tmp_path_factory):
    process = ServerProcess(
        ["--workers", "1", "--scorer", scorer, "--api-key", KEY, "--api-key", "second-key"],
        tmp_path_factory.mktemp("server") / "server.log",
    )
    yield process
    assert process.stop() == 0, process.log()[-3000:]
    assert "Traceback" not in process.log()


@pytest.fixture(scope="module")
def three_turns():
    audio, placed = conversation(UTTS[:3], [0.6, 1.0, 1.0, 0.9])
    audio = noisy(audio)
    # the turns the segmenter cuts from this audio, computed without the server
    seg = Segmenter(RATE, VadOptions())
    expected = [(e.start_ms, e.end_ms) for e in seg.feed(audio.tobytes()) + seg.flush() if isinstance(e, SegmentEnded)]
    assert len(expected) == 3
    return audio, placed, expected


def start(**fields) -> dict:
    return {"type": "session.start", "sample_rate": RATE, **fields}


def check_assessment(event: dict, *, mode: str = "open") -> None:
    a = event["assessment"]
    assert a["mode"] == mode and a["transcript"].strip() and a["target_transcript"].strip()
    assert set(a["sentence"]) >= {"accuracy", "fluency", "prosody", "total"}
    assert all(0.0 <= v <= 10.0 for v in a["sentence"].values()), a["sentence"]
    assert a["words"], a
    for w in a["words"]:
        assert 0.0 <= w["accuracy"] <= 10.0 and 0.0 <= w["stress"] <= 10.0 and 0.0 <= w["total"] <= 10.0
        assert w["phones"] and 0 <= w["start_ms"] <= w["end_ms"] <= a["duration_ms"] + 30
    assert abs(a["duration_ms"] - (event["end_ms"] - event["start_ms"])) <= 1
    latency = event["latency_ms"]
    # a speculative turn started assessing head_start ms before turn.ended
    assert (
        latency["assess"] > 0
        and latency["total"] + latency.get("head_start", 0.0) >= latency["assess"] - 1.0
        and latency["queue"] >= 0
    )


def check_conversation(outcome: Outcome, placed, expected) -> None:
    outcome.check_every_turn_finished()
    assert [(e["start_ms"], e["end_ms"]) for e in outcome.of("turn.ended")] == expected
    assert [e["reason"] for e in outcome.of("turn.ended")] == ["silence"] * 3
    assessed = sorted(outcome.of("turn.assessed"), key=lambda e: e["turn_id"])
    assert [e["turn_id"] for e in assessed] == [1, 2, 3] and not outcome.of("turn.failed")
    for event, utt in zip(assessed, placed):
        assert (
            utt.start_ms - 250 <= event["start_ms"] <= utt.speech_start_ms + 150
            and event["end_ms"] >= utt.speech_end_ms
        )
        check_assessment(event)
    summary = outcome.events[-1]
    assert (summary["reason"], summary["turns_started"], summary["turns_assessed"], summary["turns_failed"]) == (
        "client",
        3,
        3,
        0,
    )
    assert outcome.close_code == 1000


def test_a_three_turn_conversation_at_real_time_pace(server, three_turns):
    audio, placed, expected = three_turns
    outcome = talk(
        server.url,
        [start(realtime=True, metadata={"test": "realtime"}), audio, {"type": "session.end"}],
        realtime=True,
        headers=AUTH,
    )
    check_conversation(outcome, placed, expected)
    # feedback on a turn arrives while the learner goes on talking: turn 1's result before turn 3 ends
    kinds = [(e["type"], e.get("turn_id")) for e in outcome.events]
    assert kinds.index(("turn.assessed", 1)) < kinds.index(("turn.ended", 3))
    # the idle worker started on turn 1 at the learner's pause, 450 ms before the hang-over ended it
    first = next(e for e in outcome.of("turn.assessed") if e["turn_id"] == 1)
    assert 300.0 <= first["latency_ms"]["head_start"] <= 600.0, first["latency_ms"]


def test_the_same_conversation_faster_than_real_time(server, three_turns):
    audio, placed, expected = three_turns
    outcome = talk(
        server.url + f"?api_key={KEY}", [start(realtime=False), audio, {"type": "session.end"}], chunk_ms=500
    )
    check_conversation(outcome, placed, expected)


def test_a_closed_mode_turn_with_its_reference(server):
    speech = noisy(utterance("001350134"))  # HE IS A BIG BOY
    script = [
        start(mode="closed", realtime=False, vad={"enabled": False}),
        {"type": "turn.reference", "text": "HE IS A BIG BOY"},
        speech,
        {"type": "turn.end"},
        speech[: RATE // 2],  # a second turn without a reference
        {"type": "turn.end"},
        {"type": "session.end"},
    ]
    outcome = talk(server.url, script, headers=AUTH)
    outcome.check_every_turn_finished()
    (assessed,) = outcome.of("turn.assessed")
    check_assessment(assessed, mode="closed")
    a = assessed["assessment"]
    assert [w["text"] for w in a["words"]] == ["he", "is", "a", "big", "boy"]
    assert a["target_transcript"] == "HE IS A BIG BOY" and 0.0 <= a["sentence"]["completeness"] <= 10.0
    assert (assessed["turn_id"], assessed["start_ms"], assessed["end_ms"]) == (1, 0, round(len(speech) * 1000 / RATE))
    assert [(e["turn_id"], e["code"]) for e in outcome.of("turn.failed")] == [(2, "reference_missing")]


SPEECH_4S = lambda: noisy(np.concatenate([utterance(UTTS[0]), utterance(UTTS[1])]))[: 4 * RATE]  # noqa: E731

BAD_INPUTS = {
    "malformed_json": (
        [start(), "{this is not json", {"type": "ping", "id": "still-there"}, {"type": "session.end"}],
        False,
        1000,
    ),
    "unknown_type": (
        [start(), {"type": "turn.begin"}, {"type": "ping", "id": "still-there"}, {"type": "session.end"}],
        False,
        1000,
    ),
    "audio_before_start": ([bytes(640)], True, 1008),
    "odd_length_pcm": ([start(), b"\x00\x01\x02"], True, 1008),
    "unsupported_sample_rate": ([start(sample_rate=22050)], True, 1008),
    "frame_too_large": ([start(), bytes(131072 + 2)], True, 1009),
    "too_fast": ([start(realtime=True), SPEECH_4S], True, 1008),
}


@pytest.mark.parametrize("code", list(BAD_INPUTS))
def test_bad_input_gets_its_code_and_the_server_keeps_serving(server, code):
    script, fatal, close = BAD_INPUTS[code]
    script = [s() if callable(s) else s for s in script]

    async def run_bad() -> Outcome:
        outcome = Outcome()
        async with connect(server.url, additional_headers=AUTH, max_size=None) as ws:
            try:
                for step in script:  # everything at once, whatever the server says in between
                    if isinstance(step, dict):
                        await ws.send(json.dumps(step))
                    elif isinstance(step, (str, bytes)):
                        await ws.send(step)  # a raw text or binary frame
                    else:
                        for i in range(0, len(step), RATE // 10):
                            await ws.send(step[i : i + RATE // 10].tobytes())
            except ConnectionClosed:
                pass  # the server hung up mid-script: what it said is still readable
            try:
                async for message in ws:
                    outcome.events.append(json.loads(message))
            except ConnectionClosed:
                pass
            outcome.close_code, outcome.close_reason = ws.close_code, ws.close_reason
        return outcome

    outcome = asyncio.run(asyncio.wait_for(run_bad(), 120))
    errors = outcome.of("error")
    assert [e["code"] for e in errors] == [code] and errors[0]["fatal"] is fatal
    assert outcome.close_code == close
    if fatal:
        assert outcome.close_reason == code and outcome.events[-1]["reason"] == "error"
    else:
        assert outcome.of("pong") == [{"type": "pong", "id": "still-there"}]
    if outcome.of("turn.started"):
        outcome.check_every_turn_finished()
    # a second client is served as usual
    second = talk(server.url, [start(), {"type": "ping", "id": "2"}, {"type": "session.end"}], headers=AUTH)
    assert [e["type"] for e in second.events] == [
        "session.started",
        "pong",
        "session.ended",
    ] and second.close_code == 1000
    assert http_get(server.http + "/healthz")[0] == 200


@pytest.mark.parametrize(
    "headers, query",
    [
        (None, ""),
        ({"Authorization": "Bearer wrong"}, ""),
        (None, "?api_key=wrong"),
        ({"Authorization": "Basic " + KEY}, ""),
    ],
)
def test_connections_without_a_valid_key_are_refused(server, headers, query):
    async def attempt() -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url + query, additional_headers=headers):
                pass
        return info.value.response.status_code

    assert asyncio.run(attempt()) == 401


def test_either_key_in_header_or_query_is_accepted(server):
    for url, headers in (
        (server.url + "?api_key=second-key", None),
        (server.url, {"Authorization": "Bearer second-key"}),
    ):
        outcome = talk(url, [{"type": "session.end"}], headers=headers)
        assert outcome.events[-1]["type"] == "session.ended" and outcome.close_code == 1000


def test_two_clients_at_once(server):
    a, b = (
        noisy(np.concatenate([np.zeros(RATE // 2, np.int16), utterance(u), np.zeros(RATE, np.int16)]), seed=i)
        for i, u in enumerate(UTTS[2:4])
    )

    async def both() -> list[Outcome]:
        return await asyncio.gather(
            *(
                converse(server.url, [start(realtime=False), audio, {"type": "session.end"}], headers=AUTH)
                for audio in (a, b)
            )
        )

    outcomes = asyncio.run(both())
    for outcome, utt in zip(outcomes, UTTS[2:4]):
        outcome.check_every_turn_finished()
        (assessed,) = outcome.of("turn.assessed")
        check_assessment(assessed)
        said = set(assessed["assessment"]["transcript"].lower().replace(".", "").split())
        assert said & set(UTTERANCES[utt].lower().split()), (said, utt)  # each client got its own turn
    ids = {o.of("session.started")[0]["session_id"] for o in outcomes}
    assert len(ids) == 2
    status, content_type, text = http_get(server.http + "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    values = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")
    }
    assert values["multipa_turns_assessed_total"] >= 2 and values['multipa_workers{state="ready"}'] == 1
    assert values['multipa_turn_latency_seconds_count{stage="assess"}'] >= 2
    assert (
        values['multipa_turn_latency_seconds_bucket{stage="assess",le="+Inf"}']
        == values['multipa_turn_latency_seconds_count{stage="assess"}']
    )
    assert any(k.startswith("multipa_pipeline_stage_seconds_count") for k in values)


def test_health_and_unknown_paths(server):
    status, content_type, body = http_get(server.http + "/healthz")
    assert status == 200 and content_type == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["protocol"] == "multipa.v1" and health["workers_ready"] == 1
    assert http_get(server.http + "/nope")[0] == 404
