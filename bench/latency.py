"""Turn latency of the real server against the ASR floor.

Streams a conversation of development-speaker utterances (about 5 s each,
separated by silence) at real-time pace through a real ``multipa-server`` (one
worker, bundled models). Per turn: the time from the server's end-of-turn
decision (``turn.ended`` arriving at the client) to ``turn.assessed`` at the
client, and the stage breakdown the worker reports. Then, on the same turns
(the audio spans the server cut), with the server stopped, it times plain
faster-whisper transcription with the ASR_t model alone (Whisper base, greedy,
temperature 0, English, the worker's thread count): the floor, since we cannot
be faster than the ASR we need. Target on a 2-core machine: p50 ratio <= 1.3 and
p50 < 1 s for turns of about 5 s.

    python bench/latency.py [--turns 12] [--min-s 4.5] [--max-s 6.0] [--json-out bench/results/latency.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RATE, ServerProcess, conversation, emit, machine, percentiles, pick_turns, stream, table  # noqa: E402


def floor_ms(spans: list[np.ndarray], threads: int, repeats: int) -> list[float]:
    """Wall time of faster-whisper transcribing each span with ASR_t alone (best of ``repeats``)."""
    from faster_whisper import WhisperModel

    from multipa_core import registry

    model = WhisperModel(str(registry.resolve("whisper-base", kind="whisper")), device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True)

    def transcribe(samples: np.ndarray) -> str:
        segments, _ = model.transcribe(samples, language="en", beam_size=1, temperature=0.0, condition_on_previous_text=False, vad_filter=False)
        return " ".join(s.text for s in segments)

    transcribe(spans[0].astype(np.float32) / 32768.0)  # warm-up, as the worker is warm
    out = []
    for samples in spans:
        audio = samples.astype(np.float32) / 32768.0
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            transcribe(audio)
            best = min(best, time.perf_counter() - started)
        out.append(best * 1000.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--min-s", type=float, default=4.5)
    parser.add_argument("--max-s", type=float, default=6.0)
    parser.add_argument("--gap-s", type=float, default=2.5, help="silence between turns (the next turn starts after the previous is assessed)")
    parser.add_argument("--repeats", type=int, default=1, help="floor: best of this many transcriptions per turn")
    parser.add_argument("--server-args", default="", help="extra multipa-server arguments")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    picked = pick_turns(args.turns, args.min_s, args.max_s)
    audio = conversation([s for _, s in picked], args.gap_s)
    server = ServerProcess(["--workers", "1", *args.server_args.split()])
    try:
        loaded_rss = server.rss_mib()
        outcome = asyncio.run(stream(server.url, audio, realtime=True))
        rss = server.rss_mib()
    finally:
        server.stop()

    ended = {r.event["turn_id"]: r for r in outcome.of("turn.ended")}
    assessed = {r.event["turn_id"]: r for r in outcome.of("turn.assessed")}
    failed = [r.event for r in outcome.of("turn.failed")]
    turns = []
    for turn_id, done in sorted(assessed.items()):
        e = done.event
        turns.append({
            "turn_id": turn_id,
            "start_ms": e["start_ms"],
            "end_ms": e["end_ms"],
            "duration_s": round((e["end_ms"] - e["start_ms"]) / 1000.0, 2),
            "latency_ms": round((done.at - ended[turn_id].at) * 1000.0, 1),
            "server_ms": e["latency_ms"],
            "stages_ms": e["assessment"]["timings_ms"],
            "transcript": e["assessment"]["transcript"],
        })
    spans = [audio[t["start_ms"] * RATE // 1000 : t["end_ms"] * RATE // 1000] for t in turns]
    threads = int(os.environ.get("MULTIPA_THREADS") or os.cpu_count() or 1)
    floor = floor_ms(spans, threads, args.repeats)
    for t, f in zip(turns, floor):
        t["floor_ms"] = round(f, 1)
        t["ratio"] = round(t["latency_ms"] / f, 3)

    latency = percentiles([t["latency_ms"] for t in turns])
    floor_stats = percentiles(floor)
    stages = sorted({k for t in turns for k in t["stages_ms"]})
    result = {
        "benchmark": "latency",
        "machine": machine(),
        "config": {"turns": args.turns, "min_s": args.min_s, "max_s": args.max_s, "gap_s": args.gap_s, "workers": 1, "threads": threads, "floor": "faster-whisper WhisperModel.transcribe, whisper-base int8, beam 1, temperature 0, language en", "server_args": args.server_args},
        "turns_sent": len(picked),
        "turns_assessed": len(turns),
        "turns_failed": len(failed),
        "failures": [f"{f.get('code')}: {f.get('message')}" for f in failed],
        "turn_seconds": percentiles([t["duration_s"] * 1000 for t in turns]),
        "latency_ms": latency,
        "floor_ms": floor_stats,
        "ratio_p50": round(latency["p50"] / floor_stats["p50"], 3) if turns else None,
        "ratio_per_turn": percentiles([t["ratio"] * 1000 for t in turns]),
        "stages_p50_ms": {k: round(float(np.median([t["stages_ms"].get(k, 0.0) for t in turns])), 1) for k in stages},
        "server_p50_ms": {k: round(float(np.median([t["server_ms"][k] for t in turns])), 1) for k in ("queue", "assess", "total")},
        "rss_mib": {"loaded": loaded_rss, "after": rss},
        "per_turn": turns,
    }
    result["ratio_per_turn"] = {k: (v / 1000 if k != "n" else v) for k, v in result["ratio_per_turn"].items()}
    rows = [[t["turn_id"], t["duration_s"], t["latency_ms"], t["floor_ms"], t["ratio"], t["transcript"][:40]] for t in turns]
    readable = "\n".join([
        table(rows, ["turn", "seconds", "latency ms", "floor ms", "ratio", "transcript"]),
        "",
        table([["latency (end of turn -> turn.assessed)", latency["p50"], latency["p95"], latency["max"]], ["floor (faster-whisper, ASR_t alone)", floor_stats["p50"], floor_stats["p95"], floor_stats["max"]]], ["ms", "p50", "p95", "max"]),
        f"ratio of p50s: {result['ratio_p50']}   turns assessed {len(turns)}, failed {len(failed)}",
        "stages p50 (ms): " + ", ".join(f"{k} {v}" for k, v in result["stages_p50_ms"].items()),
    ])
    emit(result, readable, args.json_out)
    return 0 if turns and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
