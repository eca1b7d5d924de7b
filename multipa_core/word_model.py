"""The word stage: word scores re-estimated from the network's and the phones' evidence.

The MultiPA network's word heads read each word token through two transformer
layers trained mostly on sentence targets; their open-mode word accuracy is the
weakest number of the product. This stage is a small network over one row per
word that stacks on them:

- the network's own word scores (accuracy, stress, total) and its sentence scores
  (a learner's level is a strong prior for each of their words);
- goodness of pronunciation from the aligner's posteriors, per phone and pooled per
  word: the log posterior of the canonical phone over its frames, its log ratio to
  the best competing phone, the blank's share, the phone's peak probability;
- the word's timing and its agreement with the recognized transcript (the
  word-alignment features of :mod:`multipa_core.features`).

It is fitted on held-out predictions (each fold network scoring the speakers it
never saw, ``multipa fit-words``), so it learns how far to trust the network on
unseen speakers. Inference is numpy only: a standardisation and a two-layer
perceptron per member, averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import phones as ph
from .features import PHONE_SCALARS, WORD_SCALARS, TurnFeatures

EPS = 1e-4
SCALE = 10.0
GOP_INPUTS = (
    "gop_mean",
    "gop_min",
    "ratio_mean",
    "ratio_min",
    "blank_mean",
    "blank_max",
    "probability_mean",
    "probability_min",
    "phone_paired",
    "phone_duration_mean",
    "phone_duration_min",
    "phones",
)
INPUTS = (
    ("net_accuracy", "net_stress", "net_total")
    + ("sentence_accuracy", "sentence_fluency", "sentence_prosody", "sentence_total")
    + GOP_INPUTS
    + tuple(f"word_{name}" for name in WORD_SCALARS)
    + ("first_word", "last_word")
)
_PROBABILITY = PHONE_SCALARS.index("probability")
_PAIRED = PHONE_SCALARS.index("paired")
_DURATION = PHONE_SCALARS.index("duration")


def phone_goodness(features: TurnFeatures) -> np.ndarray:
    """(P, 3) per phone: log posterior of the canonical phone (mean posterior over its
    Viterbi frames), its log ratio to the best other phone, and the blank's share."""
    post = np.asarray(features.phone_post, dtype=np.float64)
    if not len(post):
        return np.zeros((0, 3))
    canonical = features.phone_onehot[:, : len(ph.PHONES)].argmax(1) + 1  # aligner classes: blank is 0
    rows = np.arange(len(post))
    own = post[rows, canonical]
    others = post.copy()
    others[:, ph.BLANK] = 0.0
    others[rows, canonical] = 0.0
    gop = np.log(own + EPS)
    return np.stack([gop, gop - np.log(others.max(1) + EPS), post[:, ph.BLANK]], axis=1)


def word_inputs(features: TurnFeatures, sentence: np.ndarray, words: np.ndarray) -> np.ndarray:
    """(W, len(INPUTS)) the stage's input rows of one turn.

    Args:
        features: the turn's features (row i of the word arrays is target word i).
        sentence: (4,) the network's sentence scores, 0..10.
        words: (W, 3) the network's word scores, 0..10.
    """
    n = features.word_scalars.shape[0]
    out = np.zeros((n, len(INPUTS)), dtype=np.float64)
    if not n:
        return out
    good = phone_goodness(features)
    scalars = np.asarray(features.phone_scalars, dtype=np.float64)
    gop = np.zeros((n, len(GOP_INPUTS)))
    for i in range(n):
        own = np.flatnonzero(features.phone_word == i)
        if not len(own):
            continue
        g, s = good[own], scalars[own]
        gop[i] = [
            g[:, 0].mean(),
            g[:, 0].min(),
            g[:, 1].mean(),
            g[:, 1].min(),
            g[:, 2].mean(),
            g[:, 2].max(),
            s[:, _PROBABILITY].mean(),
            s[:, _PROBABILITY].min(),
            s[:, _PAIRED].mean(),
            s[:, _DURATION].mean(),
            s[:, _DURATION].min(),
            len(own),
        ]
    position = np.zeros((n, 2))
    position[0, 0] = 1.0
    position[-1, 1] = 1.0
    return np.concatenate(
        [
            np.asarray(words, dtype=np.float64).reshape(n, 3) / SCALE,
            np.broadcast_to(np.asarray(sentence, dtype=np.float64) / SCALE, (n, 4)),
            gop,
            np.asarray(features.word_scalars, dtype=np.float64),
            position,
        ],
        axis=1,
    )


def with_network(rows: np.ndarray, sentence: np.ndarray, words: np.ndarray) -> np.ndarray:
    """``rows`` (from :func:`word_inputs`) with another network's sentence (4,) and word
    (W, 3) scores in place of the ones they were made with."""
    out = np.array(rows, dtype=np.float64)
    out[:, :3] = np.asarray(words, dtype=np.float64).reshape(len(out), 3) / SCALE
    out[:, 3:7] = np.asarray(sentence, dtype=np.float64) / SCALE
    return out


