"""Audio in the SDK: conversions, streaming resampling, reading files, and no server imports."""

from __future__ import annotations

import subprocess
import sys
import wave

import numpy as np
import pytest

from multipa_client import AudioError, Resampler, read_file, to_int16


def sine(rate: int, seconds: float, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


@pytest.mark.parametrize(
    "source, target", [(22050, 16000), (44100, 16000), (8000, 16000), (11025, 48000), (16000, 44100)]
)
def test_resampling_keeps_a_tone_and_its_length(source, target):
    r = Resampler(source, target)
    out = np.concatenate([r.feed(sine(source, 1.0)), r.flush()])
    assert len(out) == target
    expected = sine(target, 1.0).astype(np.float64)
    middle = slice(target // 10, -target // 10)  # away from the zero-padded edges
    error = np.sqrt(np.mean((out[middle] - expected[middle]) ** 2)) / np.sqrt(np.mean(expected[middle] ** 2))
    assert error < 0.01, error


def test_resampling_in_chunks_equals_resampling_at_once():
    x = (np.random.default_rng(0).normal(0, 3000, 22050)).astype(np.int16)
    whole = Resampler(22050, 16000)
    expected = np.concatenate([whole.feed(x), whole.flush()])
    r, parts, i = Resampler(22050, 16000), [], 0
    for size in np.random.default_rng(1).integers(1, 900, 200):
        parts.append(r.feed(x[i : i + size]))
        i += size
        if i >= len(x):
            break
    parts.append(r.feed(x[i:]))
    parts.append(r.flush())
    assert np.array_equal(np.concatenate(parts), expected)


def test_an_image_tone_above_the_target_nyquist_is_removed():
    r = Resampler(48000, 16000)
    out = np.concatenate([r.feed(sine(48000, 1.0, hz=12000)), r.flush()]).astype(np.float64)
    assert np.sqrt(np.mean(out[1600:-1600] ** 2)) < 0.01 * 0.5 * 32767 / np.sqrt(2)


def test_conversions_to_int16():
    assert to_int16(b"\x01\x00\xff\xff").tolist() == [1, -1]
    assert to_int16(np.array([0.0, 1.0, -1.0, 2.0])).tolist() == [0, 32767, -32767, 32767]
    assert to_int16(np.array([[1000, 3000], [-1000, -3000]], np.int16)).tolist() == [2000, -2000]
    assert to_int16(np.array([65536, -65536], np.int32)).tolist() == [1, -1]
    assert to_int16(np.array([128, 255], np.uint8)).tolist() == [0, 127 << 8]
    for bad in (b"\x01", np.array([np.nan]), np.zeros((2, 2, 2)), np.array(["a"])):
        with pytest.raises(AudioError):
            to_int16(bad)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_files_are_read_with_the_standard_library(tmp_path, width):
    samples = sine(22050, 0.2)
    stereo = np.stack([samples, samples], axis=1)
    wide = stereo.astype(np.int32) << 16
    raw = {
        1: ((stereo >> 8) + 128).astype(np.uint8).tobytes(),
        2: stereo.tobytes(),
        3: np.frombuffer(wide.astype("<i4").tobytes(), np.uint8).reshape(-1, 4)[:, 1:].tobytes(),
        4: wide.astype("<i4").tobytes(),
    }[width]
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(width)
        w.setframerate(22050)
        w.writeframes(raw)
    out, rate = read_file(path)
    assert rate == 22050 and len(out) == len(samples)
    assert np.abs(out.astype(int) - samples).max() <= (256 if width == 1 else 1)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        read_file(tmp_path / "nope.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF....nonsense")
    with pytest.raises(AudioError):
        read_file(tmp_path / "bad.wav")


def test_the_sdk_imports_without_the_server_the_models_or_soundfile(tmp_path):
    """The client needs numpy and websockets only; FLAC without soundfile names what to install."""
    flac = tmp_path / "a.flac"
    flac.write_bytes(b"fLaC")
    code = f"""
import sys
for name in ("multipa_core", "multipa_server", "torch", "soundfile", "scipy", "sounddevice", "webrtcvad"):
    sys.modules[name] = None  # importing any of them now fails
import asyncio, multipa_client
from multipa_client import MissingDependency, read_file
try:
    read_file({str(flac)!r})
except MissingDependency as exc:
    assert "soundfile" in str(exc), exc
else:
    raise SystemExit("no MissingDependency")
async def mic():
    client = multipa_client.MultipaClient("ws://127.0.0.1:9/v1/stream")
    try:
        async for _ in client.stream_microphone():
            pass
    except MissingDependency as exc:
        assert "mic" in str(exc), exc
        return
    raise SystemExit("no MissingDependency for the microphone")
asyncio.run(mic())
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
