"""The score aspects, named once.

Everything that lists aspects derives from this table: the network's heads
(:mod:`multipa_core.model`), the label keys read from ``utterances.jsonl``
(:mod:`multipa_core.data`, :mod:`multipa_core.dataset`), the evaluation's tables
and the benchmarks' columns. An aspect has the name it carries in scores and on
the wire, the key of its expert labels in the data folder (the corpus spells
prosody ``prosodic``), its level and its range.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Aspect:
    """One scored aspect."""

    name: str  # in scores, JSON, the wire protocol and tables
    label: str  # the key of its five expert scores in utterances.jsonl
    level: str  # "sentence" or "word"
    low: float = 0.0  # lowest score
    high: float = 10.0  # highest score


SENTENCE = (
    Aspect("accuracy", "accuracy", "sentence"),
    Aspect("fluency", "fluency", "sentence"),
    Aspect("prosody", "prosodic", "sentence"),
    Aspect("total", "total", "sentence"),
)
WORD = (
    Aspect("accuracy", "accuracy", "word"),
    Aspect("stress", "stress", "word"),
    Aspect("total", "total", "word"),
)
LEVELS = {"sentence": SENTENCE, "word": WORD}

SENTENCE_NAMES = tuple(a.name for a in SENTENCE)  # the sentence heads, in output order
WORD_NAMES = tuple(a.name for a in WORD)  # the word heads, in output order
SENTENCE_LABELS = tuple(a.label for a in SENTENCE)  # their label keys in the data folder
WORD_LABELS = tuple(a.label for a in WORD)
