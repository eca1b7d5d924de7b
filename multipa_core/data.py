"""The labelled data folder (speechocean762 layout) and the project's fixed split.

A folder holds ``utterances.jsonl`` (one utterance per line, five experts' scores
per aspect) and ``audio/<utt>.flac``; see ``../shared/speechocean762/README.md``.
The split is by speaker and lives in ``multipa_core/splits/speechocean762.json``:
``train`` speakers fit models, ``validation`` speakers stop training early,
``development`` speakers are only ever evaluated on.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .errors import DataError

SPLIT_FILE = Path(__file__).resolve().parent / "splits" / "speechocean762.json"
SENTENCE_ASPECTS = ("accuracy", "fluency", "prosodic", "total")
WORD_ASPECTS = ("accuracy", "stress", "total")


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
                    WordLabel(w["text"], list(w.get("phones", [])), {a: list(map(float, w[a])) for a in WORD_ASPECTS if a in w})
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


def make_split(speakers_with_age: dict[str, int | None], *, seed: int = 762, development: int = 20, validation: int = 10) -> dict[str, list[str]]:
    """Draw a speaker split, children and adults (age <= 12) spread evenly over the parts."""
    rng = random.Random(seed)
    parts: dict[str, list[str]] = {"train": [], "validation": [], "development": []}
    total = len(speakers_with_age)
    for group in (True, False):
        members = sorted(s for s, age in speakers_with_age.items() if ((age or 99) <= 12) == group)
        rng.shuffle(members)
        n_dev = round(development * len(members) / total)
        n_val = round(validation * len(members) / total)
        parts["development"] += members[:n_dev]
        parts["validation"] += members[n_dev : n_dev + n_val]
        parts["train"] += members[n_dev + n_val :]
    return {k: sorted(v) for k, v in parts.items()}
