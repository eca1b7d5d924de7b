"""How many live learners one machine serves, against what its cores allow.

For each pool given (the embedded ``multipa-server --workers N``, and the MQTT gateway
with ``multipa-worker`` processes on this same machine, broker at ``--broker``), one
real server serves 1, 2, 3, ... concurrent clients. Each client streams a conversation
of development-speaker utterances (3 to 6 s, ``--gap-s`` of silence between them; each
client starts at a different turn) at real-time pace, offset from one another so that
turns end at different moments. The ramp stops at the first level where a stream's p95
latency (``turn.ended`` to ``turn.assessed`` at the client) passes ``--target-p95-ms`` or
a turn fails; the level below it is what the pool sustains.

Per level: p50 / p95 / max latency over all turns and the worst stream's p95, CPU
seconds (user + system of the server, its worker processes and the MQTT workers; not
the broker's nor this client's) per second of speech assessed, and resident memory.
The ceiling comes from the cost of a turn measured at one stream, where nothing
waits: cores x turn interval / core-seconds per turn, the number of streams whose
turns would keep every core busy; sustained / ceiling says how close the pool gets.

    python bench/capacity.py [--pools local,mqtt] [--workers 1] [--turns 4] [--max-streams 8] [--json-out bench/results/capacity.json]

A pool spec is ``KIND[:WORKERS][+FLAG...][@VAR=VALUE...]``, e.g. ``local:2``,
``local+no-speculate`` or ``local@MULTIPA_RECOGNIZER_THREADS=2`` (a ``+FLAG`` is passed to
the server as ``--FLAG``, a ``@VAR=VALUE`` to the server and its workers' environment), so
that configurations are compared in one invocation on the same turns.
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
from common import (
    ServerProcess,
    _children,
    _rss_mib,
    conversation,
    emit,
    machine,
    percentiles,
    pick_turns,
    stream,
    table,
)  # noqa: E402
from throughput import start_mqtt_workers, wait_for_workers  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and of all their descendants, alive now."""
    total, seen, todo = 0.0, set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
        todo += _children(pid)
    return total


