"""Feedback templates: every type renders, items are ranked by cost, at most three."""

import numpy as np

from multipa_core import feedback as fb
from multipa_core import phones as ph
from multipa_core.align import Alignment, PhoneSegment, WordSegment
from multipa_core.diagnosis import PhoneDiagnosis, TurnDiagnosis, WordDiagnosis
from multipa_core.prosody import ProsodyDetails


def test_phone_sentences():
    assert (
        fb.phone_sentence("orange", "substitution", 0, 5, "AO1", "AA")
        == "In 'orange' the first sound came out like /ɑ/; say /ɔ/ as in 'or'."
    )
    assert (
        fb.phone_sentence("cat", "deletion", 2, 3, "T", None)
        == "In 'cat' the last sound /t/ was missing; say /t/ as in 'ten'."
    )
    assert (
        fb.phone_sentence("spring", "insertion", 1, 5, "P", "AH", "S", "P")
        == "In 'spring' an extra /ʌ/ crept in between /s/ and /p/; go straight from one to the other."
    )
    assert "at the end" in fb.phone_sentence("cat", "insertion", 3, 3, "T", "AH", "T", None)
    assert (
        fb.phone_sentence("think", "unclear", 0, 4, "TH", None)
        == "In 'think' the first sound /θ/ was not clear; say /θ/ as in 'think'."
    )


def test_turn_level_sentences():
    assert fb.omission_sentence("red", "the", "cat") == "The word 'red' was not heard; say it between 'the' and 'cat'."
    assert "start with it" in fb.omission_sentence("the", None, "cat") and "end with it" in fb.omission_sentence(
        "cat", "the", None
    )
    assert fb.insertion_sentence("um") == "You said 'um', which is not in the sentence; leave it out."
    assert (
        fb.break_sentence("unexpected_break", ["the", "orange", "one"], 2, 0.9)
        == "You paused 0.9 s before 'one'; say 'orange one' in one breath."
    )
    assert (
        fb.break_sentence("missing_break", ["however", "the"], 0)
        == "Pause briefly after 'however', where the sentence has a break."
    )
    assert "2.1 semitones" in fb.monotone_sentence(2.1)
    assert fb.stress_sentence("record", 1, 0) == "In 'record' stress the second syllable, not the first."


def _alignment(words: list[list[str]]) -> Alignment:
    segs, out, t = [], [], 0.0
    for i, phones in enumerate(words):
        idx = []
        for p in phones:
            segs.append(PhoneSegment(p, t, t + 0.1, 0.8 if p != "IH1" else 0.2, i))
            idx.append(len(segs) - 1)
            t += 0.1
        out.append(WordSegment(f"w{i}", segs[idx[0]].start, segs[idx[-1]].end, idx))
    return Alignment(out, segs, np.zeros((len(segs), ph.NUM_CLASSES)), t)


def _ok(phones: list[str]) -> WordDiagnosis:
    return WordDiagnosis([PhoneDiagnosis(p, ph.base(p), "none", [(ph.base(p), 0.9)]) for p in phones])


def test_every_type_renders_ranked_and_at_most_three():
    words = [["R", "EH1", "D"], ["K", "AE1", "T"], ["S", "IH1", "T"], ["DH", "AH0"], ["W", "AH1", "N"]]
    alignment = _alignment(words)
    diag = TurnDiagnosis(
        words=[_ok(p) for p in words],
        word_errors=[["mispronunciation"], ["omission"], ["mispronunciation"], ["missing_break"], ["unexpected_break"]],
    )
    diag.words[0].phones[0] = PhoneDiagnosis("R", "L", "substitution", [("L", 0.7)])
    diag.words[4].stress = {"expected_syllable": 0, "heard_syllable": 1, "ok": False}
    diag.pause_before = {4: 0.8}
    diag.insertions = [{"text": "um", "start_ms": 0, "end_ms": 100, "after_word": -1}]
    diag.errors = ["monotone"]
    diag.prosody = ProsodyDetails(3.0, 3.5, 8.0, f0_range_semitones=1.5, monotone=True)
    scores = [
        {"accuracy": a, "stress": s, "total": a} for a, s in [(3.0, 10), (2.0, 10), (6.0, 10), (9.0, 10), (9.0, 5.0)]
    ]
    everything = fb.collect(diag, alignment, scores, {"prosody": 4.0}, stress_below=8.0)
    assert len(everything) == 3
    # ranking: monotone (10 - 4) / 2 = 3 > the 0.8 s break 5 x 0.8 / 1.4 = 2.86 > omission 10 / 5 = 2
    # > mispronounced w0 (10 - 3) / 5 = 1.4
    assert [it.type for it in everything] == ["monotone", "unexpected_break", "omission"]
    every = fb.rank(_all_items(diag, alignment, scores), limit=99)
    first = [it for it in every if it.type == "mispronunciation"][0]
    assert (
        first.word_index == 0
        and first.expected == "R"
        and first.heard == "L"
        and first.heard_ipa == "l"
        and first.detail == "substitution"
    )
    assert [it.cost for it in everything] == sorted((it.cost for it in everything), reverse=True)
    assert {it.type for it in every} == {
        "monotone",
        "omission",
        "mispronunciation",
        "missing_break",
        "unexpected_break",
        "insertion",
        "stress",
    }
    unclear = [it for it in every if it.word_index == 2][0]
    assert unclear.detail == "unclear" and unclear.expected == "IH1" and "/ɪ/ was not clear" in unclear.sentence
    assert all(it.sentence.endswith(".") for it in every)


def _all_items(diag, alignment, scores):
    saved, fb.MAX_ITEMS = fb.MAX_ITEMS, 99
    try:
        return fb.collect(diag, alignment, scores, {"prosody": 4.0}, stress_below=8.0) + []
    finally:
        fb.MAX_ITEMS = saved


def test_nothing_to_say_gives_an_empty_list_and_order_is_deterministic():
    words = [["R", "EH1", "D"]]
    alignment = _alignment(words)
    assert (
        fb.collect(
            TurnDiagnosis(words=[_ok(words[0])], word_errors=[[]]),
            alignment,
            [{"accuracy": 9.5, "stress": 10, "total": 9.5}],
            {"prosody": 9},
        )
        == []
    )
    a = fb.FeedbackItem("mispronunciation", "x.", 1.0, 3)
    b = fb.FeedbackItem("mispronunciation", "y.", 1.0, 1)
    assert fb.rank([a, b]) == [b, a]
