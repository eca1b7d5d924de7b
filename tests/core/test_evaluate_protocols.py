"""The two open-mode word rules and the needs-improvement detector, on hand-made cases."""

from pathlib import Path

import numpy as np

from multipa_core.data import Utterance, WordLabel
from multipa_core.dataset import levenshtein_word_targets
from multipa_core.evaluate import detection, summarize


def utterance(words):
    return Utterance(
        utt="u1",
        speaker="s1",
        text=" ".join(w for w, _ in words),
        audio_path=Path("/nonexistent.flac"),
        words=[
            WordLabel(w, ["AH0"], {"accuracy": [a] * 5, "stress": [10.0] * 5, "total": [a + 0.5] * 5}) for w, a in words
        ],
    )


REFERENCE = utterance([("MIKE", 4.0), ("LIKES", 6.0), ("THE", 10.0), ("ORANGE", 8.0), ("ONE", 9.0)])


def test_levenshtein_exact_match_pairs_each_word_with_itself():
    out = levenshtein_word_targets(["Mike", "likes", "the", "orange", "one."], REFERENCE)
    np.testing.assert_array_equal(out[:, 0], [4, 6, 10, 8, 9])
    np.testing.assert_array_equal(out[:, 2], [4.5, 6.5, 10.5, 8.5, 9.5])


def test_levenshtein_substitution_keeps_the_pair():
    out = levenshtein_word_targets(["make", "legs", "the", "orange", "one"], REFERENCE)
    np.testing.assert_array_equal(out[:, 0], [4, 6, 10, 8, 9])  # substituted words are scored against their partner


def test_levenshtein_insertion_is_left_out():
    out = levenshtein_word_targets(["mike", "likes", "uh", "the", "orange", "one"], REFERENCE)
    assert np.isnan(out[2]).all()
    np.testing.assert_array_equal(out[[0, 1, 3, 4, 5], 0], [4, 6, 10, 8, 9])


def test_levenshtein_deletion_scores_nothing_for_the_missing_word():
    out = levenshtein_word_targets(["mike", "likes", "orange", "one"], REFERENCE)
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(out[:, 0], [4, 6, 8, 9])  # "the" was not said: no word carries its label


def test_levenshtein_empty_transcript():
    assert levenshtein_word_targets([], REFERENCE).shape == (0, 3)


def test_detection_counts_flags_against_words_below_ten():
    thresholds = {"accuracy": 7.0, "stress": 0.0, "total": 7.0}
    pred = np.array([[5, 10, 5], [9, 10, 9], [6, 10, 9], [9, 10, 9], [3, 10, 3]], dtype=float)
    ref = np.array([[4, 10, 4], [10, 10, 10], [10, 10, 10], [8, 10, 8], [np.nan] * 3])
    d = detection(pred, ref, thresholds)
    assert d["words"] == 4 and d["need_work"] == 2 and d["flagged"] == 2 and d["true_positives"] == 1
    assert d["precision"] == 0.5 and d["recall"] == 0.5 and d["f1"] == 0.5
    assert d["precision_flagging_every_word"] == 0.5


def test_detection_with_nothing_flagged():
    d = detection(np.full((3, 3), 10.0), np.array([[9.0, 10, 9]] * 3), {"accuracy": 5.0, "total": 5.0})
    assert d["precision"] is None and d["recall"] == 0.0 and d["f1"] is None


def test_summarize_reports_both_word_rules():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 10, (20, 4))
    w = rng.uniform(0, 10, (30, 3))
    arrays = {
        "sentence_pred": s,
        "sentence_ref": s + rng.normal(0, 1, s.shape),
        "word_pred": w,
        "word_ref": w,
        "word_lev_pred": w[:10],
        "word_lev_ref": w[:10] * 2,
    }
    report = summarize(arrays, {"accuracy": 5.0, "total": 5.0})
    assert set(report) == {"sentence", "word", "word_levenshtein", "needs_improvement", "needs_improvement_levenshtein"}
    assert report["word"]["accuracy"]["pcc"] == 1.0 and report["word_levenshtein"]["accuracy"]["pcc"] == 1.0
    assert report["word_levenshtein"]["accuracy"]["mse"] > 0
