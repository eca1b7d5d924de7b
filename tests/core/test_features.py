"""Every feature on hand-built alignments where the right value is known."""

import numpy as np
import pytest

from multipa_core import features as F
from multipa_core import phones as ph
from multipa_core.align import Alignment, PhoneSegment, WordSegment


def make_alignment(words):
    """words: [(text, [(phone, start, end, prob), ...]), ...]"""
    phones, out = [], []
    for wi, (text, plist) in enumerate(words):
        idx = []
        for phone, start, end, prob in plist:
            idx.append(len(phones))
            phones.append(PhoneSegment(phone, start, end, prob, wi))
        out.append(WordSegment(text, phones[idx[0]].start, phones[idx[-1]].end, idx))
    posts = np.zeros((len(phones), ph.NUM_CLASSES), np.float32)
    for k, p in enumerate(phones):
        posts[k, ph.to_classes([p.phone])[0]] = 1.0
    return Alignment(out, phones, posts, 1.0)


TARGET = make_alignment(
    [
        ("we", [("W", 0.10, 0.18, 0.9), ("IY1", 0.18, 0.30, 0.8)]),
        ("go", [("G", 0.50, 0.60, 0.3), ("OW1", 0.60, 0.80, 0.7)]),
        ("now", [("N", 0.90, 0.95, 0.5), ("AW1", 0.95, 1.00, 0.6)]),
    ]
)
RECOGNIZED = make_alignment(
    [
        ("we", [("W", 0.12, 0.20, 0.9), ("IY1", 0.20, 0.30, 0.8)]),
        ("no", [("N", 0.55, 0.62, 0.9), ("OW1", 0.62, 0.80, 0.9)]),
    ]
)
FRAMES = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
T_TEXT = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
R_TEXT = 100 + np.arange(2 * 4, dtype=np.float32).reshape(2, 4)


@pytest.fixture(scope="module")
def feats():
    return F.build(FRAMES, TARGET, RECOGNIZED, T_TEXT, R_TEXT)


def word(feats, i, name):
    return float(feats.word_scalars[i, F.WORD_SCALARS.index(name)])


def phone(feats, k, name):
    return float(feats.phone_scalars[k, F.PHONE_SCALARS.index(name)])


def test_shapes_and_finiteness(feats):
    assert feats.word_scalars.shape == (3, len(F.WORD_SCALARS))
    assert feats.phone_scalars.shape == (6, len(F.PHONE_SCALARS))
    assert feats.word_text.shape == (3, 4) and feats.word_text_other.shape == (3, 4)
    assert feats.phone_post.shape == (6, ph.NUM_CLASSES)
    assert feats.is_finite()


def test_word_duration_and_interval(feats):
    assert word(feats, 0, "duration") == pytest.approx(0.20)
    assert word(feats, 1, "duration") == pytest.approx(0.30)
    assert word(feats, 0, "interval") == 0.0  # the first word has no previous word
    assert word(feats, 1, "interval") == pytest.approx(0.20)
    assert word(feats, 2, "interval") == pytest.approx(0.10)


def test_word_time_differences_to_the_paired_word(feats):
    assert word(feats, 0, "start_diff") == pytest.approx(-0.02)
    assert word(feats, 0, "end_diff") == pytest.approx(0.0)
    assert word(feats, 1, "start_diff") == pytest.approx(-0.05)  # go vs no
    assert word(feats, 2, "start_diff") == 0.0  # "now" has no partner


def test_levenshtein_phone_distance_and_ratio(feats):
    assert word(feats, 0, "levenshtein") == 0
    assert word(feats, 1, "levenshtein") == 1  # go -> no
    assert word(feats, 2, "levenshtein") == 3  # unpaired: the whole word
    assert word(feats, 1, "phone_distance") == 1  # G OW -> N OW
    assert word(feats, 2, "phone_distance") == 2
    assert word(feats, 0, "phone_ratio") == 1.0
    assert word(feats, 2, "phone_ratio") == 0.0


def test_aligned_word_count_and_pairing(feats):
    assert word(feats, 0, "aligned_words") == 1
    assert word(feats, 1, "aligned_words") == 1
    assert word(feats, 2, "aligned_words") == 0
    assert [word(feats, i, "paired") for i in range(3)] == [1, 1, 0]


def test_text_embeddings_of_both_transcripts(feats):
    np.testing.assert_array_equal(feats.word_text, T_TEXT)
    np.testing.assert_array_equal(feats.word_text_other[0], R_TEXT[0])
    np.testing.assert_array_equal(feats.word_text_other[1], R_TEXT[1])
    assert not feats.word_text_other[2].any()


def test_phone_vectors(feats):
    assert feats.word_phones[0, ph.index("W")] == 1 and feats.word_phones[0, ph.index("IY")] == 1
    assert feats.word_phones[0].sum() == 4  # two identities + two stress classes
    assert feats.phone_onehot[1, len(ph.PHONES) + 2] == 1  # IY1: stress class 1 + 1
    assert feats.phone_onehot[0, len(ph.PHONES) + 0] == 1  # W: a consonant


def test_phone_level_features(feats):
    assert phone(feats, 0, "duration") == pytest.approx(0.08)
    assert phone(feats, 2, "interval") == pytest.approx(0.20)  # G after IY1 ended at 0.30
    assert phone(feats, 0, "start_diff") == pytest.approx(-0.02)
    assert phone(feats, 2, "start_diff") == pytest.approx(-0.05)  # G paired with N
    assert phone(feats, 2, "end_diff") == pytest.approx(-0.02)
    assert phone(feats, 1, "aligned_phones") == 2  # IY1 overlaps W and IY1
    assert phone(feats, 3, "aligned_phones") == 2  # OW1 overlaps N and OW1
    assert phone(feats, 5, "aligned_phones") == 0
    assert phone(feats, 2, "probability") == pytest.approx(0.3)
    assert phone(feats, 5, "paired") == 0.0  # the target has more phones than the recognized one
    assert feats.phone_word.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(feats.phone_post, TARGET.posteriors)


def test_frame_spans(feats):
    assert feats.word_frames.tolist() == [[5, 15], [25, 40], [45, 50]]
    assert feats.phone_frames[0].tolist() == [5, 9]


def test_empty_recognized_transcript():
    empty = make_alignment([])
    feats = F.build(FRAMES, TARGET, empty, T_TEXT, np.zeros((0, 4), np.float32))
    assert feats.word_scalars[:, F.WORD_SCALARS.index("paired")].sum() == 0
    assert feats.is_finite()


def test_collate_pads_and_masks(feats):
    short = F.build(FRAMES[:20], make_alignment([("we", [("W", 0.1, 0.2, 0.9)])]), RECOGNIZED, T_TEXT[:1], R_TEXT)
    batch = F.collate([feats, short])
    assert batch["frames"].shape == (2, 50, 8)
    assert batch["word_text"].shape == (2, 3, 4)
    assert batch["word_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["phone_mask"].sum().item() == 7
    assert batch["frame_mask"][1].sum().item() == 20
    assert not batch["word_scalars"][1, 1:].any()  # padding is zero
