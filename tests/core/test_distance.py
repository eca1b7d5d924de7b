from hypothesis import given, strategies as st

from multipa_core.distance import align_pairs, levenshtein


def test_levenshtein_known_values():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein(["AH", "B"], ["AH", "B"]) == 0
    assert levenshtein(["K", "AE", "T"], ["K", "AA", "T", "S"]) == 2


def test_align_pairs_marks_substitution_deletion_insertion():
    pairs = align_pairs(["we", "call", "it", "bear"], ["we", "kol", "bear", "now"])
    assert pairs[0] == (0, 0)
    assert (3, 2) in pairs  # the exact match is kept rather than three substitutions
    assert (1, 1) in pairs or (2, 1) in pairs  # one of call/it is substituted by "kol"
    assert (1, None) in pairs or (2, None) in pairs  # the other is deleted
    assert (None, 3) in pairs  # "now" inserted


@given(st.lists(st.sampled_from("abc"), max_size=8), st.lists(st.sampled_from("abc"), max_size=8))
def test_alignment_cost_equals_levenshtein(a, b):
    pairs = align_pairs(a, b)
    cost = sum(1 if i is None or j is None else int(a[i] != b[j]) for i, j in pairs)
    assert cost == levenshtein(a, b)
    assert [i for i, _ in pairs if i is not None] == list(range(len(a)))
    assert [j for _, j in pairs if j is not None] == list(range(len(b)))
