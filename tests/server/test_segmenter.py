"""The VAD turn segmenter on real speech joined with silences of known length."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from multipa_core.audio import resample
from multipa_server.protocol import TurnEndReason, VadOptions
from multipa_server.segmenter import SegmentEnded, SegmentPaused, Segmenter, SegmentStarted

from .speech import RATE, UTTERANCES, conversation, silence, speech_span_ms, utterance

UTTS = list(UTTERANCES)
GAPS = [0.8, 1.0, 1.5, 0.9, 1.2]
FRAME = 30


def noisy(samples: np.ndarray, std: float = 30.0, seed: int = 0) -> np.ndarray:
    """A microphone's noise floor (std 30 of int16 full scale: about -60 dBFS)."""
    noise = np.random.default_rng(seed).normal(0.0, std, len(samples))
    return np.clip(samples + noise, -32768, 32767).astype(np.int16)


def run(pcm: bytes, rate: int = RATE, options: VadOptions | None = None, chunk: int = 3200) -> list:
    seg = Segmenter(rate, options or VadOptions())
    events = []
    for i in range(0, len(pcm), chunk):
        events += seg.feed(pcm[i : i + chunk])
    return events + seg.flush()


def turns(events: list) -> list[SegmentEnded]:
    return [e for e in events if isinstance(e, SegmentEnded)]


def check_pairing(events: list) -> None:
    """Each turn is announced once, then ended once, in order, with matching start."""
    open_turn = None
    for e in events:
        if isinstance(e, SegmentStarted):
            assert open_turn is None
            open_turn = e
        elif isinstance(e, SegmentPaused):
            assert open_turn is not None and e.index == open_turn.index and e.start_ms == open_turn.start_ms
        else:
            assert open_turn is not None and e.index == open_turn.index and e.start_ms == open_turn.start_ms
            open_turn = None
    assert [e.index for e in events if isinstance(e, SegmentStarted)] == list(range(1, len(turns(events)) + 1))


@pytest.fixture(scope="module")
def stream():
    return conversation(UTTS, GAPS)


@pytest.mark.parametrize("floor", ["digital silence", "noise floor"])
def test_one_turn_per_utterance_within_tolerance(stream, floor):
    audio, placed = stream
    if floor == "noise floor":
        audio = noisy(audio)
    o = VadOptions()
    events = run(audio.tobytes())
    check_pairing(events)
    found = turns(events)
    assert len(found) == len(placed)
    for turn, utt in zip(found, placed):
        assert turn.reason is TurnEndReason.SILENCE
        # nothing of the silence before the file beyond the pre-roll; the speech onset kept
        assert utt.start_ms - o.pre_roll_ms - FRAME <= turn.start_ms <= utt.speech_start_ms + 150, (turn, utt)
        # no speech clipped at the end; at most post-roll plus webrtcvad's own hang-over after the file
        assert utt.speech_end_ms <= turn.end_ms <= utt.end_ms + o.post_roll_ms + 150, (turn, utt)
        assert len(turn.audio) == 2 * round((turn.end_ms - turn.start_ms) * RATE / 1000)


def test_turn_audio_is_the_exact_slice_of_the_stream(stream):
    audio, _ = stream
    pcm = audio.tobytes()
    for turn in turns(run(pcm)):
        a = turn.start_ms * RATE // 1000
        assert turn.audio == pcm[2 * a : 2 * a + len(turn.audio)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 4000), min_size=1, max_size=40))
def test_chunking_does_not_change_turns(stream, sizes):
    audio, _ = stream
    pcm = noisy(audio).tobytes()
    expected = run(pcm, chunk=len(pcm))
    seg, events, pos, i = Segmenter(RATE), [], 0, 0
    while pos < len(pcm):
        size = 2 * sizes[i % len(sizes)]
        events += seg.feed(pcm[pos : pos + size])
        pos, i = pos + size, i + 1
    assert events + seg.flush() == expected


