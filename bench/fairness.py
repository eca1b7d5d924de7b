"""Fairness: a quiet session's turn latency alone, and beside noisy neighbours.

A real ``multipa-server`` (bundled models, embedded pool) serves a quiet session
that speaks ``--turns`` utterances at real time, once alone and once while
``--noisy`` other sessions stream white noise as fast as the server takes it
(``realtime: false``, VAD on, so every ``--noise-turn-ms`` of noise is a turn for
the workers). The quiet session's latency is ``latency_ms.total`` of each
``turn.assessed`` (from ``turn.ended`` to the result); a quiet turn that fails
(``overloaded``, ``too_many_turns``) is counted as lost. With the fair queue a
noisy session's backlog waits behind the quiet session's turn, not in front of it.

    python bench/fairness.py [--turns 4] [--noisy 1 7] [--noise-s 60] [--json-out bench/results/fairness.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RATE, ServerProcess, conversation, emit, machine, percentiles, pick_turns, stream, table  # noqa: E402


async def noisy(url: str, seconds: float, turn_ms: int, stop: asyncio.Event, seed: int) -> Counter[str]:
    """White noise, as fast as the server reads it, until ``stop`` or ``seconds`` of audio."""
    from websockets.asyncio.client import connect

    outcomes: Counter[str] = Counter()
    noise = np.random.default_rng(seed).normal(0.0, 3000.0, RATE).clip(-32768, 32767).astype(np.int16).tobytes()
    async with connect(url, max_size=None, open_timeout=60) as ws:

        async def receive() -> None:
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "turn.assessed":
                    outcomes["assessed"] += 1
                elif event["type"] == "turn.failed":
                    outcomes[event["code"]] += 1

        receiver = asyncio.create_task(receive())
        vad = {"max_turn_ms": turn_ms, "hangover_ms": 600}
        await ws.send(json.dumps({"type": "session.start", "sample_rate": RATE, "realtime": False, "vad": vad}))
        for _ in range(int(seconds)):
            if stop.is_set():
                break
            for offset in range(0, len(noise), 6400):
                await ws.send(noise[offset : offset + 6400])
            await asyncio.sleep(0.05)
        await ws.send(json.dumps({"type": "session.end"}))
        await asyncio.wait_for(receiver, 900)
    return outcomes


async def trial(url: str, audio: np.ndarray, neighbours: int, args: argparse.Namespace) -> dict:
    stop = asyncio.Event()
    noise = [
        asyncio.create_task(noisy(url, args.noise_s, args.noise_turn_ms, stop, seed)) for seed in range(neighbours)
    ]
    if noise:
        await asyncio.sleep(args.head_start)  # the neighbours' backlog is there before the quiet session speaks
    outcome = await stream(url, audio, realtime=True)
    stop.set()
    noise_outcomes = sum((await asyncio.gather(*noise)), Counter())
    latencies = [r.event["latency_ms"]["total"] for r in outcome.of("turn.assessed")]
    failed = Counter(r.event["code"] for r in outcome.of("turn.failed"))
    return {
        "neighbours": neighbours,
        "turns": len(outcome.of("turn.started")),
        "assessed": len(latencies),
        "failed": dict(failed),
        "latency_ms": percentiles(latencies),
        "per_turn_ms": [
            {k: round(v) for k, v in r.event["latency_ms"].items() if k in ("queue", "assess", "total")}
            for r in outcome.of("turn.assessed")
        ],
        "neighbour_turns": dict(noise_outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=4, help="utterances the quiet session says")
    parser.add_argument(
        "--noisy", type=int, nargs="+", default=[1], help="noisy neighbour sessions of each trial after the first"
    )
    parser.add_argument("--noise-s", type=float, default=60.0, help="noise each neighbour sends at most")
    parser.add_argument(
        "--noise-turn-ms", type=int, default=5000, help="the neighbours' max_turn_ms: each this much noise is a turn"
    )
    parser.add_argument(
        "--head-start", type=float, default=5.0, help="seconds the neighbours stream before the quiet session starts"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    turns = [samples for _, samples in pick_turns(args.turns, 2.0, 5.0)]
    audio = conversation(turns, 1.5)
    server = ServerProcess(["--workers", str(args.workers)])
    try:
        trials = [asyncio.run(trial(server.url, audio, n, args)) for n in [0, *args.noisy]]
    finally:
        server.stop()
    rows = [
        [
            t["neighbours"],
            t["turns"],
            t["assessed"],
            sum(t["failed"].values()),
            t["latency_ms"].get("p50", "-"),
            t["latency_ms"].get("p95", "-"),
            t["latency_ms"].get("max", "-"),
            json.dumps(t["neighbour_turns"]),
        ]
        for t in trials
    ]
    readable = table(
        rows, ["neighbours", "quiet turns", "assessed", "failed", "p50 ms", "p95 ms", "max ms", "neighbours' turns"]
    )
    result = {
        "benchmark": "fairness",
        "machine": machine(),
        "workers": args.workers,
        "noise_turn_ms": args.noise_turn_ms,
        "trials": trials,
    }
    emit(result, readable, args.json_out)


if __name__ == "__main__":
    main()