@dataclass
class WordModel:
    """Standardisation and a few two-layer perceptrons (averaged): input rows to a
    correction of the networks' word scores (accuracy, stress, total), on 0..10. Each
    perceptron learns the residual, so with nothing to learn it returns the networks'
    scores."""

    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    members: list[dict[str, np.ndarray]]  # w1 (F, H), b1 (H,), w2 (H, 3), b2 (3,)
    inputs: tuple[str, ...] = INPUTS

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """(N, 3) word scores of (N, F) input rows."""
        if not len(rows):
            return np.zeros((0, 3))
        x = (np.asarray(rows, dtype=np.float64) - self.mean) / self.std
        outs = []
        for m in self.members:
            h = x @ m["w1"] + m["b1"]
            h = h * 0.5 * (1.0 + np.tanh(0.7978845608 * (h + 0.044715 * h**3)))  # GELU (tanh form)
            outs.append(h @ m["w2"] + m["b2"])
        base = np.asarray(rows, dtype=np.float64)[:, :3]  # the networks' own word scores, 0..1
        return ((base + np.mean(outs, axis=0)) * SCALE).clip(0.0, SCALE)

    def to_state(self) -> dict[str, Any]:
        return {
            "mean": self.mean.astype(np.float32),
            "std": self.std.astype(np.float32),
            "members": [{k: v.astype(np.float32) for k, v in m.items()} for m in self.members],
            "inputs": list(self.inputs),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WordModel:
        inputs = tuple(state.get("inputs", INPUTS))
        if inputs != INPUTS:
            from .errors import ModelFilesError

            raise ModelFilesError(
                f"the scorer's word stage reads inputs {list(inputs)}, but this version computes {list(INPUTS)}"
            )
        return cls(
            mean=np.asarray(state["mean"], dtype=np.float64),
            std=np.asarray(state["std"], dtype=np.float64),
            members=[{k: np.asarray(v, dtype=np.float64) for k, v in m.items()} for m in state["members"]],
            inputs=inputs,
        )


@dataclass(frozen=True)
class WordFit:
    """How the word stage is fitted (chosen by cross-validation, ``multipa fit-words``)."""

    hidden: int = 64
    epochs: int = 30
    lr: float = 2e-3
    weight_decay: float = 1e-3
    dropout: float = 0.1
    members: int = 3
    batch: int = 256
    seed: int = 762
    drop: tuple[str, ...] = ()  # inputs left out (an ablation): held at their mean


def fit(rows: np.ndarray, targets: np.ndarray, config: WordFit = WordFit()) -> WordModel:
    """Fit the stage on (N, F) input rows and (N, 3) expert word scores (0..10; NaN where
    an aspect has no label: left out of the loss)."""
    import torch
    from torch import nn

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a perceptron this small only waits on more threads
    try:
        return _fit(torch, nn, np.asarray(rows, dtype=np.float64), targets, config)
    finally:
        torch.set_num_threads(threads)


def _fit(torch: Any, nn: Any, x: np.ndarray, targets: np.ndarray, config: WordFit) -> WordModel:
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-6, std, 1.0)
    dropped = [INPUTS.index(name) for name in config.drop]
    std[dropped] = np.inf  # standardised to 0 whatever the row says
    xs = torch.tensor((x - mean) / std, dtype=torch.float32)
    y = torch.tensor(np.asarray(targets, dtype=np.float64) / SCALE - x[:, :3], dtype=torch.float32)  # the residual
    known = ~torch.isnan(y)
    y = torch.nan_to_num(y)
    members = []
    for m in range(config.members):
        torch.manual_seed(config.seed + m)
        gen = torch.Generator().manual_seed(config.seed + m)
        first, last = nn.Linear(x.shape[1], config.hidden), nn.Linear(config.hidden, 3)
        nn.init.zeros_(last.weight)  # start from the networks' scores
        nn.init.zeros_(last.bias)
        net = nn.Sequential(first, nn.GELU(approximate="tanh"), nn.Dropout(config.dropout), last)
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        net.train()
        for _ in range(config.epochs):
            order = torch.randperm(len(xs), generator=gen)
            for start in range(0, len(xs), config.batch):
                idx = order[start : start + config.batch]
                err = (net(xs[idx]) - y[idx]) ** 2 * known[idx]
                loss = err.sum() / known[idx].sum().clamp(min=1)
                opt.zero_grad()
                loss.backward()
                opt.step()
        members.append(
            {
                "w1": first.weight.detach().numpy().T.astype(np.float64),
                "b1": first.bias.detach().numpy().astype(np.float64),
                "w2": last.weight.detach().numpy().T.astype(np.float64),
                "b2": last.bias.detach().numpy().astype(np.float64),
            }
        )
    return WordModel(mean=mean, std=std, members=members)
