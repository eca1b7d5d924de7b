"""Unit tests for multipa_core.lexicon (CMUdict is loaded once, about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from multipa_core import phones as phone_set
from multipa_core.lexicon import Lexicon, default_lexicon, letter_to_sound, number_words

CORPUS = (
    "HELLO\tHH EH1 L OW0\n"  # CMUdict's first entry is HH AH0 L OW1
    "HELLO\tHH AH0 L OW1\n"  # a later pronunciation never wins
    "ZIPPLE\tZ IH P AH0 L\n"  # bare vowel (as in speechocean762): gets stress 0
    "\n"
    "BROKENLINE\n"
)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lexicon") / "lexicon.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lexicon(corpus_file: Path) -> Lexicon:
    return Lexicon(corpus_file)


def _valid(phones: list[str]) -> bool:
    """Every phone known; vowels carry a stress digit, consonants none."""
    for phone in phones:
        if not phone_set.is_known(phone):
            return False
        if (phone_set.base(phone) in phone_set.VOWELS) != (phone[-1] in "012"):
            return False
    return True


def test_corpus_first_pronunciation_beats_cmudict(lexicon: Lexicon, tmp_path: Path) -> None:
    assert lexicon.phones("hello") == ["HH", "EH1", "L", "OW0"]
    assert lexicon.source("Hello") == "corpus"
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert Lexicon(empty).phones("hello") == ["HH", "AH0", "L", "OW1"]


def test_corpus_bare_vowel_gets_stress(lexicon: Lexicon) -> None:
    assert lexicon.phones("zipple") == ["Z", "IH0", "P", "AH0", "L"]


def test_cmudict_for_words_missing_from_corpus(lexicon: Lexicon) -> None:
    assert lexicon.phones("we") == ["W", "IY1"]
    assert lexicon.source("we") == "cmudict"
    assert lexicon.phones("x-ray") == ["EH1", "K", "S", "R", "EY2"]  # hyphenated CMUdict entry


def test_missing_default_corpus_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTIPA_DATA", str(tmp_path))
    lex = Lexicon()
    assert lex.corpus_path is None
    assert lex.source("we") == "cmudict"


def test_without_cmudict_everything_goes_to_rules(corpus_file: Path) -> None:
    lex = Lexicon(corpus_file, use_cmudict=False)
    assert lex.source("hello") == "corpus"
    assert lex.source("we") == "rules"
    assert lex.phones("we")


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("42", "forty two"),
        ("0", "zero"),
        ("3rd", "third"),
        ("2nd", "second"),
        ("10th", "tenth"),
        ("21st", "twenty first"),
        ("1,000", "one thousand"),
        ("1999", "nineteen ninety nine"),
        ("1905", "nineteen oh five"),
        ("2005", "two thousand five"),
        ("1990s", "nineteen nineties"),
        ("3.25", "three point two five"),
        ("999,999,999", "nine hundred ninety nine million nine hundred ninety nine thousand nine hundred ninety nine"),
        ("1,000,000,000", "one billion"),
        ("007", "zero zero seven"),
        ("abc", ""),
    ],
)
def test_number_words(token: str, words: str) -> None:
    assert number_words(token) == words.split()


def test_numbers_are_spelled_and_looked_up(lexicon: Lexicon) -> None:
    assert lexicon.phones("42") == lexicon.phones("forty") + lexicon.phones("two")
    assert lexicon.source("42") == "number"
    assert lexicon.phones("3rd") == lexicon.phones("third")
    assert lexicon.phones("3.5") == lexicon.phones("three") + lexicon.phones("point") + lexicon.phones("five")
    assert _valid(lexicon.phones("1" * 5000))  # digit by digit, no int() blow-up


def test_possessive_and_contractions(lexicon: Lexicon) -> None:
    # "zipple" is only in the tmp corpus, so these must be derived.
    assert lexicon.phones("zipple's") == lexicon.phones("zipple") + ["Z"]
    assert lexicon.phones("Zipple’s") == lexicon.phones("zipple's")  # curly apostrophe
    assert lexicon.phones("zipples") == lexicon.phones("zipple") + ["Z"]
    assert lexicon.phones("zipple'll") == lexicon.phones("zipple") + ["AH0", "L"]
    assert lexicon.source("zipple's") == "corpus"
    assert lexicon.phones("hello's") == ["HH", "EH1", "L", "OW0", "Z"]


def test_compounds(lexicon: Lexicon) -> None:
    assert lexicon.phones("sunflowerseed") == lexicon.phones("sunflower") + lexicon.phones("seed")
    assert lexicon.source("sunflowerseed") == "compound"
    assert lexicon.phones("zipple-hello") == lexicon.phones("zipple") + lexicon.phones("hello")
    assert lexicon.source("zipple-hello") == "compound"
    assert lexicon.phones("mp3") == lexicon.phones("mp") + lexicon.phones("three")


@pytest.mark.parametrize("word", ["blorptastic", "zorblatt", "recieve", "Zxqwv", "flibbertigibbet"])
def test_rules_for_made_up_words(lexicon: Lexicon, word: str) -> None:
    phones = lexicon.phones(word)
    assert lexicon.source(word) == "rules"
    assert phones and _valid(phones)
    assert any(p.endswith("1") for p in phones)


def test_letter_to_sound_examples() -> None:
    assert letter_to_sound("cake") == ["K", "EY1", "K"]
    assert letter_to_sound("nation") == ["N", "AE1", "SH", "AH0", "N"]
    assert letter_to_sound("phone") == ["F", "OW1", "N"]
    assert letter_to_sound("quick") == ["K", "W", "IH1", "K"]
    assert letter_to_sound("happy") == ["HH", "AE1", "P", "IY0"]
    assert letter_to_sound("yes") == ["Y", "EH1", "S"]
    assert letter_to_sound("face") == ["F", "EY1", "S"]
    assert letter_to_sound("nhs") == ["EH1", "N", "EY1", "CH", "EH1", "S"]  # no vowel: spelled


def test_case_and_punctuation_do_not_matter(lexicon: Lexicon) -> None:
    expected = lexicon.phones("we")
    for variant in ("WE", "We,", '"we"', "(we)", "we!", " we "):
        assert lexicon.phones(variant) == expected
    assert lexicon.phones("Café") == lexicon.phones("cafe")


@pytest.mark.parametrize("text", ["", " ", "???", "...", "-", "'", "😀", "—", "中文"])
def test_no_letters_or_digits_gives_nothing(lexicon: Lexicon, text: str) -> None:
    assert lexicon.phones(text) == []
    assert lexicon.source(text) == "none"


def test_sentence(lexicon: Lexicon) -> None:
    assert lexicon.sentence(["Hello", "we", "!"]) == [lexicon.phones("hello"), lexicon.phones("we"), []]


def test_phones_returns_a_fresh_list(lexicon: Lexicon) -> None:
    lexicon.phones("we").append("XX")
    assert lexicon.phones("we") == ["W", "IY1"]


def test_default_lexicon_is_shared() -> None:
    assert default_lexicon() is default_lexicon()


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_any_text_gives_known_phones(lexicon: Lexicon, text: str) -> None:
    phones = lexicon.phones(text)
    assert _valid(phones)
    assert lexicon.source(text) in ("corpus", "cmudict", "number", "compound", "rules", "none")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x24F), max_size=30))
def test_latin_text_with_a_letter_gives_phones(lexicon: Lexicon, text: str) -> None:
    phones = lexicon.phones(text)
    assert _valid(phones)
    if any(c.isascii() and c.isalnum() for c in text):
        assert phones


def test_explicit_missing_corpus_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Lexicon(tmp_path / "nope.txt")


@pytest.mark.parametrize("text", ["a" * 100_000, "x" + "'s" * 5000, "a1" * 5000, "abc-" * 5000, "b" * 39 + "a"])
def test_pathological_input_is_bounded(lexicon: Lexicon, text: str) -> None:
    phones = lexicon.phones(text)
    assert phones and _valid(phones)


def test_warm_up_loads_cmudict_before_any_turn(corpus_file: Path) -> None:
    from multipa_core import lexicon as module

    module._cmudict.cache_clear()
    Lexicon(corpus_file, use_cmudict=False).warm_up()
    assert module._cmudict.cache_info().currsize == 0, "no CMUdict asked for, none loaded"
    Lexicon(corpus_file).warm_up()
    assert module._cmudict.cache_info().currsize == 1, "loaded at warm-up, not inside the first turn with a rare word"
