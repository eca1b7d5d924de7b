"""Turn latency of the real server against the ASR floor.

Streams a conversation of development-speaker utterances (about 5 s each,
separated by silence) at real-time pace through a real ``multipa-server`` (one
worker, bundled models). Per turn: the time from the server's end-of-turn
decision (``turn.ended`` arriving at the client) to ``turn.assessed`` at the
client, and the stage breakdown the worker reports. The floor, since we cannot
be faster than the ASR we need, is plain faster-whisper transcription with the
ASR_t model alone (Whisper base, greedy, temperature 0, English, the worker's
thread count) of the same turn (the audio span the server cut), timed in this
process right after that turn's ``turn.assessed`` arrives, while the learner's
silence before the next turn runs: server and floor take turns on the same
cores, so both see the same machine noise, and the ratios hold on a busy
machine. Ratios: of the p50s and of the p95s. Targets on a 2-core machine, one
stream: p50 ratio <= 1.0, p95 ratio <= 1.5.

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
import concurrent.futures
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    RATE,
    Received,
    ServerProcess,
    StreamOutcome,
    conversation,
    emit,
    machine,
    percentiles,
    pick_turns,
    stream,
    table,
    threads as common_threads,
    tree_env,
)  # noqa: E402


class Floor:
    """faster-whisper with ASR_t alone, loaded once and warm, as the worker is."""

    def __init__(self, threads: int, repeats: int) -> None:
        from faster_whisper import WhisperModel

        from multipa_core import registry

        self.repeats = repeats
        self.model = WhisperModel(
            str(registry.resolve("whisper-base", kind="whisper")),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
            local_files_only=True,
        )
        self.ms(np.zeros(RATE, dtype=np.int16))  # warm-up

    def ms(self, samples: np.ndarray) -> float:
        """Wall time of transcribing ``samples`` (int16), best of ``repeats``."""
        audio = samples.astype(np.float32) / 32768.0
        best = float("inf")
        for _ in range(self.repeats):
            started = time.perf_counter()
            segments, _ = self.model.transcribe(
                audio, language="en", beam_size=1, temperature=0.0, condition_on_previous_text=False, vad_filter=False
            )
            " ".join(s.text for s in segments)  # the segments are lazy: decode them
            best = min(best, time.perf_counter() - started)
        return best * 1000.0


VARIANTS = {
    "speculate": [],
    "speculate-always": ["--speculation-hangovers", "0"],  # at every pause, however slow the jobs (before issue 18)
    "no-speculate": ["--no-speculate"],
}


async def stream_with_floor(url: str, audio: np.ndarray, floor: Floor) -> tuple[StreamOutcome, dict[int, float]]:
    """Stream the conversation; as each turn's ``turn.assessed`` arrives, time the floor on
    that turn in a thread (the stream goes on meanwhile, in the learner's silence)."""
    loop = asyncio.get_running_loop()
    timing = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    spans: dict[int, tuple[int, int]] = {}
    pending: dict[int, asyncio.Future[float]] = {}

    def on_event(received: Received) -> None:
        e = received.event
        if e["type"] == "turn.ended":
            spans[e["turn_id"]] = (e["start_ms"], e["end_ms"])
        elif e["type"] == "turn.assessed" and e["turn_id"] in spans:
            a, b = spans[e["turn_id"]]
            pending[e["turn_id"]] = loop.run_in_executor(timing, floor.ms, audio[a * RATE // 1000 : b * RATE // 1000])

    try:
        outcome = await stream(url, audio, realtime=True, on_event=on_event)
        floors = {turn_id: round(await f, 1) for turn_id, f in pending.items()}
    finally:
        timing.shutdown(wait=True)
    return outcome, floors


def run_variant(audio: np.ndarray, server_args: list[str], floor: Floor, env: dict[str, str] | None = None) -> dict:
    """Stream the conversation through a fresh server; per-turn latencies, stages and floors."""
    server = ServerProcess(["--workers", "1", *server_args], env=env)
    try:
        loaded_rss = server.rss_mib()
        outcome, floors = asyncio.run(stream_with_floor(server.url, audio, floor))
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
                "floor_ms": floors[turn_id],
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


def summarise(run: dict) -> dict:
    turns = run["turns"]
    for t in turns:
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
        "ratio_p95": round(latency["p95"] / floor["p95"], 3) if turns else None,
        "ratio_per_turn_p50": round(float(np.median([t["ratio"] for t in turns])), 3) if turns else None,
        "ratio_per_turn_p95": round(float(np.percentile([t["ratio"] for t in turns], 95)), 3) if turns else None,
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
    parser.add_argument(
        "--baseline-tree",
        default="",
        help="also run the first variant on the code of this checkout (e.g. a `git worktree` of an older commit)",
    )
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    picked = pick_turns(args.turns, args.min_s, args.max_s)
    audio = conversation([s for _, s in picked], args.gap_s)
    names = [n for n in args.variants.split(",") if n]
    threads = common_threads()
    floor = Floor(threads, args.repeats) if names else None
    runs = {n: run_variant(audio, VARIANTS[n], floor) for n in names if floor is not None}
    if args.baseline_tree and floor is not None and names:
        # the same configuration on another checkout's code, with this checkout's bundled models
        scorer = str(Path(__file__).resolve().parents[1] / "multipa_core" / "checkpoints" / "scorer.pt")
        runs["baseline"] = run_variant(
            audio, [*VARIANTS[names[0]], "--scorer", scorer], floor, tree_env(args.baseline_tree)
        )
    del floor

    spans = sorted({(t["start_ms"], t["end_ms"]) for r in runs.values() for t in r["turns"]})
    results = {n: summarise(r) for n, r in runs.items()}

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
            "floor_timing": "interleaved: each turn right after its turn.assessed, in this process, in the silence that follows",
            "variants": {n: VARIANTS[n] for n in names},
            "baseline_tree": args.baseline_tree or None,
        },
        "turns_sent": len(picked),
        "turn_ms": percentiles([(b - a) for a, b in spans]),
        "variants": results,
    }
    if args.diagnosis:
        result["diagnosis"] = diagnosis_overhead([s for _, s in picked], args.rounds)
    if "baseline" in results and names:
        new, old = results[names[0]], results["baseline"]
        result[
            "baseline_ratio"
        ] = {  # this checkout's latency over the baseline checkout's, and the same of the floor ratios
            "latency_p50": round(new["latency_ms"]["p50"] / old["latency_ms"]["p50"], 3),
            "ratio_to_floor_p50": round(new["ratio_p50"] / old["ratio_p50"], 3) if "ratio_p50" in new else None,
        }
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
            r["floor_ms"].get("p95"),
            r["ratio_p95"],
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
                "floor p95 ms",
                "ratio p95",
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
