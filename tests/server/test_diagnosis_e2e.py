"""The diagnosis through the real server: turn.assessed carries heard phones and feedback."""

from __future__ import annotations

import pytest

from .speech import utterance
from .test_segmenter import noisy
from .wsclient import one_worker_server, talk

pytestmark = pytest.mark.models

KEY = "diagnosis-key"


@pytest.fixture(scope="module")
def server(scorer, tmp_path_factory):
    yield from one_worker_server(scorer, KEY, tmp_path_factory.mktemp("server"))


def test_turn_assessed_carries_the_diagnosis(server):
    speech = noisy(utterance("001350134"))  # HE IS A BIG BOY
    script = [
        {"type": "session.start", "sample_rate": 16000, "mode": "closed", "realtime": False, "vad": {"enabled": False}},
        {"type": "turn.reference", "text": "HE IS A BIG BOY"},
        speech,
        {"type": "turn.end"},
        {"type": "session.end"},
    ]
    outcome = talk(server.url, script, headers={"Authorization": f"Bearer {KEY}"})
    (assessed,) = outcome.of("turn.assessed")
    a = assessed["assessment"]
    assert [w["text"] for w in a["words"]] == ["he", "is", "a", "big", "boy"]
    assert all(
        p["ipa"] and p["error"] in ("none", "substitution", "deletion") and p["nbest"]
        for w in a["words"]
        for p in w["phones"]
    )
    assert isinstance(a["feedback"], list) and len(a["feedback"]) <= 3
    assert set(a["diagnosis"]) >= {"errors", "insertions", "prosody"} and a["diagnosis"]["prosody"]["speaking_rate"] > 0

    from multipa_client import parse_event

    typed = parse_event(assessed)
    assert typed.assessment.feedback is not None and typed.assessment.diagnosis.prosody is not None
