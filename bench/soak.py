"""Soak: many concurrent sessions, many turns each, for minutes; nothing lost, memory flat.

A real ``multipa-server`` (bundled models, embedded pool) serves rounds of
concurrent sessions until ``--minutes`` have passed. Each round mixes
well-behaved clients (a conversation sent faster than real time, then
``session.end``), clients that also send garbage (malformed JSON, unknown types:
non-fatal errors), and clients that vanish mid-turn (the TCP connection dropped
without a close). For every session that stayed, every ``turn.started`` must get
exactly one ``turn.assessed`` or ``turn.failed`` and ``session.ended`` must come
last; failures must carry a code. The resident memory of the server and its
workers is sampled throughout: it must not grow after the first round.

    python bench/soak.py [--minutes 5] [--sessions 6] [--turns 6] [--json-out bench/results/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RATE, ServerProcess, conversation, emit, machine, pick_turns, table  # noqa: E402


async def client(url: str, audio: np.ndarray, kind: str, rng: random.Random) -> dict:
    from websockets.asyncio.client import connect

    events: list[dict] = []
    chunk = RATE // 10  # 100 ms
    stop_at = len(audio) if kind != "vanish" else rng.randrange(len(audio) // 4, len(audio) * 3 // 4)
    async with connect(url, max_size=None, open_timeout=60) as ws:

        async def receive() -> None:
            async for message in ws:
                events.append(json.loads(message))

        receiver = asyncio.create_task(receive())
        await ws.send(json.dumps({"type": "session.start", "sample_rate": RATE, "realtime": False}))
        for i, offset in enumerate(range(0, stop_at, chunk)):
            await ws.send(audio[offset : min(offset + chunk, stop_at)].tobytes())
            if kind == "garbage" and i % 37 == 5:
                await ws.send(
                    rng.choice(
                        [
                            "{nope",
                            json.dumps({"type": "turn.dance"}),
                            json.dumps({"type": "turn.reference"}),
                            json.dumps([1, 2]),
                        ]
                    )
                )
            if i % 10 == 0:
                await asyncio.sleep(0.05)  # 2x real time: turns arrive over the round, not all at once
        if kind == "vanish":
            ws.transport.abort()  # gone without a close frame, turns in flight
            receiver.cancel()
            return {"kind": kind, "events": events}
        await ws.send(json.dumps({"type": "session.end"}))
        await asyncio.wait_for(receiver, 900)
    return {"kind": kind, "events": events}


def check(session: dict) -> list[str]:
    """The protocol's promises over one session that stayed; the problems found."""
    events = session["events"]
    problems = []
    started = [e["turn_id"] for e in events if e["type"] == "turn.started"]
    terminal = Counter(e["turn_id"] for e in events if e["type"] in ("turn.assessed", "turn.failed"))
    if set(terminal) != set(started) or any(n != 1 for n in terminal.values()):
        problems.append(f"turns started {started}, terminal events {dict(terminal)}")
    if not events or events[-1]["type"] != "session.ended":
        problems.append("session.ended is not the last event")
    if any(e["type"] == "turn.failed" and not e.get("code") for e in events):
        problems.append("a failure without a code")
    if any(e["type"] == "error" and e.get("fatal") for e in events):
        problems.append(
            "a fatal error: " + json.dumps([e for e in events if e["type"] == "error" and e.get("fatal")])[:300]
        )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=6, help="concurrent sessions per round")
    parser.add_argument("--turns", type=int, default=6, help="turns per session")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    pool = pick_turns(max(12, args.turns * 2), 2.0, 5.0, seed=args.seed)
    server = ServerProcess(["--workers", str(args.workers), "--max-queue", "64"])
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        began = time.monotonic()
        while not done.is_set():
            samples.append((round(time.monotonic() - began, 1), round(sum(server.rss_mib().values()), 1)))
            done.wait(5.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sessions, rounds, round_rss = [], 0, []
    began = time.monotonic()
    try:
        while rounds == 0 or time.monotonic() - began < args.minutes * 60:  # at least one round
            kinds = ["normal", "garbage", "vanish"] * args.sessions
            batch = []
            for i in range(args.sessions):
                turns = [s for _, s in rng.sample(pool, args.turns)]
                batch.append((conversation(turns, rng.uniform(0.8, 1.5)), kinds[i]))

            async def round_() -> list:
                return await asyncio.gather(
                    *(client(server.url, audio, kind, rng) for audio, kind in batch), return_exceptions=True
                )

            sessions += asyncio.run(round_())
            rounds += 1
            round_rss.append(round(sum(server.rss_mib().values()), 1))
            print(f"  round {rounds}: {len(sessions)} sessions, RSS {round_rss[-1]} MiB", file=sys.stderr)
        alive = server.proc.poll() is None
    finally:
        done.set()
        sampler.join()
        code = server.stop()
    log = server.log_path.read_text(errors="replace")

    crashed = [repr(s) for s in sessions if isinstance(s, BaseException)]
    stayed = [s for s in sessions if isinstance(s, dict) and s["kind"] != "vanish"]
    problems = {i: p for i, s in enumerate(stayed) if (p := check(s))}
    counts = Counter(e["type"] for s in stayed for e in s["events"])
    failures = Counter(e.get("code") for s in stayed for e in s["events"] if e["type"] == "turn.failed")
    growth = round(round_rss[-1] - round_rss[0], 1) if len(round_rss) > 1 else 0.0
    result = {
        "benchmark": "soak",
        "machine": machine(),
        "config": {
            "minutes": args.minutes,
            "sessions_per_round": args.sessions,
            "turns_per_session": args.turns,
            "workers": args.workers,
        },
        "rounds": rounds,
        "sessions": len(sessions),
        "sessions_vanished": sum(1 for s in sessions if isinstance(s, dict) and s["kind"] == "vanish"),
        "client_errors": crashed,
        "turns_started": counts["turn.started"],
        "turns_assessed": counts["turn.assessed"],
        "turns_failed": counts["turn.failed"],
        "failure_codes": dict(failures),
        "sessions_breaking_a_promise": len(problems),
        "problems": {str(k): v for k, v in list(problems.items())[:10]},
        "server_alive_at_end": alive,
        "server_exit_code": code,
        "tracebacks_in_server_log": log.count("Traceback"),
        "lost_turns_logged": log.count("client left before receiving") + log.count("(client gone)"),
        "rss_mib_after_each_round": round_rss,
        "rss_growth_after_first_round_mib": growth,
        "rss_samples": samples,
    }
    ok = not problems and not crashed and alive and code == 0 and result["tracebacks_in_server_log"] == 0
    result["passed"] = ok
    readable = table(
        [
            ["sessions (vanished)", f"{len(sessions)} ({result['sessions_vanished']})"],
            ["turns started", counts["turn.started"]],
            ["assessed / failed", f"{counts['turn.assessed']} / {counts['turn.failed']} {dict(failures)}"],
            ["sessions breaking a promise", len(problems)],
            ["RSS after each round (MiB)", round_rss],
            ["growth after round 1 (MiB)", growth],
            ["server alive, exit code", f"{alive}, {code}"],
            ["passed", ok],
        ],
        ["soak", "result"],
    )
    emit(result, readable, args.json_out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