def machine_busy_s() -> float:
    """CPU seconds every process of the machine has used since boot (user, nice, system, irq, steal)."""
    with open("/proc/stat") as handle:
        ticks = [int(x) for x in handle.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICKS  # less idle and iowait


def parse_spec(spec: str, workers: int) -> dict:
    spec_flags, *assignments = spec.split("@")
    head, *flags = spec_flags.split("+")
    kind, _, count = head.partition(":")
    if kind not in ("local", "mqtt") or not all("=" in a for a in assignments):
        raise SystemExit(f"bad pool spec {spec!r}: KIND[:WORKERS][+FLAG...][@VAR=VALUE...], KIND local or mqtt")
    env = dict(a.split("=", 1) for a in assignments)
    return {
        "name": spec,
        "kind": kind,
        "workers": int(count or workers),
        "flags": [f"--{f}" for f in flags],
        "env": env,
    }


async def level(url: str, audios: list[np.ndarray], streams: int, stagger_s: float) -> list:
    async def one(i: int):
        await asyncio.sleep(i * stagger_s)
        return await stream(url, audios[i % len(audios)], realtime=True)

    return await asyncio.gather(*(one(i) for i in range(streams)))


def measure(outcomes: list) -> dict:
    latencies, stream_p95, failed, speech_s, assessed, speculative = [], [], [], 0.0, 0, 0
    for outcome in outcomes:
        ended = {r.event["turn_id"]: r.at for r in outcome.of("turn.ended")}
        mine = []
        for r in outcome.of("turn.assessed"):
            e = r.event
            mine.append((r.at - ended[e["turn_id"]]) * 1000.0)
            speech_s += (e["end_ms"] - e["start_ms"]) / 1000.0
            speculative += "head_start" in e.get("latency_ms", {})
        assessed += len(mine)
        latencies += mine
        if mine:
            stream_p95.append(float(np.percentile(mine, 95)))
        failed += [r.event.get("code") for r in outcome.of("turn.failed")]
    return {
        "turns_assessed": assessed,
        "turns_failed": len(failed),
        "failure_codes": sorted(set(failed)),
        "speculative_turns": speculative,
        "speech_s": round(speech_s, 2),
        "latency_ms": percentiles(latencies),
        "worst_stream_p95_ms": round(max(stream_p95), 1) if stream_p95 else None,
    }


def run_pool(pool: dict, audios: list[np.ndarray], cycle_s: float, args: argparse.Namespace) -> dict:
    cores = os.cpu_count() or 1
    threads = max(1, cores // pool["workers"])
    workers: list[subprocess.Popen] = []
    extra = [*pool["flags"], "--threads", str(threads)]
    if pool["kind"] == "mqtt":
        prefix = f"multipa-capacity-{uuid.uuid4().hex[:8]}"
        workers = start_mqtt_workers(pool["workers"], args.broker, prefix, threads, pool["env"])
        extra += ["--broker", args.broker, "--prefix", prefix]
    else:
        extra += ["--workers", str(pool["workers"])]
    server = ServerProcess(extra, env=pool["env"])
    levels: list[dict] = []
    try:
        if workers:
            wait_for_workers(server.url, len(workers))
        for streams in range(1, args.max_streams + 1):
            pids = [server.proc.pid, *(w.pid for w in workers)]
            before, busy, started = cpu_s(pids), machine_busy_s(), time.monotonic()
            outcomes = asyncio.run(level(server.url, audios, streams, cycle_s / streams))
            used = cpu_s(pids) - before
            wall = time.monotonic() - started
            lv = {"streams": streams, **measure(outcomes), "cpu_s": round(used, 2), "wall_s": round(wall, 1)}
            # what the rest of the machine (this client, the broker, other people's jobs) took meanwhile
            lv["others_cpu_share"] = round(max(0.0, machine_busy_s() - busy - used) / (cores * wall), 3)
            lv["cpu_s_per_speech_s"] = round(used / lv["speech_s"], 3) if lv["speech_s"] else None
            lv["cpu_s_per_turn"] = round(used / lv["turns_assessed"], 3) if lv["turns_assessed"] else None
            rss = server.rss_mib()
            rss.update({f"mqtt-worker-{w.pid}": _rss_mib(w.pid) for w in workers})
            lv["rss_mib"] = round(sum(rss.values()), 1)
            levels.append(lv)
            worst = lv["worst_stream_p95_ms"]
            print(
                f"  {pool['name']}: {streams} streams: p50 {lv['latency_ms'].get('p50')} ms, p95 {lv['latency_ms'].get('p95')} ms, "
                f"worst stream p95 {worst} ms, failed {lv['turns_failed']}, {lv['cpu_s_per_speech_s']} cpu s / speech s, "
                f"others took {lv['others_cpu_share']:.0%} of the cores",
                file=sys.stderr,
            )
            if (lv["turns_failed"] or worst is None or worst > args.target_p95_ms) and not args.keep_going:
                break
    finally:
        server.stop()
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    sustained = 0  # the levels up to the first that failed
    for lv in levels:
        if lv["turns_failed"] or (lv["worst_stream_p95_ms"] or 1e9) > args.target_p95_ms:
            break
        sustained = lv["streams"]
    per_turn = levels[0]["cpu_s_per_turn"] if levels else None
    ceiling = round(cores * cycle_s / per_turn, 2) if per_turn else None
    return {
        "pool": pool["kind"],
        "workers": pool["workers"],
        "threads_per_worker": threads,
        "server_flags": pool["flags"],
        "env": pool["env"],
        "sustained_streams": sustained,
        "core_s_per_turn": per_turn,
        "ceiling_streams": ceiling,
        "sustained_of_ceiling": round(sustained / ceiling, 3) if ceiling else None,
        "levels": levels,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", default="local,mqtt", help="pool specs, KIND[:WORKERS][+FLAG...], comma-separated")
    parser.add_argument("--workers", type=int, default=1, help="workers of a pool spec that names none")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--max-streams", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4, help="turns per stream")
    parser.add_argument("--min-s", type=float, default=3.0)
    parser.add_argument("--max-s", type=float, default=6.0)
    parser.add_argument("--gap-s", type=float, default=3.0, help="silence between a stream's turns")
    parser.add_argument("--target-p95-ms", type=float, default=1500.0)
    parser.add_argument(
        "--keep-going", action="store_true", help="run every level up to --max-streams, past the first one that fails"
    )
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    pools = [parse_spec(s, args.workers) for s in args.pools.split(",") if s]
    picked = [s for _, s in pick_turns(max(args.turns, 8), args.min_s, args.max_s, seed=11)]
    # each client speaks the same turns from a different first one, so concurrent turns differ
    audios = [conversation([picked[(k + i) % len(picked)] for k in range(args.turns)], args.gap_s) for i in range(8)]
    cycle_s = len(audios[0]) / 16000 / args.turns  # one turn and one gap: the interval between a stream's turns
    results = {p["name"]: run_pool(p, audios, cycle_s, args) for p in pools}
    result = {
        "benchmark": "capacity",
        "machine": machine(),
        "config": {
            "turns_per_stream": args.turns,
            "turn_s": [args.min_s, args.max_s],
            "gap_s": args.gap_s,
            "turn_interval_s": round(cycle_s, 2),
            "target_p95_ms": args.target_p95_ms,
            "load": os.getloadavg(),
        },
        "pools": results,
    }
    names = list(results)
    if len(names) > 1 and results[names[0]]["sustained_streams"]:
        base = results[names[0]]["sustained_streams"]
        result["sustained_vs_first"] = {n: round(results[n]["sustained_streams"] / base, 3) for n in names[1:]}
    rows = [
        [
            name,
            lv["streams"],
            f"{lv['turns_assessed']}/{lv['turns_failed']}",
            lv["latency_ms"].get("p50"),
            lv["latency_ms"].get("p95"),
            lv["latency_ms"].get("max"),
            lv["worst_stream_p95_ms"],
            lv["cpu_s_per_speech_s"],
            lv["rss_mib"],
            f"{lv['others_cpu_share']:.0%}",
        ]
        for name, r in results.items()
        for lv in r["levels"]
    ]
    lines = [
        table(
            rows,
            [
                "pool",
                "streams",
                "ok/failed",
                "p50 ms",
                "p95 ms",
                "max ms",
                "worst p95",
                "cpu s/speech s",
                "RSS MiB",
                "others' CPU",
            ],
        )
    ]
    for name, r in results.items():
        lines.append(
            f"{name}: sustained {r['sustained_streams']} stream(s) at p95 <= {args.target_p95_ms:.0f} ms; "
            f"{r['core_s_per_turn']} core-s per turn, ceiling {r['ceiling_streams']}, sustained/ceiling {r['sustained_of_ceiling']}"
        )
    emit(result, "\n".join(lines), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
