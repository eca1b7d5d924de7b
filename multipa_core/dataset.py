"""Scoring-network examples from a labelled data folder.

An example is one utterance's features plus its labels: the median of the five
experts for each sentence aspect and, in training (closed) mode, for each word
of the reference text. The paper trains on per-expert rows; we use the median
because the evaluation reference is the median, and five near-duplicate rows
per utterance would mostly add label noise to a set this small (an ablation in
docs/models.md compares the mean).

Features are cached per utterance under a key naming the aligner checkpoint and
the text model, so a changed aligner never reuses stale features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Iterable

import numpy as np
from tqdm import tqdm

from . import data
from .aspects import SENTENCE_LABELS, WORD_LABELS
from .asr import Transcript, normalize_word
from .distance import align_pairs
from .cache import ArrayCache
from .features import TurnFeatures
from .pipeline import FeatureBuilder, TurnAnalysis, transcript_words
from .precompute import Precomputed

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One utterance ready for the scorer."""

    utt: str
    features: TurnFeatures
    sentence: np.ndarray  # (4,) expert medians: accuracy, fluency, prosody, total
    words: np.ndarray  # (W, 3) expert medians per target word (NaN where unknown)
    mode: str = "closed"  # closed: the reference text is the target transcript; open: ASR_t's is
    words_levenshtein: np.ndarray | None = (
        None  # (W, 3) open mode: labels by Levenshtein alignment of the words (NaN where unknown)
    )


def sentence_labels(utt: data.Utterance) -> np.ndarray:
    return np.array([utt.median(a) for a in SENTENCE_LABELS], dtype=np.float32)


def word_labels(utt: data.Utterance) -> np.ndarray:
    return np.array([[w.median(a) for a in WORD_LABELS] for w in utt.words], dtype=np.float32).reshape(
        -1, len(WORD_LABELS)
    )


# features the precompute step caches on its own: joined to the stored features, not stored with them
JOINED = ("encoder_layers",)


def features_cache(root: str, builder: FeatureBuilder, mode: str) -> ArrayCache:
    return ArrayCache(root, f"turnfeatures-{mode}-{builder.key}-v3")


def closed_examples(
    utterances: Iterable[data.Utterance],
    pre: Precomputed,
    builder: FeatureBuilder,
    cache_root: str,
    *,
    desc: str = "features",
) -> tuple[list[Example], list[str]]:
    """Training-mode examples: the reference text is the target transcript.

    Returns:
        The examples and the ids of utterances that could not be used (logged).
    """
    return _examples(utterances, pre, builder, cache_root, "closed", desc)


def open_examples(
    utterances: Iterable[data.Utterance],
    pre: Precomputed,
    builder: FeatureBuilder,
    cache_root: str,
    *,
    desc: str = "open features",
) -> tuple[list[Example], list[str]]:
    """Examples as open mode sees them: ASR_t's transcript is the target.

    Each ASR_t word's labels are the mean of the reference words that overlap it
    in time (:func:`open_word_targets`, the open-mode evaluation rule); a word
    overlapping none has unknown labels. Training on these matches what the
    scorer meets at inference without a reference text.

    Returns:
        The examples and the ids of utterances that could not be used (logged).
    """
    return _examples(utterances, pre, builder, cache_root, "open", desc)


def _examples(
    utterances: Iterable[data.Utterance],
    pre: Precomputed,
    builder: FeatureBuilder,
    cache_root: str,
    mode: str,
    desc: str,
) -> tuple[list[Example], list[str]]:
    cache = features_cache(cache_root, builder, mode)
    needed = (pre.frames, pre.recognized) + ((pre.target,) if mode == "open" else ())
    out: list[Example] = []
    skipped: list[str] = []
    for utt in tqdm(list(utterances), desc=desc, unit="utt", dynamic_ncols=True):
        if any(utt.utt not in part for part in needed):
            skipped.append(utt.utt)
            continue
        stored = cache.get_arrays(utt.utt)
        if stored is None:
            target = pre.target[utt.utt] if mode == "open" else Transcript(utt.text)
            analysis = builder.analyze(
                pre.frames[utt.utt].astype(np.float32),
                target,
                pre.recognized[utt.utt],
                mode=mode,
                duration=0.0,
                recognizer_frames=pre.recognizer_frames.get(utt.utt),
            )
            if mode == "closed" and len(analysis.target_alignment.words) != len(utt.words):
                log.warning(
                    "utterance %s: %d aligned words for %d labelled ones; skipped",
                    utt.utt,
                    len(analysis.target_alignment.words),
                    len(utt.words),
                )
                skipped.append(utt.utt)
                continue
            stored = {f.name: getattr(analysis.features, f.name) for f in fields(TurnFeatures) if f.name not in JOINED}
            if mode == "open":  # closed-mode labels are the reference words' own, read afresh
                stored["word_targets"] = open_word_targets(analysis, utt, builder)
                stored["word_targets_levenshtein"] = levenshtein_word_targets(
                    [w.text for w in analysis.target_alignment.words], utt
                )
            cache.put_arrays(utt.utt, stored)
        features = TurnFeatures(**{f.name: stored[f.name] for f in fields(TurnFeatures) if f.name not in JOINED})
        if utt.utt in pre.encoder_layers:
            features.encoder_layers = pre.encoder_layers[utt.utt].astype(np.float32)
        words = stored["word_targets"] if mode == "open" else word_labels(utt)
        out.append(
            Example(
                utt.utt,
                features,
                sentence_labels(utt),
                words,
                mode=mode,
                words_levenshtein=stored.get("word_targets_levenshtein"),
            )
        )
    return out, skipped


def open_word_targets(analysis: TurnAnalysis, utt: data.Utterance, builder: FeatureBuilder) -> np.ndarray:
    """Open-mode word targets, as in the paper.

    Each target (ASR_t) word gets the mean of the expert medians of the reference
    words that overlap it in time, the reference words being force-aligned to the
    same audio; a word that overlaps none gets NaN (left out of word metrics).
    """
    ref_alignment = builder.align_words(analysis.log_posteriors, transcript_words(Transcript(utt.text)))
    labels = word_labels(utt)
    out = np.full((len(analysis.target_alignment.words), 3), np.nan, dtype=np.float32)
    if len(ref_alignment.words) != len(labels):
        return out
    for i, w in enumerate(analysis.target_alignment.words):
        hits = [k for k, r in enumerate(ref_alignment.words) if min(w.end, r.end) - max(w.start, r.start) > 0]
        if hits:
            out[i] = labels[hits].mean(axis=0)
    return out


def levenshtein_word_targets(target_words: list[str], utt: data.Utterance) -> np.ndarray:
    """Open-mode word targets by the open-response literature's rule.

    The target (recognized) words are aligned to the reference words by Levenshtein
    alignment over their normalised spelling; a matched or substituted word gets its
    reference partner's expert medians, an inserted word gets NaN (left out), and a
    deleted reference word is not scored at all.
    """
    labels = word_labels(utt)
    out = np.full((len(target_words), 3), np.nan, dtype=np.float32)
    reference = [normalize_word(w.text) for w in utt.words]
    for i, j in align_pairs([normalize_word(w) for w in target_words], reference):
        if i is not None and j is not None and j < len(labels):
            out[i] = labels[j]
    return out
