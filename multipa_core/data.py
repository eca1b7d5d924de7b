"""The labelled data folder (speechocean762 layout) and the project's fixed split.

A folder holds ``utterances.jsonl`` (one utterance per line, five experts' scores
per aspect) and ``audio/<utt>.flac``; see ``../shared/speechocean762/README.md``.
Decisions are made by speaker-grouped K-fold cross-validation over every speaker
(``multipa_core/splits/speechocean762-folds.json``: 5 folds stratified by
proficiency, :func:`make_folds`); inside a fold, and for the shipped scorer, a few
of the training speakers stop training early (:func:`training_parts`). The older
single split (``multipa_core/splits/speechocean762.json``: ``train``,
``validation``, ``development`` over the first 104 speakers) trained the aligner
and is kept for it.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .aspects import SENTENCE_LABELS, WORD_LABELS
from .errors import DataError

SPLIT_FILE = Path(__file__).resolve().parent / "splits" / "speechocean762.json"
FOLDS_FILE = Path(__file__).resolve().parent / "splits" / "speechocean762-folds.json"
SENTENCE_ASPECTS = SENTENCE_LABELS  # label keys of the sentence aspects
WORD_ASPECTS = WORD_LABELS  # label keys of the word aspects


@dataclass
class WordLabel:
    """One reference word with its canonical phones and expert scores."""

    text: str
    phones: list[str]
    scores: dict[str, list[float]]  # aspect -> the five experts' scores

    def median(self, aspect: str) -> float:
        return float(statistics.median(self.scores[aspect]))


@dataclass
class Utterance:
    """One labelled utterance."""

    utt: str
    speaker: str
    text: str
    audio_path: Path
    words: list[WordLabel]
    scores: dict[str, list[float]] = field(default_factory=dict)  # sentence aspect -> experts
    age: int | None = None

    def median(self, aspect: str) -> float:
        return float(statistics.median(self.scores[aspect]))

    @property
    def phones(self) -> list[str]:
        return [p for w in self.words for p in w.phones]


def load_utterances(folder: str | Path) -> list[Utterance]:
    """Read a data folder.

    Raises:
        DataError: the folder lacks ``utterances.jsonl`` or a line is malformed.
    """
    root = Path(folder)
    index = root / "utterances.jsonl"
    if not index.is_file():
        raise DataError(f"{root} is not a data folder: it has no utterances.jsonl")
    out: list[Utterance] = []
    with open(index, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                words = [
                    WordLabel(
                        w["text"],
                        list(w.get("phones", [])),
                        {a: list(map(float, w[a])) for a in WORD_ASPECTS if a in w},
                    )
                    for w in row.get("words", [])
                ]
                out.append(
                    Utterance(
                        utt=str(row["utt"]),
                        speaker=str(row.get("speaker", row["utt"])),
                        text=str(row["text"]),
                        audio_path=root / "audio" / f"{row['utt']}.flac",
                        words=words,
                        scores={a: list(map(float, row[a])) for a in SENTENCE_ASPECTS if a in row},
                        age=row.get("age"),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{index}:{number}: malformed utterance ({exc})") from None
    return out


def load_split(path: Path = SPLIT_FILE) -> dict[str, list[str]]:
    """The fixed speaker split: ``{"train": [...], "validation": [...], "development": [...]}``."""
    return json.loads(path.read_text())["speakers"]


def select(utterances: Iterable[Utterance], part: str, split: dict[str, list[str]] | None = None) -> list[Utterance]:
    """The utterances of one part of the split (``train``, ``validation``, ``development`` or ``all``)."""
    items = list(utterances)
    if part == "all":
        return items
    split = split or load_split()
    if part not in split:
        raise DataError(f"unknown split part {part!r}; parts: all, {', '.join(split)}")
    speakers = set(split[part])
    return [u for u in items if u.speaker in speakers]


def make_split(
    speaker_scores: dict[str, float], *, seed: int = 762, development: int = 20, validation: int = 10
) -> dict[str, list[str]]:
    """Draw a speaker split whose parts span the same range of proficiency.

    Speakers are ranked by their mean total score and cut into ``development``
    bins of neighbours; one speaker per bin, drawn at random, goes to
    development. The rest are binned again for ``validation``; the remainder
    trains. A plain random draw of 20 speakers can land on a much narrower score
    range than the population (the first draw here did: half the spread), and
    correlation metrics on a narrow range say little.
    """
    rng = random.Random(seed)
    ranked = sorted(speaker_scores, key=lambda s: (speaker_scores[s], s))
    parts: dict[str, list[str]] = {"development": [], "validation": [], "train": []}
    for part, count in (("development", development), ("validation", validation)):
        chosen = _one_per_bin(ranked, count, rng)
        parts[part] = sorted(chosen)
        ranked = [s for s in ranked if s not in chosen]
    parts["train"] = sorted(ranked)
    return {k: parts[k] for k in ("train", "validation", "development")}


def _one_per_bin(ranked: list[str], count: int, rng: random.Random) -> set[str]:
    """One speaker drawn from each of ``count`` bins of neighbours in ``ranked``."""
    bins = [ranked[round(i * len(ranked) / count) : round((i + 1) * len(ranked) / count)] for i in range(count)]
    return {rng.choice(b) for b in bins if b}


def speaker_scores(utterances: Iterable[Utterance]) -> dict[str, float]:
    """Each speaker's mean total score (median of the experts): their proficiency."""
    totals: dict[str, list[float]] = {}
    for u in utterances:
        totals.setdefault(u.speaker, []).append(u.median("total"))
    return {s: float(statistics.fmean(v)) for s, v in totals.items()}


