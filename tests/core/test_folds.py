"""Cross-validation folds and the training parts a fold leaves."""

from pathlib import Path

import pytest

from multipa_core import data
from multipa_core.train import TrainConfig, held_out_speakers, speaker_parts

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "speechocean762"


def test_make_folds_is_disjoint_complete_and_stratified():
    scores = {f"s{i:03d}": i / 10 for i in range(23)}
    folds = data.make_folds(scores, folds=5, seed=1)
    flat = [s for f in folds for s in f]
    assert sorted(flat) == sorted(scores) and len(flat) == len(set(flat))
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1
    # each run of five neighbours in proficiency puts one speaker in each fold
    ranked = sorted(scores, key=scores.get)
    for start in range(0, 20, 5):
        run = set(ranked[start : start + 5])
        assert all(len(run & set(f)) == 1 for f in folds)
    assert data.make_folds(scores, folds=5, seed=1) == folds  # deterministic


def test_make_folds_needs_two():
    with pytest.raises(data.DataError):
        data.make_folds({"a": 1.0, "b": 2.0}, folds=1)


def test_the_shipped_folds_cover_every_speaker_of_the_shared_set_once():
    folds = data.load_folds()
    flat = [s for f in folds for s in f]
    assert len(folds) == 5 and len(flat) == len(set(flat)) == 125
    if DATA.is_dir():
        speakers = {u.speaker for u in data.load_utterances(DATA)}
        assert set(flat) == speakers
        # the file is what make_folds gives for the shared set (it was made by it, once)
        assert data.make_folds(data.speaker_scores(data.load_utterances(DATA)), folds=5, seed=762) == folds


def test_training_parts_never_hold_the_held_out_speakers():
    scores = {f"s{i:03d}": i / 10 for i in range(40)}
    held = ["s001", "s017", "s030"]
    parts = data.training_parts(scores, held, validation=5)
    assert len(parts["validation"]) == 5
    assert not (set(parts["train"]) | set(parts["validation"])) & set(held)
    assert set(parts["train"]) | set(parts["validation"]) | set(held) == set(scores)
    assert not set(parts["train"]) & set(parts["validation"])


@pytest.mark.skipif(not DATA.is_dir(), reason="shared data missing")
@pytest.mark.parametrize("fold", range(5))
def test_a_held_out_fold_is_in_no_training_part(fold):
    utterances = data.load_utterances(DATA)
    config = TrainConfig(data=str(DATA), out="unused.pt", holdout_fold=fold)
    held = set(held_out_speakers(config))
    parts = speaker_parts(config, utterances)
    assert held == set(data.load_folds()[fold])
    assert not held & (set(parts["train"]) | set(parts["validation"]))
    assert len(parts["train"]) + len(parts["validation"]) == 100


def test_no_holdout_trains_on_every_speaker():
    scores = {f"s{i:03d}": float(i) for i in range(30)}
    assert held_out_speakers(TrainConfig(data="x", out="y")) == []
    parts = data.training_parts(scores, [], validation=10)
    assert len(parts["train"]) == 20 and len(parts["validation"]) == 10
