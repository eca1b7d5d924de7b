"""The "vanilla SSL" baseline: a ridge regression on encoder frame statistics.

Each utterance is summarised by the mean and standard deviation of ASR_t's
encoder frames inside the audio (1,024 numbers); a ridge regression maps them to
the four sentence scores. It is the bar the full network has to beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHAS = (1.0, 10.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0)


# Frame statistics a probe can read: the baseline's mean and standard deviation,
# or those plus the 10th and 90th percentile of every dimension (the spread of a
# turn's frames, which a standard deviation summarises poorly when a learner
# stumbles over part of a sentence only).
STATS = ("mean-std", "mean-std-p10-p90")


def summarise(frames: np.ndarray, stats: str = "mean-std") -> np.ndarray:
    """Statistics of the frames over time: (2 * dim,) for mean-std, (4 * dim,) with the percentiles."""
    if stats not in STATS:
        raise ValueError(f"stats must be one of {', '.join(STATS)}, not {stats!r}")
    x = np.asarray(frames, dtype=np.float64)
    parts = [x.mean(axis=0), x.std(axis=0)]
    if stats == "mean-std-p10-p90":
        parts.extend(np.percentile(x, [10, 90], axis=0))
    return np.concatenate(parts)


@dataclass
class Ridge:
    """A fitted ridge regression with standardised inputs."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (dim + 1, outputs), last row the intercept
    alpha: float
    stats: str = "mean-std"  # the frame statistics it reads (:func:`summarise`)

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(x) - self.mean) / self.scale
        return np.hstack([z, np.ones((len(z), 1))]) @ self.weights

    def predict_frames(self, frames: list[np.ndarray]) -> np.ndarray:
        """(len(frames), outputs) predictions for turns given by their frames."""
        return self.predict(np.stack([summarise(f, self.stats) for f in frames]))


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float, stats: str = "mean-std") -> Ridge:
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-8
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    penalty = alpha * np.eye(z.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    weights = np.linalg.solve(z.T @ z + penalty, z.T @ y)
    return Ridge(mean, scale, weights, alpha, stats)


def fit_with_validation(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> Ridge:
    """Pick alpha on the validation speakers, then refit on training + validation."""
    errors = [float(np.mean((fit_ridge(x_train, y_train, a).predict(x_val) - y_val) ** 2)) for a in ALPHAS]
    best = ALPHAS[int(np.argmin(errors))]
    return fit_ridge(np.vstack([x_train, x_val]), np.vstack([y_train, y_val]), best)
