"""Pitch tracking, pauses, rates and the monotone rule on constructed audio and timings."""

import numpy as np

from multipa_core import prosody
from multipa_core.align import Alignment, PhoneSegment, WordSegment
from multipa_core import phones as ph

RATE = 16000


def _tone(f0: np.ndarray) -> np.ndarray:
    """A voiced sound (harmonics) following an F0 track given per sample."""
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    return (0.3 * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)


def test_pitch_track_follows_a_steady_and_a_gliding_voice():
    steady = prosody.pitch_track(_tone(np.full(RATE, 150.0)))
    voiced = steady[steady > 0]
    assert voiced.size > 80 and abs(np.median(voiced) - 150) < 3
    assert prosody.semitone_range(steady) < 0.5
    glide = prosody.pitch_track(_tone(np.geomspace(120, 240, 2 * RATE)))  # one octave
    assert 8.5 < prosody.semitone_range(glide) < 12.5


def test_pitch_track_on_silence_and_short_input():
    assert not prosody.pitch_track(np.zeros(RATE, np.float32)).any()
    assert prosody.pitch_track(np.zeros(100, np.float32)).size == 0
    assert prosody.semitone_range(np.zeros(10)) is None


def _alignment(words: list[tuple[str, float, float]]) -> Alignment:
    segs, out = [], []
    for i, (text, a, b) in enumerate(words):
        mid = (a + b) / 2
        segs += [PhoneSegment("K", a, mid, 0.9, i), PhoneSegment("AE1", mid, b, 0.9, i)]
        out.append(WordSegment(text, a, b, [2 * i, 2 * i + 1]))
    return Alignment(out, segs, np.zeros((len(segs), ph.NUM_CLASSES)), words[-1][2])


def test_pauses_rates_and_readings():
    alignment = _alignment([("the", 0.0, 0.4), ("orange", 0.4, 0.9), ("one", 1.8, 2.2)])
    samples = _tone(np.full(int(2.4 * RATE), 150.0))
    samples[int(1.0 * RATE) : int(1.7 * RATE)] = 0.0  # 0.7 s of silence between "orange" and "one"
    found = prosody.pauses(alignment, prosody.frame_db(samples))
    assert len(found) == 1 and found[0].after_word == 1 and 0.65 <= found[0].seconds <= 0.75
    d = prosody.details(alignment, samples)
    assert d.speaking_rate == round(3 / 2.2, 2) and d.articulation_rate > d.speaking_rate
    assert d.longest_pause_ms >= 650 and "after 'orange'" in d.readings["pauses"]
    assert d.monotone and "flat" in d.readings["pitch"]  # a steady 150 Hz over three words


def test_monotone_needs_three_words_and_a_moving_voice_is_not():
    samples = _tone(np.geomspace(110, 220, int(2.2 * RATE)))
    three = _alignment([("the", 0.0, 0.6), ("orange", 0.6, 1.4), ("one", 1.4, 2.1)])
    assert not prosody.details(three, samples).monotone
    two = _alignment([("orange", 0.0, 1.0), ("one", 1.0, 2.1)])
    assert not prosody.details(two, _tone(np.full(int(2.2 * RATE), 150.0))).monotone


def test_no_words_gives_empty_details():
    empty = Alignment([], [], np.zeros((0, ph.NUM_CLASSES)), 1.0)
    d = prosody.details(empty, np.zeros(RATE, np.float32))
    assert d.speaking_rate is None and d.pauses == [] and not d.monotone
