"""`multipa-server` fails cleanly on a bad configuration: a code and a sentence, exit 2."""

from __future__ import annotations

import subprocess
import sys

from multipa_core import registry


def server(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "multipa_server.cli", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_an_unknown_scorer_fails_at_start(tmp_path):
    proc = server("--scorer", str(tmp_path / "missing.pt"))
    assert proc.returncode == 2
    assert "error [worker_start_failed]" in proc.stderr and "model_unknown" in proc.stderr
    assert "Traceback" not in proc.stderr and "listening" not in proc.stdout


def test_a_whisper_model_the_scorer_was_not_trained_with_fails_at_start():
    tiny = str(registry.resolve("whisper-tiny.en", kind="whisper"))
    proc = server("--asr-target", tiny)
    assert proc.returncode == 2
    assert "error [worker_start_failed]" in proc.stderr and "model_mismatch" in proc.stderr
    assert "whisper-base (512-d frames" in proc.stderr and f"{tiny} (384-d frames" in proc.stderr
    assert "Traceback" not in proc.stderr and "listening" not in proc.stdout


def test_the_worker_command_refuses_a_mismatch_before_connecting():
    base = str(registry.resolve("whisper-base", kind="whisper"))
    proc = subprocess.run(
        [sys.executable, "-m", "multipa_server.worker_cli", "--broker", "mqtt://127.0.0.1:1", "--asr-recognized", base],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error [model_mismatch]: "), proc.stderr
    assert "ASR_r whisper-tiny.en (384-d frames" in proc.stderr and f"{base} (512-d frames" in proc.stderr


def test_bad_options_and_environment():
    proc = server("--workers", "0")
    assert proc.returncode == 2 and "error [config_error]" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "multipa_server.cli"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MULTIPA_PORT": "eighty", "PATH": ""},
    )
    assert proc.returncode == 2 and "MULTIPA_PORT must be an integer" in proc.stderr and "Traceback" not in proc.stderr
