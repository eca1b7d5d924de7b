"""The benchmarks run for real, briefly: each prints one JSON object whose numbers hang together.

Full runs (minutes each) are in docs/benchmarks.md; these keep the scripts working.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "speechocean762"

pytestmark = [pytest.mark.models, pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data missing at {DATA}")]


def bench(script: str, *args: str, timeout: float = 900.0) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip(), "a readable table on stderr"
    return json.loads(proc.stdout)


def test_latency_against_the_floor(tmp_path):
    out = bench(
        "latency.py",
        "--turns",
        "2",
        "--gap-s",
        "2.0",
        "--variants",
        "speculate",
        "--json-out",
        str(tmp_path / "latency.json"),
    )
    run = out["variants"]["speculate"]
    assert run["turns_assessed"] >= 2 and run["turns_failed"] == 0
    assert run["latency_ms"]["p50"] > 0 and run["floor_ms"]["p50"] > 0
    assert run["ratio_p50"] == pytest.approx(run["latency_ms"]["p50"] / run["floor_ms"]["p50"], rel=0.01)
    assert run["ratio_p95"] == pytest.approx(run["latency_ms"]["p95"] / run["floor_ms"]["p95"], rel=0.01)
    assert all(t["floor_ms"] > 0 for t in run["per_turn"]), "a floor timed right after each turn"
    assert {"encode_target", "asr_target", "asr_recognized", "score"} <= set(run["stages_p50_ms"])
    assert json.loads((tmp_path / "latency.json").read_text()) == out


def test_soak_round_keeps_every_promise():
    out = bench("soak.py", "--minutes", "0", "--sessions", "3", "--turns", "2")
    assert out["passed"] and out["rounds"] == 1 and out["sessions"] == 3
    assert out["turns_started"] >= 2 and out["turns_assessed"] + out["turns_failed"] == out["turns_started"]


def test_accuracy_both_modes_with_plots(tmp_path):
    out = bench("accuracy.py", "--limit", "4", "--json-out", str(tmp_path / "accuracy.json"))
    for mode in ("open", "closed"):
        report = out["modes"][mode]
        assert report["n"] == 4 and report["mode"] == mode
        assert set(report["sentence"]) == {"accuracy", "fluency", "prosody", "total"}
        png = Path(report["plot"])
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gpu_skips_without_cuda_and_runs_small_on_the_cpu(tmp_path):
    import torch

    if not torch.cuda.is_available():
        proc = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "gpu.py")], capture_output=True, text=True, timeout=300, cwd=ROOT
        )
        assert proc.returncode == 0 and "skipped" in json.loads(proc.stdout)
        assert "no CUDA GPU" in proc.stderr and "--device cpu" in proc.stderr
    out = bench(
        "gpu.py",
        "--device",
        "cpu",
        "--batches",
        "1,2",
        "--turns",
        "2",
        "--rounds",
        "1",
        "--minutes",
        "1",
        "--json-out",
        str(tmp_path / "gpu.json"),
    )
    assert [r["batch"] for r in out["batches"]] == [1, 2] and [r["turns"] for r in out["batches"]] == [2, 2]
    assert all(r["latency_ms"]["p50"] > 0 and r["turns_per_s"] >= 0 for r in out["batches"])
    assert set(out["placement"].values()) == {"cpu"} and {"asr_target", "aligner", "scorer[0]"} <= set(out["placement"])
    assert out["same_words_at_every_batch"]
    realtime = out["realtime"]
    assert realtime["sustained_streams"] >= 0 and all(t["p95_ms"] > 0 for t in realtime["tried"])
    assert json.loads((tmp_path / "gpu.json").read_text()) == out


def test_capacity_both_pools_in_one_run(tmp_path):
    out = bench("capacity.py", "--pools", "local,mqtt", "--max-streams", "1", "--turns", "2", "--target-p95-ms", "1e9")
    assert set(out["pools"]) == {"local", "mqtt"}
    for pool in out["pools"].values():
        (lv,) = pool["levels"]
        assert lv["streams"] == 1 and lv["turns_assessed"] == 2 and lv["turns_failed"] == 0
        assert lv["cpu_s"] > 0 and lv["speech_s"] > 0 and lv["rss_mib"] > 0
        assert lv["cpu_s_per_speech_s"] == pytest.approx(lv["cpu_s"] / lv["speech_s"], rel=0.01)
        assert pool["sustained_streams"] == 1
        interval = out["config"]["turn_interval_s"]
        assert pool["ceiling_streams"] == pytest.approx(
            out["machine"]["cpus"] * interval / pool["core_s_per_turn"], rel=0.01
        )


def test_reliability_replays_the_four_defects_against_a_real_server(tmp_path):
    """Issue 19: each defect replayed as found, on a real server; none comes back."""
    out = bench("reliability.py", "--spam-turns", "2000", "--block", "1000", "--json-out", str(tmp_path / "r.json"))
    for case in out["long_turns"].values():
        assert case["longest_ms"] <= case["vad"]["max_turn_ms"] and case["too_long"] == 0
        assert case["turns"] and all(t["outcome"] == "assessed" for t in case["turns"])
    assert out["waiting_turn"]["seconds_after_frame"]["turn.assessed"] < 45  # the defect: 61.7 s
    kill = out["killed_worker"]
    assert kill["new_workers"] and kill["healthz_final"]["status"] == "ok" and kill["healthz_200_after_s"] < 60
    assert out["spam"]["outcomes"] == {"audio_too_short": 2000}
    quiet = out["spam_beside_quiet"]
    assert quiet["quiet_assessed"] == quiet["quiet_turns"] == 3 and not quiet["quiet_failed"]


def test_the_benchmarks_page_is_what_report_writes_from_the_results():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "report.py")], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == (ROOT / "docs" / "benchmarks.md").read_text(), (
        "run: python bench/report.py > docs/benchmarks.md"
    )
