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


def test_summarise_with_percentiles_and_a_probe_that_reads_them():
    frames = np.arange(11.0)[:, None] * np.array([[1.0, -1.0]])  # 0..10 and 0..-10
    stats = probe.summarise(frames, "mean-std-p10-p90")
    np.testing.assert_allclose(stats[4:], [1.0, -9.0, 9.0, -1.0])  # p10 per dim, then p90
    np.testing.assert_allclose(stats[:4], probe.summarise(frames))
    with pytest.raises(ValueError, match="stats must be one of"):
        probe.summarise(frames, "median")
    rng = np.random.default_rng(1)
    turns = [rng.normal(size=(int(rng.integers(5, 40)), 3)) for _ in range(60)]
    x = np.stack([probe.summarise(t, "mean-std-p10-p90") for t in turns])
    model = probe.fit_ridge(x, x[:, :2], 1.0, "mean-std-p10-p90")
    np.testing.assert_allclose(model.predict_frames(turns[:3]), model.predict(x[:3]))
