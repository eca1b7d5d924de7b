"""The session state machine, without I/O: every started turn ends in exactly one terminal event."""

from __future__ import annotations

import json
from collections import Counter
from typing import Iterator

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from multipa_server.pool import JobResult
from multipa_server.protocol import CloseCode, ErrorCode, SessionEndReason, TurnEndReason
from multipa_server.session import Cancel, Close, Limits, Send, Session, SessionState, Submit

from .speech import RATE, UTTERANCES, silence, utterance

TERMINAL = ("turn.assessed", "turn.failed")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def start(session: Session, **fields) -> None:
    session.receive_text(json.dumps({"type": "session.start", "sample_rate": RATE, **fields}))


def text(session: Session, type_: str, **fields) -> None:
    session.receive_text(json.dumps({"type": type_, **fields}))


def result(turn_id: int = 0) -> JobResult:
    return JobResult({"mode": "open", "turn": turn_id}, queue_ms=1.0, assess_ms=2.0, worker="fake")


class Recorder:
    """Collects a session's actions over its whole life."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.actions: list = []
        self.pending: list[Submit] = []

    def take(self) -> list:
        new = self.session.actions()
        self.actions += new
        for action in new:
            if isinstance(action, Submit):
                self.pending.append(action)
            elif isinstance(action, Cancel):  # the connection cancels it: no outcome ever comes
                self.pending = [p for p in self.pending if p.job.id != action.job_id]
        return new

    @property
    def events(self) -> list[dict]:
        return [json.loads(_wire(a.event)) for a in self.actions if isinstance(a, Send)]

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def resolve(self, index: int = 0, ok: bool = True) -> None:
        submit = self.pending.pop(index)
        if ok:
            self.session.job_succeeded(submit.turn_id, result(submit.turn_id), submit.job.id)
        else:
            self.session.job_failed(submit.turn_id, "audio_silent", "the audio is silent", submit.job.id)
        self.take()


def _wire(event) -> str:
    from multipa_server.protocol import serialize

    return serialize(event)


def check_invariants(rec: Recorder) -> None:
    """The protocol's promises over one finished session."""
    events = rec.events
    started = [e["turn_id"] for e in events if e["type"] == "turn.started"]
    assert len(started) == len(set(started)) and started == sorted(started)
    terminal = Counter(e["turn_id"] for e in events if e["type"] in TERMINAL)
    assert set(terminal) == set(started), (started, terminal)
    assert all(n == 1 for n in terminal.values()), terminal
    for turn_id in started:  # order per turn: started < ended < terminal
        kinds = [e["type"] for e in events if e.get("turn_id") == turn_id]
        assert kinds[0] == "turn.started" and kinds[-1] in TERMINAL and kinds.count("turn.ended") <= 1
    ended = [i for i, e in enumerate(events) if e["type"] == "session.ended"]
    assert ended == [len(events) - 1], "session.ended is sent once, last"
    summary = events[-1]
    assert summary["turns_started"] == len(started)
    assert summary["turns_assessed"] == len(rec.of("turn.assessed")) and summary["turns_failed"] == len(
        rec.of("turn.failed")
    )
    closes = [a for a in rec.actions if isinstance(a, Close)]
    assert len(closes) <= 1 and (not closes or rec.actions[-1] is closes[0])
    submitted = [a.turn_id for a in rec.actions if isinstance(a, Submit) and not a.speculative]
    assert len(submitted) == len(set(submitted)) and set(submitted) <= set(started)
    jobs = [a.job.id for a in rec.actions if isinstance(a, Submit)]
    assert len(jobs) == len(set(jobs)), "job ids are unique"
    assert rec.session.state is SessionState.CLOSED and rec.session.unfinished == 0


def fed(session: Session, rec: Recorder, pcm: bytes, clock: Clock | None = None, chunk_ms: int = 20) -> Iterator[list]:
    """Send ``pcm`` a chunk at a time (the clock moving with it) and yield the actions each chunk brought."""
    step = RATE * chunk_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        if clock is not None:
            clock.t += chunk_ms / 1000
        session.receive_audio(pcm[i : i + step])
        yield rec.take()


