"""From a turn's audio to its MultiPA features: the stages wired together once.

``audio -> ASR_t encoder (once) -> ASR_t + ASR_r decoding`` (:class:`DualASR`),
then ``lexicon -> aligner posteriors -> forced alignment of both transcripts ->
text embeddings -> features`` (:class:`FeatureBuilder`). Training and evaluation
feed the second half from cached ASR outputs, so they run exactly the code that
serves live turns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from . import audio as audio_io
from . import checkpoint_models, registry, settings
from .align import Aligner, Alignment
from .asr import AsrOptions, DualASR, Transcript, encoder_frames, normalize_word, resolve_device
from .encoder_layers import EncoderLayers
from .errors import MultipaError
from .features import TurnFeatures, build
from .lexicon import Lexicon, default_lexicon
from .textemb import text_embedder


@dataclass(frozen=True)
class PipelineOptions:
    """Which models the pipeline loads and where it runs."""

    recognizer: str | None = None  # ASR_r: registry name or CTranslate2 directory (None: the scorer's, else tiny.en)
    target: str | None = None  # ASR_t: registry name or CTranslate2 directory (None: the scorer's, else base)
    text_model: str = "minilm-l6"  # text embedding: registry name or transformers directory
    aligner: str = "multipa-aligner"  # phone-posterior checkpoint: registry name or path
    device: str = "auto"  # auto, cpu or cuda
    beam_size: int = 1  # Whisper beam (temperature is always 0)
    threads: int = 0  # CPU threads per Whisper model (0: the library's default)
    recognizer_threads: int = 0  # ASR_r's CPU threads beside ASR_t (0: MULTIPA_RECOGNIZER_THREADS, else half)
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
            "recognized": {
                "text": self.recognized.text,
                "whisper_words": self.recognized.to_dict()["words"],
                **self.recognized_alignment.to_dict(),
            },
            "target": {
                "text": self.target.text,
                "whisper_words": self.target.to_dict()["words"],
                **self.target_alignment.to_dict(),
            },
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

    def __init__(
        self,
        *,
        aligner: str = "multipa-aligner",
        text_model: str = "minilm-l6",
        device: str = "cpu",
        lexicon: Lexicon | None = None,
    ) -> None:
        self.aligner = Aligner(aligner, device=device)
        self.text = text_embedder(text_model, device=device)
        self.lexicon = lexicon or default_lexicon()
        self.key = f"{_file_digest(registry.resolve(aligner, kind='aligner'))}-{text_model.replace('/', '_')}"

    def align_words(self, log_probs: np.ndarray, words: list[str]) -> Alignment:
        """Force-align normalised words (words without phones are left out)."""
        return self.aligner.align(log_probs, words, [self.lexicon.phones(w) for w in words])

    def analyze(
        self,
        frames: np.ndarray,
        target: Transcript,
        recognized: Transcript,
        *,
        mode: str,
        duration: float,
        recognizer_frames: np.ndarray | None = None,
        encoder_layers: np.ndarray | None = None,
        timings: dict[str, float] | None = None,
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
    """All models of the feature stages, loaded once on one device; :meth:`analyze` runs one turn,
    :meth:`analyze_many` a batch.

    Args:
        options: model names, device and decoding options.
        lexicon: pronunciations (default: corpus lexicon, CMUdict, fallback rules).

    Raises:
        DeviceUnavailableError: ``cuda`` was asked for and is not there (before anything loads).
        ModelMismatchError: the aligner was trained on another ASR_t's frames (before Whisper loads).
    """

    def __init__(self, options: PipelineOptions | None = None, *, lexicon: Lexicon | None = None) -> None:
        self.options = options or PipelineOptions()
        # one device for every model: the Whisper models, the aligner, the text model, the encoder layers
        self.device = resolve_device(self.options.device if self.options.device != "auto" else settings.device())
        target = self.options.target or checkpoint_models.DEFAULT_TARGET
        recognizer = self.options.recognizer or checkpoint_models.DEFAULT_RECOGNIZED
        self.builder = FeatureBuilder(
            aligner=self.options.aligner, text_model=self.options.text_model, device=self.device, lexicon=lexicon
        )
        checkpoint_models.check_same(
            "target",
            self.builder.aligner.asr.target,
            checkpoint_models.describe(target),
            checkpoint=self.options.aligner,
        )
        asr_options = AsrOptions(
            beam_size=self.options.beam_size,
            device=self.device,
            threads=self.options.threads,
            word_timestamps=self.options.word_timestamps,
        )
        # ASR_r decodes beside ASR_t: with as many threads as ASR_t the two oversubscribe the cores
        # (measured on 2 cores, bench/stages.py asr-r-1: -26 % wall and -15 % CPU per turn, same output)
        recognizer_options = None
        side_threads = self.options.recognizer_threads or settings.recognizer_threads()
        target_threads = asr_options.threads or settings.threads()
        if not side_threads and self.options.parallel_asr and target_threads > 1:
            side_threads = max(1, target_threads // 2)
        if side_threads:
            recognizer_options = dataclasses.replace(asr_options, threads=side_threads)
        self.asr = DualASR(
            recognizer=recognizer, target=target, options=asr_options, recognizer_options=recognizer_options
        )
        # ASR_r's decoding overlaps ASR_t's: CTranslate2 releases the GIL, and greedy
        # decoding leaves cores idle between its small steps
        self._side = ThreadPoolExecutor(1, thread_name_prefix="asr-r") if self.options.parallel_asr else None
        self._shared_mel = self.asr.asr_r.same_features(self.asr.asr_t)
        self.layers = EncoderLayers(target, device=self.device) if self.options.encoder_layers else None

    def analyze(self, samples: np.ndarray, *, reference: str | None = None) -> TurnAnalysis:
        """Run the feature stages on 16 kHz mono float32 audio.

        Args:
            samples: the turn (checked against the limits of :mod:`multipa_core.audio`).
            reference: the expected sentence (closed mode); None for open mode.

        Raises:
            AudioError: the audio breaks a limit.
        """
        outcome = self.analyze_many([(samples, reference)])[0]
        if isinstance(outcome, MultipaError):
            raise outcome
        return outcome

    def analyze_many(self, turns: Sequence[tuple[np.ndarray, str | None]]) -> list[TurnAnalysis | MultipaError]:
        """Run the feature stages on turns that arrived together: each Whisper encoder and the
        encoder layers run once for the batch, the decoders and the stages after them turn by turn.
        A turn's analysis is the same alone or in a batch.

        Returns:
            per turn, its analysis or the error that rejected it (the others go on).
        """
        out: list[TurnAnalysis | MultipaError | None] = [None] * len(turns)
        live: list[int] = []
        for i, (samples, _) in enumerate(turns):
            try:
                audio_io.check(samples)
                live.append(i)
            except MultipaError as exc:
                out[i] = exc
        if live:
            try:
                outcomes: list[TurnAnalysis | MultipaError] = self._analyze_checked([turns[i] for i in live])
            except MultipaError as exc:  # a stage run once for the batch: every turn of it fails alike
                outcomes = [exc] * len(live)
            for i, outcome in zip(live, outcomes):
                out[i] = outcome
        return [o for o in out if o is not None]

    def _analyze_checked(self, turns: list[tuple[np.ndarray, str | None]]) -> list[TurnAnalysis | MultipaError]:
        started = time.perf_counter()
        timings: list[dict[str, float]] = [{} for _ in turns]
        with _timed_all(timings, "mel"):
            mels = [self.asr.asr_t.features(samples) for samples, _ in turns]
        recognized_mels: Sequence[np.ndarray | None] = mels
        if not self._shared_mel:
            recognized_mels = [None] * len(turns)
        side = self._side.submit(self._recognize_many, turns, recognized_mels) if self._side is not None else None
        with _timed_all(timings, "encode_target"):
            encodings = self.asr.asr_t.encode_many(mels)
            frames = [encoder_frames(e, len(samples)) for e, (samples, _) in zip(encodings, turns)]
        targets: list[Transcript | MultipaError] = []
        for (samples, reference), mel, encoding, timing in zip(turns, mels, encodings, timings):
            try:
                with _timed(timing, "asr_target"):
                    targets.append(
                        Transcript(reference.strip())
                        if reference is not None
                        else self.asr.asr_t.transcribe(samples, features=mel, encoder_output=encoding)
                    )
            except MultipaError as exc:
                targets.append(exc)
        layers: list[np.ndarray | None] = [None] * len(turns)
        if self.layers is not None:
            with _timed_all(timings, "encoder_layers"):
                layers = list(self.layers.statistics_many(mels, [len(samples) for samples, _ in turns]))
        if side is None:
            recognized = self._recognize_many(turns, recognized_mels)
        else:
            with _timed_all(timings, "asr_recognized_wait"):
                recognized = side.result()
        out: list[TurnAnalysis | MultipaError] = []
        for (samples, reference), target, r, turn_frames, turn_layers, timing in zip(
            turns, targets, recognized, frames, layers, timings
        ):
            if isinstance(target, MultipaError):
                out.append(target)
                continue
            transcript, recognizer_frames, timing["asr_recognized"] = r
            try:
                analysis = self.builder.analyze(
                    turn_frames,
                    target,
                    transcript,
                    mode="open" if reference is None else "closed",
                    duration=len(samples) / audio_io.SAMPLE_RATE,
                    recognizer_frames=recognizer_frames,
                    encoder_layers=turn_layers,
                    timings=timing,
                )
            except MultipaError as exc:
                out.append(exc)
                continue
            out.append(analysis)
        wall = time.perf_counter() - started  # wall time: ASR_r overlaps the stages above, and a batch ends together
        for outcome in out:
            if isinstance(outcome, TurnAnalysis):
                outcome.timings["total"] = wall
        return out

    def _recognize_many(
        self, turns: list[tuple[np.ndarray, str | None]], mels: Sequence[np.ndarray | None]
    ) -> list[tuple[Transcript, np.ndarray, float]]:
        """ASR_r's transcript of each turn, its encoder frames (the encoder runs once for the batch,
        for both) and the seconds it took (the batch's encoding and the turn's decoding)."""
        asr_r = self.asr.asr_r
        started = time.perf_counter()
        features = [asr_r.features(samples) if mel is None else mel for (samples, _), mel in zip(turns, mels)]
        encodings = asr_r.encode_many(features)
        shared = time.perf_counter() - started
        out = []
        for (samples, _), mel, encoding in zip(turns, features, encodings):
            started = time.perf_counter()
            transcript = asr_r.transcribe(samples, features=mel, encoder_output=encoding)
            out.append((transcript, encoder_frames(encoding, len(samples)), shared + time.perf_counter() - started))
        return out


@contextmanager
def _timed_all(timings: list[dict[str, float]], stage: str) -> Iterator[None]:
    """A stage run once for a batch: its time counts for every turn (they all wait for it)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        for timing in timings:
            timing[stage] = timing.get(stage, 0.0) + time.perf_counter() - started


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