@pytest.mark.parametrize("rate", [8000, 24000, 32000, 44100, 48000])
def test_every_sample_rate_finds_the_same_turns(stream, rate):
    audio, _ = stream
    audio = noisy(audio)
    reference = turns(run(audio.tobytes()))
    converted = (np.clip(resample(audio.astype(np.float32) / 32768.0, RATE, rate), -1, 1) * 32767).astype(np.int16)
    found = turns(run(converted.tobytes(), rate=rate, chunk=rate // 5 * 2))
    assert len(found) == len(reference)
    for a, b in zip(found, reference):
        assert abs(a.start_ms - b.start_ms) <= 2 * FRAME and abs(a.end_ms - b.end_ms) <= 2 * FRAME, (rate, a, b)
        assert len(a.audio) == 2 * round((a.end_ms - a.start_ms) * rate / 1000)


def test_blips_are_not_turns():
    speech = utterance(UTTS[0])
    blip = speech[len(speech) // 2 : len(speech) // 2 + int(0.15 * RATE)]  # 150 ms from mid-sentence
    pcm = np.concatenate([silence(1.0), blip, silence(1.0)]).tobytes()
    assert run(pcm, options=VadOptions(onset_ms=90)) == []
    # not vacuous: the same audio is speech once blips are allowed
    found = turns(run(pcm, options=VadOptions(onset_ms=90, min_turn_ms=0)))
    assert len(found) == 1 and 1000 - 200 - FRAME <= found[0].start_ms <= 1150


def test_long_speech_is_split_at_max_turn_length():
    speech = np.concatenate([utterance(u) for u in UTTS])  # ~9 s; its pauses are shorter than the hang-over
    pcm = np.concatenate([silence(0.5), noisy(speech), silence(3.0)]).tobytes()
    events = run(pcm, options=VadOptions(max_turn_ms=3000, hangover_ms=2000))
    check_pairing(events)
    found = turns(events)
    assert len(found) == 3  # ~9.3 s of speech from 0.3 s on (pre-roll): 3 s, 3 s, 3 s, and the rest not speech
    for turn in found[:-1]:
        assert turn.reason is TurnEndReason.MAX_LENGTH and turn.end_ms - turn.start_ms == 3000
        assert len(turn.audio) == 2 * 3 * RATE
    for a, b in zip(found, found[1:]):
        assert b.start_ms == a.end_ms  # contiguous: the split loses no audio and repeats none
    assert found[-1].end_ms - found[-1].start_ms <= 3000
    assert found[-1].end_ms >= 500 + speech_span_ms(speech)[1]  # the speech's end is in the last turn


def test_pre_roll_moves_the_start_and_never_reaches_into_the_previous_turn(stream):
    audio, _ = stream
    audio = noisy(audio)
    without = turns(run(audio.tobytes(), options=VadOptions(pre_roll_ms=0)))
    with_roll = turns(run(audio.tobytes(), options=VadOptions(pre_roll_ms=300)))
    assert [b.start_ms for b in with_roll] == [a.start_ms - 300 for a in without]
    # a pre-roll longer than the pause between two turns stops at the previous turn's end
    close_pair, _ = conversation(UTTS[:2], [0.5, 0.9, 0.5])
    found = turns(run(noisy(close_pair).tobytes(), options=VadOptions(pre_roll_ms=2000, hangover_ms=600)))
    assert len(found) == 2 and found[1].start_ms == found[0].end_ms


def test_turn_end_cuts_now_and_bypasses_the_minimum():
    speech = noisy(utterance(UTTS[2]))
    seg = Segmenter(RATE)
    assert seg.end_turn() == []  # nothing in progress
    half = np.concatenate([silence(0.5), speech[: len(speech) // 2]]).tobytes()
    events = seg.feed(half)
    events += seg.end_turn()
    assert isinstance(events[0], SegmentStarted) and isinstance(events[-1], SegmentEnded)
    assert events[-1].reason is TurnEndReason.CLIENT and events[-1].end_ms == seg.received_ms
    # an onset not yet long enough to be announced is announced and ended on turn.end
    seg = Segmenter(RATE, VadOptions(min_turn_ms=5000))
    events = seg.feed(half) + seg.end_turn()
    assert [type(e) for e in events] == [SegmentStarted, SegmentEnded]


def test_flush_ends_an_announced_turn_and_drops_a_blip():
    speech = noisy(utterance(UTTS[1]))
    seg = Segmenter(RATE)
    events = seg.feed(np.concatenate([silence(0.3), speech]).tobytes())  # still within the hang-over
    assert seg.turn_open and len(turns(events)) == 0
    (end,) = seg.flush()
    assert end.reason is TurnEndReason.SESSION_END and end.end_ms == seg.received_ms
    seg = Segmenter(RATE, VadOptions(min_turn_ms=5000))
    assert seg.feed(np.concatenate([silence(0.3), speech]).tobytes()) == [] and seg.flush() == []


def test_push_to_talk_turns_follow_turn_end_only():
    options = VadOptions(enabled=False, max_turn_ms=4000)
    seg = Segmenter(RATE, options)
    first = np.concatenate([silence(1.0), utterance(UTTS[0]), silence(1.0)]).tobytes()
    events = seg.feed(first[:3200])
    assert events == [SegmentStarted(1, 0)]
    events = seg.feed(first[3200:])  # the silences do not end the turn; 4.2 s > max: one split
    assert [(type(e), getattr(e, "reason", None)) for e in events] == [
        (SegmentEnded, TurnEndReason.MAX_LENGTH),
        (SegmentStarted, None),
    ]
    assert events[0].end_ms == 4000 and events[1].start_ms == 4000
    (end,) = seg.end_turn()
    assert end.reason is TurnEndReason.CLIENT and end.end_ms == seg.received_ms
    assert seg.end_turn() == [] and seg.flush() == []
    events = seg.feed(silence(0.5).tobytes())
    assert events == [SegmentStarted(3, end.end_ms)]
    (last,) = seg.flush()
    assert last.reason is TurnEndReason.SESSION_END and last.end_ms - last.start_ms == 500


def test_odd_chunks_are_refused():
    with pytest.raises(ValueError):
        Segmenter(RATE).feed(b"\x00\x01\x02")


def test_a_pause_predicts_the_turn_the_hangover_then_ends(stream):
    """Each turn's SegmentPaused comes before its end and carries exactly the audio it ends with."""
    audio, _ = stream
    events = run(audio.tobytes())
    ended = {e.index: e for e in turns(events)}
    paused = [e for e in events if isinstance(e, SegmentPaused)]
    last_pause = {e.index: e for e in paused}
    assert sorted(last_pause) == sorted(i for i, e in ended.items() if e.reason is TurnEndReason.SILENCE)
    for index, pause in last_pause.items():
        assert (pause.start_ms, pause.end_ms, pause.audio) == (
            ended[index].start_ms,
            ended[index].end_ms,
            ended[index].audio,
        )
        assert events.index(pause) < events.index(ended[index])


def test_speech_after_a_pause_makes_it_stale():
    """A pause shorter than the hang-over: the first prediction is stale, the turn ends after the second speech."""
    first, second = utterance("004820045"), utterance("001350134")
    options = VadOptions(hangover_ms=900, post_roll_ms=150)
    audio = np.concatenate([silence(0.5), first, silence(0.45), second, silence(1.5)])
    events = run(audio.tobytes(), options=options)
    assert len(turns(events)) == 1
    end = turns(events)[0]
    paused = [e for e in events if isinstance(e, SegmentPaused)]
    assert len(paused) >= 2
    assert paused[0].end_ms < end.end_ms and paused[0].audio == end.audio[: len(paused[0].audio)]
    assert (paused[-1].end_ms, paused[-1].audio) == (end.end_ms, end.audio)


def test_no_pause_without_vad_or_before_the_turn_is_announced():
    push_to_talk = run(
        np.concatenate([silence(0.3), utterance("004820045"), silence(1.0)]).tobytes(),
        options=VadOptions(enabled=False),
    )
    assert not [e for e in push_to_talk if isinstance(e, SegmentPaused)]
    blip = run(np.concatenate([silence(0.5), utterance("004820045")[:3000], silence(1.5)]).tobytes())
    assert not blip


def white_noise(seconds: float, seed: int = 1) -> np.ndarray:
    """Sound webrtcvad takes for speech all along (no pause the hang-over could end a turn on)."""
    return np.clip(np.random.default_rng(seed).normal(0.0, 4000.0, int(round(seconds * RATE))), -32768, 32767).astype(
        np.int16
    )


def test_session_end_between_vad_frames_still_splits_at_max_turn_length():
    """Issue 19 (1a): audio past the last whole VAD frame crossed max_turn_ms, and the flush closed the turn there."""
    options = VadOptions(max_turn_ms=30000, hangover_ms=10000)
    for end in ("flush", "end_turn"):
        seg = Segmenter(RATE, options)
        events = seg.feed(silence(1.0).tobytes())
        noise = white_noise(31.0)
        fed = 0
        while not any(isinstance(e, SegmentStarted) for e in events):
            events += seg.feed(noise[fed : fed + 480].tobytes())
            fed += 480
        start = next(e for e in events if isinstance(e, SegmentStarted)).start_ms * RATE // 1000
        limit = 30000 * RATE // 1000
        total = start + limit + 144  # 9 ms past the limit
        assert total // 480 * 480 < start + limit  # ... and not yet in a whole VAD frame
        events += seg.feed(noise[fed : total - RATE].tobytes())
        assert not turns(events)
        events += seg.flush() if end == "flush" else seg.end_turn()
        check_pairing(events)
        found = turns(events)
        assert found and all(t.end_ms - t.start_ms <= 30000 and len(t.audio) <= 2 * limit for t in found), [
            (t.start_ms, t.end_ms) for t in found
        ]
        assert found[0].reason is TurnEndReason.MAX_LENGTH and found[0].end_ms - found[0].start_ms == 30000


def test_hangover_close_on_the_frame_that_crosses_the_limit_keeps_within_it():
    """Issue 19 (1b): a turn off the 30 ms grid whose post-roll crossed max_turn_ms on the closing frame."""
    options = VadOptions(max_turn_ms=30000, hangover_ms=600, post_roll_ms=600)
    pcm = np.concatenate([silence(1.0), white_noise(29.1), silence(3.0)]).tobytes()
    events = run(pcm, options=options)
    check_pairing(events)
    found = turns(events)
    assert found and all(t.end_ms - t.start_ms <= 30000 and len(t.audio) <= 2 * 30000 * RATE // 1000 for t in found), [
        (t.start_ms, t.end_ms) for t in found
    ]
    for pause in (e for e in events if isinstance(e, SegmentPaused)):
        assert pause.end_ms - pause.start_ms <= 30000


@st.composite
def vad_settings(draw):
    hangover = draw(st.integers(FRAME, 2000))
    options = dict(
        enabled=draw(st.booleans()),
        aggressiveness=draw(st.integers(0, 3)),
        onset_ms=draw(st.integers(FRAME, 600)),
        hangover_ms=hangover,
        min_turn_ms=draw(st.integers(0, 400)),
        pre_roll_ms=draw(st.integers(0, 500)),
        post_roll_ms=draw(st.integers(0, hangover)),
    )
    low = options["pre_roll_ms"] + options["min_turn_ms"] + options["post_roll_ms"] + 1
    options["max_turn_ms"] = draw(st.integers(max(1000, low), 3000))
    return VadOptions(**options)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.sampled_from([8000, 16000, 44100]),
    options=vad_settings(),
    pieces=st.lists(st.tuples(st.booleans(), st.integers(1, 1500)), min_size=1, max_size=3),  # (sound?, ms)
    chunks=st.lists(
        st.integers(1, 4000).map(lambda n: n if n > 40 else 41 - n), min_size=1, max_size=6
    ),  # frame sizes in samples, cycled
    turn_ends=st.sets(st.integers(0, 60), max_size=6),  # after which frames the client sends turn.end
    last=st.sampled_from(["flush", "end_turn", "end_turn+flush"]),
)
def test_no_turn_ever_exceeds_max_turn_ms(rate, options, pieces, chunks, turn_ends, last):
    """Whatever the audio, its framing, the settings and the end messages: no turn outgrows max_turn_ms."""
    rng = np.random.default_rng(len(pieces))
    audio = np.concatenate(
        [
            rng.normal(0.0, 4000.0, ms * rate // 1000).clip(-32768, 32767).astype(np.int16)
            if loud
            else np.zeros(ms * rate // 1000, np.int16)
            for loud, ms in pieces
        ]
    ).tobytes()
    seg = Segmenter(rate, options)
    events: list = []
    at, i = 0, 0
    while at < len(audio):
        size = 2 * chunks[i % len(chunks)]
        events += seg.feed(audio[at : at + size])
        if i in turn_ends:
            events += seg.end_turn()
        at, i = at + size, i + 1
    for step in last.split("+"):
        events += seg.flush() if step == "flush" else seg.end_turn()
    check_pairing(events)
    limit = options.max_turn_ms * rate // 1000
    for e in events:
        if isinstance(e, (SegmentEnded, SegmentPaused)):
            assert e.end_ms - e.start_ms <= options.max_turn_ms and len(e.audio) // 2 <= limit, (e.start_ms, e.end_ms)
