"""The two Whisper recognisers of MultiPA, through faster-whisper (CTranslate2).

ASR_r (a small English model) gives the *recognized* transcript: what the
learner actually said, errors included. ASR_t (a larger model) stands in for the
*target* transcript: what the learner meant to say. Both decode English at
temperature 0 only (the fallback sampler is nondeterministic and multiplies
worst-case latency), with word timestamps.

ASR_t's encoder runs once per turn: its output is handed to the decoder and also
returned (the frames inside the audio, 50 per second) as the acoustic embedding
and the aligner's input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import registry, settings
from .checkpoint_models import DEFAULT_RECOGNIZED, DEFAULT_TARGET
from .audio import SAMPLE_RATE
from .errors import ConfigError, DeviceUnavailableError

FRAMES_PER_SECOND = 50  # Whisper encoder frames: 10 ms mel hop, stride 2
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_SECOND
WINDOW_FRAMES = 1500  # one 30 s window


@dataclass(frozen=True)
class AsrOptions:
    """How a Whisper model decodes."""

    beam_size: int = 1  # greedy by default: a beam of 5 costs ~2x latency for little here
    compute_type: str = "int8"  # CTranslate2 compute type on CPU; float16 is used on CUDA
    device: str = "auto"  # auto, cpu or cuda
    threads: int = 0  # CPU threads (0: the library's default)
    word_timestamps: bool = True  # Whisper's own word times (an extra decoder pass; the features use the aligner's)


@dataclass
class Word:
    """One recognised word with its Whisper timestamps (seconds)."""

    text: str
    start: float
    end: float
    probability: float


@dataclass
class Transcript:
    """A decoded transcript."""

    text: str
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "words": [
                {
                    "text": w.text,
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "probability": round(w.probability, 4),
                }
                for w in self.words
            ],
        }


def resolve_device(requested: str) -> str:
    """Where every model runs: ``auto`` becomes ``cuda`` when both CTranslate2 (the Whisper
    models) and torch (the networks) see a GPU, else ``cpu``.

    Raises:
        DeviceUnavailableError: ``cuda`` was asked for and one of the two libraries has no GPU
            (at start, rather than on the first turn or with half the models on the CPU).
        ConfigError: the device is not one of ``auto``, ``cpu``, ``cuda``.
    """
    if requested == "cpu":
        return "cpu"
    if requested not in ("auto", "cuda"):
        raise ConfigError(f"the device must be auto, cpu or cuda, not {requested!r}")
    import ctranslate2
    import torch

    whisper, networks = ctranslate2.get_cuda_device_count() > 0, bool(torch.cuda.is_available())
    if requested == "auto":
        return "cuda" if whisper and networks else "cpu"
    if not (whisper and networks):
        missing = " and ".join(name for name, seen in (("CTranslate2", whisper), ("torch", networks)) if not seen)
        raise DeviceUnavailableError(
            f"device cuda was asked for, but {missing} sees no CUDA GPU (use --device cpu or auto)"
        )
    return "cuda"


def encoder_frame_count(num_samples: int) -> int:
    """Encoder frames that cover ``num_samples`` of 16 kHz audio (at most one window)."""
    return max(1, min(WINDOW_FRAMES, math.ceil(num_samples / SAMPLES_PER_FRAME)))


_WORD_CHARS = re.compile(r"[^a-z0-9']+")


def normalize_word(text: str) -> str:
    """Lower-case a word and drop punctuation around it (apostrophes stay)."""
    return _WORD_CHARS.sub("", text.lower().replace("’", "'")).strip("'")


class WhisperASR:
    """One Whisper model, loaded once.

    Args:
        model: a registry name or a local CTranslate2 Whisper directory.
        options: decoding and device options.
    """

    def __init__(self, model: str = DEFAULT_TARGET, *, options: AsrOptions | None = None) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.options = options or AsrOptions()
        self.device = resolve_device(self.options.device if self.options.device != "auto" else settings.device())
        path = registry.resolve(model, kind="whisper")
        compute_type = self.options.compute_type if self.device == "cpu" else "float16"
        self.model = WhisperModel(
            str(path),
            device=self.device,
            compute_type=compute_type,
            cpu_threads=self.options.threads or settings.threads(),
            local_files_only=True,
        )
        self.tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe", language="en"
        )
        self._transcription_options = self._make_options()

    def _make_options(self) -> Any:
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        return TranscriptionOptions(
            beam_size=self.options.beam_size,
            best_of=1,
            patience=1.0,
            length_penalty=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            log_prob_threshold=None,
            no_speech_threshold=None,
            compression_ratio_threshold=None,
            condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5,
            temperatures=[0.0],
            initial_prompt=None,
            prefix=None,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(self.tokenizer, [-1]),
            without_timestamps=False,
            max_initial_timestamp=1.0,
            word_timestamps=self.options.word_timestamps,
            prepend_punctuations="\"'“¿([{-",
            append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False,
            max_new_tokens=None,
            clip_timestamps="0",
            hallucination_silence_threshold=None,
            hotwords=None,
        )

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel features of the whole turn (n_mels, frames + 1)."""
        return self.model.feature_extractor(audio)

    def same_features(self, other: "WhisperASR") -> bool:
        """Whether ``other``'s log-mel features can stand in for ours (same extractor settings)."""
        mine, theirs = self.model.feature_extractor, other.model.feature_extractor
        return (
            all(getattr(mine, k) == getattr(theirs, k) for k in ("n_fft", "hop_length", "sampling_rate"))
            and mine.mel_filters.shape == theirs.mel_filters.shape
        )

    def encode(self, features: np.ndarray) -> Any:
        """Run the encoder once on the first padded 30 s window (a CTranslate2 StorageView)."""
        from faster_whisper.audio import pad_or_trim

        window = pad_or_trim(features[:, : self.model.feature_extractor.nb_max_frames])
        return self.model.encode(window)

    def encode_many(self, features: list[np.ndarray]) -> list[Any]:
        """:meth:`encode` of several turns in one batch (one encoder pass); an encoding per turn."""
        if len(features) == 1:
            return [self.encode(features[0])]
        from faster_whisper.audio import pad_or_trim

        windows = np.stack([pad_or_trim(f[:, : self.model.feature_extractor.nb_max_frames]) for f in features])
        return split_encoding(self.model.encode(windows))

    def transcribe(
        self, audio: np.ndarray, *, features: np.ndarray | None = None, encoder_output: Any = None
    ) -> Transcript:
        """Decode 16 kHz mono float32 audio, reusing a precomputed encoding when given."""
        if features is None:
            features = self.features(audio)
        segments = self.model.generate_segments(
            features, self.tokenizer, self._transcription_options, False, encoder_output
        )
        words: list[Word] = []
        texts: list[str] = []
        for segment in segments:
            texts.append(segment.text.strip())
            for w in segment.words or ():
                if normalize_word(w.word):
                    words.append(Word(w.word.strip(), float(w.start), float(w.end), float(w.probability)))
        return Transcript(" ".join(t for t in texts if t), words)

    def transcribe_with_frames(
        self, audio: np.ndarray, *, features: np.ndarray | None = None
    ) -> tuple[Transcript, np.ndarray]:
        """The transcript and the encoder frames inside the audio (the encoder runs once for both)."""
        if features is None:
            features = self.features(audio)
        encoding = self.encode(features)
        return self.transcribe(audio, features=features, encoder_output=encoding), encoder_frames(encoding, len(audio))


