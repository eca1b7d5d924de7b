"""Audio in the SDK: read files, convert arrays to PCM16, resample a stream, the microphone.

Only numpy is required. WAV is read with the standard library's :mod:`wave`;
FLAC, OGG and other formats need ``soundfile`` (installed with the server, or
``pip install soundfile``); the microphone needs ``sounddevice`` (extra ``mic``).
Resampling is a windowed-sinc interpolator that works chunk by chunk, so a
live source at any rate can be streamed at a rate the server takes.
"""

from __future__ import annotations

import asyncio
import math
import os
import wave
from math import gcd
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np

from ._exceptions import AudioError, MissingDependency

SAMPLE_RATES = (8000, 16000, 24000, 32000, 44100, 48000)  # what the server takes
DEFAULT_RATE = 16_000  # what the model runs at


def read_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """A file's samples, mono int16 (channels averaged), and its sample rate.

    Raises:
        AudioError: no such file, or not readable audio.
        MissingDependency: a non-WAV file and no ``soundfile``.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{p}: no such file")
    if p.suffix.lower() == ".wav":
        try:
            return _read_wav(p)
        except (wave.Error, EOFError) as exc:
            if "unknown format" not in str(exc):  # WAVE_FORMAT_FLOAT/EXTENSIBLE: let soundfile try
                raise AudioError(f"{p}: not a readable WAV file ({exc})") from None
    try:
        import soundfile as sf
    except ImportError:
        raise MissingDependency(
            f"{p}: reading {p.suffix or 'this'} files needs soundfile (pip install soundfile); WAV works without it"
        ) from None
    try:
        data, rate = sf.read(str(p), dtype="int16", always_2d=True)
    except (RuntimeError, TypeError, ValueError, sf.LibsndfileError) as exc:
        raise AudioError(f"{p}: not a readable audio file ({exc})") from None
    return to_int16(data), int(rate)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8
    elif width == 2:
        samples = np.frombuffer(raw, "<i2")
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        samples = ((b[:, 2].astype(np.int8).astype(np.int32) << 8) | b[:, 1]).astype(np.int16)  # the top 16 bits
    elif width == 4:
        samples = (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    else:
        raise AudioError(f"{path}: {8 * width}-bit WAV is not supported")
    return to_int16(samples.reshape(-1, channels)), rate


def to_int16(samples: Any) -> np.ndarray:
    """PCM16 bytes or a numpy array (int16, other ints, or float in [-1, 1]; 1-D or
    (frames, channels)) as mono int16.

    Raises:
        AudioError: an odd number of bytes, an unsupported dtype or shape, or non-finite floats.
    """
    if isinstance(samples, (bytes, bytearray, memoryview)):
        if len(samples) % 2:
            raise AudioError(f"PCM16 bytes must be whole 16-bit samples, got {len(samples)} bytes")
        return np.frombuffer(bytes(samples), "<i2").astype(np.int16)
    array = np.asarray(samples)
    if array.ndim == 2:
        if array.dtype == np.int16 and array.shape[1] == 1:
            array = array[:, 0]
        else:
            array = (
                array.astype(np.float64).mean(axis=1)
                if array.dtype.kind == "f"
                else np.round(array.astype(np.float64).mean(axis=1)).astype(array.dtype)
            )
    elif array.ndim != 1:
        raise AudioError(f"audio must be 1-D or (frames, channels), got shape {array.shape}")
    if array.dtype == np.int16:
        return np.ascontiguousarray(array)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise AudioError("the audio contains NaN or infinite samples")
        scaled: np.ndarray = (np.clip(array, -1.0, 1.0) * 32767.0).astype(np.int16)
        return scaled
    if array.dtype.kind in "iu":
        bits = array.dtype.itemsize * 8
        if array.dtype.kind == "u":
            array = array.astype(np.int64) - (1 << (bits - 1))
        return (array.astype(np.int64) >> (bits - 16) if bits > 16 else array.astype(np.int64) << (16 - bits)).astype(
            np.int16
        )
    raise AudioError(f"audio samples of dtype {array.dtype} are not supported")


class Resampler:
    """Streaming band-limited resampling of int16 audio (windowed sinc, Blackman window).

    Feeding chunks of any size gives the same output as one call with everything;
    :meth:`flush` returns the tail once the input has ended.
    """

    ZEROS = 16  # sinc zero crossings on each side of the kernel

    def __init__(self, source_rate: int, target_rate: int) -> None:
        if source_rate <= 0 or target_rate <= 0:
            raise AudioError(f"sample rates must be positive, got {source_rate} and {target_rate}")
        g = gcd(source_rate, target_rate)
        self.up, self.down = target_rate // g, source_rate // g
        self._cutoff = min(1.0, self.up / self.down)  # of the lower Nyquist, in input samples
        self._half = int(math.ceil(self.ZEROS / self._cutoff))  # kernel half-width in input samples
        self._taps = np.arange(-self._half + 1, self._half + 1)
        self._x = np.zeros(self._half, np.float64)  # pending input, left-padded with zeros
        self._x0 = -self._half  # stream index of self._x[0]
        self._n = 0  # next output index
        self._seen = 0  # input samples received

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """The output that the input so far determines."""
        self._x = np.concatenate([self._x, np.asarray(samples, np.float64)])
        self._seen += len(samples)
        return self._produce(self._x0 + len(self._x) - 1)

    def flush(self) -> np.ndarray:
        """The rest of the output, the input having ended (zeros beyond it)."""
        total = -(-self._seen * self.up // self.down)
        self._x = np.concatenate([self._x, np.zeros(self._half + 1)])
        return self._produce(self._x0 + len(self._x) - 1, limit=total)

    def _produce(self, last: int, limit: int | None = None) -> np.ndarray:
        # output n sits at input time n*down/up and needs inputs up to floor(that) + half
        count = max(0, ((last - self._half + 1) * self.up - 1) // self.down + 1 - self._n)
        if limit is not None:
            count = min(count, max(0, limit - self._n))
        n = self._n + np.arange(count)
        base = n * self.down // self.up
        frac = (n * self.down % self.up) / self.up
        tau = frac[:, None] - self._taps[None, :]  # distance from each output to each tap input
        kernel = self._cutoff * np.sinc(self._cutoff * tau) * _blackman(tau / self._half)
        values = (
            (self._x[base[:, None] + self._taps[None, :] - self._x0] * kernel).sum(axis=1) if count else np.zeros(0)
        )
        self._n += count
        keep_from = self._n * self.down // self.up - self._half + 1  # the earliest input the next output needs
        if keep_from > self._x0:
            self._x = self._x[keep_from - self._x0 :]
            self._x0 = keep_from
        out: np.ndarray = np.clip(np.round(values), -32768, 32767).astype(np.int16)
        return out


def _blackman(x: np.ndarray) -> np.ndarray:
    w = 0.42 + 0.5 * np.cos(np.pi * x) + 0.08 * np.cos(2 * np.pi * x)
    return np.where(np.abs(x) < 1.0, w, 0.0)


def sounddevice() -> Any:
    """The sounddevice module.

    Raises:
        MissingDependency: it is not installed, or PortAudio is missing.
    """
    try:
        import sounddevice as sd  # type: ignore[import-not-found, unused-ignore]
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library itself is missing
        raise MissingDependency(
            f"the microphone needs sounddevice and PortAudio: pip install 'multipa-live[mic]' ({exc})"
        ) from None
    return sd


async def microphone(
    sample_rate: int, *, block_ms: int = 20, device: int | str | None = None
) -> AsyncIterator[np.ndarray]:
    """Blocks of int16 samples from the default (or given) input device, as they are recorded.

    Raises:
        MissingDependency: sounddevice is not installed (``pip install 'multipa-live[mic]'``).
    """
    sd = sounddevice()
    loop = asyncio.get_running_loop()
    blocks: asyncio.Queue[np.ndarray] = asyncio.Queue()

    def record(indata: np.ndarray, frames: int, time: Any, status: Any) -> None:  # PortAudio's thread
        loop.call_soon_threadsafe(blocks.put_nowait, indata[:, 0].copy())

    with sd.InputStream(
        samplerate=sample_rate,
        channels=1,
        dtype="int16",
        blocksize=sample_rate * block_ms // 1000,
        device=device,
        callback=record,
    ):
        while True:
            yield await blocks.get()
