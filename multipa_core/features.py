"""The MultiPA features of one turn, as arrays ready for batching.

The scored unit is the word of the *target* transcript (ASR_t in open mode, the
reference text in closed mode and in training); the *recognized* transcript
(ASR_r) is what it is compared with. Both transcripts are force-aligned to the
same posteriors, so their times are comparable, and items of the two are paired
by a minimum-cost alignment in which pairing two words (phones) costs their
spelling (identity) difference plus one minus their overlap in time (IoU), and
leaving one unpaired costs 1: the partner of a word is the word said at the same
time that sounds most like it.

Word-level features (one row per target word), in :data:`WORD_SCALARS` order:
duration, interval (pause since the previous word), start and end time
difference to the paired recognized word, Levenshtein distance between the two
spellings, aligned word count (recognized words overlapping in time), phone
distance (edit distance between the two words' phones), phone ratio (recognized
phones / target phones), and whether a pair exists. Beside them: the text
embeddings of the target word and of its recognized partner, and the bag of the
word's one-hot phone vectors.

Phone-level features (one row per target phone), in :data:`PHONE_SCALARS`
order: duration, interval, start and end time difference to the paired
recognized phone, aligned phone count (recognized phones overlapping in time),
phone probability, and whether a pair exists. Beside them: the phonetic
embedding (the aligner's posterior vector) and the phone's one-hot vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np

from . import phones as ph
from .align import FRAME_SECONDS, Alignment
from .distance import align_weighted, levenshtein

WORD_SCALARS = (
    "duration",
    "interval",
    "start_diff",
    "end_diff",
    "levenshtein",
    "aligned_words",
    "phone_distance",
    "phone_ratio",
    "paired",
)
PHONE_SCALARS = ("duration", "interval", "start_diff", "end_diff", "aligned_phones", "probability", "paired")
PHONE_VECTOR = len(ph.PHONES) + ph.STRESS_LEVELS
PROBE_ONLY = ("recognizer_frames", "encoder_layers")  # fields the sentence probe reads and the network does not


@dataclass
class TurnFeatures:
    """Features of one turn; row i of every word array belongs to target word i."""

    frames: np.ndarray  # (T, A) acoustic embedding, 50 frames per second
    word_text: np.ndarray  # (W, D) text embedding of each target word
    word_text_other: np.ndarray  # (W, D) text embedding of its recognized partner (zeros if none)
    word_phones: np.ndarray  # (W, 43) sum of the word's one-hot phone vectors
    word_scalars: np.ndarray  # (W, len(WORD_SCALARS))
    word_frames: np.ndarray  # (W, 2) int64 [start, end) frame span
    phone_post: np.ndarray  # (P, 40) phonetic embedding
    phone_onehot: np.ndarray  # (P, 43)
    phone_scalars: np.ndarray  # (P, len(PHONE_SCALARS))
    phone_word: np.ndarray  # (P,) int64 index of each phone's word
    phone_frames: np.ndarray  # (P, 2) int64 [start, end) frame span
    # (T', R) ASR_r's encoder frames: a second acoustic view, read by the sentence probe
    # only (the network does not use it); empty where the recognizer's encoding is unknown
    recognizer_frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    # (layers, 2 * width) mean and standard deviation over time of each of ASR_t's encoder
    # layers (multipa_core.encoder_layers), read by the sentence probe only; empty where unknown
    encoder_layers: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def shapes(self) -> dict[str, list[int]]:
        return {f.name: list(getattr(self, f.name).shape) for f in fields(self)}

    def is_finite(self) -> bool:
        return all(np.isfinite(getattr(self, f.name)).all() for f in fields(self))


def _overlap(a0: float, a1: float, b0: float, b1: float) -> bool:
    return min(a1, b1) - max(a0, b0) > 0


def _frame_span(start: float, end: float, num_frames: int) -> tuple[int, int]:
    lo = min(max(0, int(np.floor(start / FRAME_SECONDS))), max(0, num_frames - 1))
    hi = min(num_frames, max(lo + 1, int(np.ceil(end / FRAME_SECONDS))))
    return lo, hi


def _iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = max(a1, b1) - min(a0, b0)
    return inter / union if union > 0 else 0.0


def _partners(
    n: int, m: int, difference: Callable[[int, int], float], times: Callable[[int, int], float]
) -> list[int | None]:
    pairs: list[int | None] = [None] * n
    for i, j in align_weighted(n, m, lambda i, j: difference(i, j) + 1.0 - times(i, j)):
        if i is not None and j is not None:
            pairs[i] = j
    return pairs


def word_pairs(target: Alignment, recognized: Alignment) -> list[int | None]:
    """For each target word, the index of its recognized partner (or None)."""
    tw, rw = target.words, recognized.words

    def spelling(i: int, j: int) -> float:
        a, b = tw[i].text.lower(), rw[j].text.lower()
        return levenshtein(a, b) / max(1, len(a), len(b))

    return _partners(len(tw), len(rw), spelling, lambda i, j: _iou(tw[i].start, tw[i].end, rw[j].start, rw[j].end))


def phone_pairs(target: Alignment, recognized: Alignment) -> list[int | None]:
    """For each target phone, the index of its recognized partner (or None)."""
    tp, rp = target.phones, recognized.phones
    return _partners(
        len(tp),
        len(rp),
        lambda i, j: 0.0 if ph.base(tp[i].phone) == ph.base(rp[j].phone) else 0.5,
        lambda i, j: _iou(tp[i].start, tp[i].end, rp[j].start, rp[j].end),
    )


def build(
    frames: np.ndarray,
    target: Alignment,
    recognized: Alignment,
    target_text: np.ndarray,
    recognized_text: np.ndarray,
    recognizer_frames: np.ndarray | None = None,
    encoder_layers: np.ndarray | None = None,
) -> TurnFeatures:
    """Compute every feature of one turn.

    Args:
        frames: (T, A) acoustic embedding of the turn.
        target: the target transcript's alignment (scored words).
        recognized: the recognized transcript's alignment.
        target_text: (len(target.words), D) text embeddings of the target words.
        recognized_text: (len(recognized.words), D) text embeddings of the recognized words.
        recognizer_frames: (T', R) ASR_r's encoder frames, when known.
        encoder_layers: (layers, 2 * width) statistics of ASR_t's encoder layers, when known.
    """
    W, P = len(target.words), len(target.phones)
    T = frames.shape[0]
    dim = target_text.shape[1] if target_text.ndim == 2 else recognized_text.shape[1]
    pair = word_pairs(target, recognized)

    word_scalars = np.zeros((W, len(WORD_SCALARS)), dtype=np.float32)
    word_text_other = np.zeros((W, dim), dtype=np.float32)
    word_phones = np.zeros((W, PHONE_VECTOR), dtype=np.float32)
    word_frames = np.zeros((W, 2), dtype=np.int64)
    for i, w in enumerate(target.words):
        t_phones = [target.phones[k].phone for k in w.phones]
        word_phones[i] = ph.one_hot(t_phones).sum(axis=0)
        word_frames[i] = _frame_span(w.start, w.end, T)
        previous_end = target.words[i - 1].end if i else w.start
        aligned = sum(_overlap(w.start, w.end, r.start, r.end) for r in recognized.words)
        row = dict(duration=w.end - w.start, interval=max(0.0, w.start - previous_end), aligned_words=aligned)
        j = pair[i]
        if j is None:
            row.update(levenshtein=len(w.text), phone_distance=len(t_phones))
        else:
            r = recognized.words[j]
            r_phones = [recognized.phones[k].phone for k in r.phones]
            word_text_other[i] = recognized_text[j]
            row.update(
                start_diff=w.start - r.start,
                end_diff=w.end - r.end,
                levenshtein=levenshtein(w.text.lower(), r.text.lower()),
                phone_distance=levenshtein([ph.base(p) for p in t_phones], [ph.base(p) for p in r_phones]),
                phone_ratio=len(r_phones) / max(1, len(t_phones)),
                paired=1.0,
            )
        word_scalars[i] = [row.get(name, 0.0) for name in WORD_SCALARS]

    phone_scalars = np.zeros((P, len(PHONE_SCALARS)), dtype=np.float32)
    phone_frames = np.zeros((P, 2), dtype=np.int64)
    phone_pair = phone_pairs(target, recognized)
    for k, p in enumerate(target.phones):
        phone_frames[k] = _frame_span(p.start, p.end, T)
        previous_end = target.phones[k - 1].end if k else p.start
        aligned = sum(_overlap(p.start, p.end, q.start, q.end) for q in recognized.phones)
        row = dict(
            duration=p.end - p.start,
            interval=max(0.0, p.start - previous_end),
            aligned_phones=aligned,
            probability=p.probability,
        )
        m = phone_pair[k]
        if m is not None:
            q = recognized.phones[m]
            row.update(start_diff=p.start - q.start, end_diff=p.end - q.end, paired=1.0)
        phone_scalars[k] = [row.get(name, 0.0) for name in PHONE_SCALARS]

    return TurnFeatures(
        frames=np.asarray(frames, dtype=np.float32),
        word_text=np.asarray(target_text, dtype=np.float32).reshape(W, dim),
        word_text_other=word_text_other,
        word_phones=word_phones,
        word_scalars=word_scalars,
        word_frames=word_frames,
        phone_post=target.posteriors.astype(np.float32).reshape(P, ph.NUM_CLASSES),
        phone_onehot=ph.one_hot([p.phone for p in target.phones]),
        phone_scalars=phone_scalars,
        phone_word=np.array([p.word for p in target.phones], dtype=np.int64),
        phone_frames=phone_frames,
        recognizer_frames=_matrix(recognizer_frames),
        encoder_layers=_matrix(encoder_layers),
    )


def _matrix(array: np.ndarray | None) -> np.ndarray:
    """A float32 matrix, empty (0, 0) for None."""
    return np.zeros((0, 0), np.float32) if array is None else np.asarray(array, dtype=np.float32)


def collate(items: list[TurnFeatures]) -> dict[str, Any]:
    """Pad a batch of turns into torch tensors with boolean masks.

    Returns:
        Every :class:`TurnFeatures` field the network reads (all but :data:`PROBE_ONLY`)
        stacked with zero padding, plus
        ``frame_mask`` (B, T), ``word_mask`` (B, W) and ``phone_mask`` (B, P),
        True where real.
    """
    import torch

    out: dict[str, Any] = {}
    sizes = {
        "frames": [len(x.frames) for x in items],
        "word": [len(x.word_text) for x in items],
        "phone": [len(x.phone_post) for x in items],
    }
    for f in fields(TurnFeatures):
        if f.name in PROBE_ONLY:
            continue
        arrays = [getattr(x, f.name) for x in items]
        longest = max(1, max(a.shape[0] for a in arrays))
        padded = np.zeros((len(arrays), longest, *arrays[0].shape[1:]), dtype=arrays[0].dtype)
        for b, a in enumerate(arrays):
            padded[b, : a.shape[0]] = a
        out[f.name] = torch.from_numpy(padded)
    for name, key in (("frame_mask", "frames"), ("word_mask", "word"), ("phone_mask", "phone")):
        lengths = torch.tensor(sizes[key])
        longest = max(1, int(lengths.max()) if len(lengths) else 1)
        out[name] = torch.arange(longest)[None, :] < lengths[:, None]
    return out
