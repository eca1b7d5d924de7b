"""End to end: the SDK against the real `multipa-server` (one worker, real models)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from multipa_client import (
    AuthenticationError,
    ConnectionRefused,
    MultipaClient,
    ReconnectPolicy,
    Reconnected,
    SessionEnded,
    SessionStarted,
    TurnAssessed,
    TurnEnded,
    TurnFailed,
    TurnStarted,
    to_dict,
)
from multipa_client.testing import FakeServer, Recording
from multipa_server.protocol import VadOptions
from multipa_server.segmenter import SegmentEnded, Segmenter
from tests.server.speech import RATE, utterance
from tests.server.test_segmenter import noisy
from tests.server.wsclient import ServerProcess, http_get, one_worker_server

from .record import THREE_TURNS, record, three_turns_audio

pytestmark = pytest.mark.models

KEY = "sdk-test-key"


@pytest.fixture(scope="module")
def server(scorer, tmp_path_factory):
    yield from one_worker_server(scorer, KEY, tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="module")
def three_turns():
    audio = three_turns_audio()
    seg = Segmenter(RATE, VadOptions())
    expected = [(e.start_ms, e.end_ms) for e in seg.feed(audio.tobytes()) + seg.flush() if isinstance(e, SegmentEnded)]
    assert len(expected) == 3
    return audio, expected


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


def check_turns(events: list, expected: list[tuple[int, int]], tolerance_ms: int = 0) -> list[TurnAssessed]:
    """Every turn announced once, ended once, assessed once, where the segmenter puts it."""
    assert isinstance(events[0], SessionStarted) and isinstance(events[-1], SessionEnded)
    started = [e.turn_id for e in events if isinstance(e, TurnStarted)]
    assert started == list(range(1, len(expected) + 1)), [e.type for e in events]
    assert not [e for e in events if isinstance(e, TurnFailed)]
    assessed = sorted((e for e in events if isinstance(e, TurnAssessed)), key=lambda e: e.turn_id)
    assert [e.turn_id for e in assessed] == started
    ended = [e for e in events if isinstance(e, TurnEnded)]
    assert [e.turn_id for e in ended] == started
    for e, (start, end) in zip(assessed, expected):
        assert abs(e.start_ms - start) <= tolerance_ms and abs(e.end_ms - end) <= tolerance_ms, (
            e.start_ms,
            e.end_ms,
            start,
            end,
        )
        a = e.assessment
        assert a.transcript.strip() and a.words and all(0 <= w.total <= 10 and w.phones for w in a.words)
        assert 0 <= a.sentence.total <= 10 and e.latency_ms.assess > 0
    summary = events[-1]
    assert (summary.reason, summary.turns_started, summary.turns_assessed, summary.turns_failed) == (
        "client",
        len(expected),
        len(expected),
        0,
    )
    return assessed


async def collect(stream) -> list:
    return [event async for event in stream]


def test_a_file_streamed_in_real_time(server, three_turns, tmp_path):
    audio, expected = three_turns
    path = write_wav(tmp_path / "three.wav", audio)

    async def go():
        async with MultipaClient(server.url, api_key=KEY) as client:
            return await asyncio.wait_for(collect(client.stream_file(path, realtime=True)), 240)

    events = asyncio.run(go())
    assert events[0].realtime is True
    assessed = check_turns(events, expected)
    said = " ".join(e.assessment.transcript.lower() for e in assessed)
    assert "good" in said and "boy" in said


def test_float_arrays_at_a_rate_the_server_does_not_take_faster_than_real_time(server, three_turns):
    audio, expected = three_turns
    from multipa_core.audio import resample

    floats = resample(audio.astype(np.float32) / 32768.0, RATE, 22050)  # 22.05 kHz: the client resamples to 16 kHz

    async def source():
        for i in range(0, len(floats), 2205):
            yield floats[i : i + 2205]

    async def go():
        async with MultipaClient(server.url, api_key=KEY, realtime=False) as client:
            return await asyncio.wait_for(collect(client.stream(source(), sample_rate=22050)), 240)

    events = asyncio.run(go())
    assert events[0].sample_rate == 16000 and events[0].realtime is False
    check_turns(events, expected, tolerance_ms=60)  # resampled twice: the VAD may move by a frame or two


class Proxy:
    """A TCP proxy in front of the server whose open connections the test can cut."""

    def __init__(self, port: int) -> None:
        self.port, self.cuts = port, 0
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._pairs.append((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        """Reset every open connection, both ways, as a network failure would."""
        for a, b in self._pairs:
            a.transport.abort()
            b.transport.abort()
        self._pairs.clear()
        self.cuts += 1

    async def close(self) -> None:
        self._server.close()


def metric(server, name: str) -> float:
    text = http_get(server.http + "/metrics")[2]
    return sum(
        float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


def test_a_dropped_connection_resumes_without_assessing_a_turn_twice(server, three_turns):
    audio, expected = three_turns
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    assessed_before = metric(server, "multipa_turns_assessed_total")

    async def go():
        proxy = Proxy(port)
        url = f"ws://127.0.0.1:{await proxy.start()}/v1/stream"
        events = []

        async def source():
            for i in range(0, len(audio), 320):
                yield audio[i : i + 320]

        async with MultipaClient(url, api_key=KEY, reconnect=ReconnectPolicy(initial_delay_s=0.2)) as client:

            async def consume():
                async for event in client.stream(source(), sample_rate=RATE, realtime=True):
                    events.append(event)
                    if isinstance(event, TurnAssessed) and proxy.cuts == 0:
                        proxy.cut()  # mid-session: the first result is in, the other turns are not

            await asyncio.wait_for(consume(), 240)
        await proxy.close()
        return events

    events = asyncio.run(go())
    (reconnected,) = [e for e in events if isinstance(e, Reconnected)]
    first = next(e for e in events if isinstance(e, TurnAssessed))
    # resumed after the assessed turn (never replaying it), 500 ms before the earliest turn
    # without a result (30 ms grid); when the cut came before the next turn began, from where
    # the assessed one ended, which is earlier still
    earliest_open = (expected[first.turn_id][0] - 500) // 30 * 30
    assert first.end_ms // 30 * 30 - 30 <= reconnected.resumed_from_ms <= earliest_open, (
        reconnected,
        first.end_ms,
        earliest_open,
    )
    # the resumed session's VAD sees each onset as the first did: the same turns, give or take a frame
    check_turns([e for e in events if not isinstance(e, Reconnected)], expected, tolerance_ms=30)
    # the server assessed each of the three turns once: nothing resent was assessed again
    assert metric(server, "multipa_turns_assessed_total") - assessed_before == 3


def test_a_wrong_or_missing_key_and_a_closed_port(server):
    async def enter(url: str, key: str | None) -> None:
        async with MultipaClient(url, api_key=key):
            pass

    for key in ("wrong", None):
        with pytest.raises(AuthenticationError, match="401"):
            asyncio.run(enter(server.url, key))
    with pytest.raises(ConnectionRefused):
        asyncio.run(enter("ws://127.0.0.1:9/v1/stream", KEY))


def test_the_cli_end_to_end(server, tmp_path):
    speech = noisy(
        np.concatenate([np.zeros(RATE // 2, np.int16), utterance("001350134"), np.zeros(RATE, np.int16)])
    )  # HE IS A BIG BOY
    path = write_wav(tmp_path / "boy.wav", speech)
    cli = [sys.executable, "-m", "multipa_client.cli", "stream", server.url, str(path)]
    readable = subprocess.run(
        [*cli, "--api-key", KEY, "--reference", "HE IS A BIG BOY"], capture_output=True, text=True, timeout=240
    )
    assert readable.returncode == 0, readable.stderr
    out = readable.stdout
    assert "turn 1:" in out and "completeness" in out and "session ended (client): 1 turns, 1 assessed, 0 failed" in out
    assert all(word in out for word in ("he", "big", "boy")) and "acc" in out
    as_json = subprocess.run(
        [*cli, "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**__import__("os").environ, "MULTIPA_API_KEY": KEY},
    )
    assert as_json.returncode == 0, as_json.stderr
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [e["type"] for e in events] == [
        "session.started",
        "turn.started",
        "turn.ended",
        "turn.assessed",
        "session.ended",
    ]
    assert events[3]["assessment"]["words"][0]["phones"]
    refused = subprocess.run([*cli, "--api-key", "wrong"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "error [unauthorized]" in refused.stderr


def structure(value):
    """Key sets all the way down (lists by their first item): what a client depends on."""
    if isinstance(value, dict):  # optional fields (docs/protocol.md) are not part of the structure
        return {k: structure(v) for k, v in value.items() if k not in ("timings_ms", "head_start", "completeness")}
    if isinstance(value, list):
        return [structure(value[0])] if value else []
    return type(value).__name__ if not isinstance(value, (int, float)) or isinstance(value, bool) else "number"


def test_the_fake_server_plays_what_the_real_server_says(server, tmp_path):
    utts, gaps = THREE_TURNS
    audio = three_turns_audio()[: int(sum(gaps[:2]) * RATE) + len(utterance(utts[0])) + RATE // 2]  # the first turn
    lines = asyncio.run(record(server.url, audio, realtime=False, api_key=KEY))
    fresh = Recording(lines[0], lines[1:])
    shipped = Recording.load("three_turns")
    kinds = {e["event"]["type"] for e in fresh.events}
    assert kinds == {"session.started", "turn.started", "turn.ended", "turn.assessed", "session.ended"}
    for kind in kinds:  # the shipped recording has the same messages, field for field
        ours = next(e["event"] for e in shipped.events if e["event"]["type"] == kind)
        theirs = next(e["event"] for e in fresh.events if e["event"]["type"] == kind)
        assert structure(ours) == structure(theirs), kind

    # and the client gets the same events from the fake playing the fresh recording as the server sent
    async def go():
        async with MultipaClient("ws://fake/v1/stream", transport=FakeServer(fresh), realtime=False) as client:
            return await collect(client.stream([audio], sample_rate=RATE))

    played = [to_dict(e) for e in asyncio.run(go())]
    assert [{k: v for k, v in e.items() if k != "session_id"} for e in played] == [
        {k: v for k, v in e["event"].items() if k != "session_id"} for e in fresh.events
    ]


def test_a_server_restart_mid_stream_resumes_on_another_server(server, scorer, three_turns, tmp_path):
    """A rolling restart: the stream's server drains and stops; the proxy now leads to another one."""
    audio, expected = three_turns
    port_of = lambda url: int(url.rsplit(":", 1)[1].split("/")[0])  # noqa: E731
    stopping = ServerProcess(["--workers", "1", "--scorer", scorer, "--api-key", KEY], tmp_path / "stopping.log")
    assessed_before = metric(server, "multipa_turns_assessed_total")

    async def go():
        proxy = Proxy(port_of(stopping.url))
        url = f"ws://127.0.0.1:{await proxy.start()}/v1/stream"
        events = []

        async def source():
            for i in range(0, len(audio), 320):
                yield audio[i : i + 320]

        async with MultipaClient(url, api_key=KEY, reconnect=ReconnectPolicy(initial_delay_s=0.2)) as client:

            async def consume():
                async for event in client.stream(source(), sample_rate=RATE, realtime=True):
                    events.append(event)
                    if isinstance(event, TurnEnded) and proxy.port != port_of(server.url):
                        stopping.terminate()  # SIGTERM after turn 1: it assesses that turn, says shutdown, exits
                        proxy.port = port_of(server.url)

            await asyncio.wait_for(consume(), 300)
        await proxy.close()
        return events

    try:
        events = asyncio.run(go())
    finally:
        code = stopping.stop()
    assert code == 0 and "Traceback" not in stopping.log()
    (reconnected,) = [e for e in events if isinstance(e, Reconnected)]
    assert "shutting_down" in reconnected.cause and expected[0][1] <= reconnected.resumed_from_ms < expected[1][0]
    # the same three turns as without the restart, turn 1 from the first server, 2 and 3 from the second
    check_turns([e for e in events if not isinstance(e, Reconnected)], expected, tolerance_ms=30)
    at = events.index(reconnected)
    assert [e.turn_id for e in events[:at] if isinstance(e, TurnAssessed)] == [1]
    assert metric(server, "multipa_turns_assessed_total") - assessed_before == 2  # nothing assessed twice
