"""The shipped models end to end: `multipa assess` and a small development evaluation."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.models

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "speechocean762"
UTT = "000530003"  # development speaker 0053: "MIKE LIKES THE ORANGE ONE"


def multipa(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "multipa_core.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def wav():
    if not DATA.is_dir():
        pytest.skip(f"shared data missing at {DATA}")
    return DATA / "audio" / f"{UTT}.flac"


@pytest.mark.parametrize("closed", [False, True])
def test_assess_real_utterance(wav, closed):
    args = ["assess", str(wav), "--json"] + (["--text", "MIKE LIKES THE ORANGE ONE"] if closed else [])
    proc = multipa(*args)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["transcript"] and doc["target_transcript"]
    assert set(doc["sentence"]) >= {"accuracy", "fluency", "prosody", "total"}
    assert ("completeness" in doc["sentence"]) == closed
    assert doc["timings_ms"]["encoder_layers"] > 0  # the shipped probe reads every ASR_t encoder layer
    assert all(0.0 <= v <= 10.0 for v in doc["sentence"].values())
    assert doc["words"]
    starts = [w["start_ms"] for w in doc["words"]]
    assert starts == sorted(starts)
    for w in doc["words"]:
        assert 0.0 <= w["accuracy"] <= 10.0 and 0.0 <= w["stress"] <= 10.0 and 0.0 <= w["total"] <= 10.0
        assert isinstance(w["needs_improvement"], bool)
        assert w["phones"] and all(0.0 <= p["probability"] <= 1.0 for p in w["phones"])
    if closed:
        assert [w["text"] for w in doc["words"]] == ["mike", "likes", "the", "orange", "one"]


def test_assess_readable_output(wav):
    proc = multipa("assess", str(wav))
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout and "recognized:" in proc.stdout


def _write_short(path):
    import soundfile as sf

    sf.write(path, (0.1 * np.sin(np.arange(1600) / 5)).astype(np.float32), 16000)


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda p: p.write_bytes(b""), "audio_empty"),
        (lambda p: p.write_text("just some text, renamed to .wav\n"), "audio_decode"),
        (_write_short, "audio_too_short"),
    ],
)
def test_assess_bad_input(tmp_path, make, code):
    bad = tmp_path / "bad.wav"
    make(bad)
    proc = multipa("assess", str(bad), timeout=120)
    assert proc.returncode == 2
    assert f"error [{code}]" in proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_shipped_model_on_development_subset(wav):
    """A broken model or pipeline shows here; the floor is far below the documented numbers."""
    proc = multipa("evaluate", "--limit", "40", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n"] == 40 and report["failed"] == 0 and report["mode"] == "open"
    for aspect in ("accuracy", "fluency", "prosody", "total"):
        assert report["sentence"][aspect]["pcc"] > 0.4, (aspect, report["sentence"][aspect])
    assert report["word"]["accuracy"]["pcc"] > 0.15, report["word"]
