"""What went wrong in each word: heard phones, stress, and Azure-style word error types.

Heard phones: the aligner's posteriors over a word's frames are decoded freely
(greedy CTC, the blank slightly penalised so that a weak phone is still read),
and the decoded phones are aligned to the canonical ones by edit distance
(:func:`align_phones`). Each canonical phone is then heard as itself (``none``),
as another phone (``substitution``) or not at all (``deletion``); decoded phones
left over are insertions. The three best phones of each canonical phone are the
posteriors over its aligned interval, the blank left out.

Word error types (:func:`word_errors`): ``mispronunciation`` from the heard
phones and the word scores together, ``omission`` and ``insertion`` from the
recognized (ASR_r) words against the reference in closed mode,
``unexpected_break`` and ``missing_break`` from the pauses and the punctuation.
``monotone`` is the turn's (:mod:`multipa_core.prosody`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import phones as ph
from .align import FRAME_SECONDS, Alignment, greedy_decode
from .asr import normalize_word
from .distance import align_pairs, align_weighted
from .prosody import Pause

BLANK_PENALTY = 1.0  # nats taken from the blank before the greedy decode
NBEST = 3
DELETION_BELOW = 0.5  # a phone the free decode missed counts as deleted only if its peak posterior is below this
MISPRONOUNCED_BELOW = 8.0  # word accuracy under which a heard phone error makes the word mispronounced
MISSING_BREAK_S = 0.05  # at a comma or full stop inside the turn, less silence than this is a missing break
PUNCTUATION_BREAK = re.compile(r"[,.;:!?]+[\"')\]]*$")
ERROR_TYPES = ("mispronunciation", "omission", "insertion", "unexpected_break", "missing_break", "monotone")


@dataclass
class PhoneDiagnosis:
    """One canonical phone as it was heard."""

    expected: str  # canonical ARPAbet phone (with stress digit)
    heard: str | None  # ARPAbet phone heard in its place; None when nothing was (deletion)
    error: str  # none, substitution or deletion
    nbest: list[tuple[str, float]] = field(default_factory=list)  # the 3 best phones and their posteriors


@dataclass
class WordDiagnosis:
    """A word's heard phones and stress."""

    phones: list[PhoneDiagnosis]
    inserted: list[tuple[int, str]] = field(default_factory=list)  # (canonical phones before it, phone)
    stress: dict[str, Any] | None = None  # expected / heard syllable and ok, when it can be told

    @property
    def errors(self) -> list[int]:
        """Indices of the canonical phones heard wrongly."""
        return [i for i, p in enumerate(self.phones) if p.error != "none"]


def _cost(a: str, b: str) -> float:
    """Substitution cost: a vowel for a consonant costs more than either for its own kind."""
    if a == b:
        return 0.0
    return 1.0 + 1e-6 if (a in ph.VOWELS) == (b in ph.VOWELS) else 1.5


def align_phones(expected: list[str], heard: list[str]) -> tuple[list[str | None], list[tuple[int, str]]]:
    """Edit-distance alignment of heard phones to canonical ones (stress digits ignored).

    Returns:
        per canonical phone the heard phone paired with it (None: deleted), and the
        inserted heard phones as (number of canonical phones before it, phone).
    """
    e = [ph.base(p) for p in expected]
    h = [ph.base(p) for p in heard]
    pairs = align_weighted(len(e), len(h), lambda i, j: _cost(e[i], h[j]))
    paired: list[str | None] = [None] * len(e)
    inserted: list[tuple[int, str]] = []
    done = 0
    for i, j in pairs:
        if i is not None:
            paired[i] = None if j is None else h[j]
            done = i + 1
        elif j is not None:
            inserted.append((done, h[j]))
    return paired, inserted


def free_phones(log_probs: np.ndarray, *, blank_penalty: float = BLANK_PENALTY) -> list[str]:
    """Greedy CTC decoding with the blank penalised (repeats merged, blanks dropped)."""
    if log_probs.size == 0:
        return []
    return greedy_decode(log_probs, blank_penalty=blank_penalty)


def _frames(start: float, end: float, total: int) -> tuple[int, int]:
    lo = max(0, min(total - 1, int(round(start / FRAME_SECONDS))))
    return lo, max(lo + 1, min(total, int(np.ceil(end / FRAME_SECONDS))))


def nbest(probs: np.ndarray, n: int = NBEST) -> list[tuple[str, float]]:
    """The n best phones of a stretch of frames: mean posterior, blank left out, renormalised."""
    mean = probs.mean(axis=0)[1:]
    total = float(mean.sum())
    if total <= 0:
        return []
    order = np.argsort(-mean)[:n]
    return [(ph.PHONES[k], round(float(mean[k] / total), 3)) for k in order]


