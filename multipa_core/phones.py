"""The ARPAbet phone inventory shared by the lexicon, the aligner and the features."""

from __future__ import annotations

import numpy as np

# The 39 ARPAbet phones of CMUdict, stress removed.
PHONES: tuple[str, ...] = (
    "AA",
    "AE",
    "AH",
    "AO",
    "AW",
    "AY",
    "B",
    "CH",
    "D",
    "DH",
    "EH",
    "ER",
    "EY",
    "F",
    "G",
    "HH",
    "IH",
    "IY",
    "JH",
    "K",
    "L",
    "M",
    "N",
    "NG",
    "OW",
    "OY",
    "P",
    "R",
    "S",
    "SH",
    "T",
    "TH",
    "UH",
    "UW",
    "V",
    "W",
    "Y",
    "Z",
    "ZH",
)
VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
BLANK = 0  # the CTC blank is class 0; phone i is class i + 1
NUM_CLASSES = len(PHONES) + 1
_INDEX = {p: i for i, p in enumerate(PHONES)}
STRESS_LEVELS = 4  # none (consonant), 0, 1, 2


def base(phone: str) -> str:
    """``AH0`` -> ``AH``."""
    return phone.rstrip("012").upper()


def stress(phone: str) -> int:
    """Stress class: 0 for a consonant or an unmarked vowel, 1 + digit for a marked vowel."""
    digit = phone[-1:]
    return 1 + int(digit) if digit in ("0", "1", "2") else 0


def index(phone: str) -> int:
    """Index of a phone (stress ignored) in :data:`PHONES`; KeyError when unknown."""
    return _INDEX[base(phone)]


def is_known(phone: str) -> bool:
    return base(phone) in _INDEX


def to_classes(phones: list[str]) -> list[int]:
    """Aligner classes (1-based, blank 0) of a phone sequence."""
    return [index(p) + 1 for p in phones]


def one_hot(phones: list[str]) -> np.ndarray:
    """(len, 39 + 4): the phone identity, then its stress class."""
    out = np.zeros((len(phones), len(PHONES) + STRESS_LEVELS), dtype=np.float32)
    for row, phone in enumerate(phones):
        out[row, index(phone)] = 1.0
        out[row, len(PHONES) + stress(phone)] = 1.0
    return out
