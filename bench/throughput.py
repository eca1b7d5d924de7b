"""How many concurrent real-time streams one machine sustains with p95 latency under 2 s.

One real ``multipa-server`` (bundled models; ``--workers`` processes of the
embedded pool, or MQTT workers with ``--pool mqtt``) serves 1, 2, 3, ...
concurrent clients, each streaming a conversation of development-speaker
utterances at real-time pace, offset from one another so that turns end at
different moments, as in real traffic. Per level: latency from ``turn.ended`` to
``turn.assessed`` at the client (p50, p95, max), failed turns, and the resident
memory of the server and of each worker. It stops at the first level whose p95
is over the target (or that fails turns) and reports the last level that met it.

    python bench/throughput.py [--workers 1] [--max-streams 6] [--turns 4] [--json-out bench/results/throughput-local.json]
    python bench/throughput.py --pool mqtt --workers 2 --broker mqtt://127.0.0.1:1883
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, ServerProcess, _rss_mib, conversation, emit, machine, percentiles, pick_turns, stream, table  # noqa: E402


async def level(url: str, audio: np.ndarray, streams: int, stagger_s: float) -> list:
    async def one(i: int):
        await asyncio.sleep(i * stagger_s)
        return await stream(url, audio, realtime=True)

    return await asyncio.gather(*(one(i) for i in range(streams)))


def measure(outcomes: list) -> dict:
    latencies, failed, assessed, started = [], [], 0, 0
    for outcome in outcomes:
        ended = {r.event["turn_id"]: r.at for r in outcome.of("turn.ended")}
        started += len(outcome.of("turn.started"))
        for r in outcome.of("turn.assessed"):
            assessed += 1
            latencies.append((r.at - ended[r.event["turn_id"]]) * 1000.0)
        failed += [r.event.get("code") for r in outcome.of("turn.failed")]
    return {
        "turns_started": started,
        "turns_assessed": assessed,
        "turns_failed": len(failed),
        "failure_codes": sorted(set(failed)),
        "latency_ms": percentiles(latencies),
    }


def start_mqtt_workers(
    count: int, broker: str, prefix: str, threads: int, env: dict[str, str] | None = None
) -> list[subprocess.Popen]:
    env = {**os.environ, **(env or {}), "MULTIPA_THREADS": str(threads)}
    command = [
        sys.executable,
        "-m",
        "multipa_server.worker_cli",
        "--broker",
        broker,
        "--prefix",
        prefix,
        "--device",
        "cpu",
    ]
    return [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(f"/tmp/multipa-bench-worker-{i}.log", "w"),
        )
        for i in range(count)
    ]


def wait_for_workers(url: str, count: int, timeout: float = 600.0) -> None:
    """Until the gateway's /healthz counts ``count`` workers ready (they load the models first)."""
    import json
    import urllib.error
    import urllib.request

    health = url.replace("ws://", "http://").rsplit("/v1/", 1)[0] + "/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=5) as response:
                if json.loads(response.read())["workers_ready"] >= count:
                    return
        except urllib.error.HTTPError as exc:  # 503 while no worker is ready
            if json.loads(exc.read() or b"{}").get("workers_ready", 0) >= count:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{count} MQTT workers were not ready within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", choices=["local", "mqtt"], default="local")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--max-streams", type=int, default=6)
    parser.add_argument("--turns", type=int, default=4, help="turns per stream")
    parser.add_argument(
        "--gap-s", type=float, default=3.0, help="silence between a stream's turns (the learner listens to the bot)"
    )
    parser.add_argument("--target-p95-ms", type=float, default=2000.0)
    parser.add_argument("--server-args", default="")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    picked = pick_turns(args.turns, 3.0, 5.0, seed=11)
    audio = conversation([s for _, s in picked], args.gap_s)
    cycle_s = len(audio) / 16000 / args.turns
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    workers: list[subprocess.Popen] = []
    extra = args.server_args.split()
    if args.pool == "mqtt":
        prefix = f"multipa-bench-{uuid.uuid4().hex[:8]}"
        workers = start_mqtt_workers(args.workers, args.broker, prefix, threads)
        extra += ["--broker", args.broker, "--prefix", prefix]
    else:
        extra += ["--workers", str(args.workers)]
    server = ServerProcess(extra)
    levels = []
    try:
        if workers:
            wait_for_workers(server.url, len(workers))
        for streams in range(1, args.max_streams + 1):
            outcomes = asyncio.run(level(server.url, audio, streams, cycle_s / streams))
            result = {"streams": streams, **measure(outcomes)}
            rss = server.rss_mib()
            rss.update({f"mqtt-worker-{w.pid}": _rss_mib(w.pid) for w in workers})
            result["rss_mib"] = {k: round(v, 1) for k, v in rss.items()}
            levels.append(result)
            print(
                f"  {streams} streams: p95 {result['latency_ms'].get('p95')} ms, failed {result['turns_failed']}",
                file=sys.stderr,
            )
            if result["turns_failed"] or result["latency_ms"].get("p95", 1e9) > args.target_p95_ms:
                break
    finally:
        server.stop()
        for w in workers:
            w.terminate()
    sustained = max(
        (
            lv["streams"]
            for lv in levels
            if not lv["turns_failed"] and lv["latency_ms"].get("p95", 1e9) <= args.target_p95_ms
        ),
        default=0,
    )
    worker_rss = [v for lv in levels for k, v in lv["rss_mib"].items() if "worker" in k]
    result = {
        "benchmark": "throughput",
        "machine": machine(),
        "config": {
            "pool": args.pool,
            "workers": args.workers,
            "threads_per_worker": threads,
            "turns_per_stream": args.turns,
            "turn_s": "3-5",
            "gap_s": args.gap_s,
            "target_p95_ms": args.target_p95_ms,
        },
        "sustained_streams": sustained,
        "worker_rss_mib_max": round(max(worker_rss), 1) if worker_rss else None,
        "levels": levels,
    }
    rows = [
        [
            lv["streams"],
            lv["turns_assessed"],
            lv["turns_failed"],
            lv["latency_ms"].get("p50"),
            lv["latency_ms"].get("p95"),
            lv["latency_ms"].get("max"),
            round(sum(lv["rss_mib"].values())),
        ]
        for lv in levels
    ]
    readable = (
        table(rows, ["streams", "assessed", "failed", "p50 ms", "p95 ms", "max ms", "RSS MiB"])
        + f"\nsustained with p95 <= {args.target_p95_ms:.0f} ms: {sustained} stream(s) ({args.pool} pool, {args.workers} worker(s))"
    )
    emit(result, readable, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
