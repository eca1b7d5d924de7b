"""Ridge regressions on statistics of a turn: the "vanilla SSL" baseline, and the
probe blended into the scorer's sentence scores.

The baseline summarises each utterance by the mean and standard deviation of
ASR_t's encoder frames inside the audio (1,024 numbers); a ridge regression maps
them to the four sentence scores. It is the bar the full network has to beat.

The blended probe can read more of the same turn (:data:`INPUTS`): percentiles of
the frames, the same statistics of ASR_r's encoder frames (a second acoustic
model, already run to transcribe), and a pronunciation summary of the turn's
features (phone probabilities, the two transcripts' disagreement, speaking rate,
pauses, the mean phone posterior).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import phones as ph
from .features import PHONE_SCALARS, WORD_SCALARS, TurnFeatures

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


# What a blended probe reads: frame statistics of ASR_t (the baseline's, or with
# percentiles), those of both encoders plus the pronunciation summary, or all that
# plus the mean and standard deviation of every layer of ASR_t's encoder
# (multipa_core.encoder_layers).
INPUTS = ("mean-std", "mean-std-p10-p90", "two-encoders-pronunciation", "encoder-layers")
# The pronunciation summary's few numbers would drown among thousands of frame
# statistics under one ridge penalty; their penalty is divided by this (as if each
# column were repeated this many times). Chosen on validation speakers (1 and 8 tried).
PRONUNCIATION_WEIGHT = 8.0


_WORD_COLUMNS = (
    "levenshtein",
    "phone_distance",
    "paired",
    "duration",
    "interval",
    "aligned_words",
    "phone_ratio",
)  # mean and max of each
_PHONE_COLUMNS = ("duration", "interval", "paired", "aligned_phones")  # mean and standard deviation of each
PRONUNCIATION_SIZE = 10 + 2 * len(_WORD_COLUMNS) + 2 * len(_PHONE_COLUMNS) + ph.NUM_CLASSES


def pronunciation_summary(features: TurnFeatures) -> np.ndarray:
    """Turn-level aggregates of the word and phone features (:data:`PRONUNCIATION_SIZE` numbers):
    lengths and rates, phone probabilities, word and phone disagreement with ASR_r, mean posterior."""
    ws, ps = features.word_scalars, features.phone_scalars
    seconds = max(len(features.frames) / 50.0, 0.1)
    W, P = len(ws), len(ps)
    prob = ps[:, PHONE_SCALARS.index("probability")] if P else np.zeros(1)
    out = [
        np.log1p(len(features.frames)),
        np.log1p(W),
        np.log1p(P),
        W / seconds,
        P / seconds,
        prob.mean(),
        prob.min(),
        (prob < 0.5).mean(),
        (prob < 0.2).mean(),
        prob.std(),
    ]
    for name in _WORD_COLUMNS:
        column = ws[:, WORD_SCALARS.index(name)] if W else np.zeros(1)
        out += [column.mean(), column.max()]
    for name in _PHONE_COLUMNS:
        column = ps[:, PHONE_SCALARS.index(name)] if P else np.zeros(1)
        out += [column.mean(), column.std()]
    posterior = features.phone_post.mean(axis=0) if P else np.zeros(ph.NUM_CLASSES)
    return np.concatenate([np.asarray(out, dtype=np.float64), posterior])


def reads_layers(inputs: str) -> bool:
    """Whether a probe reading ``inputs`` needs the statistics of ASR_t's encoder layers."""
    return inputs == "encoder-layers"


def describe(features: TurnFeatures, inputs: str = "mean-std") -> np.ndarray:
    """The probe's input vector for one turn."""
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, not {inputs!r}")
    if inputs in STATS:
        return summarise(features.frames, inputs)
    if not len(features.recognizer_frames):
        raise ValueError("this probe needs ASR_r's encoder frames, and the turn has none")
    parts = [
        summarise(features.frames, "mean-std-p10-p90"),
        summarise(features.recognizer_frames, "mean-std-p10-p90"),
        pronunciation_summary(features),
    ]
    if reads_layers(inputs):
        if not features.encoder_layers.size:
            raise ValueError("this probe needs the statistics of ASR_t's encoder layers, and the turn has none")
        parts.insert(2, features.encoder_layers.ravel())
    return np.concatenate(parts)


def penalty_weights(inputs: str, size: int) -> np.ndarray:
    """Per-column divisors of the ridge penalty for :func:`describe`'s vector."""
    weights = np.ones(size)
    if inputs not in STATS:
        weights[size - PRONUNCIATION_SIZE :] = PRONUNCIATION_WEIGHT
    return weights


@dataclass
class Ridge:
    """A fitted ridge regression with standardised inputs."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (dim + 1, outputs), last row the intercept
    alpha: float
    inputs: str = "mean-std"  # what it reads (:func:`describe`)

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(x) - self.mean) / self.scale
        return np.hstack([z, np.ones((len(z), 1))]) @ self.weights

    def predict_turns(self, turns: list[TurnFeatures]) -> np.ndarray:
        """(len(turns), outputs) predictions for turns given by their features."""
        return self.predict(np.stack([describe(t, self.inputs) for t in turns]))


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float, inputs: str = "mean-std") -> Ridge:
    # a column whose penalty is divided by k is scaled up by sqrt(k) after standardising
    mean, scale = x.mean(axis=0), (x.std(axis=0) + 1e-8) / np.sqrt(penalty_weights(inputs, x.shape[1]))
    z = (x - mean) / scale
    # the columns are centred, so the (unshrunk) intercept is the mean target; with more
    # columns than rows the same solution comes from the rows' Gram matrix (the dual form)
    offset = y.mean(axis=0)
    if z.shape[1] <= z.shape[0]:
        weights = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - offset))
    else:
        weights = z.T @ np.linalg.solve(z @ z.T + alpha * np.eye(z.shape[0]), y - offset)
    return Ridge(mean, scale, np.vstack([weights, offset[None]]), alpha, inputs)


def fit_choosing_alpha(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, inputs: str = "mean-std"
) -> tuple[Ridge, float]:
    """The ridge fitted on the training rows with the alpha of :data:`ALPHAS` that gives the
    lowest validation MSE, and that MSE."""
    errors = [float(np.mean((fit_ridge(x_train, y_train, a, inputs).predict(x_val) - y_val) ** 2)) for a in ALPHAS]
    best = int(np.argmin(errors))
    return fit_ridge(x_train, y_train, ALPHAS[best], inputs), errors[best]


def fit_with_validation(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> Ridge:
    """Pick alpha on the validation speakers, then refit on training + validation."""
    alpha = fit_choosing_alpha(x_train, y_train, x_val, y_val)[0].alpha
    return fit_ridge(np.vstack([x_train, x_val]), np.vstack([y_train, y_val]), alpha)
