"""The Prometheus exposition text, from events."""

from __future__ import annotations

from multipa_server.metrics import Metrics
from multipa_server.pool import PoolStats
from multipa_server.protocol import Error, SessionEnded, SessionEndReason, TurnAssessed, TurnFailed, TurnStarted


def test_render_counts_events_in_prometheus_text_format():
    m = Metrics()
    m.session_opened()
    m.observe(TurnStarted(1, 0))
    m.observe(TurnStarted(2, 900))
    m.observe(
        TurnAssessed(
            1,
            0,
            800,
            {"timings_ms": {"asr_target": 400.0, "score": 2.0}},
            {"queue": 10.0, "assess": 1500.0, "total": 1600.0},
        )
    )
    m.observe(TurnFailed(2, 900, 1000, 'odd"code\\', "x"))
    m.observe(Error("too_fast", "x", True))
    m.observe(SessionEnded(SessionEndReason.CLIENT, 2, 1, 1, 2500, {}))
    text = m.render(PoolStats(2, 2, 1, 3, 16, 1))
    lines = text.splitlines()
    assert text.endswith("\n") and all(line.startswith("# ") or " " in line for line in lines)
    values = {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in lines if not line.startswith("#")}
    assert values["multipa_turns_started_total"] == "2" and values["multipa_turns_assessed_total"] == "1"
    assert values['multipa_turn_failures_total{code="odd\\"code\\\\"}'] == "1"  # label values escaped
    assert values['multipa_errors_total{code="too_fast"}'] == "1"
    assert values["multipa_queue_depth"] == "3" and values['multipa_workers{state="busy"}'] == "1"
    assert values["multipa_audio_seconds_total"] == "2.5" and values["multipa_sessions_active"] == "1"
    # cumulative buckets: 1.5 s falls in le=2 and above, not in le=1
    assert values['multipa_turn_latency_seconds_bucket{stage="assess",le="1"}'] == "0"
    assert values['multipa_turn_latency_seconds_bucket{stage="assess",le="2"}'] == "1"
    assert values['multipa_turn_latency_seconds_bucket{stage="assess",le="+Inf"}'] == "1"
    assert values['multipa_turn_latency_seconds_sum{stage="assess"}'] == "1.5"
    assert values['multipa_pipeline_stage_seconds_count{stage="asr_target"}'] == "1"
    assert (
        "# TYPE multipa_turn_latency_seconds histogram" in lines
        and "# TYPE multipa_turn_failures_total counter" in lines
    )