def feed(session: Session, rec: Recorder, pcm: bytes, clock: Clock | None = None, chunk_ms: int = 20) -> None:
    for _ in fed(session, rec, pcm, clock, chunk_ms):
        pass


# --- a conversation -------------------------------------------------------------------


def test_a_three_turn_conversation_in_real_time(speech):
    audio, placed = speech
    clock = Clock()
    session = Session("s1", clock=clock)
    rec = Recorder(session)
    start(session, realtime=True)
    rec.take()
    assert rec.of("session.started")[0]["session_id"] == "s1"
    feed(session, rec, audio.tobytes(), clock)
    assert [e["turn_id"] for e in rec.of("turn.started")] == [1, 2, 3]
    assert [e["reason"] for e in rec.of("turn.ended")] == ["silence"] * 3
    assert [s.turn_id for s in rec.pending] == [1, 2, 3]
    for submit, utt in zip(rec.pending, placed):
        assert (
            submit.job.sample_rate == RATE and submit.job.reference is None and submit.job.id == f"s1/{submit.turn_id}"
        )
        assert utt.start_ms - 250 <= rec.of("turn.ended")[submit.turn_id - 1]["start_ms"] <= utt.speech_start_ms + 150
    text(session, "session.end")
    rec.take()
    assert session.state is SessionState.DRAINING and not rec.of("session.ended")
    clock.t += 2.5
    rec.resolve(2)  # results come back out of order
    rec.resolve(0, ok=False)
    rec.resolve(0)
    assessed = rec.of("turn.assessed")
    assert [e["turn_id"] for e in assessed] == [3, 2]
    latency = assessed[0]["latency_ms"]
    assert latency["queue"] == 1.0 and latency["assess"] == 2.0 and latency["total"] >= 2500.0
    assert rec.of("turn.failed")[0]["code"] == "audio_silent"
    check_invariants(rec)
    assert rec.events[-1]["reason"] == "client" and rec.actions[-1] == Close(CloseCode.NORMAL, "")


def test_latency_total_runs_from_turn_end_to_result():
    clock = Clock()
    session = Session("s", clock=clock)
    rec = Recorder(session)
    start(session, realtime=False, vad={"enabled": False})
    session.receive_audio(np.ones(RATE, dtype=np.int16).tobytes())
    text(session, "turn.end")
    rec.take()
    clock.t += 1.25
    rec.resolve()
    assert rec.of("turn.assessed")[0]["latency_ms"]["total"] == 1250.0


