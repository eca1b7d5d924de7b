"""Prosody and fluency details of a turn: pauses, speaking and articulation rate, pitch range.

Pitch is tracked with YIN (de Cheveigné and Kawahara, 2002) in numpy: the
cumulative mean normalised difference function of 30 ms windows every 10 ms,
the first dip below 0.15 between 70 and 400 Hz, on frames loud enough to be
speech. Pauses are runs of quiet 20 ms frames between two aligned words (the
aligner's CTC spans say where words are, the energy says where the voice
stopped). Everything here works on any input: no speech gives empty details.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from .align import Alignment
from .phones import VOWELS, base

SAMPLE_RATE = 16000
PITCH_RATE = 8000  # pitch is tracked at half the rate: F0 stays far below 4 kHz, and it costs half
PITCH_HOP = 80  # 10 ms at PITCH_RATE
PITCH_WINDOW = 240  # 30 ms at PITCH_RATE
F0_MIN, F0_MAX = 70.0, 400.0
YIN_THRESHOLD = 0.15
ENERGY_FRAME = 320  # 20 ms, the aligner's frame
QUIET_DB = 25.0  # a frame this far below the turn's loud frames (95th percentile) is silence
MIN_PAUSE_S = 0.25  # the usual lower bound of a silent pause in fluency research
MONOTONE_SEMITONES = 3.0  # a turn whose pitch moves less than this (10th to 90th percentile) is monotone
MONOTONE_MIN_VOICED = 50  # voiced 10 ms frames needed before a pitch range is believed (0.5 s)
MONOTONE_MIN_WORDS = 3


def frame_db(samples: np.ndarray, frame: int = ENERGY_FRAME) -> np.ndarray:
    """RMS level of consecutive frames in dB (full scale)."""
    n = len(samples) // frame
    if n == 0:
        return np.zeros(0)
    x = np.asarray(samples[: n * frame], dtype=np.float64).reshape(n, frame)
    return 10.0 * np.log10(np.mean(x * x, axis=1) + 1e-12)


def pitch_track(samples: np.ndarray) -> np.ndarray:
    """F0 in Hz every 10 ms (0 where unvoiced or too quiet) of 16 kHz samples."""
    x = (
        resample_poly(np.asarray(samples, dtype=np.float32), 1, SAMPLE_RATE // PITCH_RATE).astype(np.float32)
        if len(samples) >= 64
        else np.zeros(0, np.float32)
    )
    tau_min, tau_max = int(PITCH_RATE / F0_MAX), int(PITCH_RATE / F0_MIN)
    span = PITCH_WINDOW + tau_max
    n = 1 + (len(x) - span) // PITCH_HOP if len(x) >= span else 0
    if n <= 0:
        return np.zeros(0)
    idx = np.arange(n)[:, None] * PITCH_HOP + np.arange(span)[None, :]
    frames = x[idx]
    level = 10.0 * np.log10(np.mean(frames[:, :PITCH_WINDOW] ** 2, axis=1) + 1e-12)
    loud = level > max(np.percentile(level, 95) - QUIET_DB, -70.0)
    # d(tau) = E(0) + E(tau) - 2 r(tau): energies from a cumulative sum, r from one FFT per frame
    size = 1 << int(np.ceil(np.log2(span + PITCH_WINDOW)))
    spec = np.fft.rfft(frames, size) * np.conj(np.fft.rfft(frames[:, :PITCH_WINDOW], size))
    r = np.fft.irfft(spec, size)[:, : tau_max + 1]
    c = np.concatenate([np.zeros((n, 1)), np.cumsum(frames**2, axis=1)], axis=1)
    e = c[:, PITCH_WINDOW : PITCH_WINDOW + tau_max + 1] - c[:, : tau_max + 1]
    d = np.maximum(e[:, :1] + e - 2.0 * r, 0.0)
    cmnd = np.ones_like(d)
    running = np.cumsum(d[:, 1:], axis=1)
    cmnd[:, 1:] = d[:, 1:] * np.arange(1, tau_max + 1) / np.maximum(running, 1e-12)
    # the first dip below the threshold, followed down to its local minimum (all frames at once)
    below = cmnd[:, tau_min:] < YIN_THRESHOLD
    voiced = loud & below.any(axis=1)
    rows = np.flatnonzero(voiced)
    t = tau_min + below[rows].argmax(axis=1)
    for _ in range(tau_max - tau_min):
        step = (t < tau_max) & (cmnd[rows, np.minimum(t + 1, tau_max)] < cmnd[rows, t])
        if not step.any():
            break
        t = t + step
    a, b, c3 = cmnd[rows, np.maximum(t - 1, 0)], cmnd[rows, t], cmnd[rows, np.minimum(t + 1, tau_max)]
    curve = a - 2 * b + c3
    inner = (t < tau_max) & (curve > 0)
    shift = np.where(inner, 0.5 * (a - c3) / np.where(curve > 0, curve, 1.0), 0.0)
    f0 = np.zeros(n)
    f0[rows] = PITCH_RATE / (t + np.clip(shift, -0.5, 0.5))
    return f0


def semitone_range(f0: np.ndarray) -> float | None:
    """Pitch range in semitones, 10th to 90th percentile of the voiced frames (None: too few)."""
    voiced = f0[f0 > 0]
    if voiced.size < MONOTONE_MIN_VOICED:
        return None
    lo, hi = np.percentile(voiced, [10, 90])
    return float(12.0 * np.log2(hi / lo))


@dataclass
class Pause:
    """A silence between two words of the turn."""

    after_word: int  # index of the word before it
    start: float  # seconds
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def pauses(alignment: Alignment, db: np.ndarray, *, min_pause: float = MIN_PAUSE_S) -> list[Pause]:
    """Silent pauses between consecutive words: the longest quiet run between the middle of a
    word's last phone and the middle of the next word's first phone."""
    out: list[Pause] = []
    if db.size == 0 or len(alignment.words) < 2:
        return out
    quiet = db < np.percentile(db, 95) - QUIET_DB
    fs = ENERGY_FRAME / SAMPLE_RATE
    for i, (w, nxt) in enumerate(zip(alignment.words, alignment.words[1:])):
        last, first = alignment.phones[w.phones[-1]], alignment.phones[nxt.phones[0]]
        lo = int(np.floor((last.start + last.end) / 2 / fs))
        hi = min(len(quiet), int(np.ceil((first.start + first.end) / 2 / fs)))
        best, run_start, best_start = 0, 0, 0
        for k in range(lo, hi):
            if quiet[k]:
                if k == lo or not quiet[k - 1]:
                    run_start = k
                if k + 1 - run_start > best:
                    best, best_start = k + 1 - run_start, run_start
        if best * fs >= min_pause:
            out.append(Pause(i, best_start * fs, (best_start + best) * fs))
    return out


@dataclass
class ProsodyDetails:
    """Per-turn fluency and prosody, with a plain-language reading of each."""

    speaking_rate: float | None  # syllables per second from the first word's start to the last word's end
    articulation_rate: float | None  # the same, pauses left out
    phones_per_second: float | None
    pauses: list[dict[str, Any]] = field(default_factory=list)  # after_word, start_ms, end_ms
    longest_pause_ms: int = 0
    f0_range_semitones: float | None = None
    f0_median_hz: float | None = None
    monotone: bool = False
    readings: dict[str, str] = field(default_factory=dict)  # speaking_rate, pauses, pitch -> sentence


def _rate_reading(rate: float) -> str:
    pace = "slow" if rate < 2.5 else "fast" if rate > 5.5 else "natural"
    return f"{rate:.1f} syllables per second: a {pace} pace (fluent speakers read about 3.5 to 5)."


def details(
    alignment: Alignment,
    samples: np.ndarray,
    words: list[str] | None = None,
    *,
    db: np.ndarray | None = None,
    f0: np.ndarray | None = None,
) -> ProsodyDetails:
    """The prosody details of a turn from its target alignment and audio.

    Args:
        alignment: the target words force-aligned to the turn.
        samples: the turn, 16 kHz mono.
        words: how to name the words in the readings (default: the alignment's text).
        db, f0: :func:`frame_db` and :func:`pitch_track` of ``samples`` when already computed.
    """
    words = words or [w.text for w in alignment.words]
    db = frame_db(samples) if db is None else db
    f0 = pitch_track(samples) if f0 is None else f0
    if alignment.words:
        lo, hi = int(alignment.words[0].start * 100), int(np.ceil(alignment.words[-1].end * 100))
        f0 = f0[lo:hi]
    semis = semitone_range(f0) if len(alignment.words) else None
    voiced = f0[f0 > 0]
    out = ProsodyDetails(
        None,
        None,
        None,
        f0_range_semitones=None if semis is None else round(semis, 2),
        f0_median_hz=round(float(np.median(voiced)), 1) if voiced.size else None,
    )
    if not alignment.words:
        return out
    span = alignment.words[-1].end - alignment.words[0].start
    found = pauses(alignment, db)
    silent = sum(p.seconds for p in found)
    syllables = sum(1 for p in alignment.phones if base(p.phone) in VOWELS)
    if span > 0:
        out.speaking_rate = round(syllables / span, 2)
        out.phones_per_second = round(len(alignment.phones) / span, 2)
        out.articulation_rate = round(syllables / max(span - silent, 1e-3), 2)
        out.readings["speaking_rate"] = _rate_reading(out.speaking_rate)
    out.pauses = [
        {"after_word": p.after_word, "start_ms": int(p.start * 1000), "end_ms": int(p.end * 1000)} for p in found
    ]
    if found:
        top = max(found, key=lambda p: p.seconds)
        out.longest_pause_ms = int(round(top.seconds * 1000))
        around = " ".join(words[max(0, top.after_word - 1) : top.after_word + 3])
        out.readings["pauses"] = (
            f"pauses: {len(found)}, longest {top.seconds:.1f} s after '{words[top.after_word]}' (in '{around}')."
        )
    else:
        out.readings["pauses"] = "no pauses between words."
    out.monotone = semis is not None and semis < MONOTONE_SEMITONES and len(alignment.words) >= MONOTONE_MIN_WORDS
    if semis is not None:
        kind = "flat: the voice hardly rises or falls" if out.monotone else "lively" if semis > 8 else "some movement"
        out.readings["pitch"] = f"pitch range {semis:.1f} semitones: {kind}."
    return out
