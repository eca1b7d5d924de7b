"""`multipa-server` fails cleanly on a bad configuration: a code and a sentence, exit 2."""

from __future__ import annotations

import subprocess
import sys


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