# --- every input order keeps the promise -----------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("audio"), st.integers(1, 40)),  # listed twice: most sessions should get turns
        st.tuples(st.just("audio"), st.integers(5, 40)),
        st.tuples(st.just("turn.end")),
        st.tuples(st.just("reference")),
        st.tuples(st.just("resolve"), st.integers(0, 7), st.booleans()),
        st.tuples(st.just("ping")),
        st.tuples(st.just("garbage")),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(
    ops=OPS,
    final=st.sampled_from(["session.end", "disconnect", "shutdown", "abort", "idle", "fatal", "too_fast"]),
    mode=st.sampled_from(["open", "closed"]),
    vad=st.booleans(),
    speculate=st.booleans(),
    order=st.randoms(use_true_random=False),
)
def test_every_started_turn_gets_exactly_one_terminal_event(speech, ops, final, mode, vad, speculate, order):
    audio, _ = speech
    pcm = audio.tobytes()
    chunk = RATE // 10 * 2  # 100 ms
    clock = Clock()
    session = Session("p", limits=Limits(max_turns_in_flight=2), clock=clock, speculate=speculate)
    rec = Recorder(session)
    start(session, realtime=final == "too_fast", mode=mode, vad={"enabled": vad, "max_turn_ms": 2500})
    rec.take()
    pos = 0
    for op in ops:
        if op[0] == "audio":
            for _ in range(op[1]):
                session.receive_audio(pcm[pos % len(pcm) : pos % len(pcm) + chunk])
                pos += chunk
                clock.t += 0.1
                rec.take()
        elif op[0] == "turn.end":
            text(session, "turn.end")
        elif op[0] == "reference":
            text(session, "turn.reference", text="HE IS A BIG BOY")
        elif op[0] == "resolve" and rec.pending:
            rec.resolve(op[1] % len(rec.pending), ok=op[2])
        elif op[0] == "ping":
            text(session, "ping", id="x")
        elif op[0] == "garbage":
            session.receive_text("{nope")
        rec.take()
    late = list(rec.pending)
    if final == "session.end":
        text(session, "session.end")
    elif final == "disconnect":
        session.disconnected()
    elif final == "shutdown":
        session.shutdown()
    elif final == "abort":
        session.abort(ErrorCode.SHUTTING_DOWN, "drain timeout", CloseCode.GOING_AWAY)
    elif final == "idle":
        session.idle()
    elif final == "fatal":
        session.receive_audio(b"\x00")
    elif final == "too_fast":
        session.receive_audio(bytes(120_000))  # 3.75 s at once: over the 2 s lead
    rec.take()
    while rec.pending:  # whatever is still queued finishes, in random order
        rec.resolve(order.randrange(len(rec.pending)), ok=order.random() < 0.7)
    if session.state is not SessionState.CLOSED:  # idle is ignored while turns are in flight
        text(session, "session.end")
        rec.take()
        while rec.pending:
            rec.resolve(0)
    for submit in late:  # results that arrive after the turn already failed change nothing
        session.job_succeeded(submit.turn_id, result())
    rec.take()
    check_invariants(rec)
    reason = rec.events[-1]["reason"]
    if final == "disconnect":
        assert reason == "disconnect" and not any(isinstance(a, Close) for a in rec.actions)
    elif final == "too_fast":
        assert reason == "error" and rec.actions[-1] == Close(CloseCode.POLICY_VIOLATION, "too_fast")


# --- errors and limits -------------------------------------------------------------


def fatal_case(setup, expected_code: str, close: CloseCode) -> Recorder:
    session = Session("e", clock=Clock())
    rec = Recorder(session)
    setup(session)
    rec.take()
    errors = rec.of("error")
    assert errors[-1]["code"] == expected_code and errors[-1]["fatal"] is True
    check_invariants(rec)
    assert rec.actions[-1] == Close(close, expected_code)
    return rec


def test_audio_before_start_is_fatal():
    fatal_case(lambda s: s.receive_audio(bytes(640)), "audio_before_start", CloseCode.POLICY_VIOLATION)


@pytest.mark.parametrize(
    "field, value, code",
    [
        ("sample_rate", 22050, "unsupported_sample_rate"),
        ("encoding", "opus", "unsupported_format"),
        ("protocol", "multipa.v0", "unsupported_version"),
        ("mode", "both", "invalid_message"),
    ],
)
def test_a_bad_session_start_is_fatal(field, value, code):
    fatal_case(lambda s: start(s, **{field: value}), code, CloseCode.POLICY_VIOLATION)


