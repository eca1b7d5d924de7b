import numpy as np
import pytest

from multipa_core import probe
from multipa_core.metrics import agreement


def test_agreement_known_values():
    m = agreement(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0, 8.0]))
    assert m["pcc"] == pytest.approx(1.0) and m["scc"] == pytest.approx(1.0)
    assert m["mse"] == pytest.approx(np.mean([1, 4, 9, 16]))


def test_agreement_ignores_nan_and_handles_constants():
    m = agreement(np.array([1.0, np.nan, 3.0, 2.0]), np.array([1.0, 5.0, 3.0, 2.0]))
    assert m["n"] == 3 and m["pcc"] == pytest.approx(1.0)
    assert agreement(np.ones(5), np.arange(5.0))["pcc"] is None
    assert agreement(np.array([]), np.array([]))["mse"] is None


def test_ridge_probe_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    w = rng.normal(size=(6, 2))
    y = x @ w + 3.0
    model = probe.fit_with_validation(x[:150], y[:150], x[150:], y[150:])
    np.testing.assert_allclose(model.predict(x[:5]), y[:5], atol=0.05)


def test_summarise_is_mean_and_std():
    frames = np.array([[1.0, 2.0], [3.0, 6.0]])
    np.testing.assert_allclose(probe.summarise(frames), [2.0, 4.0, 1.0, 2.0])


def test_summarise_with_percentiles():
    frames = np.arange(11.0)[:, None] * np.array([[1.0, -1.0]])  # 0..10 and 0..-10
    stats = probe.summarise(frames, "mean-std-p10-p90")
    np.testing.assert_allclose(stats[4:], [1.0, -9.0, 9.0, -1.0])  # p10 per dim, then p90
    np.testing.assert_allclose(stats[:4], probe.summarise(frames))
    with pytest.raises(ValueError, match="stats must be one of"):
        probe.summarise(frames, "median")


def test_probe_on_both_encoders_and_the_pronunciation_summary():
    from tests.core.test_model import random_turn

    rng = np.random.default_rng(1)
    turns = []
    for _ in range(60):
        turn = random_turn(rng, int(rng.integers(10, 40)), int(rng.integers(1, 5)))
        turn.recognizer_frames = rng.normal(size=(len(turn.frames), 5)).astype(np.float32)
        turns.append(turn)
    x = np.stack([probe.describe(t, "two-encoders-pronunciation") for t in turns])
    assert x.shape == (60, 4 * 16 + 4 * 5 + probe.PRONUNCIATION_SIZE) and np.isfinite(x).all()
    weights = probe.penalty_weights("two-encoders-pronunciation", x.shape[1])
    assert (weights[-probe.PRONUNCIATION_SIZE :] == probe.PRONUNCIATION_WEIGHT).all() and (
        weights[: -probe.PRONUNCIATION_SIZE] == 1
    ).all()
    model = probe.fit_ridge(x, x[:, :2], 1.0, "two-encoders-pronunciation")
    np.testing.assert_allclose(model.predict_turns(turns[:3]), model.predict(x[:3]))
    # a column of the pronunciation summary is shrunk less under the same penalty
    y = x[:, -1:]
    plain, boosted = (probe.fit_ridge(x, y, 1e3, inputs) for inputs in ("mean-std", "two-encoders-pronunciation"))
    assert abs(boosted.weights[-2, 0] / boosted.scale[-1]) > 2 * abs(plain.weights[-2, 0] / plain.scale[-1])
    no_second_view = turns[0]
    no_second_view.recognizer_frames = np.zeros((0, 0), np.float32)
    with pytest.raises(ValueError, match="ASR_r's encoder frames"):
        probe.describe(no_second_view, "two-encoders-pronunciation")


def test_ridge_with_more_columns_than_rows_is_the_same_ridge():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 50)), rng.normal(size=(30, 3))
    wide = probe.fit_ridge(x, y, 5.0)  # solved through the rows' Gram matrix
    # the textbook solution with an unshrunk intercept column
    z = np.hstack([(x - wide.mean) / wide.scale, np.ones((30, 1))])
    penalty = 5.0 * np.eye(51)
    penalty[-1, -1] = 0.0
    np.testing.assert_allclose(wide.weights, np.linalg.lstsq(z.T @ z + penalty, z.T @ y, rcond=None)[0], atol=1e-8)
    tall = probe.fit_ridge(x[:, :20], y, 5.0)  # solved through the columns' Gram matrix
    np.testing.assert_allclose(tall.weights[-1], y.mean(axis=0))  # centred columns: the intercept is the mean target


def test_probe_on_encoder_layers():
    from tests.core.test_model import random_turn

    rng = np.random.default_rng(3)
    turn = random_turn(rng, 20, 3)
    turn.recognizer_frames = rng.normal(size=(20, 5)).astype(np.float32)
    assert probe.reads_layers("encoder-layers") and not probe.reads_layers("two-encoders-pronunciation")
    with pytest.raises(ValueError, match="encoder layers"):
        probe.describe(turn, "encoder-layers")
    turn.encoder_layers = rng.normal(size=(6, 8)).astype(np.float32)
    x = probe.describe(turn, "encoder-layers")
    base = probe.describe(turn, "two-encoders-pronunciation")
    assert x.shape == (base.shape[0] + 48,)
    # the layers sit between the frame statistics and the pronunciation summary, which stays last (its lighter penalty)
    np.testing.assert_allclose(x[-probe.PRONUNCIATION_SIZE :], base[-probe.PRONUNCIATION_SIZE :])
    np.testing.assert_allclose(x[4 * 16 + 4 * 5 : 4 * 16 + 4 * 5 + 48], turn.encoder_layers.ravel())
    weights = probe.penalty_weights("encoder-layers", x.shape[0])
    assert (weights[-probe.PRONUNCIATION_SIZE :] == probe.PRONUNCIATION_WEIGHT).all() and (
        weights[: -probe.PRONUNCIATION_SIZE] == 1
    ).all()


def test_spread_across_folds_leaves_undefined_folds_out():
    from multipa_core.metrics import spread

    assert spread([0.5, 0.7, None]) == {"mean": 0.6, "std": round(0.1 * 2**0.5, 4)}
    assert spread([0.5]) == {"mean": 0.5, "std": 0.0}
    assert spread([None, None]) == {"mean": None, "std": None}
