"""The PyTorch Whisper encoder against CTranslate2's, on tiny random models CTranslate2 itself writes."""

from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from multipa_core.encoder_layers import EncoderLayers, mel_frames, read_variables
from multipa_core.errors import ModelFilesError

ctranslate2 = pytest.importorskip("ctranslate2")
WIDTH, LAYERS, HEADS, MELS = 16, 2, 2, 80


def _set(spec, path, value):
    """Set ``encoder/layer_0/ffn/linear_1/weight``-style paths on a CTranslate2 spec."""
    obj, parts = spec, path.split("/")
    for part in parts[:-1]:
        base, _, index = part.rpartition("_")
        obj = (
            getattr(obj, base)[int(index)]
            if index.isdigit() and isinstance(getattr(obj, base, None), list)
            else getattr(obj, part)
        )
    setattr(obj, parts[-1], value)


def write_tiny_whisper(folder: Path, quantization: str | None = None, seed: int = 0) -> Path:
    """A random Whisper model (2 encoder layers of width 16) saved by CTranslate2's own writer."""
    from ctranslate2.specs import whisper_spec

    rng = np.random.default_rng(seed)
    spec = whisper_spec.WhisperSpec(LAYERS, HEADS, 1, 2)

    def norm(prefix):
        _set(spec, f"{prefix}/gamma", (1 + 0.1 * rng.standard_normal(WIDTH)).astype(np.float32))
        _set(spec, f"{prefix}/beta", (0.1 * rng.standard_normal(WIDTH)).astype(np.float32))

    def linear(prefix, rows, cols, *kernel):
        _set(
            spec,
            f"{prefix}/weight",
            (rng.standard_normal((rows, cols, *kernel)) / np.sqrt(cols * (kernel[0] if kernel else 1))).astype(
                np.float32
            ),
        )
        _set(spec, f"{prefix}/bias", (0.05 * rng.standard_normal(rows)).astype(np.float32))

    def block(prefix, cross=False):
        norm(f"{prefix}/self_attention/layer_norm")
        linear(f"{prefix}/self_attention/linear_0", 3 * WIDTH, WIDTH)
        linear(f"{prefix}/self_attention/linear_1", WIDTH, WIDTH)
        if cross:
            norm(f"{prefix}/attention/layer_norm")
            for i, rows in enumerate((WIDTH, 2 * WIDTH, WIDTH)):
                linear(f"{prefix}/attention/linear_{i}", rows, WIDTH)
        norm(f"{prefix}/ffn/layer_norm")
        linear(f"{prefix}/ffn/linear_0", 4 * WIDTH, WIDTH)
        linear(f"{prefix}/ffn/linear_1", WIDTH, 4 * WIDTH)

    linear("encoder/conv1", WIDTH, MELS, 3)
    linear("encoder/conv2", WIDTH, WIDTH, 3)
    spec.encoder.position_encodings.encodings = (0.1 * rng.standard_normal((1500, WIDTH))).astype(np.float32)
    norm("encoder/layer_norm")
    for i in range(LAYERS):
        block(f"encoder/layer_{i}")
    spec.decoder.embeddings.weight = rng.standard_normal((8, WIDTH)).astype(np.float32)
    spec.decoder.position_encodings.encodings = rng.standard_normal((448, WIDTH)).astype(np.float32)
    norm("decoder/layer_norm")
    linear("decoder/projection", 8, WIDTH)
    block("decoder/layer_0", cross=True)
    spec.register_vocabulary([f"t{i}" for i in range(8)])
    spec.validate()
    spec.optimize(quantization=quantization)
    spec.save(str(folder))
    return folder


def load(folder: Path) -> EncoderLayers:
    with mock.patch("multipa_core.registry.resolve", return_value=folder):
        return EncoderLayers("tiny")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


def mel(frames=3000, seed=1):
    return np.random.default_rng(seed).standard_normal((MELS, frames)).astype(np.float32)


def test_reads_the_encoder_variables_ctranslate2_wrote(tiny):
    variables = read_variables(tiny / "model.bin")
    assert variables["encoder/conv1/weight"].shape == (WIDTH, MELS, 3)
    assert variables["encoder/layer_1/ffn/linear_1/weight"].shape == (WIDTH, 4 * WIDTH)
    assert int(variables["encoder/num_heads"]) == HEADS
    assert not any(name.startswith("decoder/") for name in variables)


def test_last_layer_matches_ctranslate2(tiny):
    encoder = load(tiny)
    assert (encoder.layers, encoder.heads, encoder.width) == (LAYERS, HEADS, WIDTH)
    x = mel()
    reference = np.asarray(
        ctranslate2.models.Whisper(str(tiny), device="cpu").encode(
            ctranslate2.StorageView.from_array(x[None]), to_cpu=True
        )
    )[0]
    hidden = encoder.hidden_states(x, 30 * 16000)
    assert len(hidden) == LAYERS
    mine = encoder._norm(hidden[-1], "encoder/layer_norm").numpy()
    np.testing.assert_allclose(mine, reference, atol=1e-4)


def test_int8_weights_are_dequantized(tiny, tmp_path):
    full = load(tiny).statistics(mel(400), 400 * 160)
    quantized = load(write_tiny_whisper(tmp_path, quantization="int8")).statistics(mel(400), 400 * 160)
    assert read_variables(tmp_path / "model.bin")["encoder/layer_0/ffn/linear_0/weight"].dtype == np.int8
    assert np.corrcoef(full.ravel(), quantized.ravel())[0, 1] > 0.999


def test_statistics_cover_the_audio_only(tiny):
    encoder = load(tiny)
    x = mel()
    stats = encoder.statistics(x, 16000)  # one second: 100 mel frames, 50 encoder frames
    assert stats.shape == (LAYERS, 2 * WIDTH) and stats.dtype == np.float32
    np.testing.assert_allclose(
        stats, encoder.statistics(x[:, :100], 16000), atol=1e-5
    )  # the frames past the audio are not read
    first = encoder.hidden_states(x, 16000)[0].numpy()
    assert first.shape == (50, WIDTH)
    np.testing.assert_allclose(stats[0], np.concatenate([first.mean(0), first.std(0)]), atol=1e-5)


def test_mel_frames():
    assert mel_frames(1) == 2
    assert mel_frames(16000) == 100
    assert mel_frames(16001) == 102
    assert mel_frames(60 * 16000) == 3000  # one 30 s window at most


@pytest.mark.parametrize("damage", ["missing", "truncated", "version", "not-whisper"])
def test_unreadable_models_fail_clearly(tiny, tmp_path, damage):
    folder = tmp_path / "model"
    folder.mkdir()
    raw = (tiny / "model.bin").read_bytes()
    if damage == "truncated":
        (folder / "model.bin").write_bytes(raw[: len(raw) // 2])
    elif damage == "version":
        (folder / "model.bin").write_bytes((99).to_bytes(4, "little") + raw[4:])
    elif damage == "not-whisper":
        (folder / "model.bin").write_bytes(
            raw[:4] + b"\x02\x00x\x00" + (1).to_bytes(4, "little") + (0).to_bytes(4, "little")
        )
    with pytest.raises(ModelFilesError):
        load(folder)
