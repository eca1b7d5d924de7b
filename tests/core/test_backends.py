"""The optional bigger-model backends (HuBERT, Charsiu, RoBERTa) on tiny random models.

Every model is built here, randomly initialised, and saved into ``tmp_path``:
nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from multipa_core import phones, registry  # noqa: E402
from multipa_core.acoustic import HubertEmbedder, fit_frames, frame_count  # noqa: E402
from multipa_core.charsiu import CharsiuPosteriors, label_matrix, resample_frames  # noqa: E402
from multipa_core.errors import ModelFilesError  # noqa: E402

CONV = dict(
    conv_dim=(16,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2),  # 320x: 50 frames per second
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
)
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    **CONV,
)


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(16_000 * seconds))).astype(np.float32)


# --- HuBERT ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hubert")
    config = transformers.HubertConfig(feat_extract_norm="layer", conv_bias=True, **TINY)
    transformers.HubertModel(config).save_pretrained(path)
    return path


def test_registry_accepts_hubert_dir(hubert_dir: Path) -> None:
    assert registry.resolve(hubert_dir, kind="hubert") == hubert_dir


@pytest.mark.parametrize("seconds, frames", [(1.0, 50), (0.5, 25), (0.73, 37), (0.01, 1)])
def test_hubert_embedder_frames(hubert_dir: Path, seconds: float, frames: int) -> None:
    embed = HubertEmbedder(hubert_dir)
    out = embed(_audio(seconds))
    assert out.shape == (frames, 32) == (frame_count(int(16_000 * seconds)), embed.dim)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


def test_hubert_matches_whisper_frame_convention(hubert_dir: Path) -> None:
    from multipa_core.asr import encoder_frame_count

    for n in (1, 319, 320, 321, 16_000, 16_001, 48_000):
        assert frame_count(n) == encoder_frame_count(n)


def test_hubert_normalises_waveform_scale(hubert_dir: Path) -> None:
    # feat_extract_norm == "layer": zero mean, unit variance first, so scale does not matter.
    embed = HubertEmbedder(hubert_dir)
    audio = _audio(0.5)
    np.testing.assert_allclose(embed(audio), embed(audio * 7.0 + 0.01), atol=1e-4)


def test_hubert_preprocessor_config_decides_normalisation(hubert_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "hubert"
    shutil.copytree(hubert_dir, copy)
    (copy / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    assert HubertEmbedder(hubert_dir).normalize is True
    assert HubertEmbedder(copy).normalize is False


def test_hubert_rejects_other_checkpoint(tmp_path: Path) -> None:
    # A BERT directory is no HuBERT: the feature encoder weights are missing.
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, vocab_size=50
    )
    transformers.BertModel(config).save_pretrained(tmp_path)
    with pytest.raises(ModelFilesError, match="not a HuBERT"):
        HubertEmbedder(tmp_path)


def test_hubert_rejects_incomplete_weights(hubert_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "hubert"
    shutil.copytree(hubert_dir, copy)
    data = json.loads((copy / "config.json").read_text())
    data["num_hidden_layers"] = 3  # the weights hold only 2 layers: layer 2 would be random
    (copy / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelFilesError, match="encoder.layers.2"):
        HubertEmbedder(copy)


def test_fit_frames_pads_with_last_row() -> None:
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert fit_frames(x, 2).tolist() == [[0, 1], [2, 3]]
    assert fit_frames(x, 5).tolist() == [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]]


# --- Charsiu --------------------------------------------------------------------------


def _charsiu_labels() -> list[str]:
    # Charsiu-like: special tokens first, mixed case, one phone with stress digits.
    return ["[PAD]", "sil", "[UNK]"] + [p.lower() if i % 3 == 0 else p for i, p in enumerate(phones.PHONES)] + ["AH0"]


def _save_charsiu(path: Path, labels: list[str], **extra: object) -> Path:
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        feat_extract_norm="group",
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        **{**TINY, **extra},
    )
    transformers.Wav2Vec2ForAudioFrameClassification(config).save_pretrained(path)
    # Mimic a real Charsiu config, whose architecture is the Charsiu class name.
    data = json.loads((path / "config.json").read_text())
    data["architectures"] = ["Wav2Vec2ForFrameClassification"]
    (path / "config.json").write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def charsiu_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_charsiu(tmp_path_factory.mktemp("charsiu"), _charsiu_labels())


def test_registry_accepts_charsiu_dir(charsiu_dir: Path) -> None:
    assert registry.resolve(charsiu_dir, kind="charsiu") == charsiu_dir


@pytest.mark.parametrize("seconds, frames", [(1.0, 50), (0.37, 19)])
def test_charsiu_posteriors(charsiu_dir: Path, seconds: float, frames: int) -> None:
    post = CharsiuPosteriors(charsiu_dir)
    out = post(_audio(seconds))
    assert out.shape == (frames, phones.NUM_CLASSES)
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and (out >= 0).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert post.covered == sorted(phones.PHONES)


def test_charsiu_label_mapping() -> None:
    labels = _charsiu_labels()
    matrix, covered = label_matrix(dict(enumerate(labels)))
    assert len(covered) == 39
    assert matrix.sum(axis=1).tolist() == [1.0] * len(labels)  # every label goes somewhere once
    for special in ("[PAD]", "sil", "[UNK]"):
        assert matrix[labels.index(special), phones.BLANK] == 1.0
    ah = phones.index("AH") + 1
    assert matrix[labels.index("AH"), ah] == 1.0 and matrix[labels.index("AH0"), ah] == 1.0  # summed
    aa = phones.index("AA") + 1
    assert matrix[labels.index("aa"), aa] == 1.0  # lower case


def test_charsiu_too_few_phones(tmp_path: Path) -> None:
    labels = ["[PAD]", "sil"] + list(phones.PHONES[:20])
    _save_charsiu(tmp_path, labels)
    with pytest.raises(ModelFilesError, match="share only 20"):
        CharsiuPosteriors(tmp_path)


def test_charsiu_default_labels_rejected() -> None:
    with pytest.raises(ModelFilesError):
        label_matrix({0: "LABEL_0", 1: "LABEL_1"})


def test_charsiu_10ms_model_averaged_to_50_fps(tmp_path: Path) -> None:
    # Charsiu's 10 ms classifiers drop the last stride: 160 samples per frame.
    _save_charsiu(tmp_path, _charsiu_labels(), conv_stride=(5, 2, 2, 2, 2, 2, 1))
    post = CharsiuPosteriors(tmp_path)
    assert post.stride == 160
    out = post(_audio(1.0))
    assert out.shape == (50, phones.NUM_CLASSES)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_resample_frames_averages_pairs() -> None:
    x = np.arange(8, dtype=np.float32).reshape(4, 2)  # 4 frames at 160 samples each
    out = resample_frames(x, 160, 3)
    assert out.tolist() == [[1, 2], [5, 6], [6, 7]]  # pairs averaged; the empty tail takes the nearest frame


# --- RoBERTa text embedding -------------------------------------------------------------


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import ByteLevelBPETokenizer

    path = tmp_path_factory.mktemp("roberta")
    corpus = [
        "hello world, hello again.",
        "the quick brown fox jumps over the lazy dog",
        "pronunciation assessment of spoken english",
        "world again and again",
    ] * 5
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    bpe.save_model(str(path))  # vocab.json, merges.txt
    tokenizer = transformers.RobertaTokenizerFast.from_pretrained(str(path))  # reads vocab.json, merges.txt
    assert len(tokenizer) > 100, "the tiny BPE vocabulary did not load"
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    transformers.RobertaModel(config).save_pretrained(path)
    return path


def test_registry_accepts_roberta_dir(roberta_dir: Path) -> None:
    assert registry.resolve(roberta_dir, kind="text") == roberta_dir


def test_roberta_text_embedder(roberta_dir: Path) -> None:
    from multipa_core.textemb import TextEmbedder

    embed = TextEmbedder(str(roberta_dir))
    out = embed(["hello", "world", "again"])
    assert out.shape == (3, 32) == (3, embed.dim)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert (np.abs(out).sum(axis=1) > 0).all(), "every word should get tokens"
    assert embed([]).shape == (0, 32)


def test_roberta_multi_token_words_pooled(roberta_dir: Path) -> None:
    from multipa_core.textemb import TextEmbedder

    embed = TextEmbedder(str(roberta_dir))
    words = ["hello", "xylophonezq", "world"]  # the middle word is out of the tiny vocabulary
    encoded = embed.tokenizer(words, is_split_into_words=True)
    word_ids = encoded.word_ids(0)
    assert word_ids.count(1) > 1, "the test word should split into several tokens"
    # Every word is preceded by a space-marked token (add_prefix_space), as in running text.
    running = embed.tokenizer(" hello xylophonezq world", add_special_tokens=False).input_ids
    assert encoded.input_ids[1:-1] == running
    out = embed(words)
    assert out.shape == (3, 32) and np.isfinite(out).all()
    # Word 1's vector is the mean of its sub-word token vectors.
    with torch.inference_mode():
        hidden = embed.model(**embed.tokenizer(words, is_split_into_words=True, return_tensors="pt")).last_hidden_state[
            0
        ]
    positions = [i for i, w in enumerate(word_ids) if w == 1]
    np.testing.assert_allclose(out[1], hidden[positions].mean(0).numpy(), atol=1e-5)


# --- registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hubert", "charsiu", "text"])
def test_registry_rejects_dir_without_weights(tmp_path: Path, kind: str) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(ModelFilesError, match="lacks model.safetensors"):
        registry.resolve(tmp_path, kind=kind)
