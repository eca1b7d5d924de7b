"""IPA beside ARPAbet: the symbol a learner's app shows, and a key word for each sound.

General American values, as CMUdict transcribes it. Two phones change with
stress: an unstressed ``AH0`` is schwa (/ə/, "about"), a stressed ``AH1`` is /ʌ/
("cup"); ``ER0`` is /ɚ/ ("butter"), ``ER1`` /ɝ/ ("bird").
"""

from __future__ import annotations

from .phones import PHONES, base

IPA: dict[str, str] = {
    "AA": "ɑ", "AE": "æ", "AH": "ʌ", "AO": "ɔ", "AW": "aʊ", "AY": "aɪ", "B": "b", "CH": "tʃ",
    "D": "d", "DH": "ð", "EH": "ɛ", "ER": "ɝ", "EY": "eɪ", "F": "f", "G": "ɡ", "HH": "h",
    "IH": "ɪ", "IY": "i", "JH": "dʒ", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ŋ",
    "OW": "oʊ", "OY": "ɔɪ", "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ", "T": "t", "TH": "θ",
    "UH": "ʊ", "UW": "u", "V": "v", "W": "w", "Y": "j", "Z": "z", "ZH": "ʒ",
}  # fmt: skip
_UNSTRESSED = {"AH": "ə", "ER": "ɚ"}

# A common word whose (first) sound is the phone, for "say /ɔ/ as in 'or'".
EXAMPLE: dict[str, str] = {
    "AA": "father", "AE": "cat", "AH": "cup", "AO": "or", "AW": "now", "AY": "my", "B": "bed",
    "CH": "chair", "D": "day", "DH": "this", "EH": "red", "ER": "bird", "EY": "say", "F": "fish",
    "G": "go", "HH": "hat", "IH": "sit", "IY": "see", "JH": "jam", "K": "key", "L": "leg",
    "M": "man", "N": "no", "NG": "sing", "OW": "boat", "OY": "boy", "P": "pen", "R": "run",
    "S": "sun", "SH": "she", "T": "ten", "TH": "think", "UH": "book", "UW": "food", "V": "van",
    "W": "wet", "Y": "yes", "Z": "zoo", "ZH": "vision",
}  # fmt: skip

assert set(IPA) == set(PHONES) == set(EXAMPLE)


def ipa(phone: str) -> str:
    """The IPA of an ARPAbet phone, stress digit read where it changes the vowel (``AH0`` -> ``ə``).

    An unknown symbol comes back unchanged: a display never fails on it.
    """
    b = base(phone)
    if phone[-1:] == "0" and b in _UNSTRESSED:
        return _UNSTRESSED[b]
    return IPA.get(b, phone)


def word_ipa(phones: list[str]) -> str:
    """A word's IPA, primary stress marked before its stressed vowel (``ˈ``)."""
    return "".join(
        ("ˈ" if p.endswith("1") and len([q for q in phones if q[-1:] in "012"]) > 1 else "") + ipa(p) for p in phones
    )


def example(phone: str) -> str:
    """A key word for the phone's sound (``AO`` -> ``or``); empty when unknown."""
    return EXAMPLE.get(base(phone), "")