def split_encoding(encoder_output: Any) -> list[Any]:
    """A batch's encoder output as one (1, frames, dim) encoding per turn, on the CPU (the
    decoder moves an encoding to its device; a turn's is about 1.5 MB)."""
    import ctranslate2

    view = encoder_output
    if view.device != "cpu":
        view = view.to_device(ctranslate2.Device.cpu)
    array = np.asarray(view)
    return [ctranslate2.StorageView.from_array(np.ascontiguousarray(array[i : i + 1])) for i in range(array.shape[0])]


def encoder_frames(encoder_output: Any, num_samples: int) -> np.ndarray:
    """The encoder frames inside the audio, as float32 (frames, dim) on the CPU."""
    import ctranslate2

    view = encoder_output
    if view.device != "cpu":
        view = view.to_device(ctranslate2.Device.cpu)
    array = np.asarray(view, dtype=np.float32)
    return np.ascontiguousarray(array[0, : encoder_frame_count(num_samples)])


@dataclass
class AsrResult:
    """Both transcripts of a turn and ASR_t's encoder frames."""

    recognized: Transcript  # ASR_r
    target: Transcript  # ASR_t
    frames: np.ndarray  # (frames, ASR_t's frame size: 512 for Whisper base) float32, 50 per second, inside the audio


class DualASR:
    """ASR_r and ASR_t, loaded once, run on one turn.

    Args:
        recognizer: ASR_r model name or path (default Whisper tiny.en).
        target: ASR_t model name or path (default Whisper base).
        options: shared decoding and device options.
        recognizer_options: ASR_r's, when they differ (its own thread count); default ``options``.
    """

    def __init__(
        self,
        *,
        recognizer: str = DEFAULT_RECOGNIZED,
        target: str = DEFAULT_TARGET,
        options: AsrOptions | None = None,
        recognizer_options: AsrOptions | None = None,
    ) -> None:
        self.asr_r = WhisperASR(recognizer, options=recognizer_options or options)
        self.asr_t = WhisperASR(target, options=options)

    def encode_target(self, audio: np.ndarray) -> tuple[np.ndarray, Any]:
        """ASR_t's features and encoder output for a turn."""
        features = self.asr_t.features(audio)
        return features, self.asr_t.encode(features)

    def __call__(self, audio: np.ndarray, *, need_target: bool = True) -> AsrResult:
        features, encoding = self.encode_target(audio)
        target = (
            self.asr_t.transcribe(audio, features=features, encoder_output=encoding) if need_target else Transcript("")
        )
        recognized = self.asr_r.transcribe(audio)
        return AsrResult(recognized=recognized, target=target, frames=encoder_frames(encoding, len(audio)))
