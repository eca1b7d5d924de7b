"""In-process assessment time, before and after an optimisation, against the ASR floor.

Runs the same development-speaker turns (about 5 s) through ``multipa_core``'s
:class:`~multipa_core.assess.Assessor` in several configurations, interleaved
turn by turn so that machine noise hits every configuration alike, and through
plain faster-whisper with ASR_t alone (the floor). No server: this isolates the
pipeline; ``bench/latency.py`` measures the same through the real server.

    python bench/stages.py [--turns 12] [--json-out bench/results/stages.json]

Configurations:
  sequential  Whisper word timestamps on both models, ASR_r after ASR_t (the pipeline before the optimisation)
  default     no Whisper word timestamps, ASR_r decoded in a thread alongside ASR_t, shared log-mel
  asr-r-1     the default with ASR_r on one CPU thread (ASR_t keeps every core): fewer threads than cores

Besides wall time, each configuration's CPU time per turn (this process's user + system
seconds over the call): what a turn costs a loaded machine, where workers share the cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine, percentiles, pick_turns, table, threads as common_threads  # noqa: E402

CONFIGS = {
    "sequential": {"word_timestamps": True, "parallel_asr": False},
    "default": {},
    "asr-r-1": {"recognizer_threads": 1},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--min-s", type=float, default=4.5)
    parser.add_argument("--max-s", type=float, default=6.0)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, from: " + ", ".join(CONFIGS))
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    from faster_whisper import WhisperModel

    from multipa_core import registry
    from multipa_core.assess import Assessor
    from multipa_core.pipeline import PipelineOptions

    threads = common_threads()
    names = [n for n in args.configs.split(",") if n]
    assessors = {n: Assessor(PipelineOptions(device="cpu", threads=threads, **CONFIGS[n])) for n in names}
    floor_model = WhisperModel(
        str(registry.resolve("whisper-base", kind="whisper")),
        device="cpu",
        compute_type="int8",
        cpu_threads=threads,
        local_files_only=True,
    )

    def floor(samples: np.ndarray) -> str:
        segments, _ = floor_model.transcribe(
            samples, language="en", beam_size=1, temperature=0.0, condition_on_previous_text=False, vad_filter=False
        )
        return " ".join(s.text for s in segments)

    turns = [(utt, s.astype(np.float32) / 32768.0) for utt, s in pick_turns(args.turns, args.min_s, args.max_s)]
    # warm-up: first calls allocate
    floor(turns[0][1])
    for a in assessors.values():
        a.assess(turns[0][1])

    rows, per_turn = [], []
    for utt, samples in turns:
        record = {"utt": utt, "seconds": round(len(samples) / 16000, 2)}
        started = time.perf_counter()
        floor(samples)
        record["floor_ms"] = round((time.perf_counter() - started) * 1000, 1)
        for name, assessor in assessors.items():
            started, cpu = time.perf_counter(), time.process_time()
            result = assessor.assess(samples)
            record[f"{name}_ms"] = round((time.perf_counter() - started) * 1000, 1)
            record[f"{name}_cpu_ms"] = round((time.process_time() - cpu) * 1000, 1)
            record[f"{name}_stages_ms"] = result.timings_ms
            record[f"{name}_words"] = [w.text for w in result.words]
            record[f"{name}_scores"] = result.sentence
        per_turn.append(record)
        rows.append([utt, record["seconds"], record["floor_ms"], *[record[f"{n}_ms"] for n in names]])
        print(
            f"  {utt}: "
            + ", ".join(f"{k} {v}" for k, v in record.items() if k.endswith("_ms") and not k.endswith("stages_ms")),
            file=sys.stderr,
        )

    summary = {"floor_ms": percentiles([r["floor_ms"] for r in per_turn])}
    for n in names:
        summary[f"{n}_ms"] = percentiles([r[f"{n}_ms"] for r in per_turn])
        summary[f"{n}_cpu_ms"] = percentiles([r[f"{n}_cpu_ms"] for r in per_turn if f"{n}_cpu_ms" in r])
        summary[f"{n}_ratio_to_floor_p50"] = round(summary[f"{n}_ms"]["p50"] / summary["floor_ms"]["p50"], 3)
        stages = sorted({k for r in per_turn for k in r[f"{n}_stages_ms"]})
        summary[f"{n}_stages_p50_ms"] = {
            k: round(float(np.median([r[f"{n}_stages_ms"].get(k, 0.0) for r in per_turn])), 1) for k in stages
        }
    if "sequential" in names and "default" in names:
        summary["speedup_p50"] = round(summary["sequential_ms"]["p50"] / summary["default_ms"]["p50"], 3)
        summary["same_words"] = sum(r["sequential_words"] == r["default_words"] for r in per_turn)
    for n in names:
        if n != "default" and "default" in names:  # threads only: the same words and scores, or it says so
            summary[f"{n}_same_as_default"] = sum(
                r[f"{n}_words"] == r["default_words"] and r[f"{n}_scores"] == r["default_scores"] for r in per_turn
            )
    result = {
        "benchmark": "stages",
        "machine": machine(),
        "config": {"turns": len(turns), "threads": threads, "configs": {n: CONFIGS[n] for n in names}},
        "summary": summary,
        "per_turn": per_turn,
    }
    readable = "\n".join(
        [
            table(rows, ["utt", "seconds", "floor ms", *[f"{n} ms" for n in names]]),
            "",
            table(
                [
                    [k, v.get("p50"), v.get("p95"), v.get("max")]
                    for k, v in summary.items()
                    if isinstance(v, dict) and "p50" in v
                ],
                ["", "p50", "p95", "max"],
            ),
            "  ".join(f"{k}: {v}" for k, v in summary.items() if not isinstance(v, dict)),
        ]
    )
    emit(result, readable, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
