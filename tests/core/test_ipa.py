"""The IPA table against the phone set the lexicon and the aligner use."""

from multipa_core import phones as ph
from multipa_core.ipa import EXAMPLE, IPA, example, ipa, word_ipa
from multipa_core.lexicon import default_lexicon


def test_every_phone_has_ipa_and_an_example():
    assert set(IPA) == set(ph.PHONES) == set(EXAMPLE)
    assert len(set(IPA.values())) == len(IPA)  # no two phones look the same to a learner


def test_lexicon_phones_all_map():
    lexicon = default_lexicon()
    seen = set()
    for word in ("orange", "think", "very", "measure", "judge", "boy", "about", "butter", "bird", "singing", "zx9"):
        for phone in lexicon.phones(word):
            seen.add(phone)
            assert ipa(phone) != phone, phone  # every symbol the lexicon emits is translated
    assert {"AH0", "ER0"} & seen


def test_stress_changes_the_vowel_and_is_marked():
    assert ipa("AH0") == "ə" and ipa("AH1") == "ʌ" and ipa("ER0") == "ɚ" and ipa("ER1") == "ɝ"
    assert ipa("AO1") == "ɔ" and example("AO1") == "or"
    assert word_ipa(["AO1", "R", "AH0", "N", "JH"]) == "ˈɔɹəndʒ"
    assert word_ipa(["K", "AE1", "T"]) == "kæt"  # one syllable: no mark
    assert ipa("XX") == "XX" and example("XX") == ""
