"""Unit tests for multipa_core.audio (files written with soundfile into tmp_path)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings, strategies as st

from multipa_core import audio
from multipa_core.errors import (
    AudioDecodeError,
    AudioError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
)

RATES = (8000, 22050, 44100, 48000)
# (container, soundfile subtype): FLAC holds integer PCM only.
ENCODINGS = (("wav", "PCM_16"), ("wav", "FLOAT"), ("flac", "PCM_16"), ("flac", "PCM_24"))
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "speechocean762"


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(samples: np.ndarray, rate: int = audio.SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1.0 / rate)[int(np.argmax(spectrum))])


def expect(exc_info: pytest.ExceptionInfo[BaseException], cls: type[AudioError], code: str) -> None:
    err = exc_info.value
    assert type(err) is cls
    assert isinstance(err, AudioError)
    assert err.code == code
    assert str(err).strip()


def expected_length(frames: int, rate: int) -> int:
    return int(round(frames * audio.SAMPLE_RATE / rate))


# --- decoding and resampling ----------------------------------------------------------


@pytest.mark.parametrize("container,subtype", ENCODINGS)
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", (1, 2))
def test_files_decode_to_16k_mono_float32(
    tmp_path: Path, container: str, subtype: str, rate: int, channels: int
) -> None:
    freq = 440.0
    mono = sine(freq, 1.0, rate)
    data = mono if channels == 1 else np.stack([mono, mono], axis=1)
    path = tmp_path / f"tone.{container}"
    sf.write(path, data, rate, subtype=subtype)

    out = audio.load(path)

    assert out.dtype == np.float32
    assert out.ndim == 1
    assert abs(out.size - expected_length(mono.size, rate)) <= 2
    assert np.isfinite(out).all()
    assert np.max(np.abs(out)) <= 1.0
    assert abs(peak_frequency(out) - freq) <= 2.0
    # amplitude is kept (away from the resampler's edges)
    middle = out[out.size // 4 : -out.size // 4]
    assert np.max(np.abs(middle)) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("freq", (250.0, 1000.0, 3000.0))
def test_resampling_keeps_the_frequency(tmp_path: Path, rate: int, freq: float) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, sine(freq, 0.8, rate), rate, subtype="PCM_16")
    out = audio.load(path)
    assert abs(peak_frequency(out) - freq) <= 2.0


def test_stereo_is_downmixed_by_averaging(tmp_path: Path) -> None:
    left = sine(300.0, 0.5, audio.SAMPLE_RATE, 0.6)
    right = sine(700.0, 0.5, audio.SAMPLE_RATE, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), audio.SAMPLE_RATE, subtype="FLOAT")
    out = audio.load(path)
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-6)


def test_16k_float_wav_is_returned_unchanged(tmp_path: Path) -> None:
    samples = sine(440.0, 0.5, audio.SAMPLE_RATE)
    path = tmp_path / "same.wav"
    sf.write(path, samples, audio.SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(audio.load(path), samples)


@pytest.mark.parametrize("fmt", ("WAV", "FLAC"))
def test_load_encoded_bytes(fmt: str) -> None:
    samples = sine(440.0, 0.5, 22050)
    buffer = io.BytesIO()
    sf.write(buffer, samples, 22050, format=fmt, subtype="PCM_16")
    out = audio.load(buffer.getvalue())
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - expected_length(samples.size, 22050)) <= 2
    assert abs(peak_frequency(out) - 440.0) <= 2.0


def test_load_accepts_bytearray_and_memoryview() -> None:
    buffer = io.BytesIO()
    sf.write(buffer, sine(440.0, 0.5, 16000), 16000, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    expected = audio.load(data)
    np.testing.assert_array_equal(audio.load(bytearray(data)), expected)
    np.testing.assert_array_equal(audio.load(memoryview(data)), expected)


@pytest.mark.parametrize("rate", (8000, 16000, 44100))
def test_from_pcm16(rate: int) -> None:
    samples = sine(440.0, 0.5, rate)
    data = audio.to_pcm16(samples)
    assert len(data) == 2 * samples.size
    out = audio.from_pcm16(data, rate)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - expected_length(samples.size, rate)) <= 2
    assert abs(peak_frequency(out) - 440.0) <= 2.0
    if rate == audio.SAMPLE_RATE:
        np.testing.assert_allclose(out, samples, atol=1e-4)


def test_from_pcm16_interleaved_stereo() -> None:
    left = sine(440.0, 0.5, 16000, 0.4)
    right = np.zeros_like(left)
    interleaved = np.stack([left, right], axis=1).reshape(-1)
    out = audio.from_pcm16(audio.to_pcm16(interleaved), 16000, channels=2)
    assert out.size == left.size
    np.testing.assert_allclose(out, left / 2, atol=1e-4)


@pytest.mark.parametrize("suffix", (".pcm", ".raw", ".PCM"))
def test_raw_pcm_path_with_sample_rate(tmp_path: Path, suffix: str) -> None:
    samples = sine(440.0, 0.5, 8000)
    path = tmp_path / f"speech{suffix}"
    path.write_bytes(audio.to_pcm16(samples))
    out = audio.load(path, sample_rate=8000)
    assert out.dtype == np.float32
    assert abs(out.size - expected_length(samples.size, 8000)) <= 2
    assert abs(peak_frequency(out) - 440.0) <= 2.0
    np.testing.assert_array_equal(out, audio.from_pcm16(path.read_bytes(), 8000))


def test_to_pcm16_clips() -> None:
    data = audio.to_pcm16(np.array([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=np.float32))
    assert np.frombuffer(data, dtype="<i2").tolist() == [-32767, -32767, 0, 32767, 32767]


def test_full_scale_overshoot_is_clipped() -> None:
    # an alternating full-scale signal upsampled overshoots +-1 without clipping
    data = np.resize(np.array([32767, 32767, -32768, -32768], dtype="<i2"), 8000).tobytes()
    out = audio.from_pcm16(data, 8000)
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_prepare_does_not_modify_the_callers_array() -> None:
    samples = sine(440.0, 0.5, audio.SAMPLE_RATE, 1.0)
    samples[10] = 1.5
    before = samples.copy()
    out = audio.prepare(samples, audio.SAMPLE_RATE)
    np.testing.assert_array_equal(samples, before)
    assert out.max() <= 1.0


# --- errors ---------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError) as info:
        audio.load(path)
    expect(info, EmptyAudioError, "audio_empty")


@pytest.mark.parametrize("name", ("notes.wav", "notes.flac"))
def test_text_file_renamed(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("this is not audio, just some text\n" * 20)
    with pytest.raises(AudioDecodeError) as info:
        audio.load(path)
    expect(info, AudioDecodeError, "audio_decode")


def test_garbage_bytes() -> None:
    with pytest.raises(AudioDecodeError) as info:
        audio.load(b"RIFF....WAVEnot really")
    expect(info, AudioDecodeError, "audio_decode")


@pytest.mark.parametrize("name", ("missing.wav", "missing.flac", "missing.pcm"))
def test_missing_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(AudioDecodeError) as info:
        audio.load(tmp_path / name, sample_rate=16000)
    expect(info, AudioDecodeError, "audio_decode")


def test_directory_is_not_audio(tmp_path: Path) -> None:
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(AudioDecodeError) as info:
        audio.load(folder)
    expect(info, AudioDecodeError, "audio_decode")


def test_zero_samples_file(tmp_path: Path) -> None:
    path = tmp_path / "none.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 16000, subtype="PCM_16")
    assert path.stat().st_size > 0  # a header, no frames
    with pytest.raises(EmptyAudioError) as info:
        audio.load(path)
    expect(info, EmptyAudioError, "audio_empty")


@pytest.mark.parametrize(
    "call",
    (
        lambda: audio.prepare(np.zeros(0, dtype=np.float32), 16000),
        lambda: audio.prepare(np.zeros((0, 2), dtype=np.float32), 44100),
        lambda: audio.from_pcm16(b"", 16000),
    ),
    ids=("prepare-mono", "prepare-stereo", "pcm"),
)
def test_zero_samples(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EmptyAudioError) as info:
        call()
    expect(info, EmptyAudioError, "audio_empty")


@pytest.mark.parametrize("rate", (8000, 16000, 48000))
def test_all_zeros_is_silent(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(rate, dtype=np.float32), rate, subtype="PCM_16")
    with pytest.raises(SilentAudioError) as info:
        audio.load(path)
    expect(info, SilentAudioError, "audio_silent")
    with pytest.raises(SilentAudioError):
        audio.from_pcm16(bytes(2 * rate), rate)


def test_near_silence_is_silent() -> None:
    with pytest.raises(SilentAudioError) as info:
        audio.prepare(sine(440.0, 1.0, 16000, amplitude=audio.SILENCE_PEAK / 2), 16000)
    expect(info, SilentAudioError, "audio_silent")


@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("rate", (16000, 44100))
def test_non_finite(bad: float, rate: int) -> None:
    samples = sine(440.0, 1.0, rate)
    samples[rate // 2] = bad
    with pytest.raises(NonFiniteAudioError) as info:
        audio.prepare(samples, rate)
    expect(info, NonFiniteAudioError, "audio_non_finite")


def test_non_finite_float_wav(tmp_path: Path) -> None:
    samples = sine(440.0, 1.0, 16000)
    samples[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError) as info:
        audio.load(path)
    expect(info, NonFiniteAudioError, "audio_non_finite")


@pytest.mark.parametrize("rate", (8000, 16000, 44100))
def test_too_short(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, sine(440.0, 0.1, rate), rate, subtype="PCM_16")
    with pytest.raises(AudioTooShortError) as info:
        audio.load(path)
    expect(info, AudioTooShortError, "audio_too_short")


def test_just_long_enough() -> None:
    out = audio.prepare(sine(440.0, audio.MIN_SECONDS, 16000), 16000)
    assert out.size == int(audio.MIN_SECONDS * 16000)


@pytest.mark.parametrize("rate", (8000, 16000))
def test_too_long(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "long.flac"
    sf.write(path, sine(440.0, 31.0, rate), rate, subtype="PCM_16")
    with pytest.raises(AudioTooLongError) as info:
        audio.load(path)
    expect(info, AudioTooLongError, "audio_too_long")


def test_odd_length_pcm() -> None:
    with pytest.raises(AudioDecodeError) as info:
        audio.from_pcm16(b"\x00\x01" * 4000 + b"\x00", 16000)
    expect(info, AudioDecodeError, "audio_decode")


def test_pcm_not_whole_stereo_frames() -> None:
    with pytest.raises(AudioDecodeError) as info:
        audio.from_pcm16(b"\x00\x01" * 4001, 16000, channels=2)
    expect(info, AudioDecodeError, "audio_decode")


def test_odd_length_pcm_path(tmp_path: Path) -> None:
    path = tmp_path / "odd.pcm"
    path.write_bytes(b"\x10\x20" * 4000 + b"\x00")
    with pytest.raises(AudioDecodeError) as info:
        audio.load(path, sample_rate=16000)
    expect(info, AudioDecodeError, "audio_decode")


def test_raw_pcm_path_needs_sample_rate(tmp_path: Path) -> None:
    path = tmp_path / "speech.pcm"
    path.write_bytes(audio.to_pcm16(sine(440.0, 0.5, 16000)))
    with pytest.raises(AudioDecodeError) as info:
        audio.load(path)
    expect(info, AudioDecodeError, "audio_decode")


@pytest.mark.parametrize("rate", (0, -16000))
def test_bad_sample_rate(rate: int) -> None:
    with pytest.raises(AudioDecodeError) as info:
        audio.from_pcm16(bytes(8000), rate)
    expect(info, AudioDecodeError, "audio_decode")


def test_bad_shape() -> None:
    with pytest.raises(AudioDecodeError) as info:
        audio.prepare(np.zeros((10, 2, 2), dtype=np.float32), 16000)
    expect(info, AudioDecodeError, "audio_decode")


# --- a real utterance -----------------------------------------------------------------


def test_shared_speechocean762_utterance() -> None:
    path = SHARED / "audio" / "000010011.flac"
    if not path.is_file():
        pytest.skip(f"shared speechocean762 data not found at {path}")
    info = sf.info(str(path))
    out = audio.load(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - expected_length(info.frames, info.samplerate)) <= 2
    assert audio.MIN_SECONDS <= out.size / audio.SAMPLE_RATE <= audio.MAX_SECONDS
    assert np.isfinite(out).all()
    assert 0.0 < np.max(np.abs(out)) <= 1.0


# --- property -------------------------------------------------------------------------

PROPERTY_RATES = st.sampled_from((8000, 16000, 24000, 32000, 44100, 48000))
# arbitrary bytes (mostly short), and longer audio tiled from an arbitrary pattern
ARBITRARY = st.binary(max_size=4096).map(lambda b: b[: len(b) // 2 * 2])
TILED = st.tuples(
    st.lists(st.integers(-32768, 32767), min_size=1, max_size=64),
    st.integers(0, 30_000),
).map(lambda pair: np.resize(np.array(pair[0], dtype="<i2"), pair[1]).tobytes())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(ARBITRARY, TILED), rate=PROPERTY_RATES)
def test_from_pcm16_property(data: bytes, rate: int) -> None:
    assert len(data) % 2 == 0
    try:
        out = audio.from_pcm16(data, rate)
    except AudioError as err:
        assert type(err) is not AudioError  # always a specific subclass
        assert str(err)
        return
    assert out.dtype == np.float32
    assert out.ndim == 1
    assert np.isfinite(out).all()
    assert out.min() >= -1.0 and out.max() <= 1.01
    assert audio.MIN_SECONDS * audio.SAMPLE_RATE <= out.size <= audio.MAX_SECONDS * audio.SAMPLE_RATE


def test_empty_bytes_and_zero_channels_are_typed_errors():
    with pytest.raises(EmptyAudioError):
        audio.load(b"")
    with pytest.raises(AudioDecodeError):
        audio.from_pcm16(b"\x00\x00", 16000, channels=0)
