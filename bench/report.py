"""Writes docs/benchmarks.md from the JSON results in bench/results/ (every number with its command).

python bench/report.py > docs/benchmarks.md
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import row, where  # noqa: E402
from report_capacity import capacity, gpu, sizing  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def latency(r: dict) -> list[str]:
    out = ["## Latency against the ASR floor (`bench/latency.py`)", "", where(r), ""]
    out += [
        f"One real-time stream of {r['turns_sent']} development-speaker utterances ({r['config']['min_s']} to {r['config']['max_s']} s files, turns of {r['turn_ms']['p50'] / 1000:.1f} s at the median) with {r['config']['gap_s']} s of silence between them, through a real `multipa-server` (one worker, {r['config']['threads']} threads). Latency: `turn.ended` to `turn.assessed` at the client. Floor: {r['config']['floor']}, on the same turn audio, {r['config'].get('floor_timing', 'timed after the server stopped')}.",
        "",
        row(
            [
                "server",
                "p50 ms",
                "p95 ms",
                "max ms",
                "floor p50 ms",
                "ratio of p50s",
                "floor p95 ms",
                "ratio of p95s",
                "median per-turn ratio",
                "speculative turns",
                "assessed / failed",
            ]
        ),
        row(["---"] * 11),
    ]
    for name, v in r["variants"].items():
        out.append(
            row(
                [
                    name,
                    v["latency_ms"]["p50"],
                    v["latency_ms"]["p95"],
                    v["latency_ms"]["max"],
                    v["floor_ms"]["p50"],
                    v["ratio_p50"],
                    v["floor_ms"]["p95"],
                    v.get("ratio_p95", "-"),
                    v["ratio_per_turn_p50"],
                    v["speculative_turns"],
                    f"{v['turns_assessed']} / {v['turns_failed']}",
                ]
            )
        )
    if "speedup_p50" in r:
        out += [
            "",
            f"Speculative assessment (the default) against `--no-speculate`, same run, same turns: p50 {r['speedup_p50']}x faster.",
        ]
    v = r["variants"]
    if "speculate" in v and "speculate-always" in v:
        new, old = v["speculate"], v["speculate-always"]
        out += [
            "",
            "Speculation that pauses while jobs take over two hang-overs (`speculate`, the default since issue 18) "
            "against speculation at every pause (`speculate-always`, `--speculation-hangovers 0`, before): ratio of "
            f"p50s {old['ratio_p50']} -> {new['ratio_p50']}, of p95s {old.get('ratio_p95')} -> {new.get('ratio_p95')}; "
            f"time queued behind a withdrawn speculation, p50 {old['server_p50_ms']['queue']} -> "
            f"{new['server_p50_ms']['queue']} ms. The variants run one after the other, so each ratio is what holds "
            "across machine noise (the floor, timed between the same turns, moves with it: its p50 was "
            + ", ".join(f"{x['floor_ms']['p50']:.0f}" for x in v.values())
            + " ms in the runs, in the order of the table).",
        ]
    for name, v in r["variants"].items():
        out += [
            "",
            f"Stages inside the worker, p50 ms ({name}; `asr_recognized` runs in a thread beside `encode_target` + `asr_target`): "
            + ", ".join(f"{k} {x}" for k, x in v["stages_p50_ms"].items()),
            "Server side p50 ms: " + ", ".join(f"{k} {x}" for k, x in v["server_p50_ms"].items()),
        ]
    return out


def diagnosis_latency(r: dict) -> list[str]:
    """What the diagnosis adds to a turn (``bench/latency.py --diagnosis``)."""
    d = r["diagnosis"]
    out = ["## What the diagnosis costs (`bench/latency.py --diagnosis`)", "", where(r), ""]
    out += [
        f"{r['turns_sent']} development-speaker turns ({r['config']['min_s']} to {r['config']['max_s']} s), "
        f"{d.get('rounds', 1)} round(s), each turn assessed in one process (open mode, the bundled models, warm) "
        "with the diagnosis off (old: scores only) and on (new: heard phones, error types, prosody, feedback) back "
        "to back, the order alternating by turn and by round so that both see the same load. Budget: the diagnosis "
        "adds at most 5 % to the p50."
        + (
            f" One-minute load average at the start and the end: {d['load_avg_1min'][0]} and "
            f"{d['load_avg_1min'][1]} (other work shared the 2 cores; it slows both variants alike)."
            if "load_avg_1min" in d
            else ""
        ),
        "",
        row(["assessor wall time", "p50 ms", "p95 ms", "max ms", "mean ms"]),
        row(["---"] * 5),
    ]
    for name, key in (("diagnosis off (old)", "old_ms"), ("diagnosis on (new)", "new_ms")):
        out.append(row([name, d[key]["p50"], d[key]["p95"], d[key]["max"], d[key]["mean"]]))
    stage = d["diagnosis_stage_ms"]
    out.append(row(["the diagnosis stage alone", stage["p50"], stage["p95"], stage["max"], stage["mean"]]))
    out += [
        "",
        f"p50 with / without: {1 + d['p50_increase']:.3f} ({d['p50_increase']:+.1%}); median of the per-turn "
        f"pairs: {d['paired_increase_p50']:+.1%}; the diagnosis stage is {d['stage_share_of_p50']:.1%} of the p50 "
        "with it."
        if "paired_increase_p50" in d
        else f"p50 with / without: {1 + d['p50_increase']:.3f} ({d['p50_increase']:+.1%}); the diagnosis stage is "
        f"{d['stage_share_of_p50']:.1%} of the p50 with it.",
    ]
    return out


def stages(r: dict) -> list[str]:
    s = r["summary"]
    out = ["## The pipeline before and after the latency work (`bench/stages.py`)", "", where(r), ""]
    out += [
        f"In process, no server: {r['config']['turns']} turns, each configuration run on each turn in turn (interleaved, so machine noise hits all alike), beside plain faster-whisper with ASR_t alone.",
        "",
    ]
    out += [row(["", "p50 ms", "p95 ms", "ratio to the floor (p50)"]), row(["---"] * 4)]
    out.append(row(["floor (faster-whisper, ASR_t alone)", s["floor_ms"]["p50"], s["floor_ms"]["p95"], "1"]))
    for name in r["config"]["configs"]:
        out.append(
            row(
                [
                    f"{name} {json.dumps(r['config']['configs'][name])}",
                    s[f"{name}_ms"]["p50"],
                    s[f"{name}_ms"]["p95"],
                    s[f"{name}_ratio_to_floor_p50"],
                ]
            )
        )
    if "speedup_p50" in s:
        out += [
            "",
            f"Speed-up of the p50, sequential to default: {s['speedup_p50']}x; the assessed words were the same on {s['same_words']} of {r['config']['turns']} turns (Whisper's own word timestamps are not needed: the features use the aligner's).",
        ]
    return out


def throughput(r: dict, title: str) -> list[str]:
    c = r["config"]
    out = [f"## Concurrent streams: {title} (`bench/throughput.py`)", "", where(r), ""]
    out += [
        f"{c['pool']} pool, {c['workers']} worker(s) of {c['threads_per_worker']} thread(s); each client streams {c['turns_per_stream']} turns of {c['turn_s']} s at real-time pace with {c['gap_s']} s of silence between them, clients offset so their turns end at different moments. Target: p95 latency at most {c['target_p95_ms']:.0f} ms, no failed turn.",
        "",
    ]
    out += [
        row(["streams", "turns assessed", "failed", "p50 ms", "p95 ms", "max ms", "RSS of server + workers, MiB"]),
        row(["---"] * 7),
    ]
    for lv in r["levels"]:
        out.append(
            row(
                [
                    lv["streams"],
                    lv["turns_assessed"],
                    lv["turns_failed"],
                    lv["latency_ms"].get("p50"),
                    lv["latency_ms"].get("p95"),
                    lv["latency_ms"].get("max"),
                    round(sum(lv["rss_mib"].values())),
                ]
            )
        )
    out += [
        "",
        f"Sustained: **{r['sustained_streams']} stream(s)** with p95 under the target; the largest worker used {r['worker_rss_mib_max']} MiB.",
    ]
    return out


def soak(r: dict) -> list[str]:
    out = ["## Soak (`bench/soak.py`)", "", where(r), ""]
    out += [
        f"{r['rounds']} rounds, {r['sessions']} sessions ({r['sessions_vanished']} vanished mid-turn without a close, a third sent garbage between audio frames), {r['turns_started']} turns started in the sessions that stayed: {r['turns_assessed']} assessed, {r['turns_failed']} failed {json.dumps(r['failure_codes'])}.",
        f"Sessions breaking a promise (a turn without exactly one terminal event, `session.ended` not last, a failure without a code): **{r['sessions_breaking_a_promise']}**. Server alive at the end: {r['server_alive_at_end']}, exit code {r['server_exit_code']}, tracebacks in its log: {r['tracebacks_in_server_log']}.",
        f"Resident memory of the server and its workers after each round (MiB): {r['rss_mib_after_each_round']}; growth after the first round: {r['rss_growth_after_first_round_mib']} MiB.",
    ]
    return out


def reliability(r: dict) -> list[str]:
    """The four defects of issue 19, replayed against a real server."""
    out = ["## Reliability: the defects of issue 19 replayed (`bench/reliability.py`)", "", where(r), ""]
    out += [row(["case", "what the server did", "before the fix"]), row(["---", "---", "---"])]
    before = {
        "end_between_frames": "turn.ended 30,009 ms, then turn.failed audio_too_long",
        "hangover_on_split_frame": "turn.ended 790 → 30,810 ms, then turn.failed audio_too_long",
    }
    for name, case in r["long_turns"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(Counter(t["outcome"] for t in case["turns"]).items()))
        out.append(
            row(
                [
                    f"long turn, {name.replace('_', ' ')} (`vad` {json.dumps(case['vad'])})",
                    f"longest turn {case['longest_ms']} ms; {outcomes}",
                    before[name],
                ]
            )
        )
    wait = r["waiting_turn"]
    out.append(
        row(
            [
                f"a {wait['frame_bytes'] // 1000} KB frame holding a pause and the turn's end, the only worker busy",
                f"turn.assessed {wait['seconds_after_frame']['turn.assessed']} s after the frame (queue {wait['latency_ms']['queue']:.0f} ms behind the busy worker)",
                "61.7 s (the job reached the pool only at the next idle tick)",
            ]
        )
    )
    kill = r["killed_worker"]
    out.append(
        row(
            [
                "`kill -9` of the idle worker",
                f"/healthz 200 again after {kill['healthz_200_after_s']} s, a new worker ({len(kill['new_workers'])}), `{' '.join(kill['restarts_metric'])}`",
                "/healthz 503 for 60 of 60 s, no new process",
            ]
        )
    )
    spam = r["spam"]
    cpu = spam["server_cpu_s_per_block"]
    block = spam["turns"] // max(1, len(cpu))
    out.append(
        row(
            [
                f"push-to-talk spam: 2-byte frame + turn.end, {spam['turns']:,} turns",
                f"server CPU per {block:,} turns {min(cpu)}-{max(cpu)} s, flat ({', '.join(map(str, cpu))}); outcomes {json.dumps(spam['outcomes'])}",
                "3 s rising to 47 s per 5,000 turns",
            ]
        )
    )
    quiet = r["spam_beside_quiet"]
    out.append(
        row(
            [
                "a quiet session beside three spamming sessions",
                f"{quiet['quiet_assessed']} of {quiet['quiet_turns']} turns assessed, failed {json.dumps(quiet['quiet_failed'])}",
                "other sessions' turns failed `overloaded`",
            ]
        )
    )
    return out


def baseline_tree(r: dict, title: str = "Latency against an older checkout's code") -> list[str]:
    """``bench/latency.py --baseline-tree``: this checkout's code against an older one's, same models."""
    out = [f"## {title} (`bench/latency.py --baseline-tree`)", "", where(r), ""]
    out += [row(["code", "p50 ms", "p95 ms", "floor p50 ms", "ratio to floor p50", "ratio to floor p95"])]
    out.append(row(["---"] * 6))
    for name, v in r["variants"].items():
        label = f"baseline ({r['config'].get('baseline_tree')})" if name == "baseline" else f"this checkout ({name})"
        cells = [v["latency_ms"]["p50"], v["latency_ms"]["p95"], v["floor_ms"]["p50"], v["ratio_p50"]]
        out.append(row([label, *cells, v.get("ratio_p95", "-")]))
    b = r.get("baseline_ratio", {})
    out += [
        "",
        f"This checkout over the baseline: p50 {b.get('latency_p50')}, ratio to the floor {b.get('ratio_to_floor_p50')} "
        "(the runs follow each other, so the floor ratio is the comparison that load does not move as much).",
    ]
    if r.get("baseline_note"):
        out += ["", r["baseline_note"] + "."]
    return out


def same_scores(r: dict) -> list[str]:
    """``bench/same_scores.py``: this checkout's assessments against another checkout's."""
    out = ["## Same scores as an older checkout (`bench/same_scores.py`)", "", where(r), ""]
    out += [
        f"{r['turns']} turns (open and closed mode), the same scorer: the same words in {r['same_words']}, "
        f"{r['values']} sentence and word scores compared, largest difference **{r['largest_difference']}**.",
    ]
    if r.get("tree_note"):
        out += ["", r["tree_note"] + "."]
    return out


def fairness(r: dict) -> list[str]:
    late = " after a long head start" if r["trials"] and "--head-start" in r.get("command", "") else ""
    out = [f"## Fairness between sessions{late} (`bench/fairness.py`)", "", where(r), ""]
    out += [
        f"A quiet session says {r['trials'][0]['turns']} utterances at real time, alone and beside sessions streaming white noise as fast as the server takes it (each {r['noise_turn_ms']} ms of noise a turn for the {r['workers']} worker).",
        "",
        row(["noisy neighbours", "quiet turns assessed", "failed", "p50 ms", "p95 ms", "max ms", "neighbours' turns"]),
        row(["---"] * 7),
    ]
    for t in r["trials"]:
        lat = t["latency_ms"]
        out.append(
            row(
                [
                    t["neighbours"],
                    f"{t['assessed']}/{t['turns']}",
                    json.dumps(t["failed"]) if t["failed"] else 0,
                    lat.get("p50", "-"),
                    lat.get("p95", "-"),
                    lat.get("max", "-"),
                    json.dumps(t["neighbour_turns"]),
                ]
            )
        )
    out += [
        "",
        "Before the fair queue (issue 19): beside 7 sessions pushing turns a quiet session lost 2 of 3 turns to `overloaded`; one noisy neighbour raised its latency from 2-7 s to 15-18 s.",
    ]
    return out


def accuracy(r: dict) -> list[str]:
    out = ["## Accuracy (`bench/accuracy.py`)", "", where(r), ""]
    out += [
        "`multipa evaluate` on the development speakers (never trained on), both modes; plots of predicted against expert scores: "
        + ", ".join(f"`{m['plot']}`" for m in r["modes"].values())
        + ".",
        "",
    ]
    out += [
        row(
            [
                "mode",
                "n",
                "failed",
                "acc PCC / SCC",
                "flu PCC / SCC",
                "pro PCC / SCC",
                "total PCC / SCC",
                "word acc",
                "word stress",
                "word total",
            ]
        ),
        row(["---"] * 10),
    ]

    def cell(m: dict) -> str:
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        return f"{f(m['pcc'])} / {f(m['scc'])}"

    for mode, m in r["modes"].items():
        out.append(
            row(
                [
                    mode,
                    m["n"],
                    m["failed"],
                    *(cell(m["sentence"][h]) for h in ("accuracy", "fluency", "prosody", "total")),
                    *(cell(m["word"][h]) for h in ("accuracy", "stress", "total")),
                ]
            )
        )
    return out


def pipecat_delay(r: dict) -> list[str]:
    out = ["## Time a frame spends in the Pipecat processor (`bench/pipecat_delay.py`)", "", where(r), ""]
    out += [
        f"A real Pipecat pipeline fed {r['frames']} audio frames of {r['frame_ms']} ms, paced as a live transport sends them (a busy machine's feeder falls behind and catches up in bursts) ({r['turns']} learner turns between `UserStarted/StoppedSpeakingFrame`) while `multipa_client.pipecat.PronunciationProcessor` streamed them to {r['server']} and pushed {r['feedback_frames']} feedback frames. "
        f"Time from a frame entering the processor to it reaching the next one, beside a plain pass-through processor in the same pipeline; wall clock (it includes the OS preempting the process on the shared cores, load average {', '.join(f'{x:.1f}' for x in r['load_average'])}) and this thread's CPU time (what the code costs). Target: p99 under {r['target_p99_us'] / 1000:.0f} ms.",
        "",
        row(["time inside", "p50 us", "p99 us", "max us"]),
        row(["---"] * 4),
    ]
    for name, key in (
        ("processor, wall clock", "processor"),
        ("pass-through, wall clock", "pass_through"),
        ("processor, CPU", "processor_cpu"),
        ("pass-through, CPU", "pass_through_cpu"),
    ):
        out.append(row([name, r[key]["p50_us"], r[key]["p99_us"], r[key]["max_us"]]))
    verdict = lambda ok: "under" if ok else "over"  # noqa: E731
    out += [
        "",
        f"p99 inside the processor: {verdict(r['meets_target'])} the target by the wall clock, {verdict(r['meets_target_cpu'])} it by CPU time.",
    ]
    return out


def main() -> int:
    lines = [
        "# Benchmarks",
        "",
        "Every number here comes from a JSON file in `bench/results/`, written by the command",
        "shown with it; this page is generated from them by `python bench/report.py > docs/benchmarks.md`.",
        "The machine is the project's CI kind: 2 cores, no GPU. Timings on it are noisy (other",
        "processes share the cores), so comparisons are made inside one run, on the same turns.",
        "No GPU was lent to the session that measured these: the CUDA path and GPU batching are unmeasured.",
        "The MQTT runs put the broker, the gateway and the workers on the same 2 cores: they show the",
        "overhead of the broker path, not what more machines add.",
        "",
    ]
    sections = [("latency", latency), ("latency-diagnosis", diagnosis_latency), ("stages", stages)]
    for name, fn in sections:
        r = load(name)
        if r:
            lines += fn(r) + [""]
    for name, title in (
        ("throughput-local", "embedded pool"),
        ("throughput-mqtt", "one MQTT worker"),
        ("throughput-mqtt-2workers", "two MQTT workers sharing the same 2 cores"),
    ):
        r = load(name)
        if r:
            lines += throughput(r, title) + [""]
    quiet = load("capacity-quiet")
    if quiet:
        lines += capacity(quiet, "live learners per machine, on a quiet machine") + [""]
    cap = load("capacity")
    if cap:
        lines += capacity(cap, "live learners per machine, on a loaded machine (earlier)") + [""]
    threads = load("capacity-threads")
    if threads:
        lines += capacity(threads, "ASR_r's threads before and after, in one run") + [""]
    if quiet or cap:
        lines += sizing(quiet or cap, load("latency")) + [""]
    lines += gpu(load("gpu")) + [""]
    for name, fn in (
        ("soak", soak),
        ("reliability", reliability),
        ("fairness", fairness),
        ("fairness-10min", fairness),
        ("latency-vs-issue17", baseline_tree),
        ("latency-vs-word-stage", lambda r: baseline_tree(r, "What the word stage costs in latency")),
        ("same-scores-vs-issue17", same_scores),
        ("accuracy", accuracy),
        ("pipecat_delay", pipecat_delay),
    ):
        r = load(name)
        if r:
            lines += fn(r) + [""]
    lines += [
        "## Reliability tests in CI",
        "",
        "Beside these runs, the test suite (`make test`) holds the fault and hostile-input cases that fit its time:",
        "worker crash and retry (`tests/server/test_local_pool.py`), a client vanishing mid-turn and every input",
        "order of a session (property tests, `tests/server/test_session.py`, `test_connection.py`), a client that",
        "never reads and a connection flood beyond the session limit (`tests/server/test_app_limits.py`), malformed",
        "and oversized frames and wrong keys (`tests/server/test_protocol.py`, `test_e2e.py`), an unwritable cache",
        "(`tests/core/test_cache.py`), and the MQTT faults (`tests/server/test_mqtt_*.py`).",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
