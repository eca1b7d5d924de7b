"""Per-utterance outputs of the expensive stages, computed once into the cache.

Training the aligner needs ASR_t's encoder frames of every utterance; training
the scorer needs those and both transcripts. Both read them from here, so each
utterance is encoded once for all jobs, and a job killed half-way resumes.
"""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np
from tqdm import tqdm

from . import audio as audio_io
from .asr import DualASR, Transcript, Word, encoder_frames
from .cache import ArrayCache
from .data import Utterance
from .errors import MultipaError

log = logging.getLogger(__name__)


def frames_cache(root: str, target_model: str = "whisper-base") -> ArrayCache:
    """The cache of ASR_t encoder frames (float16, frames x 512)."""
    return ArrayCache(root, f"frames-{target_model}-int8-v1")


def asr_cache(root: str, recognizer: str = "whisper-tiny.en", target_model: str = "whisper-base") -> ArrayCache:
    """The cache of both transcripts."""
    return ArrayCache(root, f"asr-{recognizer}-{target_model}-t0-v1")


def transcript_from_dict(doc: dict) -> Transcript:
    return Transcript(doc["text"], [Word(w["text"], w["start"], w["end"], w["probability"]) for w in doc["words"]])


def precompute(
    utterances: Iterable[Utterance],
    asr: DualASR,
    frames: ArrayCache,
    transcripts: ArrayCache | None = None,
    *,
    desc: str = "encoding",
) -> tuple[dict[str, np.ndarray], dict[str, tuple[Transcript, Transcript]], list[str]]:
    """Fill the caches for ``utterances``.

    Returns:
        frames by utt, (recognized, target) transcripts by utt (when a transcript
        cache is given), and the ids that failed (logged and skipped).
    """
    out_frames: dict[str, np.ndarray] = {}
    out_text: dict[str, tuple[Transcript, Transcript]] = {}
    failed: list[str] = []
    items = list(utterances)
    for utt in tqdm(items, desc=desc, unit="utt", dynamic_ncols=True):
        cached = frames.get_array(utt.utt)
        texts = transcripts.get_json(utt.utt) if transcripts is not None else None
        if cached is not None and (transcripts is None or texts is not None):
            out_frames[utt.utt] = cached
            if texts is not None:
                out_text[utt.utt] = (transcript_from_dict(texts["recognized"]), transcript_from_dict(texts["target"]))
            continue
        try:
            samples = audio_io.load(utt.audio_path)
            if transcripts is None:
                _, encoding = asr.encode_target(samples)
                array = encoder_frames(encoding, len(samples))
            else:
                result = asr(samples)
                array = result.frames
                transcripts.put_json(utt.utt, {"recognized": result.recognized.to_dict(), "target": result.target.to_dict()})
                out_text[utt.utt] = (result.recognized, result.target)
        except MultipaError as exc:
            log.warning("utterance %s failed: %s", utt.utt, exc)
            failed.append(utt.utt)
            continue
        array16 = array.astype(np.float16)
        frames.put_array(utt.utt, array16)
        out_frames[utt.utt] = array16
    return out_frames, out_text, failed
