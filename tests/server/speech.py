"""Real speech for the server tests: shared speechocean762 utterances as PCM16."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "speechocean762"
RATE = 16_000

# short, single-breath utterances (2.2 to 2.4 s files) whose speech the default VAD keeps in one turn
UTTERANCES = {
    "004820045": "THIS IS A GOOD STEP",
    "010290094": "IT'S REALLY A GOOD ONE",
    "001350134": "HE IS A BIG BOY",
    "000480014": "JOHN CAN SEE THE SHEEP",
}


@functools.lru_cache(maxsize=None)
def utterance(utt: str) -> np.ndarray:
    """One utterance as int16 samples at 16 kHz (skips the test when the data is missing)."""
    import soundfile as sf

    path = DATA / "audio" / f"{utt}.flac"
    if not path.is_file():
        pytest.skip(f"shared data missing at {DATA}")
    samples, rate = sf.read(path, dtype="int16")
    assert rate == RATE and samples.ndim == 1
    return samples


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(round(seconds * rate)), dtype=np.int16)


def speech_span_ms(samples: np.ndarray, rate: int = RATE) -> tuple[int, int]:
    """First and last 10 ms frame whose level is within 30 dB of the loudest: where speech is."""
    hop = rate // 100
    frames = samples[: len(samples) // hop * hop].astype(np.float64).reshape(-1, hop)
    rms = np.sqrt((frames**2).mean(axis=1)) + 1e-9
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -30.0)
    return int(loud[0] * 10), int((loud[-1] + 1) * 10)


@dataclass(frozen=True)
class Placed:
    """An utterance inside a joined stream."""

    utt: str
    start_ms: int  # where its file starts in the stream
    end_ms: int
    speech_start_ms: int  # where its speech starts in the stream (energy)
    speech_end_ms: int


def conversation(utts: list[str], gaps_s: list[float]) -> tuple[np.ndarray, list[Placed]]:
    """Utterances separated by silences: gaps_s[i] precedes utts[i]; one more gap ends the stream."""
    assert len(gaps_s) == len(utts) + 1
    parts, placed, position = [], [], 0
    for utt, gap in zip(utts, gaps_s):
        samples = utterance(utt)
        parts += [silence(gap), samples]
        position += int(round(gap * RATE))
        first, last = speech_span_ms(samples)
        start_ms = position * 1000 // RATE
        placed.append(Placed(utt, start_ms, start_ms + len(samples) * 1000 // RATE, start_ms + first, start_ms + last))
        position += len(samples)
    parts.append(silence(gaps_s[-1]))
    return np.concatenate(parts), placed
