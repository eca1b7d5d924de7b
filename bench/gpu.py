"""One GPU worker with the real models: throughput and latency by batch size, where every
module runs, peak GPU memory, and how many real-time streams the GPU sustains.

    python bench/gpu.py [--json-out bench/results/gpu.json]

It runs in a few minutes (well under 8), so that a short slot on a GPU machine is enough:

1. loads the shipped models once on the device (the worker runtime's :class:`Assessor`)
   and reports the device of every module (the Whisper models and every network);
2. assesses the same development-speaker turns in batches of 1, 4, 16 and 32 (the encoders
   and the scoring network run once per batch, as ``--batch N`` does in a worker): turns
   per second, per-turn latency (a turn's latency is its batch's wall time) and peak GPU
   memory (torch's allocations, and the device's used memory, CTranslate2's included);
3. finds the most concurrent real-time streams one worker sustains at a p95 latency under
   500 ms: each stream speaks a turn every ``--turn-s + --gap-s`` seconds (random phase,
   jittered), the worker takes every waiting turn up to the largest batch at once, and each
   batch costs the time measured in step 2 for its size (interpolated). The simulation is an
   event loop over the measured times, so it costs no GPU time.

Without CUDA it prints why and exits 0 with ``"skipped"`` in its JSON; ``--device cpu``
runs the same measurement on the CPU (small: ``--batches 1,2 --turns 4`` in the tests).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RATE, emit, machine, percentiles, pick_turns, table, threads as common_threads  # noqa: E402

TARGET_P95_MS = 500.0


def cuda_missing() -> str | None:
    """Why this machine cannot run the GPU benchmark, or None."""
    try:
        import ctranslate2
        import torch
    except ImportError as exc:  # pragma: no cover - both are dependencies
        return f"{exc.name} is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU"
    if ctranslate2.get_cuda_device_count() == 0:
        return "CTranslate2 sees no CUDA GPU"
    return None


def gpu_memory(device: str) -> dict[str, float]:
    """Peak torch allocation and the device's used memory now, in MiB (empty on the CPU)."""
    if device != "cuda":
        return {}
    import torch

    free, total = torch.cuda.mem_get_info()
    return {
        "torch_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "device_used_mib": round((total - free) / 2**20, 1),
        "device_total_mib": round(total / 2**20, 1),
    }


def measure_batch(assessor: Any, turns: list[np.ndarray], batch: int, rounds: int, device: str) -> dict[str, Any]:
    """Every turn assessed ``rounds`` times in batches of ``batch``: wall time per batch."""
    walls: list[float] = []
    latencies: list[float] = []
    words: list[list[str]] = []
    assessed = 0
    started = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(turns), batch):
            chunk = [(t, None) for t in turns[i : i + batch]]
            while len(chunk) < batch:  # every batch full, so that its time is the time of its size
                chunk.append(chunk[len(chunk) % len(turns[i : i + batch])])
            t0 = time.perf_counter()
            outcomes = assessor.assess_many(chunk)
            wall = (time.perf_counter() - t0) * 1000.0
            walls.append(wall)
            latencies += [wall] * len(outcomes)
            assessed += len(outcomes)
            words += [
                [w.text for w in o.words] if hasattr(o, "words") else [] for o in outcomes[: len(turns[i : i + batch])]
            ]
    seconds = time.perf_counter() - started
    return {
        "batch": batch,
        "turns": assessed,
        "turns_per_s": round(assessed / seconds, 3),
        "batch_ms": percentiles(walls),
        "latency_ms": percentiles(latencies),
        "memory": gpu_memory(device),
        "words": words[: len(turns)],
    }


def simulate(
    streams: int, cost_ms: dict[int, float], max_batch: int, *, turn_s: float, gap_s: float, minutes: float, seed: int
) -> dict[str, float]:
    """p95 latency of ``streams`` real-time streams on one worker whose batch of b turns takes
    ``cost_ms`` (interpolated between the measured sizes)."""
    rng = np.random.default_rng(seed)
    period = turn_s + gap_s
    horizon = minutes * 60.0
    arrivals: list[float] = []
    for _ in range(streams):
        t = rng.uniform(0, period) + turn_s
        while t < horizon:
            arrivals.append(t)
            t += period * rng.uniform(0.8, 1.2)
    arrivals.sort()
    sizes = sorted(cost_ms)

    def cost(b: int) -> float:
        return float(np.interp(b, sizes, [cost_ms[s] for s in sizes])) / 1000.0

    latencies: list[float] = []
    now, i = 0.0, 0
    while i < len(arrivals):
        now = max(now, arrivals[i])
        j = i
        while j < len(arrivals) and arrivals[j] <= now and j - i < max_batch:
            j += 1
        done = now + cost(j - i)
        latencies += [(done - a) * 1000.0 for a in arrivals[i:j]]
        now, i = done, j
    a = np.asarray(latencies)
    return {
        "streams": streams,
        "turns": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p95_ms": round(float(np.percentile(a, 95)), 1),
    }


