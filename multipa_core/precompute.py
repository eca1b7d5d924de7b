"""Per-utterance outputs of the expensive stages, computed once into the cache.

Training the aligner needs ASR_t's encoder frames of every utterance; training
the scorer needs those and ASR_r's transcript; evaluating in open mode needs
ASR_t's transcript too. Each is cached on its own, keyed by the model that made
it, so every utterance is encoded and decoded once for all jobs, and a job killed
half-way resumes where it stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from tqdm import tqdm

from . import audio as audio_io
from .asr import DualASR, Transcript, Word, encoder_frames
from .checkpoint_models import DEFAULT_RECOGNIZED, DEFAULT_TARGET, cache_tag
from .cache import ArrayCache
from .data import Utterance
from .encoder_layers import EncoderLayers
from .errors import MultipaError

log = logging.getLogger(__name__)


def frames_cache(root: str, model: str = DEFAULT_TARGET) -> ArrayCache:
    """The cache of one Whisper model's encoder frames (float16, frames x dim)."""
    return ArrayCache(root, f"frames-{cache_tag(model)}-int8-v1")


def transcript_cache(root: str, model: str) -> ArrayCache:
    """The cache of one Whisper model's transcripts (temperature 0, greedy)."""
    return ArrayCache(root, f"transcripts-{cache_tag(model)}-t0-v1")


def layers_cache(root: str, model: str = DEFAULT_TARGET) -> ArrayCache:
    """The cache of the statistics of one Whisper encoder's layers (:mod:`multipa_core.encoder_layers`)."""
    return ArrayCache(root, f"layers-{cache_tag(model)}-v1")


def transcript_from_dict(doc: dict) -> Transcript:
    return Transcript(doc["text"], [Word(w["text"], w["start"], w["end"], w["probability"]) for w in doc["words"]])


def interleaved(utterances: list[Utterance], per_speaker: int = 0) -> list[Utterance]:
    """Every speaker's first utterance, then every speaker's second, and so on (at most
    ``per_speaker`` each; 0: all): a run stopped at any point has covered the speakers
    evenly, and its cache serves ``--per-speaker`` evaluations of any smaller N."""
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in utterances:
        by_speaker.setdefault(utt.speaker, []).append(utt)
    rounds = max((len(v) for v in by_speaker.values()), default=0)
    if per_speaker:
        rounds = min(rounds, per_speaker)
    return [v[r] for r in range(rounds) for v in by_speaker.values() if r < len(v)]


@dataclass
class Precomputed:
    """What :func:`precompute` found or computed, by utterance id."""

    frames: dict[str, np.ndarray] = field(default_factory=dict)
    recognized: dict[str, Transcript] = field(default_factory=dict)  # ASR_r
    recognizer_frames: dict[str, np.ndarray] = field(default_factory=dict)  # ASR_r's encoder frames
    encoder_layers: dict[str, np.ndarray] = field(default_factory=dict)  # statistics of ASR_t's encoder layers
    target: dict[str, Transcript] = field(default_factory=dict)  # ASR_t
    failed: list[str] = field(default_factory=list)


def precompute(
    utterances: Iterable[Utterance],
    asr: DualASR | None,
    cache_root: str,
    *,
    recognized: bool = False,
    target: bool = False,
    layers: bool = False,
    desc: str = "precomputing",
    target_model: str = DEFAULT_TARGET,
    recognized_model: str = DEFAULT_RECOGNIZED,
) -> Precomputed:
    """Fill the caches for ``utterances``: ASR_t's encoder frames always, transcripts on
    request (ASR_r's with its encoder frames), and the statistics of ASR_t's encoder
    layers on request.

    The models (``target_model``, ``recognized_model``: registry names or directories) load
    only when something is missing (``asr``: those models already loaded, or None).
    A failing utterance is logged with its id, counted in ``failed`` and skipped.
    """
    frames = frames_cache(cache_root, target_model)
    r_cache = transcript_cache(cache_root, recognized_model) if recognized else None
    r_frames = frames_cache(cache_root, recognized_model) if recognized else None
    t_cache = transcript_cache(cache_root, target_model) if target else None
    l_cache = layers_cache(cache_root, target_model) if layers else None
    encoder: EncoderLayers | None = None
    out = Precomputed()
    for utt in tqdm(list(utterances), desc=desc, unit="utt", dynamic_ncols=True):
        array = frames.get_array(utt.utt)
        r_doc = r_cache.get_json(utt.utt) if r_cache else None
        r_array = r_frames.get_array(utt.utt) if r_frames else None
        t_doc = t_cache.get_json(utt.utt) if t_cache else None
        l_array = l_cache.get_array(utt.utt) if l_cache else None
        if (
            array is None
            or (r_cache and (r_doc is None or r_array is None))
            or (t_cache and t_doc is None)
            or (l_cache and l_array is None)
        ):
            if asr is None:
                asr = DualASR(recognizer=recognized_model, target=target_model)
            try:
                samples = audio_io.load(utt.audio_path)
                mel = None  # ASR_t's log-mel, computed once for its encoder and the layer statistics
                if array is None or (t_cache is not None and t_doc is None):  # ASR_t's encoder, once
                    mel, encoding = asr.encode_target(samples)
                    if array is None:
                        array = encoder_frames(encoding, len(samples)).astype(np.float16)
                        frames.put_array(utt.utt, array)
                    if t_cache is not None and t_doc is None:
                        t_doc = asr.asr_t.transcribe(samples, features=mel, encoder_output=encoding).to_dict()
                        t_cache.put_json(utt.utt, t_doc)
                if r_cache is not None and r_frames is not None and (r_doc is None or r_array is None):
                    transcript, r_array = asr.asr_r.transcribe_with_frames(samples)
                    r_array = r_array.astype(np.float16)
                    r_frames.put_array(utt.utt, r_array)
                    if r_doc is None:
                        r_doc = transcript.to_dict()
                        r_cache.put_json(utt.utt, r_doc)
                if l_cache is not None and l_array is None:
                    encoder = encoder or EncoderLayers(target_model)
                    l_array = encoder.statistics(asr.asr_t.features(samples) if mel is None else mel, len(samples))
                    l_cache.put_array(utt.utt, l_array)
            except MultipaError as exc:
                log.warning("utterance %s failed: %s", utt.utt, exc)
                out.failed.append(utt.utt)
                continue
        assert array is not None  # read from the cache, or computed above
        out.frames[utt.utt] = array
        if r_doc is not None and r_array is not None:  # the two come together
            out.recognized[utt.utt] = transcript_from_dict(r_doc)
            out.recognizer_frames[utt.utt] = r_array
        if t_doc is not None:
            out.target[utt.utt] = transcript_from_dict(t_doc)
        if l_array is not None:
            out.encoder_layers[utt.utt] = l_array
    return out
