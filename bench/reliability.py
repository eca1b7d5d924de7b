"""Reliability: the four defects of issue 19, replayed against a real server.

A real ``multipa-server --workers 1`` (bundled models, embedded pool) is attacked the
way the issue found each defect, and what the server did is measured:

1. *long turns*: a turn must never outgrow ``max_turn_ms``. (a) ``session.end`` arrives
   300 samples past a 30 ms frame boundary of continuous sound just under the limit;
   (b) the hang-over close and the split fall on the same frame (turn off the 30 ms
   grid, ``post_roll_ms`` = ``hangover_ms``). Reports every turn's length and outcome.
2. *a turn that waits for the client*: the only worker busy with another session, one
   129 KB frame holding a pause, a 2 s utterance and the turn's end, then nothing.
   Reports the seconds from that frame to ``turn.assessed`` (the defect: 61.7 s).
3. *a worker killed while idle*: ``kill -9`` the idle worker; reports the seconds until
   ``/healthz`` answers 200 again, the new worker's pid and ``/metrics``' restart count.
4. *push-to-talk turn spam*: ``vad.enabled: false``, then a 2-byte frame + ``turn.end``,
   repeated; reports the server's CPU seconds per 5,000 turns over the run (the defect:
   3 s rising to 47 s), whether any of those turns reached a worker, and a quiet
   session's turns while three spamming sessions run.

    python bench/reliability.py [--spam-turns 40000] [--json-out bench/results/reliability.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RATE, ServerProcess, _children, emit, machine, pick_turns, stream, table  # noqa: E402

TERMINAL = ("turn.assessed", "turn.failed")


@dataclass(frozen=True)
class Address:
    """Where the server under test answers: its websocket URL and its health and metrics pages."""

    url: str
    health: str
    metrics: str

    @classmethod
    def of(cls, url: str) -> Address:
        base = url.replace("ws://", "http://", 1).split("/v1/", 1)[0]
        return cls(url, f"{base}/healthz", f"{base}/metrics")


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """White noise (webrtcvad hears it as speech) as int16 samples."""
    n = int(round(seconds * RATE))
    return np.random.default_rng(seed).normal(0.0, 3000.0, n).clip(-32768, 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * RATE)), dtype=np.int16)


def http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (its own threads, not its children)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers(server_pid: int) -> list[int]:
    """The server's worker processes (multiprocessing children, not its resource tracker)."""
    found = []
    for pid in _children(server_pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.append(pid)
    return found


def turns_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each turn's length (turn.ended) and outcome (its terminal event)."""
    ended = {e["turn_id"]: e for e in events if e["type"] == "turn.ended"}
    out = []
    for e in events:
        if e["type"] in TERMINAL:
            end = ended.get(e["turn_id"])
            length = end["end_ms"] - end["start_ms"] if end else None
            out.append({"turn_id": e["turn_id"], "ms": length, "outcome": e.get("code", "assessed")})
    return out


async def long_turns(at: Address) -> dict[str, Any]:
    """Defect 1: the two orders of events that let a turn outgrow max_turn_ms."""
    frame = RATE * 30 // 1000
    cases = {
        # (a) continuous sound until 300 samples past a 30 ms boundary, still under 30 s, then session.end
        "end_between_frames": (
            {"max_turn_ms": 30000, "hangover_ms": 10000},
            np.concatenate([silence(1.0), noise((((29_900 * RATE // 1000) // frame) * frame + 300) / RATE)]),
        ),
        # (b) off-grid start (pre-roll), post-roll = hang-over: the close and the split on the same frame
        "hangover_on_split_frame": (
            {"max_turn_ms": 30000, "hangover_ms": 600, "post_roll_ms": 600},
            np.concatenate([silence(1.0), noise(29.1), silence(3.0)]),
        ),
    }
    return {name: await _long_case(at, vad, audio) for name, (vad, audio) in cases.items()}


async def _long_case(at: Address, vad: dict[str, Any], audio: np.ndarray) -> dict[str, Any]:
    outcome = await stream(at.url, audio, realtime=False, chunk_ms=100, start={"vad": vad})
    turns = turns_of([r.event for r in outcome.events])
    return {
        "vad": vad,
        "turns": turns,
        "longest_ms": max((t["ms"] or 0 for t in turns), default=0),
        "too_long": sum(t["outcome"] == "audio_too_long" for t in turns),
    }


async def occupy(at: Address, ended: asyncio.Event) -> None:
    """A session whose one 25 s turn keeps the only worker busy; ``ended`` is set at its turn.ended."""
    from websockets.asyncio.client import connect

    audio = np.concatenate([silence(0.3), noise(25.0), silence(1.0)])
    async with connect(at.url, max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "session.start", "sample_rate": RATE, "realtime": False}))
        for offset in range(0, len(audio), RATE):
            await ws.send(audio[offset : offset + RATE].tobytes())
        await ws.send(json.dumps({"type": "session.end"}))
        async for message in ws:
            if json.loads(message)["type"] == "turn.ended":
                ended.set()


async def waiting_turn(at: Address) -> dict[str, Any]:
    """Defect 2: one frame holding a pause and the turn's end, the only worker busy elsewhere."""
    from websockets.asyncio.client import connect

    (_, speech), *_ = pick_turns(1, 1.9, 2.6)
    frame = np.concatenate([silence(0.3), speech[: 2 * RATE], silence(1.75)])
    busy_ended = asyncio.Event()
    busy = asyncio.create_task(occupy(at, busy_ended))
    await asyncio.wait_for(busy_ended.wait(), 120)  # the busy session's long turn is with the only worker now
    async with connect(at.url, max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "session.start", "sample_rate": RATE, "realtime": False}))
        await ws.recv()  # session.started
        sent = time.perf_counter()
        await ws.send(frame.tobytes())
        events: dict[str, float] = {}
        assessed: dict[str, Any] = {}
        while "turn.assessed" not in events and "turn.failed" not in events:
            event = json.loads(await asyncio.wait_for(ws.recv(), 120))
            events.setdefault(event["type"], round(time.perf_counter() - sent, 2))
            if event["type"] == "turn.assessed":
                assessed = event
        await ws.send(json.dumps({"type": "session.end"}))
    await busy
    return {
        "frame_bytes": len(frame.tobytes()),
        "seconds_after_frame": events,
        "latency_ms": assessed.get("latency_ms"),
    }


def killed_worker(at: Address, server: ServerProcess) -> dict[str, Any]:
    """Defect 3: kill -9 an idle worker; how long /healthz stays 503 and what replaces it."""
    before = workers(server.proc.pid)
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    killed = time.perf_counter()
    seen_503 = False
    while time.perf_counter() - killed < 60:
        status, body = http(at.health)
        seen_503 = seen_503 or status == 503
        if status == 200 and victim not in workers(server.proc.pid) and seen_503:
            break
        if status == 200 and not seen_503 and time.perf_counter() - killed > 5:
            break  # replaced before the first probe saw it down
        time.sleep(0.1)
    ready_s = round(time.perf_counter() - killed, 2)
    restarts = [line for line in http(at.metrics)[1].splitlines() if line.startswith("multipa_worker_restarts_total")]
    return {
        "killed_pid": victim,
        "healthz_200_after_s": ready_s,
        "healthz_final": json.loads(http(at.health)[1]),
        "new_workers": sorted(set(workers(server.proc.pid)) - set(before)),
        "restarts_metric": restarts,
    }


async def spam(at: Address, turns: int, block: int, server_pid: int | None) -> dict[str, Any]:
    """Defect 4: 2-byte frame + turn.end, repeated; CPU per block of turns."""
    from websockets.asyncio.client import connect

    outcomes: Counter[str] = Counter()
    cpu: list[float] = []
    async with connect(at.url, max_size=None, open_timeout=60) as ws:
        await ws.send(
            json.dumps({"type": "session.start", "sample_rate": RATE, "realtime": False, "vad": {"enabled": False}})
        )

        async def receive() -> None:
            async for message in ws:
                event = json.loads(message)
                if event["type"] in TERMINAL:
                    outcomes[event.get("code", "assessed")] += 1

        receiver = asyncio.create_task(receive())
        end = json.dumps({"type": "turn.end"})
        last = cpu_seconds(server_pid) if server_pid else 0.0
        for i in range(turns):
            await ws.send(b"\x00\x01")
            await ws.send(end)
            while i + 1 - sum(outcomes.values()) > 20 and not receiver.done():  # read what the server sends
                await asyncio.sleep(0.002)
            if receiver.done():
                raise RuntimeError(f"the server closed the spam session after {i + 1} turns: {receiver.exception()}")
            if (i + 1) % block == 0:
                if server_pid:
                    now = cpu_seconds(server_pid)
                    cpu.append(round(now - last, 2))
                    last = now
        await ws.send(json.dumps({"type": "session.end"}))
        await asyncio.wait_for(receiver, 300)
    return {"turns": turns, "outcomes": dict(outcomes), "server_cpu_s_per_block": cpu}


async def spam_beside_quiet(at: Address, turns: int) -> dict[str, Any]:
    """Three spamming sessions while a quiet session says three utterances at real time."""
    from common import conversation

    speech = [samples for _, samples in pick_turns(3, 2.0, 4.0)]
    spammers = [asyncio.create_task(spam(at, turns, turns, None)) for _ in range(3)]
    quiet = await stream(at.url, conversation(speech, 1.5), realtime=True)
    results = await asyncio.gather(*spammers)
    failed = Counter(r.event["code"] for r in quiet.of("turn.failed"))
    return {
        "quiet_turns": len(quiet.of("turn.started")),
        "quiet_assessed": len(quiet.of("turn.assessed")),
        "quiet_failed": dict(failed),
        "spam_outcomes": dict(sum((Counter(r["outcomes"]) for r in results), Counter())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spam-turns", type=int, default=40_000, help="turns of the push-to-talk spam session")
    parser.add_argument("--block", type=int, default=5_000, help="turns per CPU reading")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    server = ServerProcess(["--workers", "1"])
    at = Address.of(server.url)
    stages = {
        "long_turns": lambda: asyncio.run(long_turns(at)),
        "waiting_turn": lambda: asyncio.run(waiting_turn(at)),
        "killed_worker": lambda: killed_worker(at, server),
        "spam": lambda: asyncio.run(spam(at, args.spam_turns, args.block, server.proc.pid)),
        "spam_beside_quiet": lambda: asyncio.run(spam_beside_quiet(at, max(1000, args.spam_turns // 8))),
    }
    result: dict[str, Any] = {"benchmark": "reliability", "machine": machine()}
    try:
        for name, run in stages.items():
            started = time.perf_counter()
            print(f"{name} ...", file=sys.stderr, flush=True)
            result[name] = run()
            print(f"{name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    finally:
        server.stop()
    long_rows = [
        [name, case["longest_ms"], case["too_long"], json.dumps(Counter(t["outcome"] for t in case["turns"]))]
        for name, case in result["long_turns"].items()
    ]
    wait = result["waiting_turn"]
    kill = result["killed_worker"]
    cpu = result["spam"]["server_cpu_s_per_block"]
    quiet = result["spam_beside_quiet"]
    readable = "\n\n".join(
        [
            table(long_rows, ["long turn case", "longest ms", "audio_too_long", "outcomes"]),
            table(
                [
                    ["turn behind a busy worker: s to turn.assessed", wait["seconds_after_frame"].get("turn.assessed")],
                    ["idle worker kill -9: s until /healthz 200", kill["healthz_200_after_s"]],
                    ["new worker pids", kill["new_workers"]],
                    [f"spam: server CPU s per {args.block} turns", cpu],
                    ["spam outcomes", json.dumps(result["spam"]["outcomes"])],
                    [
                        "quiet session beside 3 spammers: assessed/said",
                        f"{quiet['quiet_assessed']}/{quiet['quiet_turns']}",
                    ],
                ],
                ["measure", "value"],
            ),
        ]
    )
    emit(result, readable, args.json_out)


if __name__ == "__main__":
    main()