def _stratified(speaker_scores: dict[str, float], count: int, rng: random.Random) -> list[list[str]]:
    """Speakers ranked by proficiency, cut into runs of ``count`` neighbours, each run
    dealt at random one speaker per group: every group spans the whole range."""
    ranked = sorted(speaker_scores, key=lambda s: (speaker_scores[s], s))
    groups: list[list[str]] = [[] for _ in range(count)]
    for start in range(0, len(ranked), count):
        run = ranked[start : start + count]
        slots = rng.sample(range(count), len(run))
        for speaker, slot in zip(run, slots):
            groups[slot].append(speaker)
    return [sorted(g) for g in groups]


def make_folds(speaker_scores: dict[str, float], *, folds: int = 5, seed: int = 762) -> list[list[str]]:
    """Speaker-disjoint cross-validation folds stratified by proficiency.

    Speakers are ranked by their mean total score and dealt, ``folds`` neighbours
    at a time, one to each fold in a random order: every fold covers the range of
    proficiency, and every speaker is in exactly one fold.
    """
    if folds < 2:
        raise DataError("cross-validation needs at least 2 folds")
    return _stratified(speaker_scores, folds, random.Random(seed))


def load_folds(path: str | Path = "") -> list[list[str]]:
    """Cross-validation folds (lists of speakers) from ``path``; "" is the project's own file."""
    return [list(f) for f in json.loads(Path(path or FOLDS_FILE).read_text())["folds"]]


def training_parts(
    speaker_scores: dict[str, float], held_out: Iterable[str] = (), *, validation: int = 10, seed: int = 762
) -> dict[str, list[str]]:
    """Training and early-stopping speakers among those not held out.

    ``validation`` speakers, one from each of as many proficiency bins, stop
    training early and choose the probe's blend; the rest train. Held-out
    speakers are in neither part.
    """
    rest = {s: v for s, v in speaker_scores.items() if s not in set(held_out)}
    ranked = sorted(rest, key=lambda s: (rest[s], s))
    chosen = _one_per_bin(ranked, validation, random.Random(seed))
    return {"train": sorted(s for s in ranked if s not in chosen), "validation": sorted(chosen)}