def diagnose_word(log_probs: np.ndarray, alignment: Alignment, word: int, *, confirm: bool = True) -> WordDiagnosis:
    """Heard phones of one aligned word.

    Args:
        confirm: check the free decode against the forced alignment: a substitution
            stands only when the heard phone is likelier than the canonical one over the
            canonical phone's interval, a deletion only when the canonical phone's peak
            posterior there is below :data:`DELETION_BELOW` (greedy CTC drops weak
            peaks that the forced alignment finds).
    """
    w = alignment.words[word]
    total = log_probs.shape[0]
    canonical = [alignment.phones[i].phone for i in w.phones]
    if total == 0 or not canonical:
        return WordDiagnosis([])
    lo, hi = _frames(w.start, w.end, total)
    heard, inserted = align_phones(canonical, free_phones(log_probs[lo:hi]))
    probs = np.exp(log_probs)
    out = []
    for k, (i, got) in enumerate(zip(w.phones, heard)):
        seg = alignment.phones[i]
        a, b = _frames(seg.start, seg.end, total)
        error = "deletion" if got is None else "none" if got == ph.base(canonical[k]) else "substitution"
        if confirm and error == "deletion" and seg.probability >= DELETION_BELOW:
            got, error = ph.base(canonical[k]), "none"
        elif confirm and got is not None and error == "substitution":
            mean = probs[a:b].mean(axis=0)
            if mean[ph.index(got) + 1] <= mean[ph.index(canonical[k]) + 1]:
                got, error = ph.base(canonical[k]), "none"
        out.append(PhoneDiagnosis(canonical[k], got, error, nbest(probs[a:b])))
    return WordDiagnosis(out, inserted)


def stress_check(
    alignment: Alignment, word: int, db: np.ndarray, f0: np.ndarray, *, margin: float = 0.3
) -> dict[str, Any] | None:
    """Whether the most prominent vowel (duration x loudness x pitch) is the lexicon's stressed one.

    Returns None when it cannot be told: fewer than two vowels, no primary stress in
    the lexicon, or no vowel clearly (``margin`` in log units) more prominent than the rest.
    """
    w = alignment.words[word]
    vowels = [
        (k, alignment.phones[i]) for k, i in enumerate(w.phones) if ph.base(alignment.phones[i].phone) in ph.VOWELS
    ]
    expected = [s for s, (_, p) in enumerate(vowels) if p.phone.endswith("1")]
    if len(vowels) < 2 or len(expected) != 1 or db.size == 0:
        return None
    prominence = []
    for _, p in vowels:
        a, b = _frames(p.start, p.end, db.size)
        loud = float(np.log(np.mean(10 ** (db[a:b] / 10)) + 1e-12)) / 2  # log RMS
        pitch = f0[int(p.start * 100) : max(int(p.start * 100) + 1, int(p.end * 100))]
        voiced = pitch[pitch > 0]
        prominence.append(
            np.log(max(p.end - p.start, FRAME_SECONDS))
            + loud
            + (float(np.log(np.mean(voiced))) if voiced.size else 0.0)
        )
    if sum(1 for p in vowels if p[1].end > p[1].start) < 2 or any(not np.isfinite(x) for x in prominence):
        return None
    order = np.argsort(prominence)[::-1]
    if prominence[order[0]] - prominence[order[1]] < margin:
        return None
    heard = int(order[0])
    return {"expected_syllable": expected[0], "heard_syllable": heard, "ok": heard == expected[0]}


def break_after(raw_text: str, words: list[str]) -> list[bool]:
    """For each aligned word, whether the raw transcript puts punctuation right after it
    (a comma or a full stop inside the turn calls for a short pause)."""
    tokens = [(normalize_word(t), bool(PUNCTUATION_BREAK.search(t))) for t in raw_text.split()]
    out = [False] * len(words)
    k = 0
    for i, w in enumerate(words):
        for j in range(k, len(tokens)):
            if tokens[j][0] == w:
                out[i], k = tokens[j][1], j + 1
                break
    return out


def breaks(alignment: Alignment, found: list[Pause], punctuation: list[bool], db: np.ndarray) -> dict[int, str]:
    """Word index -> ``unexpected_break`` (a pause before it, inside a phrase) or
    ``missing_break`` (punctuation after it, but the voice ran straight on)."""
    out: dict[int, str] = {}
    paused = {p.after_word for p in found}
    quiet = db < (np.percentile(db, 95) - 25.0) if db.size else np.zeros(0, bool)
    for i in range(len(alignment.words) - 1):
        if i in paused and not punctuation[i]:
            out[i + 1] = "unexpected_break"
        elif punctuation[i] and i not in paused and quiet.size:
            a, _ = _frames(alignment.words[i].end, alignment.words[i].end, quiet.size)
            _, b = _frames(alignment.words[i + 1].start, alignment.words[i + 1].start, quiet.size)
            silent = int(quiet[max(0, a - 5) : b + 5].sum()) * FRAME_SECONDS
            if silent < MISSING_BREAK_S:
                out[i] = "missing_break"
    return out


