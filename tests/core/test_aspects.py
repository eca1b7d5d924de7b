"""One aspect schema: the heads, the labels and the tables derive from it."""

from multipa_core import aspects, data, dataset, model


def test_heads_and_labels_derive_from_the_schema():
    assert model.SENTENCE_HEADS == aspects.SENTENCE_NAMES == ("accuracy", "fluency", "prosody", "total")
    assert model.WORD_HEADS == aspects.WORD_NAMES == ("accuracy", "stress", "total")
    assert dataset.SENTENCE_LABELS == data.SENTENCE_ASPECTS == ("accuracy", "fluency", "prosodic", "total")
    assert dataset.WORD_LABELS == data.WORD_ASPECTS == aspects.WORD_LABELS


def test_the_network_has_one_output_per_aspect():
    import torch

    net = model.build_scorer(model.ScorerConfig())
    assert net.sentence_head.out_features == len(aspects.SENTENCE)
    assert isinstance(net.sentence_head, torch.nn.Linear)


def test_every_aspect_has_a_level_and_a_range():
    for level, items in aspects.LEVELS.items():
        for a in items:
            assert a.level == level and a.low < a.high
