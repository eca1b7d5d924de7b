"""Heard phones, stress and word error rules on constructed posteriors and timings."""

import numpy as np

from multipa_core import phones as ph
from multipa_core.align import Alignment, PhoneSegment, WordSegment
from multipa_core.diagnosis import (
    TurnDiagnosis, WordDiagnosis, align_phones, break_after, breaks, diagnose_turn, diagnose_word, free_phones, mispronounced,
    omissions_insertions,
)  # fmt: skip
from multipa_core.prosody import Pause


def test_align_phones_substitution_deletion_insertion_empty():
    assert align_phones(["R", "EH1", "D"], ["L", "EH", "D"]) == (["L", "EH", "D"], [])
    assert align_phones(["K", "AE1", "T"], ["K", "AE"]) == (["K", "AE", None], [])
    assert align_phones(["S", "P", "R", "IH1", "NG"], ["S", "AH", "P", "R", "IH", "NG"]) == (
        ["S", "P", "R", "IH", "NG"],
        [(1, "AH")],
    )
    assert align_phones([], ["AH"]) == ([], [(0, "AH")])
    assert align_phones(["AH0"], []) == ([None], [])
    assert align_phones([], []) == ([], [])


def test_alignment_prefers_vowel_for_vowel():
    # a vowel heard for a vowel pairs with it, not with the neighbouring consonant
    assert align_phones(["B", "IH1", "G"], ["B", "IY", "G"])[0] == ["B", "IY", "G"]
    assert align_phones(["T", "R", "IY1"], ["T", "AH", "R", "IY"]) == (["T", "R", "IY"], [(1, "AH")])


def _posteriors(sequence: list[str | None], frames_each: int = 3) -> np.ndarray:
    """Log-posteriors where each listed phone peaks on one frame and blanks fill the rest."""
    rows = []
    for p in sequence:
        for f in range(frames_each):
            row = np.full(ph.NUM_CLASSES, 1e-4)
            row[ph.BLANK if p is None or f else ph.index(p) + 1] = 1.0
            rows.append(row / row.sum())
    return np.log(np.array(rows))


def _word_alignment(phones: list[str], frames_each: int = 3) -> Alignment:
    segs = [PhoneSegment(p, k * frames_each * 0.02, (k + 1) * frames_each * 0.02, 0.9, 0) for k, p in enumerate(phones)]
    return Alignment(
        [WordSegment("red", segs[0].start, segs[-1].end, list(range(len(phones))))],
        segs,
        np.zeros((len(phones), ph.NUM_CLASSES)),
        len(phones) * frames_each * 0.02,
    )


def test_free_phones_and_word_diagnosis():
    log_probs = _posteriors(["L", "EH", "D"])
    assert free_phones(log_probs) == ["L", "EH", "D"]
    assert free_phones(np.zeros((0, ph.NUM_CLASSES))) == []
    d = diagnose_word(log_probs, _word_alignment(["R", "EH1", "D"]), 0)
    assert [(p.expected, p.heard, p.error) for p in d.phones] == [
        ("R", "L", "substitution"),
        ("EH1", "EH", "none"),
        ("D", "D", "none"),
    ]
    assert d.errors == [0] and d.phones[0].nbest[0][0] == "L" and len(d.phones[0].nbest) == 3


def test_confirmed_deletion_needs_a_weak_phone():
    log_probs = _posteriors(["K", "AE", None])
    alignment = _word_alignment(["K", "AE1", "T"])
    assert diagnose_word(log_probs, alignment, 0).phones[2].error == "none"  # the aligner was sure of /t/ (0.9)
    alignment.phones[2].probability = 0.1
    assert diagnose_word(log_probs, alignment, 0).phones[2].error == "deletion"
    assert diagnose_word(log_probs, alignment, 0).phones[2].heard is None


def _turn(words: list[tuple[str, float, float]]) -> Alignment:
    segs, out = [], []
    for i, (text, a, b) in enumerate(words):
        segs.append(PhoneSegment("AH1", a, b, 0.9, i))
        out.append(WordSegment(text, a, b, [i]))
    return Alignment(out, segs, np.zeros((len(segs), ph.NUM_CLASSES)), words[-1][2] if words else 0.0)


def test_break_rules_on_constructed_timings():
    alignment = _turn([("however", 0.0, 0.5), ("the", 0.5, 0.7), ("orange", 1.6, 2.0), ("one", 2.0, 2.3)])
    db = np.full(120, -20.0)  # loud throughout (20 ms frames): no silence anywhere
    punctuation = break_after("However, the orange one.", [w.text for w in alignment.words])
    assert punctuation == [True, False, False, True]
    found = [Pause(1, 0.75, 1.55)]  # a pause inside "the orange"
    assert breaks(alignment, found, punctuation, db) == {2: "unexpected_break", 0: "missing_break"}
    db[24:27] = -80.0  # 60 ms of silence after "however": the break is there
    assert breaks(alignment, found, punctuation, db) == {2: "unexpected_break"}
    assert breaks(alignment, [], [False] * 4, db) == {}


def test_omissions_and_insertions():
    assert omissions_insertions(["the", "red", "cat"], ["the", "cat"]) == ([1], [])
    assert omissions_insertions(["the", "cat"], ["um", "the", "cat"]) == ([], [(0, 0)])
    assert omissions_insertions(["the", "cat"], ["the", "big", "cat"]) == ([], [(1, 1)])
    assert omissions_insertions([], []) == ([], [])


def test_mispronounced_uses_scores_and_phones():
    clean = WordDiagnosis([])
    assert mispronounced(clean, 4.0, True)
    assert not mispronounced(clean, 4.0, False)
    log_probs = _posteriors(["L", "EH", "D"])
    wrong = diagnose_word(log_probs, _word_alignment(["R", "EH1", "D"]), 0)
    assert mispronounced(wrong, 7.0, False) and not mispronounced(wrong, 9.5, False)


class _Analysis:
    def __init__(self, alignment: Alignment, mode: str = "open") -> None:
        from multipa_core.asr import Transcript

        self.target_alignment = alignment
        self.recognized_alignment = alignment
        self.log_posteriors = np.zeros((int(alignment.duration / 0.02), ph.NUM_CLASSES)) + np.log(1.0 / ph.NUM_CLASSES)
        self.mode = mode
        self.target = Transcript(" ".join(w.text for w in alignment.words))


def test_bad_input_gives_an_empty_diagnosis():
    empty = Alignment([], [], np.zeros((0, ph.NUM_CLASSES)), 0.0)
    assert diagnose_turn(_Analysis(empty), [], [], np.zeros(16000, np.float32)) == TurnDiagnosis()
    one = _turn([("hello", 0.1, 0.6)])
    silence = np.zeros(16000, np.float32)
    d = diagnose_turn(_Analysis(one, "closed"), [9.0], [False], silence)
    assert d.word_errors == [[]] and d.errors == [] and d.insertions == []
    assert d.prosody.f0_range_semitones is None and d.prosody.pauses == []
