import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from multipa_core import align
from multipa_core import phones as ph


def peaky(T, peaks, floor=0.01):
    """Log-posteriors that are blank everywhere except class c at frame t for (t, c) in peaks."""
    probs = np.full((T, ph.NUM_CLASSES), floor)
    probs[:, ph.BLANK] = 1.0
    for t, c in peaks:
        probs[t] = floor
        probs[t, c] = 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    return np.log(probs)


def cls(p):
    return ph.to_classes([p])[0]


def test_viterbi_finds_the_peaks():
    lp = peaky(20, [(3, cls("K")), (7, cls("AE")), (12, cls("T"))])
    assert align.viterbi(lp, [cls("K"), cls("AE"), cls("T")]) == [(3, 3), (7, 7), (12, 12)]


def test_viterbi_repeated_phone_needs_a_blank_between():
    lp = peaky(10, [(2, cls("L")), (5, cls("L"))])
    spans = align.viterbi(lp, [cls("L"), cls("L")])
    assert spans[0][1] < spans[1][0] - 1  # a blank frame separates the two L's


def test_viterbi_infeasible_returns_none():
    lp = peaky(2, [])
    assert align.viterbi(lp, [cls("A" + "A"), cls("B"), cls("K")]) is None
    assert align.viterbi(lp, [cls("L"), cls("L")]) is None  # 2 frames cannot hold L blank L


def test_viterbi_is_the_best_path_on_a_tiny_case():
    # Brute force all CTC paths for 4 frames over tokens [a, b]; the chosen spans must be on a best path.
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(ph.NUM_CLASSES), size=4))
    a, b = 1, 2
    best = -np.inf
    import itertools

    for path in itertools.product([0, a, b], repeat=4):
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c)]
        if collapsed == [a, b]:
            best = max(best, sum(lp[t, c] for t, c in enumerate(path)))
    spans = align.viterbi(lp, [a, b])
    path = [0] * 4
    for (s, e), c in zip(spans, [a, b]):
        for t in range(s, e + 1):
            path[t] = c
    # blanks fill the rest; the reconstructed path must score the optimum
    assert sum(lp[t, c] for t, c in enumerate(path)) == pytest.approx(best)


def test_segment_splits_gaps_within_words_and_keeps_pauses():
    spans = [(5, 5), (9, 9), (40, 41)]
    bounds = align.segment(spans, [0, 0, 1], 60, max_gap=10, edge=4)
    assert bounds[0] == (1, 7)  # edge before the first phone; midpoint of frames 6..8
    assert bounds[1][0] == 7
    assert bounds[1][1] == 14  # a 30-frame pause: 4 frames kept after the peak
    assert bounds[2] == (36, 46)


def test_force_align_times_words_and_probabilities():
    lp = peaky(50, [(5, cls("W")), (8, cls("IY")), (30, cls("G")), (34, cls("OW"))])
    al = align.force_align(lp, ["we", "go"], [["W", "IY1"], ["G", "OW1"]])
    assert [w.text for w in al.words] == ["we", "go"]
    assert al.words[0].start == pytest.approx(0.02)
    assert al.words[0].end < al.words[1].start  # a pause between them
    assert all(p.probability > 0.7 for p in al.phones)  # 1 / (1 + 39 * 0.01)
    assert al.posteriors.shape == (4, ph.NUM_CLASSES)
    assert np.allclose(al.posteriors.sum(axis=1), 1.0, atol=1e-5)
    assert [p.word for p in al.phones] == [0, 0, 1, 1]


def test_force_align_falls_back_to_uniform_when_too_short():
    lp = peaky(3, [])
    al = align.force_align(lp, ["cat", "dog"], [["K", "AE1", "T"], ["D", "AO1", "G"]])
    starts = [p.start for p in al.phones]
    assert starts == sorted(starts) and al.phones[-1].end == pytest.approx(0.06)


def test_words_without_phones_are_skipped():
    lp = peaky(20, [(3, cls("AH"))])
    al = align.force_align(lp, ["", "a"], [[], ["AH0"]])
    assert [w.text for w in al.words] == ["a"] and al.words[0].phones == [0]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(0, 60), st.integers(0, 1000))
def test_alignment_is_monotonic_and_inside_the_audio(n, extra, seed):
    rng = np.random.default_rng(seed)
    T = 2 * n + extra + 1
    lp = np.log(rng.dirichlet(np.ones(ph.NUM_CLASSES), size=T))
    phones = [ph.PHONES[i] for i in rng.integers(0, len(ph.PHONES), size=n)]
    al = align.force_align(lp, ["w"] * n, [[p] for p in phones])
    edges = [x for p in al.phones for x in (p.start, p.end)]
    assert edges == sorted(edges)
    assert edges[0] >= 0 and edges[-1] <= T * align.FRAME_SECONDS + 1e-9
    assert all(p.end > p.start for p in al.phones)


def test_greedy_decode_merges_repeats_and_drops_blanks():
    lp = peaky(8, [(1, cls("S")), (2, cls("S")), (5, cls("IY"))])
    assert align.greedy_decode(lp) == ["S", "IY"]
