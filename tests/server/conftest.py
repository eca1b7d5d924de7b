"""Fixtures of the server tests."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .speech import DATA


@pytest.fixture(scope="module")
def speech():
    """Three learner utterances with pauses, under a little noise, and where each one lies
    (the session tests)."""
    from .speech import UTTERANCES, conversation
    from .test_segmenter import noisy

    audio, placed = conversation(list(UTTERANCES)[:3], [0.6, 1.2, 1.2, 1.0])
    return noisy(audio), placed


@pytest.fixture(scope="session")
def scorer(tmp_path_factory) -> str:
    """The shipped scorer when it is installed, else a smoke one trained here (~30 s)."""
    from multipa_core import registry
    from multipa_core.errors import MultipaError

    try:
        registry.resolve("multipa-scorer", kind="scorer")
        return "multipa-scorer"
    except MultipaError:
        pass
    if not DATA.is_dir():
        pytest.skip(f"shared data missing at {DATA}")
    out = tmp_path_factory.mktemp("scorer") / "scorer.pt"
    command = [
        sys.executable,
        "-m",
        "multipa_core.cli",
        "train",
        "--out",
        str(out),
        "--aligner",
        "multipa-aligner",
        "--limit",
        "8",
        "--epochs",
        "1",
        "--members",
        "1",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-3000:]
    return str(out)


@pytest.fixture
def mosquitto(tmp_path):
    """A private broker for one test (see tests/server/broker.py)."""
    from .broker import Mosquitto

    broker = Mosquitto(tmp_path)
    yield broker
    broker.stop()
