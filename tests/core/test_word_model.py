"""The word stage: its inputs, its model, and a cross-validation that never fits on the fold it predicts."""

import numpy as np
import pytest

from multipa_core import phones as ph, word_crossval
from multipa_core.errors import ModelFilesError
from multipa_core.features import PHONE_SCALARS, WORD_SCALARS, TurnFeatures
from multipa_core.word_model import INPUTS, WordFit, WordModel, fit, phone_goodness, with_network, word_inputs


def _features(phones: list[str], words: list[int], posteriors: np.ndarray) -> TurnFeatures:
    n_words = max(words) + 1
    scalars = np.zeros((len(phones), len(PHONE_SCALARS)), np.float32)
    scalars[:, PHONE_SCALARS.index("probability")] = np.arange(1, len(phones) + 1) / 10
    scalars[:, PHONE_SCALARS.index("duration")] = 0.1
    return TurnFeatures(
        frames=np.zeros((50, 8), np.float32),
        word_text=np.zeros((n_words, 4), np.float32),
        word_text_other=np.zeros((n_words, 4), np.float32),
        word_phones=np.zeros((n_words, ph.PHONES.__len__() + ph.STRESS_LEVELS), np.float32),
        word_scalars=np.ones((n_words, len(WORD_SCALARS)), np.float32),
        word_frames=np.zeros((n_words, 2), np.int64),
        phone_post=posteriors.astype(np.float32),
        phone_onehot=ph.one_hot(phones),
        phone_scalars=scalars,
        phone_word=np.array(words, np.int64),
        phone_frames=np.zeros((len(phones), 2), np.int64),
    )


def _posterior(winner: str, share: float = 0.9) -> np.ndarray:
    row = np.full(ph.NUM_CLASSES, (1.0 - share) / (ph.NUM_CLASSES - 1))
    row[ph.index(winner) + 1] = share
    return row


def test_goodness_is_high_for_the_canonical_phone_and_low_for_a_substitute():
    features = _features(["R", "L"], [0, 0], np.stack([_posterior("R"), _posterior("R")]))
    good = phone_goodness(features)
    assert good.shape == (2, 3)
    assert good[0, 0] > -0.2 and good[0, 1] > 3  # /r/ said where /r/ was expected
    assert good[1, 0] < -3 and good[1, 1] < -3  # /r/ heard where /l/ was expected
    assert np.allclose(good[:, 2], 0.1 / (ph.NUM_CLASSES - 1), atol=1e-6)  # the blank's share


def test_word_inputs_pool_each_words_phones():
    posteriors = np.stack([_posterior("K"), _posterior("AE"), _posterior("T"), _posterior("S", 0.5)])
    features = _features(["K", "AE1", "T", "S"], [0, 0, 0, 1], posteriors)
    rows = word_inputs(features, np.array([8.0, 7.0, 6.0, 7.5]), np.array([[9.0, 10.0, 9.0], [5.0, 10.0, 5.0]]))
    assert rows.shape == (2, len(INPUTS))
    col = {name: i for i, name in enumerate(INPUTS)}
    assert rows[0, col["net_accuracy"]] == pytest.approx(0.9) and rows[1, col["net_total"]] == pytest.approx(0.5)
    assert rows[1, col["sentence_prosody"]] == pytest.approx(0.6)  # the turn's scores on every word
    assert rows[0, col["phones"]] == 3 and rows[1, col["phones"]] == 1
    assert rows[0, col["probability_min"]] == pytest.approx(0.1) and rows[0, col["probability_mean"]] == pytest.approx(
        0.2
    )
    assert rows[1, col["gop_mean"]] < rows[0, col["gop_min"]]  # the unsure /s/ reads worse than every phone of 'cat'
    assert rows[:, col["first_word"]].tolist() == [1, 0] and rows[:, col["last_word"]].tolist() == [0, 1]
    assert word_inputs(_features(["K"], [0], posteriors[:1]), np.zeros(4), np.zeros((1, 3))).shape == (1, len(INPUTS))


def _model(members: list[dict[str, np.ndarray]], width: int = len(INPUTS)) -> WordModel:
    return WordModel(mean=np.zeros(width), std=np.ones(width), members=members)


def _idle(hidden: int = 4) -> dict[str, np.ndarray]:
    return {
        "w1": np.ones((len(INPUTS), hidden)),
        "b1": np.zeros(hidden),
        "w2": np.zeros((hidden, 3)),
        "b2": np.zeros(3),
    }


def test_a_stage_that_learned_nothing_returns_the_networks_scores():
    idle = _idle()
    rows = np.random.default_rng(0).uniform(0, 1, (5, len(INPUTS)))
    assert np.allclose(_model([idle]).predict(rows), rows[:, :3] * 10)
    assert _model([idle]).predict(np.zeros((0, len(INPUTS)))).shape == (0, 3)


