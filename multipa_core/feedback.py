"""A turn's feedback as at most three short English sentences a chatbot can say as they are.

Each problem found by :mod:`multipa_core.diagnosis` and :mod:`multipa_core.prosody`
becomes an item with structured fields and one templated sentence (no language
model: the same assessment always gives the same words). Items are ranked by
what they cost the turn, in points of the 0-10 sentence scale:

- a mispronounced word: ``(10 - accuracy) / words`` (its share of the accuracy lost)
- an omitted word: ``10 / words``; an inserted word: ``5 / words``
- a wrong stress: ``(10 - stress) / words``
- an unexpected break: ``5 x pause / speech time`` (at most 2 s of pause counted; half the
  weight of lost words, since a pause costs fluency only)
- a missing break: ``1 / words``
- a monotone turn: ``(10 - prosody) / 2``

Ties go to the earlier word, so the order is deterministic too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .ipa import example, ipa

MAX_ITEMS = 3
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


@dataclass
class FeedbackItem:
    """One thing to work on."""

    type: str  # mispronunciation, omission, insertion, unexpected_break, missing_break, monotone, stress
    sentence: str  # what a chatbot can show or say
    cost: float  # points of the 0-10 sentence scale it cost (the ranking key)
    word_index: int | None = None  # index into the turn's words (None: the whole turn, or an inserted word)
    word: str | None = None
    detail: str | None = None  # mispronunciation: substitution, deletion, insertion or unclear
    phone_index: int | None = None  # index into the word's phones
    expected: str | None = None  # ARPAbet
    expected_ipa: str | None = None
    heard: str | None = None  # ARPAbet; None for a deletion
    heard_ipa: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _position(k: int, n: int) -> str:
    if n > 1 and k == n - 1:
        return "last"
    return _ORDINALS[k] if k < len(_ORDINALS) else f"sound number {k + 1} of the"


def _say(phone: str) -> str:
    key = example(phone)
    return f"/{ipa(phone)}/ as in '{key}'" if key else f"/{ipa(phone)}/"


def phone_sentence(
    word: str,
    detail: str,
    k: int,
    n: int,
    expected: str,
    heard: str | None,
    before: str | None = None,
    after: str | None = None,
) -> str:
    """The sentence for one phone of a word: substitution, deletion, insertion (``heard``
    inserted between ``before`` and ``after``) or unclear."""
    where = _position(k, n)
    if detail == "substitution" and heard:
        return f"In '{word}' the {where} sound came out like /{ipa(heard)}/; say {_say(expected)}."
    if detail == "deletion":
        return f"In '{word}' the {where} sound /{ipa(expected)}/ was missing; say {_say(expected)}."
    if detail == "insertion" and heard:
        if before and after:
            return f"In '{word}' an extra /{ipa(heard)}/ crept in between /{ipa(before)}/ and /{ipa(after)}/; go straight from one to the other."
        edge = f"after /{ipa(before)}/ at the end" if before else f"before /{ipa(after or expected)}/ at the start"
        return f"In '{word}' an extra /{ipa(heard)}/ was added {edge}; leave it out."
    return f"In '{word}' the {where} sound /{ipa(expected)}/ was not clear; say {_say(expected)}."


def stress_sentence(word: str, expected: int, heard: int) -> str:
    ords = _ORDINALS
    return f"In '{word}' stress the {ords[min(expected, 7)]} syllable, not the {ords[min(heard, 7)]}."


def omission_sentence(word: str, before: str | None, after: str | None) -> str:
    if before and after:
        return f"The word '{word}' was not heard; say it between '{before}' and '{after}'."
    if after:
        return f"The word '{word}' was not heard; start with it, before '{after}'."
    if before:
        return f"The word '{word}' was not heard; end with it, after '{before}'."
    return f"The word '{word}' was not heard; say it clearly."


def insertion_sentence(word: str) -> str:
    return f"You said '{word}', which is not in the sentence; leave it out."


def break_sentence(kind: str, words: list[str], index: int, seconds: float = 0.0) -> str:
    if kind == "unexpected_break":
        phrase = " ".join(words[max(0, index - 1) : index + 1])
        return f"You paused {seconds:.1f} s before '{words[index]}'; say '{phrase}' in one breath."
    return f"Pause briefly after '{words[index]}', where the sentence has a break."


def monotone_sentence(semitones: float) -> str:
    return f"Your voice stayed on almost one note ({semitones:.1f} semitones); let it rise on the important words and fall at the end."


def rank(items: list[FeedbackItem], limit: int | None = None) -> list[FeedbackItem]:
    """The costliest ``limit`` (default :data:`MAX_ITEMS`) items, ties to the earlier word
    (turn-level items last among equals)."""
    limit = MAX_ITEMS if limit is None else limit
    ordered = sorted(
        items, key=lambda it: (-round(it.cost, 6), it.word_index if it.word_index is not None else 1 << 30, it.type)
    )
    return ordered[:limit]


def collect(
    diagnosis: Any,
    alignment: Any,
    scores: list[dict[str, float]],
    sentence: dict[str, float],
    *,
    stress_below: float = 10.0,
) -> list[FeedbackItem]:
    """Every feedback item of a diagnosed turn, ranked, at most :data:`MAX_ITEMS`.

    Args:
        diagnosis: a :class:`~multipa_core.diagnosis.TurnDiagnosis`.
        alignment: the target alignment the diagnosis was made on.
        scores: per target word, its accuracy, stress and total (0-10).
        sentence: the sentence scores (prosody is read for a monotone turn).
        stress_below: a wrong stress is said only when the word's stress score is below this.
    """
    words = [w.text for w in alignment.words]
    n = max(1, len(words))
    items: list[FeedbackItem] = []
    for i, errors in enumerate(diagnosis.word_errors):
        w = alignment.words[i]
        start, end = int(w.start * 1000), int(w.end * 1000)
        for kind in errors:
            if kind == "mispronunciation":
                items.append(_mispronunciation(diagnosis.words[i], alignment, i, scores[i]["accuracy"], n))
            elif kind == "omission":
                before, after = (words[i - 1] if i else None), (words[i + 1] if i + 1 < len(words) else None)
                items.append(
                    FeedbackItem(
                        kind,
                        omission_sentence(words[i], before, after),
                        10.0 / n,
                        i,
                        words[i],
                        start_ms=start,
                        end_ms=end,
                    )
                )
            elif kind == "unexpected_break":
                pause = diagnosis.pause_before.get(i, 0.0)
                span = max(1.0, alignment.words[-1].end - alignment.words[0].start)
                items.append(
                    FeedbackItem(
                        kind,
                        break_sentence(kind, words, i, pause),
                        5.0 * min(2.0, pause) / span,
                        i,
                        words[i],
                        start_ms=start,
                        end_ms=end,
                    )
                )
            elif kind == "missing_break":
                items.append(
                    FeedbackItem(kind, break_sentence(kind, words, i), 1.0 / n, i, words[i], start_ms=start, end_ms=end)
                )
        check = diagnosis.words[i].stress
        if check and check["ok"] is False and scores[i]["stress"] < stress_below and "omission" not in errors:
            items.append(
                FeedbackItem(
                    "stress",
                    stress_sentence(words[i], check["expected_syllable"], check["heard_syllable"]),
                    (10.0 - scores[i]["stress"]) / n,
                    i,
                    words[i],
                    start_ms=start,
                    end_ms=end,
                )
            )
    for ins in diagnosis.insertions:
        items.append(
            FeedbackItem(
                "insertion",
                insertion_sentence(ins["text"]),
                5.0 / n,
                None,
                ins["text"],
                start_ms=ins["start_ms"],
                end_ms=ins["end_ms"],
            )
        )
    if (
        "monotone" in diagnosis.errors
        and diagnosis.prosody is not None
        and diagnosis.prosody.f0_range_semitones is not None
    ):
        items.append(
            FeedbackItem(
                "monotone",
                monotone_sentence(diagnosis.prosody.f0_range_semitones),
                (10.0 - sentence.get("prosody", 0.0)) / 2.0,
            )
        )
    for it in items:
        it.cost = round(it.cost, 3)
    return rank(items)


def _mispronunciation(word: Any, alignment: Any, i: int, accuracy: float, n: int) -> FeedbackItem:
    """The item of a mispronounced word: its first wrongly heard phone, else an inserted phone,
    else its least certain phone (the scorer flagged the word, the phones do not say why)."""
    w = alignment.words[i]
    text = w.text
    cost = max(0.0, 10.0 - accuracy) / n
    m = len(word.phones)
    if word.errors:
        k = word.errors[0]
        p = word.phones[k]
        seg = alignment.phones[w.phones[k]]
        heard_ipa = ipa(p.heard) if p.heard else None
        return FeedbackItem(
            "mispronunciation",
            phone_sentence(text, p.error, k, m, p.expected, p.heard),
            cost,
            i,
            text,
            p.error,
            k,
            p.expected,
            ipa(p.expected),
            p.heard,
            heard_ipa,
            int(seg.start * 1000),
            int(seg.end * 1000),
        )
    if word.inserted:
        k, phone = word.inserted[0]
        before = word.phones[k - 1].expected if k > 0 else None
        after = word.phones[k].expected if k < m else None
        return FeedbackItem(
            "mispronunciation",
            phone_sentence(text, "insertion", k, m, after or before or phone, phone, before, after),
            cost,
            i,
            text,
            "insertion",
            k,
            None,
            None,
            phone,
            ipa(phone),
            int(w.start * 1000),
            int(w.end * 1000),
        )
    probs = [alignment.phones[j].probability for j in w.phones]
    k = int(min(range(m), key=lambda j: probs[j])) if m else 0
    expected = word.phones[k].expected if m else alignment.phones[w.phones[k]].phone
    seg = alignment.phones[w.phones[k]]
    top = word.phones[k].nbest[0][0] if m and word.phones[k].nbest else None
    return FeedbackItem(
        "mispronunciation",
        phone_sentence(text, "unclear", k, m, expected, None),
        cost,
        i,
        text,
        "unclear",
        k,
        expected,
        ipa(expected),
        top,
        ipa(top) if top else None,
        int(seg.start * 1000),
        int(seg.end * 1000),
    )
