"""The client against the fake server (recorded real messages): streams, drops, refusals; the replay buffer."""

from __future__ import annotations

import asyncio
import wave

import numpy as np
import pytest

from multipa_client import (
    CONNECTION_LOST,
    AuthenticationError,
    ConnectionLost,
    ConnectionRefused,
    MultipaClient,
    ReconnectPolicy,
    Reconnected,
    ServerError,
    SessionEnded,
    TurnAssessed,
    TurnEnded,
    TurnFailed,
    TurnStarted,
    assess_file,
    to_dict,
)
from multipa_client._events import SessionEnded as Summary
from multipa_client._replay import ReplayBuffer
from multipa_client.testing import FakeServer, Recording

RATE = 16_000
URL = "ws://fake/v1/stream"
FAST = ReconnectPolicy(attempts=3, initial_delay_s=0.01, max_delay_s=0.02)
RECORDED = [line["event"] for line in Recording.load("three_turns").events]


def stream_audio() -> np.ndarray:
    """Noise as long as the recorded stream: the fake never listens, but it compares resent audio."""
    return (
        np.random.default_rng(7).normal(0, 2000, Recording.load("three_turns").audio_ms * RATE // 1000).astype(np.int16)
    )


async def chunks(audio: np.ndarray, size: int = 1600):
    for i in range(0, len(audio), size):
        yield audio[i : i + size]


def run(
    fake: FakeServer, *, reconnect=FAST, reference: str | None = None, during=None
) -> tuple[list, BaseException | None]:
    async def go():
        events: list = []
        try:
            async with MultipaClient(URL, transport=fake, realtime=False, reconnect=reconnect) as client:
                if reference:
                    await client.set_reference(reference)
                async for event in client.stream(chunks(stream_audio()), sample_rate=RATE):
                    events.append(event)
                    if during:
                        during(event)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return events, exc
        return events, None

    return asyncio.run(asyncio.wait_for(go(), 30))


def by_turn(events: list) -> dict[int, dict[str, list]]:
    out: dict[int, dict[str, list]] = {}
    for e in events:
        if isinstance(e, (TurnStarted, TurnEnded, TurnAssessed, TurnFailed)):
            out.setdefault(e.turn_id, {}).setdefault(e.type, []).append(e)
    return out


def check_once_each(events: list, turns: int) -> None:
    """The SDK's guarantee: one turn.started, at most one turn.ended, exactly one terminal event."""
    grouped = by_turn(events)
    assert sorted(grouped) == list(range(1, turns + 1))
    for t in grouped.values():
        assert len(t["turn.started"]) == 1 and len(t.get("turn.ended", [])) <= 1
        assert len(t.get("turn.assessed", [])) + len(t.get("turn.failed", [])) == 1


def test_without_a_drop_the_client_yields_the_recorded_events():
    events, error = run(FakeServer())
    assert error is None
    echo = ("session_id", "realtime")  # the fake's own session id; it echoes the client's realtime=False
    assert [{k: v for k, v in to_dict(e).items() if k not in echo} for e in events] == [
        {k: v for k, v in e.items() if k not in echo} for e in RECORDED
    ]


def test_a_drop_after_turn_one_resends_only_the_turns_without_results():
    fake = FakeServer(drop_after=8)  # session.started, 3 x (turn.started, turn.ended), turn 1 assessed
    events, error = run(fake)
    assert error is None and not fake.mismatches
    check_once_each(events, 3)
    (reconnected,) = [e for e in events if isinstance(e, Reconnected)]
    # from 500 ms before turn 2's start (4180 ms), on the VAD's 30 ms grid
    assert reconnected.resumed_from_ms == 3660 and reconnected.resent_ms == 10200 - 3660
    audio = stream_audio()
    resent = np.frombuffer(bytes(fake.sessions[1].audio), np.int16)
    assert np.array_equal(resent, audio[3660 * RATE // 1000 :])  # turn 1's audio (940-2940 ms) was not sent again
    assessed = {e.turn_id: to_dict(e) for e in events if isinstance(e, TurnAssessed)}
    assert [assessed[i] for i in (1, 2, 3)] == [
        e for e in RECORDED if e["type"] == "turn.assessed"
    ]  # the stream's clock and ids
    summary = events[-1]
    assert isinstance(summary, SessionEnded) and (
        summary.turns_started,
        summary.turns_assessed,
        summary.turns_failed,
        summary.audio_ms,
    ) == (3, 3, 0, 10200)


def test_a_drop_while_a_turn_is_open_keeps_its_id_and_sends_its_start_once():
    fake = FakeServer(drop_after=4)  # session.started, turn 1 started and ended, turn 2 started
    events, error = run(fake, reference="THIS IS A GOOD STEP")
    assert error is None and not fake.mismatches
    check_once_each(events, 3)
    assert fake.sessions[1].offset_ms == 420  # turn 1 (from 940 ms) had no result yet: everything from just before it
    recorded = {(e["type"], e.get("turn_id")): e for e in RECORDED}
    for e in events:
        if isinstance(e, (TurnEnded, TurnAssessed)):
            assert (e.start_ms, e.end_ms) == (
                recorded[e.type, e.turn_id]["start_ms"],
                recorded[e.type, e.turn_id]["end_ms"],
            )
    # the reference of the unanswered first turn is sent again, before its audio
    assert fake.sessions[1].messages[0] == {"type": "turn.reference", "text": "THIS IS A GOOD STEP"}
    assert fake.sessions[1].messages[-1] == {"type": "session.end"}


def test_without_reconnect_a_drop_fails_the_open_turns_explicitly():
    events, error = run(FakeServer(drop_after=8), reconnect=False)
    assert isinstance(error, ConnectionLost)
    failed = [e for e in events if isinstance(e, TurnFailed)]
    assert [(e.turn_id, e.code) for e in failed] == [(2, CONNECTION_LOST), (3, CONNECTION_LOST)]
    check_once_each(events, 3)


def test_reconnects_that_are_refused_give_up_after_the_policy_attempts():
    fake = FakeServer(drop_after=8)

    def refuse_from_now(event):
        fake.refuse = 503

    events, error = run(fake, during=refuse_from_now)
    assert isinstance(error, ConnectionLost) and "3 reconnect attempts" in str(error)
    assert [e.code for e in events if isinstance(e, TurnFailed)] == [CONNECTION_LOST] * 2
    assert len(fake.sessions) == 1


def test_refusals_raise_clear_exceptions():
    with pytest.raises(AuthenticationError, match="401"):
        run_enter(FakeServer(refuse=401))
    with pytest.raises(AuthenticationError):
        run_enter(FakeServer(api_key="right"), api_key="wrong")
    with pytest.raises(ConnectionRefused) as info:
        run_enter(FakeServer(refuse=503))
    assert info.value.status == 503


def run_enter(fake: FakeServer, api_key: str | None = None) -> None:
    async def go():
        async with MultipaClient(URL, transport=fake, api_key=api_key):
            pass

    asyncio.run(go())


def test_a_fatal_error_ends_the_stream_with_server_error_after_its_events():
    events, error = run(FakeServer(fatal="too_fast"))
    assert isinstance(error, ServerError) and error.code == "too_fast"
    assert [e.type for e in events] == ["session.started", "error", "session.ended"]


def test_assess_file_with_the_fake_transport(tmp_path):
    path = tmp_path / "stream.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(stream_audio().tobytes())
    events = assess_file(URL, path, transport=FakeServer())
    assert [e.type for e in events] == [e["type"] for e in RECORDED]


# --- the replay buffer alone ------------------------------------------------------------


def test_results_out_of_order_mute_the_answered_turn_in_the_resent_audio():
    rb = ReplayBuffer(RATE)
    rb.add_audio(np.full(5 * RATE, 1000, np.int16))
    rb.sent = rb.end
    for event in [
        TurnStarted(1, 1000),
        TurnEnded(1, 1000, 2000, "silence"),
        TurnStarted(2, 2500),
        TurnEnded(2, 2500, 3500, "silence"),
    ]:
        rb.on_event(event)
    (out,) = rb.on_event(TurnFailed(2, 2500, 3500, "audio_silent", "quiet"))  # turn 2 answered before turn 1
    assert out.turn_id == 2
    offset, backlog = rb.resume()
    assert (offset, backlog) == (480 * 16, 5 * RATE - 480 * 16)  # 500 ms before turn 1, down to the 30 ms grid
    sent = b""
    while (item := rb.next_item(RATE)) is not None:
        sent += item[0]
        rb.sent = item[1]
    resent = np.frombuffer(sent, np.int16)
    muted = np.flatnonzero(resent == 0)
    assert (muted[0], muted[-1] + 1) == (2020 * 16, 3020 * 16)  # 2500-3500 ms, relative to 480 ms
    assert len(muted) == RATE


def test_a_turn_the_new_session_does_not_form_again_fails_explicitly():
    rb = ReplayBuffer(RATE)
    rb.add_audio(np.ones(6 * RATE, np.int16))
    rb.sent = rb.end
    rb.on_event(TurnStarted(1, 1000))
    rb.on_event(TurnEnded(1, 1000, 2000, "silence"))
    rb.resume()
    # the new session (offset 480 ms) finds speech only after turn 1's span
    out = rb.on_event(TurnStarted(1, 2500))
    assert [(type(e).__name__, e.turn_id) for e in out] == [("TurnFailed", 1), ("TurnStarted", 2)]
    assert out[0].code == CONNECTION_LOST and out[1].start_ms == 2980
    rb.on_event(TurnEnded(1, 2500, 3000, "silence"))
    (summary,) = rb.on_event(Summary("client", 1, 0, 1, 4000, {"audio_too_short": 1}))[-1:]
    assert (summary.turns_started, summary.turns_failed, summary.audio_ms) == (2, 1, 4480)


def test_retention_is_bounded_without_turns_and_never_drops_unsent_audio():
    rb = ReplayBuffer(RATE, idle_retain_s=2.0)
    rb.add_audio(np.ones(10 * RATE, np.int16))
    assert rb.retain_from() == 0  # nothing sent yet: everything is kept
    rb.sent = rb.end
    rb.add_audio(np.ones(RATE, np.int16))
    assert rb.retain_from() == 9 * RATE  # two seconds back from the end


def test_the_microphone_path_with_a_stand_in_for_sounddevice(monkeypatch):
    """PortAudio's callback thread to the event loop, in order; the real device is not tested here."""
    import sys
    import threading
    import types

    audio = stream_audio()
    opened = {}

    class InputStream:
        def __init__(self, *, samplerate, channels, dtype, blocksize, device, callback):
            opened.update(samplerate=samplerate, channels=channels, dtype=dtype, blocksize=blocksize)
            self.callback, self.blocksize, self.stop = callback, blocksize, threading.Event()

        def __enter__(self):
            def run():
                for i in range(0, len(audio), self.blocksize):
                    if self.stop.wait(0.002):
                        return
                    block = audio[i : i + self.blocksize].reshape(-1, 1)
                    self.callback(block, len(block), None, None)

            self.thread = threading.Thread(target=run)
            self.thread.start()
            return self

        def __exit__(self, *exc):
            self.stop.set()
            self.thread.join()

    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(InputStream=InputStream))
    fake = FakeServer()

    async def go():
        events = []
        async with MultipaClient(URL, transport=fake) as client:
            stream = client.stream_microphone(block_ms=20)
            async for event in stream:
                events.append(event)
                if isinstance(event, TurnEnded):
                    break
            await stream.aclose()
        return events

    events = asyncio.run(asyncio.wait_for(go(), 30))
    assert opened == {"samplerate": 16000, "channels": 1, "dtype": "int16", "blocksize": 320}
    assert [e.type for e in events] == ["session.started", "turn.started", "turn.ended"]
    received = np.frombuffer(bytes(fake.sessions[0].audio), np.int16)
    assert len(received) >= 3400 * 16 and np.array_equal(received, audio[: len(received)])
    assert fake.sessions[0].start["realtime"] is True


def test_a_server_shutting_down_drains_then_the_stream_resumes_where_it_stopped_reading():
    fake = FakeServer(shutdown_after=3)  # session.started, turn 1 started and ended; read until 3400 ms
    events, error = run(fake)
    assert error is None and not fake.mismatches
    check_once_each(events, 3)
    assert [e.type for e in events] == [
        "session.started",
        "turn.started",
        "turn.ended",
        "turn.assessed",
        "client.reconnected",
    ] + ["turn.started", "turn.ended"] * 2 + ["turn.assessed"] * 2 + ["session.ended"]
    reconnected = events[4]
    assert (
        reconnected.resumed_from_ms == 3390 and "shutting_down" in reconnected.cause
    )  # 3400 ms, down to the 30 ms grid
    assert [s.offset_ms for s in fake.sessions] == [0, 3390]
    resent = np.frombuffer(bytes(fake.sessions[1].audio), np.int16)
    assert np.array_equal(resent, stream_audio()[3390 * RATE // 1000 :])
    summary = events[-1]
    assert (summary.reason, summary.turns_started, summary.turns_assessed, summary.audio_ms) == ("client", 3, 3, 10200)


def test_a_turn_in_progress_at_shutdown_ends_there_and_is_assessed():
    events, error = run(FakeServer(shutdown_after=4))  # turn 2 had started at 4180 ms; read until 4680 ms
    assert error is None
    check_once_each(events, 3)
    (ended,) = [e for e in events if isinstance(e, TurnEnded) and e.turn_id == 2]
    assert (ended.start_ms, ended.end_ms, ended.reason) == (4180, 4680, "session_end")
    assert next(e for e in events if isinstance(e, Reconnected)).resumed_from_ms == 4680


def test_without_reconnect_a_shutdown_ends_the_stream_with_server_error():
    events, error = run(FakeServer(shutdown_after=3), reconnect=False)
    assert isinstance(error, ServerError) and error.code == "shutting_down"
    assert [e.type for e in events][-3:] == ["error", "turn.assessed", "session.ended"] and events[
        -1
    ].reason == "shutdown"


def test_the_buffer_stays_small_over_a_long_stream():
    rb = ReplayBuffer(RATE, idle_retain_s=5.0)
    for second in range(120):
        rb.add_audio(np.ones(RATE, np.int16))
        rb.sent = rb.end
        if second % 10 == 5:  # a two-second turn, answered at once
            turn = second // 10 + 1
            for event in (
                TurnStarted(turn, (second - 2) * 1000),
                TurnEnded(turn, (second - 2) * 1000, second * 1000, "silence"),
                TurnFailed(turn, (second - 2) * 1000, second * 1000, "audio_silent", ""),
            ):
                rb.on_event(event)
        assert len(rb._buf) <= 2 * 7 * RATE  # 5 s retained, trimmed in whole seconds
    assert rb.retain_from() == 115 * RATE // 480 * 480  # the end of the last turn, down to the 30 ms grid