def test_fit_learns_what_the_network_missed():
    rng = np.random.default_rng(1)
    rows = rng.uniform(0, 1, (3000, len(INPUTS)))
    gop = rows[:, INPUTS.index("gop_min")]
    truth = np.clip(rows[:, :3] * 10 - 4 * (gop < 0.3)[:, None], 0, 10)  # the network misses bad phones
    model = fit(rows[:2000], truth[:2000], WordFit(epochs=20, members=1, hidden=16))
    before = np.mean((rows[2000:, :3] * 10 - truth[2000:]) ** 2)
    after = np.mean((model.predict(rows[2000:]) - truth[2000:]) ** 2)
    assert after < 0.5 * before
    again = WordModel.from_state(model.to_state())
    assert np.allclose(again.predict(rows[2000:]), model.predict(rows[2000:]), atol=1e-3)


def test_fit_leaves_unlabelled_aspects_out_of_the_loss():
    rows = np.random.default_rng(2).uniform(0, 1, (200, len(INPUTS)))
    targets = rows[:, :3] * 10
    targets[:, 1] = np.nan  # no stress labels
    model = fit(rows, targets, WordFit(epochs=2, members=1, hidden=8))
    assert np.isfinite(model.predict(rows)).all()


def test_a_stage_with_other_inputs_is_refused():
    state = _model([_idle()]).to_state()
    state["inputs"] = ["something_else"]
    with pytest.raises(ModelFilesError, match="inputs"):
        WordModel.from_state(state)


def test_the_stage_for_a_fold_never_reads_that_folds_rows(monkeypatch):
    rng = np.random.default_rng(3)
    rows = {}
    for mode in ("open", "closed"):
        fold = np.repeat(np.arange(3), 10)
        inputs = rng.uniform(0, 1, (30, len(INPUTS)))
        inputs[:, -1] = fold  # the fold, where the spy can see it
        ref = rng.uniform(0, 10, (30, 3))
        ref[::7, 0] = np.nan  # words with no label are not trained on
        rows[mode] = {"inputs": inputs, "pred": inputs[:, :3] * 10, "ref": ref, "lev_ref": ref, "fold": fold}
    seen: list[set[int]] = []

    def spy(x, y, config):
        seen.append({int(v) for v in x[:, -1]})
        assert np.isfinite(y[:, 0]).all()
        return _model([_idle()])

    monkeypatch.setattr(word_crossval, "fit", spy)
    out = word_crossval.stage_predictions(rows, WordFit())
    assert seen == [{1, 2}, {0, 2}, {0, 1}]
    assert out["open"].shape == (30, 3)


def test_rows_take_another_networks_scores():
    features = _features(["K", "AE1"], [0, 1], np.stack([_posterior("K"), _posterior("AE")]))
    rows = word_inputs(features, np.full(4, 5.0), np.full((2, 3), 5.0))
    other = with_network(rows, np.array([1.0, 2.0, 3.0, 4.0]), np.array([[9.0, 8.0, 7.0], [6.0, 5.0, 4.0]]))
    assert np.allclose(other, word_inputs(features, np.array([1.0, 2.0, 3.0, 4.0]), np.array([[9, 8, 7], [6, 5, 4.0]])))
    assert np.allclose(rows[:, 7:], other[:, 7:])


def test_held_out_rows_are_keyed_by_the_networks_not_by_the_stage(tmp_path):
    import torch

    from multipa_core.model import ScorerConfig, build_scorer
    from multipa_core.scorer import Scorer, save_scorer

    cfg = ScorerConfig(acoustic_dim=16, text_dim=8, d_model=16, layers=1, heads=2)
    torch.manual_seed(7)
    nets = [build_scorer(cfg)]
    common = dict(thresholds={}, floor={}, aligner="multipa-aligner", text_model="minilm-l6", metadata={})
    save_scorer(str(tmp_path / "a.pt"), nets, cfg, **common)
    stage = {"all": _model([_idle()]).to_state(), "folds": {}}
    save_scorer(str(tmp_path / "b.pt"), nets, cfg, **common, word_model=stage)
    save_scorer(str(tmp_path / "c.pt"), [build_scorer(cfg)], cfg, **common)
    config = word_crossval.WordStageConfig(data=str(tmp_path), workdir=str(tmp_path))
    key = [word_crossval.rows_key(Scorer(str(tmp_path / f"{n}.pt")), config) for n in "abc"]
    assert key[0] == key[1] != key[2]
    other = word_crossval.WordStageConfig(data=str(tmp_path), workdir=str(tmp_path), per_speaker=2)
    assert word_crossval.rows_key(Scorer(str(tmp_path / "a.pt")), other) != key[0]