def sustained_streams(cost_ms: dict[int, float], max_batch: int, **kw: Any) -> tuple[int, list[dict[str, float]]]:
    """The most streams whose simulated p95 stays under the target (doubling, then bisection)."""
    tried: dict[int, dict[str, float]] = {}

    def ok(n: int) -> bool:
        tried[n] = simulate(n, cost_ms, max_batch, **kw)
        return tried[n]["p95_ms"] < TARGET_P95_MS

    if not ok(1):
        return 0, list(tried.values())
    low, high = 1, 2
    while ok(high) and high < 100_000:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if ok(mid) else (low, mid)
    return low, [tried[k] for k in sorted(tried)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device",
        default="cuda",
        choices=["cuda", "cpu"],
        help="cuda (skips without one) or cpu (a small check of the script)",
    )
    parser.add_argument("--batches", default="1,4,16,32", help="batch sizes to measure")
    parser.add_argument("--turns", type=int, default=32, help="development-speaker turns (3 to 8 s)")
    parser.add_argument("--rounds", type=int, default=2, help="times every turn is assessed at each batch size")
    parser.add_argument("--turn-s", type=float, default=5.0, help="simulated streams: seconds of speech per turn")
    parser.add_argument(
        "--gap-s", type=float, default=5.0, help="simulated streams: seconds between a stream's turns (the bot's reply)"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes per stream count")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    batches = sorted({int(b) for b in args.batches.split(",") if b})

    if args.device == "cuda" and (why := cuda_missing()):
        print(
            f"bench/gpu.py: skipped: {why}; run it on a machine with an NVIDIA GPU (or --device cpu for a small check of the script)",
            file=sys.stderr,
        )
        print(f'{{"benchmark": "gpu", "skipped": "{why}"}}')
        return 0

    from multipa_core.assess import Assessor
    from multipa_core.pipeline import PipelineOptions

    started = time.perf_counter()
    picked = pick_turns(args.turns, 3.0, 8.0)
    turns = [samples.astype(np.float32) / 32768.0 for _, samples in picked]
    assessor = Assessor(PipelineOptions(device=args.device, threads=0 if args.device == "cuda" else common_threads()))
    assessor.warm_up()
    load_s = time.perf_counter() - started
    placement = assessor.placement()
    if args.device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    runs = []
    for b in batches:
        assessor.assess_many([(turns[0], None)] * b)  # the first call of a size sets up its buffers
        runs.append(measure_batch(assessor, turns, b, args.rounds, args.device))
        print(
            f"  batch {b}: {runs[-1]['turns_per_s']} turns/s, latency p95 {runs[-1]['latency_ms']['p95']} ms",
            file=sys.stderr,
        )
    same_words = all(r["words"] == runs[0]["words"] for r in runs)
    cost_ms = {r["batch"]: r["batch_ms"]["p50"] for r in runs}
    streams, tried = sustained_streams(
        cost_ms, max(batches), turn_s=args.turn_s, gap_s=args.gap_s, minutes=args.minutes, seed=7
    )
    for r in runs:
        del r["words"]
    result = {
        "benchmark": "gpu",
        "device": args.device,
        "gpu": _gpu_name(args.device),
        "machine": machine(),
        "config": {
            "turns": len(turns),
            "seconds_of_speech": round(sum(len(t) for t in turns) / RATE, 1),
            "rounds": args.rounds,
            "batches": batches,
            "turn_s": args.turn_s,
            "gap_s": args.gap_s,
            "minutes": args.minutes,
        },
        "load_s": round(load_s, 1),
        "placement": placement,
        "batches": runs,
        "same_words_at_every_batch": same_words,
        "realtime": {
            "target_p95_ms": TARGET_P95_MS,
            "max_batch": max(batches),
            "sustained_streams": streams,
            "tried": tried,
        },
        "wall_s": round(time.perf_counter() - started, 1),
    }
    readable = "\n".join(
        [
            "placement: " + ", ".join(f"{k} {v}" for k, v in placement.items()),
            table(
                [
                    [
                        r["batch"],
                        r["turns_per_s"],
                        r["latency_ms"]["p50"],
                        r["latency_ms"]["p95"],
                        r["memory"].get("torch_peak_mib", "-"),
                        r["memory"].get("device_used_mib", "-"),
                    ]
                    for r in runs
                ],
                ["batch", "turns/s", "latency p50 ms", "p95 ms", "torch peak MiB", "device used MiB"],
            ),
            f"real-time streams at p95 < {TARGET_P95_MS:.0f} ms (a {args.turn_s:g} s turn every {args.turn_s + args.gap_s:g} s each): {streams}; same words at every batch size: {same_words}",
        ]
    )
    emit(result, readable, args.json_out)
    return 0


def _gpu_name(device: str) -> str | None:
    if device != "cuda":
        return None
    import torch

    return str(torch.cuda.get_device_name(0))


if __name__ == "__main__":
    sys.exit(main())
