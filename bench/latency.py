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

    python bench/latency.py [--turns 12] [--variants speculate,no-speculate] [--json-out bench/results/latency.json]

Both server configurations run in one invocation, one after the other, on the
same conversation: with speculative assessment (the default: a turn is assessed
from the learner's pause, while the hang-over runs) and without it.

``--diagnosis`` adds what the diagnosis (heard phones, error types, prosody,
feedback) costs: the same turns assessed in this process with it off and on,
alternating which goes first, so that both see the same machine load.

    python bench/latency.py --variants "" --diagnosis --turns 12 --rounds 3
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
from common import (
    RATE,
    ServerProcess,
    conversation,
    emit,
    machine,
    percentiles,
    pick_turns,
    stream,
    table,
    threads as common_threads,
)  # noqa: E402


def floor_ms(spans: list[np.ndarray], threads: int, repeats: int) -> list[float]:
    """Wall time of faster-whisper transcribing each span with ASR_t alone (best of ``repeats``)."""
    from faster_whisper import WhisperModel

    from multipa_core import registry

    model = WhisperModel(
        str(registry.resolve("whisper-base", kind="whisper")),
        device="cpu",
        compute_type="int8",
        cpu_threads=threads,
        local_files_only=True,
    )

    def transcribe(samples: np.ndarray) -> str:
        segments, _ = model.transcribe(
            samples, language="en", beam_size=1, temperature=0.0, condition_on_previous_text=False, vad_filter=False
        )
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


VARIANTS = {"speculate": [], "no-speculate": ["--no-speculate"]}


def run_variant(audio: np.ndarray, server_args: list[str]) -> dict:
    """Stream the conversation through a fresh server; per-turn latencies and stages."""
    server = ServerProcess(["--workers", "1", *server_args])
    try:
        loaded_rss = server.rss_mib()
        outcome = asyncio.run(stream(server.url, audio, realtime=True))
        rss = server.rss_mib()
    finally:
        server.stop()
    ended = {r.event["turn_id"]: r for r in outcome.of("turn.ended")}
    turns = []
    for turn_id, done in sorted((r.event["turn_id"], r) for r in outcome.of("turn.assessed")):
        e = done.event
        turns.append(
            {
                "turn_id": turn_id,
                "start_ms": e["start_ms"],
                "end_ms": e["end_ms"],
                "duration_s": round((e["end_ms"] - e["start_ms"]) / 1000.0, 2),
                "latency_ms": round((done.at - ended[turn_id].at) * 1000.0, 1),
                "server_ms": e["latency_ms"],
                "stages_ms": e["assessment"]["timings_ms"],
                "transcript": e["assessment"]["transcript"],
            }
        )
    failed = [r.event for r in outcome.of("turn.failed")]
    return {
        "turns": turns,
        "failed": [f"{f.get('code')}: {f.get('message')}" for f in failed],
        "rss_mib": {"loaded": loaded_rss, "after": rss},
    }


def summarise(run: dict, floor_by_span: dict) -> dict:
    turns = run["turns"]
    for t in turns:
        t["floor_ms"] = floor_by_span[(t["start_ms"], t["end_ms"])]
        t["ratio"] = round(t["latency_ms"] / t["floor_ms"], 3)
    latency = percentiles([t["latency_ms"] for t in turns])
    floor = percentiles([t["floor_ms"] for t in turns])
    stages = sorted({k for t in turns for k in t["stages_ms"]})
    return {
        "turns_assessed": len(turns),
        "turns_failed": len(run["failed"]),
        "failures": run["failed"],
        "latency_ms": latency,
        "floor_ms": floor,
        "ratio_p50": round(latency["p50"] / floor["p50"], 3) if turns else None,
        "ratio_per_turn_p50": round(float(np.median([t["ratio"] for t in turns])), 3) if turns else None,
        "speculative_turns": sum("head_start" in t["server_ms"] for t in turns),
        "stages_p50_ms": {k: round(float(np.median([t["stages_ms"].get(k, 0.0) for t in turns])), 1) for k in stages},
        "server_p50_ms": {
            k: round(float(np.median([t["server_ms"].get(k, 0.0) for t in turns])), 1)
            for k in ("queue", "assess", "total", "head_start")
        },
        "rss_mib": run["rss_mib"],
        "per_turn": turns,
    }


def diagnosis_overhead(turns: list[np.ndarray], rounds: int = 1) -> dict:
    """Assessor wall time per turn with the diagnosis off (old) and on (new), interleaved.

    Each round assesses every turn once each way, the order alternating by turn and by
    round, so that both variants see the same load; the pairs (same turn, back to back)
    give a paired increase that the spread between turns does not blur.
    """
    from multipa_core.assess import Assessor

    assessor = Assessor()
    assessor.warm_up()
    load = [round(os.getloadavg()[0], 2)]  # other processes share the cores: the run's noise floor
    old, new, stage, pairs = [], [], [], []
    for r in range(rounds):
        for k, pcm in enumerate(turns):
            samples = pcm.astype(np.float32) / 32768.0
            timed = {}
            for diagnose in (False, True) if (k + r) % 2 == 0 else (True, False):
                assessor.diagnose = diagnose
                started = time.perf_counter()
                result = assessor.assess(samples)
                timed[diagnose] = (time.perf_counter() - started) * 1000
                if diagnose:
                    stage.append(result.timings_ms.get("diagnosis", 0.0))
            old.append(timed[False])
            new.append(timed[True])
            pairs.append(timed[True] / timed[False] - 1)
    p_old, p_new = percentiles(old), percentiles(new)
    return {
        "rounds": rounds, "load_avg_1min": load + [round(os.getloadavg()[0], 2)], "old_ms": p_old, "new_ms": p_new, "diagnosis_stage_ms": percentiles(stage),
        "p50_increase": round(p_new["p50"] / p_old["p50"] - 1, 4) if old else None,
        "paired_increase_p50": round(float(np.median(pairs)), 4) if pairs else None,
        "stage_share_of_p50": round(percentiles(stage)["p50"] / p_new["p50"], 4) if new else None,
        "per_turn_ms": [[round(a, 1), round(b, 1)] for a, b in zip(old, new)],
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--min-s", type=float, default=4.5)
    parser.add_argument("--max-s", type=float, default=6.0)
    parser.add_argument("--gap-s", type=float, default=2.5, help="silence between turns")
    parser.add_argument("--repeats", type=int, default=1, help="floor: best of this many transcriptions per turn")
    parser.add_argument(
        "--variants",
        default="speculate,no-speculate",
        help="server configurations, run one after the other on the same turns: " + ", ".join(VARIANTS),
    )
    parser.add_argument(
        "--diagnosis", action="store_true", help="also time the assessor in-process with the diagnosis off and on"
    )
    parser.add_argument("--rounds", type=int, default=1, help="--diagnosis: passes over the turns, each way")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    picked = pick_turns(args.turns, args.min_s, args.max_s)
    audio = conversation([s for _, s in picked], args.gap_s)
    names = [n for n in args.variants.split(",") if n]
    runs = {n: run_variant(audio, VARIANTS[n]) for n in names}

    spans = sorted({(t["start_ms"], t["end_ms"]) for r in runs.values() for t in r["turns"]})
    threads = common_threads()
    floors = (
        floor_ms([audio[a * RATE // 1000 : b * RATE // 1000] for a, b in spans], threads, args.repeats) if spans else []
    )
    floor_by_span = {span: round(f, 1) for span, f in zip(spans, floors)}
    results = {n: summarise(r, floor_by_span) for n, r in runs.items()}

    result = {
        "benchmark": "latency",
        "machine": machine(),
        "config": {
            "turns": args.turns,
            "min_s": args.min_s,
            "max_s": args.max_s,
            "gap_s": args.gap_s,
            "workers": 1,
            "threads": threads,
            "floor": "faster-whisper WhisperModel.transcribe, whisper-base int8, beam 1, temperature 0, language en, same thread count",
            "variants": {n: VARIANTS[n] for n in names},
        },
        "turns_sent": len(picked),
        "turn_ms": percentiles([(b - a) for a, b in spans]),
        "variants": results,
    }
    if args.diagnosis:
        result["diagnosis"] = diagnosis_overhead([s for _, s in picked], args.rounds)
    if "speculate" in results and "no-speculate" in results:
        result["speedup_p50"] = round(
            results["no-speculate"]["latency_ms"]["p50"] / results["speculate"]["latency_ms"]["p50"], 3
        )
    lines = []
    for n, r in results.items():
        rows = [
            [t["turn_id"], t["duration_s"], t["latency_ms"], t["floor_ms"], t["ratio"], t["transcript"][:40]]
            for t in r["per_turn"]
        ]
        lines += [f"== {n} ==", table(rows, ["turn", "seconds", "latency ms", "floor ms", "ratio", "transcript"]), ""]
    summary = [
        [
            n,
            r["latency_ms"].get("p50"),
            r["latency_ms"].get("p95"),
            r["latency_ms"].get("max"),
            r["floor_ms"].get("p50"),
            r["ratio_p50"],
            f"{r['turns_assessed']}/{r['turns_failed']}",
        ]
        for n, r in results.items()
    ]
    lines.append(
        table(
            summary,
            [
                "end of turn -> turn.assessed",
                "p50 ms",
                "p95 ms",
                "max ms",
                "floor p50 ms",
                "ratio p50",
                "assessed/failed",
            ],
        )
    )
    if "diagnosis" in result:
        d = result["diagnosis"]
        lines.append(
            f"assessor p50 without diagnosis {d['old_ms'].get('p50')} ms, with {d['new_ms'].get('p50')} ms ({d['p50_increase']:+.1%}; paired per turn {d['paired_increase_p50']:+.1%}); diagnosis stage p50 {d['diagnosis_stage_ms'].get('p50')} ms"
        )
    if "speedup_p50" in result:
        lines.append(f"speculation speed-up of the p50: {result['speedup_p50']}x")
    emit(result, "\n".join(lines), args.json_out)
    return 0 if all(r["turns_assessed"] and not r["turns_failed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
