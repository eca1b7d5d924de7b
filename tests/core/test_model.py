"""The scoring network: shapes, masking, determinism, checkpoint round trip."""

import numpy as np
import pytest
import torch

from multipa_core import phones as ph
from multipa_core.features import PHONE_SCALARS, PHONE_VECTOR, WORD_SCALARS, TurnFeatures, collate
from multipa_core.model import SENTENCE_HEADS, WORD_HEADS, ScorerConfig, build_scorer

CFG = ScorerConfig(acoustic_dim=16, text_dim=8, d_model=16, layers=1, heads=2)


def random_turn(rng, frames, words, phones_per_word=2):
    P = words * phones_per_word
    spans = np.array([[i * frames // words, (i + 1) * frames // words] for i in range(words)])
    return TurnFeatures(
        frames=rng.normal(size=(frames, 16)).astype(np.float32),
        word_text=rng.normal(size=(words, 8)).astype(np.float32),
        word_text_other=rng.normal(size=(words, 8)).astype(np.float32),
        word_phones=rng.random((words, PHONE_VECTOR)).astype(np.float32),
        word_scalars=rng.random((words, len(WORD_SCALARS))).astype(np.float32),
        word_frames=spans.astype(np.int64),
        phone_post=rng.dirichlet(np.ones(ph.NUM_CLASSES), size=P).astype(np.float32),
        phone_onehot=ph.one_hot([ph.PHONES[i % 39] for i in range(P)]),
        phone_scalars=rng.random((P, len(PHONE_SCALARS))).astype(np.float32),
        phone_word=np.repeat(np.arange(words), phones_per_word).astype(np.int64),
        phone_frames=np.zeros((P, 2), np.int64),
    )


def run(net, items):
    net.eval()
    with torch.no_grad():
        return net(collate(items))


def test_output_shapes():
    torch.manual_seed(0)
    net = build_scorer(CFG)
    rng = np.random.default_rng(0)
    out = run(net, [random_turn(rng, 40, 3), random_turn(rng, 25, 5)])
    assert out["sentence"].shape == (2, len(SENTENCE_HEADS))
    assert out["word"].shape == (2, 5, len(WORD_HEADS))
    assert torch.isfinite(out["sentence"]).all()
    assert not out["word"][0, 3:].any()  # padded words are zero


def test_padding_does_not_change_results():
    torch.manual_seed(1)
    net = build_scorer(CFG)
    rng = np.random.default_rng(1)
    small, big = random_turn(rng, 30, 2), random_turn(rng, 90, 7, phones_per_word=3)
    alone = run(net, [small])
    batched = run(net, [small, big])
    torch.testing.assert_close(alone["sentence"][0], batched["sentence"][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone["word"][0], batched["word"][0, :2], atol=1e-5, rtol=1e-4)


def test_deterministic_with_a_seed():
    rng = np.random.default_rng(2)
    item = random_turn(rng, 20, 2)
    outs = []
    for _ in range(2):
        torch.manual_seed(42)
        outs.append(run(build_scorer(CFG), [item])["sentence"])
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


def test_turn_without_words():
    torch.manual_seed(3)
    net = build_scorer(CFG)
    rng = np.random.default_rng(3)
    empty = random_turn(rng, 20, 1)
    empty = TurnFeatures(**{k: (v[:0] if k != "frames" else v) for k, v in vars(empty).items()})
    out = run(net, [empty, random_turn(rng, 30, 2)])
    assert torch.isfinite(out["sentence"]).all()


def test_checkpoint_round_trip(tmp_path):
    from multipa_core.scorer import Scorer, needs_improvement, save_scorer, training_thresholds

    torch.manual_seed(4)
    net = build_scorer(CFG)
    labels = np.array([[10, 10, 10], [6, 10, 7], [2, 5, 3]], dtype=np.float32)
    thresholds = training_thresholds(labels)
    assert thresholds["accuracy"] == pytest.approx(labels[:, 0].mean() - labels[:, 0].std())
    path = tmp_path / "scorer.pt"
    save_scorer(
        str(path),
        [net, build_scorer(CFG)],
        CFG,
        thresholds=thresholds,
        floor={"accuracy": 1.0},
        aligner="multipa-aligner",
        text_model="minilm-l6",
        metadata={},
    )
    scorer = Scorer(str(path))
    rng = np.random.default_rng(4)
    item = random_turn(rng, 30, 3)
    scores = scorer.score([item])[0]
    assert set(scores.sentence) == set(SENTENCE_HEADS) and len(scores.words) == 3
    assert all(0.0 <= v <= 10.0 for v in scores.sentence.values())
    assert needs_improvement({"accuracy": 0.0, "stress": 10.0, "total": 10.0}, thresholds)
    assert not needs_improvement({"accuracy": 10.0, "stress": 10.0, "total": 10.0}, thresholds)


def test_text_ablated_network_needs_no_text_embeddings(tmp_path):
    """A network trained without text reads no text features: zero-width ones score the
    same, and its checkpoint tells the pipeline not to load a text model."""
    from dataclasses import replace

    from multipa_core.scorer import Scorer, save_scorer
    from multipa_core.textemb import NO_TEXT, text_embedder

    cfg = replace(CFG, ablate=("text",))
    torch.manual_seed(5)
    net = build_scorer(cfg)
    rng = np.random.default_rng(5)
    item = random_turn(rng, 30, 3)
    blank = TurnFeatures(
        **{**vars(item), "word_text": np.zeros((3, 0), np.float32), "word_text_other": np.zeros((3, 0), np.float32)}
    )
    with_text, without = run(net, [item]), run(net, [blank])
    torch.testing.assert_close(with_text["sentence"], without["sentence"], atol=0, rtol=0)
    torch.testing.assert_close(with_text["word"], without["word"], atol=0, rtol=0)

    path = tmp_path / "scorer.pt"
    save_scorer(
        str(path), [net], cfg, thresholds={}, floor={}, aligner="multipa-aligner", text_model="minilm-l6", metadata={}
    )
    assert Scorer(str(path)).text_model == NO_TEXT
    vectors = text_embedder(NO_TEXT).many([["a", "b"], []])
    assert [v.shape for v in vectors] == [(2, 0), (0, 0)]


def test_a_bags_word_stage_corrects_each_network_and_averages(tmp_path):
    from multipa_core.scorer import Scorer, save_scorer
    from multipa_core.word_model import INPUTS, WordModel, with_network, word_inputs

    torch.manual_seed(6)
    nets = [build_scorer(CFG), build_scorer(CFG)]
    rng = np.random.default_rng(6)
    hidden = 5
    member = {
        "w1": rng.normal(size=(len(INPUTS), hidden)),
        "b1": rng.normal(size=hidden),
        "w2": rng.normal(size=(hidden, 3)) * 0.1,
        "b2": np.zeros(3),
    }
    stage = WordModel(mean=np.zeros(len(INPUTS)), std=np.ones(len(INPUTS)), members=[member])
    common = dict(thresholds={}, floor={}, aligner="multipa-aligner", text_model="minilm-l6", metadata={})
    plain, staged = tmp_path / "plain.pt", tmp_path / "staged.pt"
    save_scorer(str(plain), nets, CFG, **common)
    save_scorer(str(staged), nets, CFG, **common, word_model={"all": stage.to_state(), "folds": {}})
    item = random_turn(rng, 30, 4)
    (before,), (rows,) = Scorer(str(plain)).score_with_inputs([item])
    (after,), (rows_again,) = Scorer(str(staged)).score_with_inputs([item])
    assert before.sentence == after.sentence  # the stage touches the word scores only
    assert np.allclose(rows, rows_again)
    each = [run(net, [item]) for net in nets]
    expected = np.mean(
        [
            WordModel.from_state(stage.to_state()).predict(
                with_network(rows, (o["sentence"][0].numpy() * 10).clip(0, 10), (o["word"][0].numpy() * 10).clip(0, 10))
            )
            for o in each
        ],
        axis=0,
    )
    got = np.array([[w[h] for h in WORD_HEADS] for w in after.words])
    assert np.allclose(got, expected, atol=1e-3)
    assert not np.allclose(got, np.array([[w[h] for h in WORD_HEADS] for w in before.words]), atol=1e-3)
    assert rows.shape == (4, len(INPUTS)) and np.allclose(rows, word_inputs(item, rows[0, 3:7] * 10, rows[:, :3] * 10))
