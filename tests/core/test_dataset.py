"""Labels and open-mode word targets on hand-built alignments."""

from pathlib import Path

import numpy as np
import pytest

from multipa_core import dataset
from multipa_core.data import Utterance, WordLabel

from .test_features import make_alignment


def utterance(words):
    return Utterance(
        utt="u1",
        speaker="s1",
        text=" ".join(w for w, _ in words),
        audio_path=Path("/nonexistent.flac"),
        words=[WordLabel(w, ["AH0"], {"accuracy": [a] * 5, "stress": [10.0] * 5, "total": [a] * 5}) for w, a in words],
        scores={
            "accuracy": [6, 7, 8, 9, 10],
            "fluency": [5, 5, 5, 5, 5],
            "prosodic": [1, 2, 3, 4, 10],
            "total": [7, 7, 7, 8, 8],
        },
    )


class FakeBuilder:
    """Returns a fixed alignment for the reference words."""

    def __init__(self, alignment):
        self.alignment = alignment
        self.asked = None

    def align_words(self, log_probs, words):
        self.asked = words
        return self.alignment


class FakeAnalysis:
    def __init__(self, alignment):
        self.target_alignment = alignment
        self.log_posteriors = np.zeros((10, 40))


def test_sentence_labels_are_expert_medians():
    utt = utterance([("a", 10.0)])
    np.testing.assert_array_equal(dataset.sentence_labels(utt), [8, 5, 3, 7])


def test_open_word_targets_average_overlapping_reference_words():
    reference = make_alignment(
        [
            ("i", [("AY1", 0.0, 0.2, 1.0)]),
            ("can", [("K", 0.2, 0.3, 1.0), ("AE1", 0.3, 0.5, 1.0)]),
            ("go", [("G", 0.8, 0.9, 1.0), ("OW1", 0.9, 1.0, 1.0)]),
        ]
    )
    # ASR_t heard "ican" spanning the first two reference words, then "go", then a word over silence.
    target = make_alignment(
        [
            ("ican", [("AY1", 0.0, 0.25, 1.0), ("K", 0.25, 0.5, 1.0)]),
            ("go", [("G", 0.8, 1.0, 1.0)]),
            ("uh", [("AH0", 0.6, 0.7, 1.0)]),
        ]
    )
    utt = utterance([("I", 10.0), ("CAN", 4.0), ("GO", 7.0)])
    builder = FakeBuilder(reference)
    targets = dataset.open_word_targets(FakeAnalysis(target), utt, builder)
    assert builder.asked == ["i", "can", "go"]
    assert targets[0, 0] == pytest.approx(7.0)  # mean of 10 and 4
    assert targets[1, 0] == pytest.approx(7.0)
    assert np.isnan(targets[2]).all()  # overlaps no reference word


def test_open_word_targets_unknown_when_reference_alignment_is_incomplete():
    reference = make_alignment([("i", [("AY1", 0.0, 0.2, 1.0)])])
    target = make_alignment([("i", [("AY1", 0.0, 0.2, 1.0)])])
    targets = dataset.open_word_targets(
        FakeAnalysis(target), utterance([("I", 9.0), ("GO", 3.0)]), FakeBuilder(reference)
    )
    assert np.isnan(targets).all()
