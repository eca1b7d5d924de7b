"""End to end: SIGTERM while turns are in flight and one is still being spoken."""

from __future__ import annotations

import numpy as np
import pytest

from .speech import RATE, UTTERANCES, utterance
from .test_segmenter import noisy
from .wsclient import ServerProcess, Wait, http_get, talk

pytestmark = pytest.mark.models


def test_sigterm_drains_in_flight_turns_then_closes_1001(scorer, tmp_path):
    server = ServerProcess(["--workers", "1", "--scorer", scorer], tmp_path / "server.log")
    try:
        a, b, c = (utterance(u) for u in list(UTTERANCES)[:3])
        gap = np.zeros(RATE, dtype=np.int16)
        # two whole turns (one runs, one waits for the single worker), then a third still being spoken
        audio = noisy(np.concatenate([gap[: RATE // 2], a, gap, b, gap, c[: int(1.5 * RATE)]]))
        outcome = talk(
            server.url,
            [
                {"type": "session.start", "sample_rate": RATE, "realtime": False},
                audio,
                Wait("turn.started", 3),
                server.terminate,
                audio[: RATE // 2],
            ],
        )
        assert server.proc.wait(90) == 0
    finally:
        server.stop()
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
    kinds = [(e["type"], e.get("turn_id")) for e in outcome.events]
    error_at = kinds.index(("error", None))
    assert outcome.events[error_at]["code"] == "shutting_down" and outcome.events[error_at]["fatal"] is True
    outcome.check_every_turn_finished()
    assert sorted(e["turn_id"] for e in outcome.of("turn.assessed")) == [1, 2, 3]  # none dropped, the open one included
    assert [e["reason"] for e in outcome.of("turn.ended")] == ["silence", "silence", "session_end"]
    assert any(k[0] == "turn.assessed" for k in kinds[error_at:])  # results came after the signal: drained
    summary = outcome.events[-1]
    assert (summary["reason"], summary["turns_started"], summary["turns_assessed"]) == ("shutdown", 3, 3)
    assert (outcome.close_code, outcome.close_reason) == (1001, "shutting_down")
    with pytest.raises(OSError):  # and it is gone
        http_get(server.http + "/healthz")
