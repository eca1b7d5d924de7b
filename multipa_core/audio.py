"""Audio in: WAV, FLAC or raw PCM16 to 16 kHz mono float32.

Limits (documented in docs/models.md and the protocol):

- at least :data:`MIN_SECONDS` of audio (shorter input holds no word to assess);
- at most :data:`MAX_SECONDS` (one Whisper window; the server splits longer turns);
- not silent: the loudest sample must reach :data:`SILENCE_PEAK` of full scale;
- all samples finite.
"""

from __future__ import annotations

import io
import os
from math import gcd
from pathlib import Path

import numpy as np

from .errors import (
    AudioDecodeError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
)

SAMPLE_RATE = 16_000
MIN_SECONDS = 0.25
MAX_SECONDS = 30.0
SILENCE_PEAK = 1e-3  # -60 dBFS: below this everywhere, there is nothing to hear


def load(source: str | os.PathLike[str] | bytes, *, sample_rate: int | None = None) -> np.ndarray:
    """Decode a file or encoded bytes (WAV, FLAC, OGG) to checked 16 kHz mono float32.

    Args:
        source: a path, or the bytes of an encoded file.
        sample_rate: only for raw PCM16 little-endian input given as a ``.pcm``/``.raw``
            path; encoded files carry their own rate.

    Raises:
        AudioError: a subclass naming what is wrong with the input.
    """
    import soundfile as sf

    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise EmptyAudioError("the audio bytes are empty")
        handle: io.BytesIO | str = io.BytesIO(bytes(source))
        name = "<bytes>"
    else:
        path = Path(source)
        name = str(path)
        if path.suffix.lower() in (".pcm", ".raw"):
            if sample_rate is None:
                raise AudioDecodeError(f"{name}: raw PCM needs its sample rate")
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise AudioDecodeError(f"{name}: cannot read raw PCM ({exc.strerror or exc})") from None
            return from_pcm16(raw, sample_rate)
        if not path.is_file():
            raise AudioDecodeError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise EmptyAudioError(f"{name}: the file is empty")
        handle = name
    try:
        data, rate = sf.read(handle, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, TypeError, ValueError) as exc:
        raise AudioDecodeError(f"{name}: not a readable WAV/FLAC/OGG file ({exc})") from None
    return prepare(data, rate)


def from_pcm16(data: bytes, sample_rate: int, *, channels: int = 1) -> np.ndarray:
    """Decode raw PCM16 little-endian bytes (interleaved channels) and check them."""
    if channels < 1:
        raise AudioDecodeError(f"channels must be at least 1, got {channels}")
    if len(data) % (2 * channels):
        raise AudioDecodeError(
            f"raw PCM16 must be a whole number of {channels}-channel 16-bit frames, got {len(data)} bytes"
        )
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return prepare(samples.reshape(-1, channels), sample_rate)


def prepare(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Downmix, resample to 16 kHz and check decoded samples (frames[, channels])."""
    if sample_rate <= 0:
        raise AudioDecodeError(f"sample rate must be positive, got {sample_rate}")
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 2:
        array = array.mean(axis=1)
    elif array.ndim != 1:
        raise AudioDecodeError(f"audio must be 1-D or (frames, channels), got shape {array.shape}")
    if array.size == 0:
        raise EmptyAudioError("the audio holds no samples")
    if not np.isfinite(array).all():
        raise NonFiniteAudioError("the audio contains NaN or infinite samples")
    seconds = array.size / sample_rate
    if seconds > MAX_SECONDS:
        raise AudioTooLongError(f"the audio lasts {seconds:.1f} s; the limit is {MAX_SECONDS:.0f} s per turn")
    array = resample(array, sample_rate, SAMPLE_RATE)
    array = np.clip(array, -1.0, 1.0)  # resampling overshoots near full scale (copy: never the caller's array)
    check(array)
    return array


def check(audio: np.ndarray) -> None:
    """Check 16 kHz mono samples against the limits of this module."""
    seconds = audio.size / SAMPLE_RATE
    if audio.size == 0:
        raise EmptyAudioError("the audio holds no samples")
    if not np.isfinite(audio).all():
        raise NonFiniteAudioError("the audio contains NaN or infinite samples")
    if seconds < MIN_SECONDS:
        raise AudioTooShortError(f"the audio lasts {seconds:.2f} s; at least {MIN_SECONDS} s is needed")
    if seconds > MAX_SECONDS:
        raise AudioTooLongError(f"the audio lasts {seconds:.1f} s; the limit is {MAX_SECONDS:.0f} s per turn")
    if float(np.max(np.abs(audio))) < SILENCE_PEAK:
        raise SilentAudioError("the audio is silent (peak below -60 dBFS)")


def resample(audio: np.ndarray, source_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited polyphase resampling (scipy), float32 out."""
    if source_rate == target_rate:
        return np.ascontiguousarray(audio, dtype=np.float32)
    from scipy.signal import resample_poly

    g = gcd(source_rate, target_rate)
    out = resample_poly(audio.astype(np.float64), target_rate // g, source_rate // g)
    return np.ascontiguousarray(out, dtype=np.float32)


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to PCM16 little-endian bytes (clipped)."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
