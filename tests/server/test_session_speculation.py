"""The session's speculation, without I/O: a turn assessed from the learner's pause while
the hang-over runs, withdrawn when speech resumes, paused while jobs come back slowly."""

from __future__ import annotations

import numpy as np

from multipa_server.pool import JobResult
from multipa_server.session import Cancel, Send, Session, Submit

from .speech import silence, utterance
from .test_segmenter import noisy
from .test_session import Clock, Recorder, check_invariants, feed, fed, start, text


def started(name: str = "sp", clock: Clock | None = None, **start_fields) -> tuple[Session, Recorder, Clock]:
    """A speculating real-time session, started, with its recorder and clock."""
    clock = clock or Clock()
    session = Session(name, clock=clock, speculate=True)
    rec = Recorder(session)
    start(session, realtime=True, **start_fields)
    rec.take()
    return session, rec, clock


def speculating(speech, **start_fields) -> tuple[Session, Recorder, Clock]:
    audio, _ = speech
    session, rec, clock = started(**start_fields)
    feed(session, rec, audio.tobytes(), clock)
    return session, rec, clock


def test_a_turn_is_submitted_at_the_pause_and_that_job_is_its_assessment(speech):
    session, rec, clock = speculating(speech)
    submits = [a for a in rec.actions if isinstance(a, Submit)]
    assert [s.speculative for s in submits] == [True] * 3, "no second job once the turn ends where it paused"
    for submit in submits:  # each was sent before its turn.ended, 450 ms of hang-over earlier
        sent = rec.actions.index(submit)
        ended = next(
            i
            for i, a in enumerate(rec.actions)
            if isinstance(a, Send) and a.event.type == "turn.ended" and a.event.turn_id == submit.turn_id
        )
        assert sent < ended and submit.job.id == f"sp/{submit.turn_id}~1"
    clock.t += 0.5
    while rec.pending:
        rec.resolve(0)
    text(session, "session.end")
    rec.take()
    check_invariants(rec)
    latency = rec.of("turn.assessed")[0]["latency_ms"]
    assert 420.0 <= latency["head_start"] <= 480.0 and latency["total"] >= 500.0


def test_a_result_before_the_turn_ends_waits_for_turn_ended(speech):
    audio, _ = speech
    session, rec, clock = started()
    for _ in fed(session, rec, audio.tobytes(), clock):
        if rec.pending:
            rec.resolve(0)  # done at once: before the hang-over ends
            assert not rec.of("turn.assessed") or rec.of("turn.ended")
    kinds = [e["type"] for e in rec.events if e["type"] in ("turn.ended", "turn.assessed")]
    assert kinds == ["turn.ended", "turn.assessed"] * 3
    assert all(e["latency_ms"]["total"] == 0.0 for e in rec.of("turn.assessed"))
    text(session, "session.end")
    rec.take()
    check_invariants(rec)


def test_speculation_pauses_while_jobs_come_back_slower_than_two_hangovers(speech):
    """Issue 18: on a loaded machine a withdrawn speculation runs on and holds back the turns
    behind it; once this session's jobs take longer than two hang-overs (600 ms each), pauses
    submit nothing and each turn goes in when it ends; fast jobs bring speculation back."""
    audio, _ = speech
    for took_ms, speculative in ((5000.0, [True, False, False]), (900.0, [True, True, True])):
        session, rec, clock = started()
        for _ in fed(session, rec, audio.tobytes(), clock):
            while rec.pending:
                submit = rec.pending.pop(0)
                done = JobResult({"mode": "open"}, queue_ms=0.0, assess_ms=took_ms, worker="fake")
                session.job_succeeded(submit.turn_id, done, submit.job.id)
                rec.take()
        text(session, "session.end")
        rec.take()
        check_invariants(rec)
        submits = [a for a in rec.actions if isinstance(a, Submit)]
        assert [s.speculative for s in submits] == speculative, (took_ms, submits)
        assert len(rec.of("turn.assessed")) == 3


def test_speech_after_the_pause_withdraws_the_speculation():
    session, rec, clock = started(vad={"hangover_ms": 1500})
    audio = np.concatenate([silence(0.5), utterance("004820045"), silence(0.45), utterance("001350134"), silence(1.5)])
    feed(session, rec, noisy(audio).tobytes(), clock)
    cancels = [a for a in rec.actions if isinstance(a, Cancel)]
    submits = [a for a in rec.actions if isinstance(a, Submit)]
    assert cancels and cancels[0].job_id == submits[0].job.id
    assert len(rec.pending) == 1 and rec.pending[0].job.id == submits[-1].job.id
    ended = rec.of("turn.ended")
    assert len(ended) == 1
    rec.resolve(0)
    text(session, "session.end")
    rec.take()
    check_invariants(rec)
    assert len(rec.of("turn.assessed")) == 1


def test_a_failed_speculation_falls_back_to_an_ordinary_job(speech):
    audio, _ = speech
    session, rec, clock = speculating(speech)
    assert [p.speculative for p in rec.pending] == [True] * 3
    # turn 1: the speculation fails after the turn ended -> one ordinary job at once
    rec.pending = [p for p in rec.pending if p.job.id != "sp/1~1"]
    session.job_failed(1, "worker_crashed", "the worker died", "sp/1~1")
    rec.take()
    retry = [p for p in rec.pending if p.turn_id == 1]
    assert len(retry) == 1 and not retry[0].speculative and retry[0].job.id == "sp/1"
    # a speculation skipped for lack of an idle worker before its turn ended -> an ordinary job at the end
    session2, rec2, _ = started("sq", clock)
    for actions in fed(session2, rec2, audio.tobytes(), clock):
        for action in actions:
            if isinstance(action, Submit) and action.speculative:
                rec2.pending.remove(action)
                session2.job_failed(action.turn_id, "speculation_skipped", "no idle worker", action.job.id)
    assert [p.job.id for p in rec2.pending] == ["sq/1", "sq/2", "sq/3"]
    for r in (rec, rec2):
        while r.pending:
            r.resolve(0)
        text(r.session, "session.end")
        r.take()
        check_invariants(r)
    assert len(rec.of("turn.assessed")) == 3 and len(rec2.of("turn.assessed")) == 3


# --- issue 19: push-to-talk turn spam ------------------------------------------------