def omissions_insertions(reference: list[str], recognized: list[str]) -> tuple[list[int], list[tuple[int, int]]]:
    """Closed mode: reference words the recognizer did not hear, and recognized words not in the reference.

    Returns:
        indices of omitted reference words, and (recognized index, reference words before it) of insertions.
    """
    omitted: list[int] = []
    inserted: list[tuple[int, int]] = []
    done = 0
    for i, j in align_pairs(reference, recognized):
        if j is None and i is not None:
            omitted.append(i)
        elif i is None and j is not None:
            inserted.append((j, done))
        if i is not None:
            done = i + 1
    return omitted, inserted


def mispronounced(diagnosis: WordDiagnosis, accuracy: float, needs_improvement: bool) -> bool:
    """The word's scores and its heard phones together: flagged by the scorer, or a phone heard
    wrongly in a word the scorer does not rate as clean."""
    return needs_improvement or (bool(diagnosis.errors) and accuracy < MISPRONOUNCED_BELOW)


@dataclass
class TurnDiagnosis:
    """Everything :func:`diagnose_turn` found in a turn (empty for a turn without words)."""

    words: list[WordDiagnosis] = field(default_factory=list)  # per target word
    word_errors: list[list[str]] = field(default_factory=list)  # per target word: its error types
    pause_before: dict[int, float] = field(
        default_factory=dict
    )  # word index -> seconds of the unexpected break before it
    insertions: list[dict[str, Any]] = field(default_factory=list)  # closed mode: text, start_ms, end_ms, after_word
    errors: list[str] = field(default_factory=list)  # turn-level error types (monotone)
    prosody: Any = None  # prosody.ProsodyDetails, or None without audio


def diagnose_turn(
    analysis: Any,
    accuracy: list[float],
    needs: list[bool],
    samples: np.ndarray | None = None,
) -> TurnDiagnosis:
    """Heard phones, stress and error types of every target word of an analysed turn.

    Args:
        analysis: the pipeline's :class:`~multipa_core.pipeline.TurnAnalysis`.
        accuracy: the scorer's accuracy of each target word (0-10).
        needs: the scorer's needs-improvement flag of each target word.
        samples: the turn's audio (16 kHz); without it pauses, breaks, stress and pitch are left out.
    """
    from . import prosody

    alignment: Alignment = analysis.target_alignment
    n = len(alignment.words)
    if n == 0:
        return TurnDiagnosis()
    out = TurnDiagnosis(
        words=[diagnose_word(analysis.log_posteriors, alignment, i) for i in range(n)],
        word_errors=[[] for _ in range(n)],
    )
    texts = [w.text for w in alignment.words]
    omitted: set[int] = set()
    if analysis.mode == "closed":
        rec = analysis.recognized_alignment.words
        gone, extra = omissions_insertions(texts, [w.text for w in rec])
        omitted = set(gone) if rec else set()  # nothing recognized at all: no word is singled out
        out.insertions = [
            {
                "text": rec[j].text,
                "start_ms": int(rec[j].start * 1000),
                "end_ms": int(rec[j].end * 1000),
                "after_word": after - 1,
            }
            for j, after in extra
        ]
    for i in range(n):
        if i in omitted:
            out.word_errors[i].append("omission")
        elif mispronounced(out.words[i], accuracy[i], needs[i]):
            out.word_errors[i].append("mispronunciation")
    if samples is not None and len(samples):
        db = prosody.frame_db(samples)
        f0 = prosody.pitch_track(samples)
        out.prosody = prosody.details(alignment, samples, db=db, f0=f0)
        for i in range(n):
            out.words[i].stress = stress_check(alignment, i, db, f0)
        found = prosody.pauses(alignment, db)
        seconds = {p.after_word + 1: p.seconds for p in found}
        punctuation = break_after(analysis.target.text, texts)
        for i, kind in sorted(breaks(alignment, found, punctuation, db).items()):
            if i not in omitted:
                out.word_errors[i].append(kind)
                if kind == "unexpected_break":
                    out.pause_before[i] = seconds[i]
        if out.prosody.monotone:
            out.errors.append("monotone")
    return out
