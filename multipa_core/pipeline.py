"""From a turn's audio to its MultiPA features: the stages wired together once.

``audio -> ASR_t encoder (once) -> ASR_t + ASR_r decoding`` (:class:`DualASR`),
then ``lexicon -> aligner posteriors -> forced alignment of both transcripts ->
text embeddings -> features`` (:class:`FeatureBuilder`). Training and evaluation
feed the second half from cached ASR outputs, so they run exactly the code that
serves live turns.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from . import audio as audio_io
from . import registry
from .align import Aligner, Alignment
from .asr import AsrOptions, DualASR, Transcript, encoder_frames, normalize_word, resolve_device
from .encoder_layers import EncoderLayers
from .features import TurnFeatures, build
from .lexicon import Lexicon, default_lexicon
from .textemb import text_embedder


@dataclass(frozen=True)
class PipelineOptions:
    """Which models the pipeline loads and where it runs."""

    recognizer: str = "whisper-tiny.en"  # ASR_r: registry name or CTranslate2 directory
    target: str = "whisper-base"  # ASR_t: registry name or CTranslate2 directory
    text_model: str = "minilm-l6"  # text embedding: registry name or transformers directory
    aligner: str = "multipa-aligner"  # phone-posterior checkpoint: registry name or path
    device: str = "auto"  # auto, cpu or cuda
    beam_size: int = 1  # Whisper beam (temperature is always 0)
    threads: int = 0  # CPU threads per Whisper model (0: the library's default)
    word_timestamps: bool = False  # Whisper's own word times: only for display (features use the aligner's)
    parallel_asr: bool = True  # decode ASR_r in a thread while ASR_t encodes and decodes
    encoder_layers: bool = False  # statistics of every ASR_t encoder layer (for a probe that reads them)


@dataclass
class TurnAnalysis:
    """Everything the pipeline knows about one turn before scoring."""

    mode: str  # "open" (ASR_t is the target) or "closed" (the reference is)
    duration: float  # seconds of audio
    recognized: Transcript  # ASR_r
    target: Transcript  # ASR_t, or the reference text in closed mode
    target_alignment: Alignment
    recognized_alignment: Alignment
    features: TurnFeatures
    log_posteriors: np.ndarray  # (frames, classes) the aligner's output, for aligning more text
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    def to_dict(self, *, profile: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "duration": round(self.duration, 3),
            "recognized": {"text": self.recognized.text, "whisper_words": self.recognized.to_dict()["words"], **self.recognized_alignment.to_dict()},
            "target": {"text": self.target.text, "whisper_words": self.target.to_dict()["words"], **self.target_alignment.to_dict()},
            "features": self.features.shapes(),
        }
        if profile:
            out["profile"] = {k: round(v, 4) for k, v in self.timings.items()}
        return out


def transcript_words(transcript: Transcript) -> list[str]:
    """The normalised words of a transcript (its Whisper words, else its text)."""
    tokens = [w.text for w in transcript.words] if transcript.words else transcript.text.split()
    return [w for w in (normalize_word(t) for t in tokens) if w]


class FeatureBuilder:
    """The stages after ASR: aligner, lexicon, text embedding, features.

    Args:
        aligner: aligner checkpoint name or path.
        text_model: text embedding name or directory (``none``: no text embeddings).
        device: ``cpu`` or ``cuda`` for the torch models.
        lexicon: pronunciations (default: corpus lexicon, CMUdict, fallback rules).
    """

    def __init__(self, *, aligner: str = "multipa-aligner", text_model: str = "minilm-l6", device: str = "cpu", lexicon: Lexicon | None = None) -> None:
        self.aligner = Aligner(aligner, device=device)
        self.text = text_embedder(text_model, device=device)
        self.lexicon = lexicon or default_lexicon()
        self.key = f"{_file_digest(registry.resolve(aligner, kind='aligner'))}-{text_model.replace('/', '_')}"

    def align_words(self, log_probs: np.ndarray, words: list[str]) -> Alignment:
        """Force-align normalised words (words without phones are left out)."""
        return self.aligner.align(log_probs, words, [self.lexicon.phones(w) for w in words])

    def analyze(
        self, frames: np.ndarray, target: Transcript, recognized: Transcript, *, mode: str, duration: float,
        recognizer_frames: np.ndarray | None = None, encoder_layers: np.ndarray | None = None, timings: dict[str, float] | None = None,
    ) -> TurnAnalysis:
        """Features of a turn from its encoder frames (ASR_t's, and ASR_r's and the statistics of
        ASR_t's encoder layers when known) and both transcripts."""
        timings = {} if timings is None else timings
        with _timed(timings, "posteriors"):
            log_probs = self.aligner.log_posteriors(frames)
        with _timed(timings, "align"):
            t_align = self.align_words(log_probs, transcript_words(target))
            r_align = self.align_words(log_probs, transcript_words(recognized))
        with _timed(timings, "text_embedding"):
            t_text, r_text = self.text.many([[w.text for w in t_align.words], [w.text for w in r_align.words]])
        with _timed(timings, "features"):
            features = build(frames, t_align, r_align, t_text, r_text, recognizer_frames, encoder_layers)
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        return TurnAnalysis(mode, duration, recognized, target, t_align, r_align, features, log_probs, timings)


class FeaturePipeline:
    """All models of the feature stages, loaded once; :meth:`analyze` runs one turn.

    Args:
        options: model names, device and decoding options.
        lexicon: pronunciations (default: corpus lexicon, CMUdict, fallback rules).
    """

    def __init__(self, options: PipelineOptions | None = None, *, lexicon: Lexicon | None = None) -> None:
        self.options = options or PipelineOptions()
        asr_options = AsrOptions(beam_size=self.options.beam_size, device=self.options.device, threads=self.options.threads, word_timestamps=self.options.word_timestamps)
        self.asr = DualASR(recognizer=self.options.recognizer, target=self.options.target, options=asr_options)
        # ASR_r's decoding overlaps ASR_t's: CTranslate2 releases the GIL, and greedy
        # decoding leaves cores idle between its small steps
        self._side = ThreadPoolExecutor(1, thread_name_prefix="asr-r") if self.options.parallel_asr else None
        self._shared_mel = self.asr.asr_r.same_features(self.asr.asr_t)
        torch_device = "cuda" if resolve_device(self.options.device) == "cuda" and _torch_cuda() else "cpu"
        self.builder = FeatureBuilder(aligner=self.options.aligner, text_model=self.options.text_model, device=torch_device, lexicon=lexicon)
        self.layers = EncoderLayers(self.options.target, device=torch_device) if self.options.encoder_layers else None

    def analyze(self, samples: np.ndarray, *, reference: str | None = None) -> TurnAnalysis:
        """Run the feature stages on 16 kHz mono float32 audio.

        Args:
            samples: the turn (checked against the limits of :mod:`multipa_core.audio`).
            reference: the expected sentence (closed mode); None for open mode.

        Raises:
            AudioError: the audio breaks a limit.
        """
        audio_io.check(samples)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        with _timed(timings, "mel"):
            mel = self.asr.asr_t.features(samples)
        recognized_mel = mel if self._shared_mel else None
        side = self._side.submit(self._recognize, samples, recognized_mel) if self._side is not None else None
        with _timed(timings, "encode_target"):
            encoding = self.asr.asr_t.encode(mel)
            frames = encoder_frames(encoding, len(samples))
        with _timed(timings, "asr_target"):
            if reference is None:
                target = self.asr.asr_t.transcribe(samples, features=mel, encoder_output=encoding)
            else:
                target = Transcript(reference.strip())
        layers = None
        if self.layers is not None:
            with _timed(timings, "encoder_layers"):
                layers = self.layers.statistics(mel, len(samples))
        if side is None:
            recognized, recognizer_frames, timings["asr_recognized"] = self._recognize(samples, recognized_mel)
        else:
            with _timed(timings, "asr_recognized_wait"):
                recognized, recognizer_frames, timings["asr_recognized"] = side.result()
        analysis = self.builder.analyze(
            frames,
            target,
            recognized,
            mode="open" if reference is None else "closed",
            duration=len(samples) / audio_io.SAMPLE_RATE,
            recognizer_frames=recognizer_frames,
            encoder_layers=layers,
            timings=timings,
        )
        analysis.timings["total"] = time.perf_counter() - started  # wall time: ASR_r overlaps the stages above
        return analysis

    def _recognize(self, samples: np.ndarray, mel: np.ndarray | None) -> tuple[Transcript, np.ndarray, float]:
        """ASR_r's transcript, its encoder frames (encoded once, for both) and the seconds it took."""
        started = time.perf_counter()
        transcript, frames = self.asr.asr_r.transcribe_with_frames(samples, features=mel)
        return transcript, frames, time.perf_counter() - started


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started


def _file_digest(path: Any) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read())
    return digest.hexdigest()[:12]


def _torch_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