def test_odd_length_pcm_is_fatal_and_the_open_turn_is_still_assessed():
    def setup(s: Session) -> None:
        start(s, realtime=False, vad={"enabled": False})
        s.receive_audio(np.ones(RATE // 2, dtype=np.int16).tobytes())
        s.receive_audio(b"\x01\x02\x03")

    session = Session("e", clock=Clock())
    rec = Recorder(session)
    setup(session)
    rec.take()
    assert rec.of("error")[0]["code"] == "odd_length_pcm"
    assert rec.of("turn.ended")[0]["reason"] == TurnEndReason.SESSION_END.value and len(rec.pending) == 1
    rec.resolve()
    check_invariants(rec)
    assert rec.actions[-1] == Close(CloseCode.POLICY_VIOLATION, "odd_length_pcm")


def test_oversized_frames_are_fatal():
    limits = Limits(max_frame_bytes=1000, max_text_bytes=100)
    for frame, is_text in ((bytes(1002), False), ('{"type": "ping", "id": "' + "x" * 200 + '"}', True)):
        session = Session("e", limits=limits, clock=Clock())
        rec = Recorder(session)
        start(session)
        session.receive_text(frame) if is_text else session.receive_audio(frame)
        rec.take()
        assert rec.of("error")[-1]["code"] == "frame_too_large"
        check_invariants(rec)
        assert rec.actions[-1] == Close(CloseCode.MESSAGE_TOO_BIG, "frame_too_large")
    session = Session("ok", limits=limits, clock=Clock())
    start(session)
    session.receive_audio(bytes(1000))
    assert session.state is SessionState.STREAMING


def test_realtime_pacing():
    clock = Clock()
    session = Session("rt", clock=clock)
    rec = Recorder(session)
    start(session, realtime=True)
    frame = bytes(RATE // 10 * 2)  # 100 ms
    for _ in range(300):  # 30 s at real time: fine
        session.receive_audio(frame)
        clock.t += 0.1
    assert not rec.take() or not rec.of("error")
    for _ in range(30):  # then 3 s in an instant: over the 2 s lead
        session.receive_audio(frame)
    rec.take()
    assert rec.of("error")[-1]["code"] == "too_fast"
    assert rec.actions[-1] == Close(CloseCode.POLICY_VIOLATION, "too_fast")
    # the same burst is fine for a client that said it is not real time
    session = Session("files", clock=Clock())
    start(session, realtime=False)
    for _ in range(600):
        session.receive_audio(frame)
    assert session.state is SessionState.STREAMING


def test_session_length_limit():
    session = Session("long", limits=Limits(max_session_s=2.0), clock=Clock())
    rec = Recorder(session)
    start(session, realtime=False)
    for _ in range(20):
        session.receive_audio(bytes(RATE // 10 * 2))
    rec.take()
    assert not rec.of("error")
    session.receive_audio(bytes(2))
    rec.take()
    assert rec.of("error")[-1]["code"] == "session_too_long" and rec.events[-1]["audio_ms"] == 2000


def test_non_fatal_errors_keep_the_session():
    session = Session("n", clock=Clock())
    rec = Recorder(session)
    text(session, "turn.end")  # before start
    text(session, "no.such.type")
    start(session)
    start(session)  # twice
    start(session, sample_rate=22050)  # twice, and bad: still only "already started"
    session.receive_text("{malformed")  # after the start (before it, an unreadable message is a fatal malformed start)
    session.receive_text('{"type": "turn.reference", "text": ""}')
    text(session, "ping", id="7")
    rec.take()
    assert [e["code"] for e in rec.of("error")] == [
        "invalid_state",
        "unknown_type",
        "invalid_state",
        "invalid_state",
        "malformed_json",
        "invalid_message",
    ]
    assert not any(e["fatal"] for e in rec.of("error"))
    assert rec.of("pong") == [{"type": "pong", "id": "7"}] and session.state is SessionState.STREAMING


def test_closed_mode_needs_a_reference_and_it_attaches_to_the_right_turn():
    session = Session("c", clock=Clock())
    rec = Recorder(session)
    start(session, mode="closed", realtime=False, vad={"enabled": False})
    turn_audio = np.ones(RATE // 2, dtype=np.int16).tobytes()
    session.receive_audio(turn_audio)  # turn 1 starts before any reference ...
    text(session, "turn.reference", text="FIRST")  # ... and gets this one
    text(session, "turn.end")
    text(session, "turn.reference", text="SECOND")  # no turn open: for the next turn
    text(session, "turn.reference", text="THIRD")  # replaces it
    session.receive_audio(turn_audio)
    text(session, "turn.end")
    session.receive_audio(turn_audio)  # turn 3: nothing left for it
    text(session, "turn.end")
    rec.take()
    assert [s.job.reference for s in rec.pending] == ["FIRST", "THIRD"]
    failed = rec.of("turn.failed")
    assert [(e["turn_id"], e["code"]) for e in failed] == [(3, "reference_missing")]


def test_turns_in_flight_limit():
    session = Session("f", limits=Limits(max_turns_in_flight=2), clock=Clock())
    rec = Recorder(session)
    start(session, realtime=False, vad={"enabled": False})
    for _ in range(3):
        session.receive_audio(np.ones(RATE // 2, dtype=np.int16).tobytes())
        text(session, "turn.end")
    rec.take()
    assert [s.turn_id for s in rec.pending] == [1, 2]
    assert [(e["turn_id"], e["code"]) for e in rec.of("turn.failed")] == [(3, "too_many_turns")]
    rec.resolve()
    session.receive_audio(np.ones(RATE // 2, dtype=np.int16).tobytes())
    text(session, "turn.end")
    rec.take()
    assert [s.turn_id for s in rec.pending] == [2, 4]


def test_idle_timeout_waits_for_turns_in_flight():
    session = Session("i", clock=Clock())
    rec = Recorder(session)
    start(session, realtime=False, vad={"enabled": False})
    session.receive_audio(np.ones(RATE // 2, dtype=np.int16).tobytes())
    text(session, "turn.end")
    session.idle()
    rec.take()
    assert not rec.of("error")  # the client is waiting for us, not idle
    rec.resolve()
    session.idle()
    rec.take()
    assert rec.of("error")[-1]["code"] == "idle_timeout"
    check_invariants(rec)
    assert rec.events[-1]["reason"] == SessionEndReason.IDLE.value


def test_shutdown_finishes_the_open_turn_then_closes_going_away(speech):
    audio, _ = speech
    session = Session("sd", clock=Clock())
    rec = Recorder(session)
    start(session, realtime=False)
    pcm = audio.tobytes()
    half = len(pcm) // 4 * 2
    feed(session, rec, pcm[:half])  # mid-conversation, a turn is open
    open_turns = len(rec.of("turn.started")) - len(rec.of("turn.ended"))
    session.shutdown()
    session.receive_audio(pcm[half : half + 3200])  # already on the wire: ignored
    rec.take()
    assert rec.of("error")[-1] == {
        "type": "error",
        "code": "shutting_down",
        "message": rec.of("error")[-1]["message"],
        "fatal": True,
    }
    assert open_turns == 1 and rec.of("turn.ended")[-1]["reason"] == "session_end"
    while rec.pending:
        rec.resolve()
    check_invariants(rec)
    assert rec.events[-1]["reason"] == "shutdown" and rec.actions[-1] == Close(CloseCode.GOING_AWAY, "shutting_down")


def test_session_end_before_start_and_messages_after_end():
    session = Session("x", clock=Clock())
    rec = Recorder(session)
    text(session, "session.end")
    rec.take()
    check_invariants(rec)
    session.receive_text('{"type": "ping"}')
    session.receive_audio(bytes(4))
    assert session.actions() == []


def test_turn_times_are_stream_relative_at_any_rate():
    session = Session("r", clock=Clock())
    rec = Recorder(session)
    start(session, sample_rate=48000, realtime=False, vad={"enabled": False})
    session.receive_audio(np.ones(48000, dtype=np.int16).tobytes())
    text(session, "turn.end")
    session.receive_audio(np.ones(24000, dtype=np.int16).tobytes())
    text(session, "turn.end")
    rec.take()
    assert [(e["start_ms"], e["end_ms"]) for e in rec.of("turn.ended")] == [(0, 1000), (1000, 1500)]
    assert [len(s.job.pcm) for s in rec.pending] == [96000, 48000] and rec.pending[0].job.sample_rate == 48000


def test_silence_after_speech_is_not_a_turn():
    session = Session("q", clock=Clock())
    rec = Recorder(session)
    start(session, realtime=False)
    session.receive_audio(silence(3.0).tobytes())
    session.receive_audio(np.concatenate([utterance(list(UTTERANCES)[0]), silence(1.0)]).tobytes())
    rec.take()
    assert len(rec.of("turn.started")) == 1 and len(rec.pending) == 1


def test_a_turn_too_short_to_assess_fails_without_a_job():
    """Issue 19 (4): a 2-byte push-to-talk turn went to a worker, only to come back audio_too_short."""
    session = Session("s")
    rec = Recorder(session)
    start(session, realtime=False, vad={"enabled": False})
    session.receive_audio(b"\x00\x10")
    text(session, "turn.end")
    session.receive_audio(np.full(RATE // 2, 1000, dtype=np.int16).tobytes())  # 0.5 s: assessed
    text(session, "turn.end")
    rec.take()
    assert [a.turn_id for a in rec.actions if isinstance(a, Submit)] == [2]
    failed = rec.of("turn.failed")
    assert [(e["turn_id"], e["code"]) for e in failed] == [(1, "audio_too_short")] and "0.25 s" in failed[0]["message"]
    assert session.in_flight == 1


def test_per_turn_work_does_not_grow_with_the_session_history():
    """Issue 19 (4): in_flight and turn.reference scanned every turn the session ever had."""
    import time as _time

    session = Session("s", limits=Limits(max_session_s=1e9))
    start(session, realtime=False, vad={"enabled": False}, mode="closed")

    def spam(n: int) -> float:
        began = _time.perf_counter()
        for _ in range(n):
            text(session, "turn.reference", text="hello")
            session.receive_audio(b"\x00\x10")
            text(session, "turn.end")
            session.actions()
        return _time.perf_counter() - began

    first = spam(1000)
    spam(10000)
    last = spam(1000)
    assert last < 3 * first + 0.05, (first, last)  # scanning 11,000 turns per step was several times slower
    assert session.unfinished == 0 and session.in_flight == 0
    text(session, "session.end")
    ended = [a.event for a in session.actions() if isinstance(a, Send) and a.event.type == "session.ended"][0]
    assert ended.turns_started == 12000 and ended.failures == {"audio_too_short": 12000}


@pytest.mark.parametrize("reference", ["🙂🙂", "?!... —", "你好世界", "привет"])
def test_a_reference_with_no_scorable_word_is_rejected_naming_the_field(reference):
    """Issue 19: such a reference got turn.assessed with no words and a sentence total near 7.5."""
    session = Session("s")
    rec = Recorder(session)
    start(session, realtime=False, mode="closed", vad={"enabled": False})
    text(session, "turn.reference", text=reference)
    session.receive_audio(np.full(RATE // 2, 1000, dtype=np.int16).tobytes())
    text(session, "turn.end")
    rec.take()
    errors = rec.of("error")
    assert (
        errors
        and errors[0]["code"] == "invalid_message"
        and "turn.reference text" in errors[0]["message"]
        and not errors[0]["fatal"]
    )
    assert not [
        a for a in rec.actions if isinstance(a, Submit)
    ]  # the turn has no reference: reference_missing, no score
    assert [e["code"] for e in rec.of("turn.failed")] == ["reference_missing"]


def test_an_unreadable_first_message_is_a_fatal_malformed_start():
    """Issue 19: docs/protocol.md says a malformed session.start is fatal; the code answered a non-fatal malformed_json."""
    session = Session("s")
    rec = Recorder(session)
    session.receive_text('{"type": "session.start", "sample_rate": 16000')
    rec.take()
    assert rec.of("error")[0]["code"] == "malformed_json" and rec.of("error")[0]["fatal"]
    assert (
        session.state is SessionState.CLOSED
        and isinstance(rec.actions[-1], Close)
        and rec.actions[-1].code is CloseCode.POLICY_VIOLATION
    )
    later = Session("t")  # once started, a malformed message is only rejected
    start(later)
    later.actions()
    later.receive_text("{nope")
    assert [a.event.fatal for a in later.actions() if isinstance(a, Send)] == [False]
