"""The public entry point: a turn's audio (and optional reference) in, an Assessment out."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from . import checkpoint_models, settings
from .asr import resolve_device
from . import diagnosis as diag
from . import feedback as fb
from .errors import MultipaError
from .features import WORD_SCALARS
from .ipa import ipa, word_ipa
from .pipeline import FeaturePipeline, PipelineOptions, TurnAnalysis
from .scorer import Scorer, Scores, needs_improvement

log = logging.getLogger(__name__)


@dataclass
class PhoneResult:
    """One phone of a word."""

    phone: str  # ARPAbet with stress digit
    start_ms: int
    end_ms: int
    probability: float  # the aligner's confidence that this phone was said (0..1)
    ipa: str = ""  # the same phone in IPA
    heard: str | None = None  # ARPAbet phone heard in its place (None: deleted, or not diagnosed)
    heard_ipa: str | None = None
    error: str | None = None  # none, substitution or deletion (None: not diagnosed)
    nbest: list[dict[str, Any]] = field(default_factory=list)  # the 3 likeliest phones: phone, ipa, probability


@dataclass
class WordResult:
    """Scores of one target word (0..10)."""

    text: str
    start_ms: int
    end_ms: int
    accuracy: float
    stress: float
    total: float
    needs_improvement: bool  # below the training mean minus one standard deviation
    phones: list[PhoneResult] = field(default_factory=list)
    ipa: str = ""  # the word's canonical pronunciation in IPA
    errors: list[str] = field(default_factory=list)  # error types (diagnosis.ERROR_TYPES) of this word
    inserted_phones: list[dict[str, Any]] = field(
        default_factory=list
    )  # heard but not in the word: position, phone, ipa
    stress_check: dict[str, Any] | None = None  # expected_syllable, heard_syllable, ok; None when it cannot be told


@dataclass
class Assessment:
    """The assessment of one turn; JSON-serialisable through :meth:`to_dict`."""

    mode: str  # "open" or "closed"
    transcript: str  # what was recognized (ASR_r)
    target_transcript: str  # what the learner meant (ASR_t), or the reference in closed mode
    sentence: dict[str, float]  # accuracy, fluency, prosody, total (+ completeness in closed mode)
    words: list[WordResult]
    duration_ms: int
    timings_ms: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    diagnosis: dict[str, Any] = field(default_factory=dict)  # errors (turn-level), insertions (closed mode), prosody
    feedback: list[dict[str, Any]] = field(default_factory=list)  # at most three ranked items (multipa_core.feedback)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _round(x: float) -> float:
    return round(float(x), 2)


def build_assessment(
    analysis: TurnAnalysis,
    scores: Scores,
    thresholds: dict[str, float],
    samples: np.ndarray | None = None,
    *,
    diagnose: bool = True,
) -> Assessment:
    """Combine the pipeline's analysis and the scorer's output, with the diagnosis of what
    went wrong (heard phones, error types, prosody details and feedback; see
    :mod:`multipa_core.diagnosis`). ``samples``: the turn's audio, for pauses, stress and pitch."""
    alignment = analysis.target_alignment
    started = time.perf_counter()
    needs = [needs_improvement(s, thresholds) for s in scores.words]
    diagnosis = _diagnose(analysis, scores, needs, samples) if diagnose else diag.TurnDiagnosis()
    words = []
    for k, (w, s) in enumerate(zip(alignment.words, scores.words)):
        wd = diagnosis.words[k] if k < len(diagnosis.words) else diag.WordDiagnosis([])
        phones = []
        for j, i in enumerate(w.phones):
            seg = alignment.phones[i]
            pd = wd.phones[j] if j < len(wd.phones) else None
            phones.append(
                PhoneResult(
                    seg.phone, int(seg.start * 1000), int(seg.end * 1000), round(seg.probability, 3), ipa(seg.phone),
                    pd.heard if pd else None, ipa(pd.heard) if pd and pd.heard else None, pd.error if pd else None,
                    [{"phone": p, "ipa": ipa(p), "probability": v} for p, v in pd.nbest] if pd else [],
                )
            )  # fmt: skip
        words.append(
            WordResult(
                w.text, int(w.start * 1000), int(w.end * 1000), _round(s["accuracy"]), _round(s["stress"]), _round(s["total"]), needs[k], phones,
                word_ipa([alignment.phones[i].phone for i in w.phones]), list(diagnosis.word_errors[k]) if k < len(diagnosis.word_errors) else [],
                [{"position": pos, "phone": p, "ipa": ipa(p)} for pos, p in wd.inserted], wd.stress,
            )
        )  # fmt: skip
    sentence = {k: _round(v) for k, v in scores.sentence.items()}
    if analysis.mode == "closed":
        paired = analysis.features.word_scalars[:, WORD_SCALARS.index("paired")]
        sentence["completeness"] = _round(10.0 * float(np.mean(paired)) if len(paired) else 0.0)
    feedback = (
        [
            it.to_dict()
            for it in fb.collect(
                diagnosis, alignment, scores.words, sentence, stress_below=thresholds.get("stress", 10.0)
            )
        ]
        if diagnosis.words
        else []
    )
    summary: dict[str, Any] = {"errors": diagnosis.errors, "insertions": diagnosis.insertions}
    if diagnosis.prosody is not None:
        summary["prosody"] = asdict(diagnosis.prosody)
    analysis.timings["diagnosis"] = time.perf_counter() - started
    if "total" in analysis.timings:
        analysis.timings["total"] += analysis.timings["diagnosis"]
    return Assessment(
        mode=analysis.mode,
        transcript=analysis.recognized.text,
        target_transcript=analysis.target.text,
        sentence=sentence,
        words=words,
        duration_ms=int(round(analysis.duration * 1000)),
        timings_ms={k: round(v * 1000, 1) for k, v in analysis.timings.items()},
        diagnosis=summary,
        feedback=feedback,
    )


def _diagnose(
    analysis: TurnAnalysis, scores: Scores, needs: list[bool], samples: np.ndarray | None
) -> diag.TurnDiagnosis:
    """The diagnosis of a turn; a failure in it costs the feedback, never the scores."""
    try:
        return diag.diagnose_turn(analysis, [s["accuracy"] for s in scores.words], needs, samples)
    except Exception:  # noqa: BLE001 - the scores are worth sending without it
        log.exception("the diagnosis of a turn failed; sending its scores without it")
        return diag.TurnDiagnosis()


class Assessor:
    """Every model of the assessment, loaded once, all on one device.

    Args:
        options: pipeline options (their ``device`` is every model's); the aligner is taken
            from the scorer checkpoint, and so are the Whisper models (``target``,
            ``recognizer``) where the options leave them None.
        scorer: scorer checkpoint name or path.

    Raises:
        DeviceUnavailableError: ``cuda`` was asked for and is not there (before anything loads).
        ModelMismatchError: a Whisper model of the options is not the one the scorer (or its
            aligner) was trained with (before Whisper loads).
    """

    def __init__(self, options: PipelineOptions | None = None, *, scorer: str = "multipa-scorer") -> None:
        options = options or PipelineOptions()
        self.device = resolve_device(options.device if options.device != "auto" else settings.device())
        self.scorer = Scorer(scorer, device=self.device)
        target, recognized = checkpoint_models.choose(
            self.scorer.asr, target=options.target, recognized=options.recognizer, checkpoint=scorer
        )
        self.asr_models = checkpoint_models.AsrModels(target, recognized)  # the Whisper models this assessor runs
        options = replace(
            options,
            device=self.device,
            target=target.model,
            recognizer=recognized.model,
            aligner=self.scorer.aligner,
            text_model=self.scorer.text_model,
            encoder_layers=self.scorer.encoder_layers,
        )
        self.pipeline = FeaturePipeline(options)
        self.diagnose = True  # heard phones, error types, prosody and feedback (off: scores only, for timing it)

    def placement(self) -> dict[str, str]:
        """Where each model runs (``cpu``, ``cuda:0``): the Whisper models and every network."""
        networks: dict[str, Any] = {f"scorer[{i}]": net for i, net in enumerate(self.scorer.nets)}
        networks["aligner"] = self.pipeline.builder.aligner.net
        text = getattr(self.pipeline.builder.text, "model", None)
        if text is not None:
            networks["text_model"] = text
        out = {
            "asr_recognized": _whisper_device(self.pipeline.asr.asr_r),
            "asr_target": _whisper_device(self.pipeline.asr.asr_t),
        }
        for name, net in networks.items():
            out[name] = ",".join(sorted({str(p.device) for p in [*net.parameters(), *net.buffers()]}))
        if self.pipeline.layers is not None:
            out["encoder_layers"] = ",".join(sorted({str(w.device) for w in self.pipeline.layers.weights.values()}))
        return out

    def assess(self, samples: np.ndarray, *, reference: str | None = None) -> Assessment:
        """Assess one turn of 16 kHz mono float32 audio.

        Raises:
            AudioError: the audio breaks a limit of :mod:`multipa_core.audio`.
        """
        outcome = self.assess_many([(samples, reference)])[0]
        if isinstance(outcome, MultipaError):
            raise outcome
        return outcome

    def warm_up(self) -> None:
        """Run every model once on a synthetic voiced sound, so that the first learner's turn
        does not pay for the libraries' first-call set-up (about a second on CPU)."""
        self.pipeline.builder.lexicon.warm_up()  # CMUdict, else loaded inside the first turn with a rare word
        t = np.arange(2 * 16000, dtype=np.float32) / 16000
        voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        try:
            self.assess((0.1 * voice).astype(np.float32))
        except MultipaError:
            pass  # the sound has no words to score; the models have run all the same

    def assess_many(self, turns: list[tuple[np.ndarray, str | None]]) -> list[Assessment | MultipaError]:
        """Assess turns that arrived together: the encoders and the scoring network run once
        for all of them (padded batches), decoding and alignment turn by turn.

        Returns:
            per turn, its assessment or the error that rejected it (the others go on).
        """
        analyses = self.pipeline.analyze_many(turns)
        ok = [a for a in analyses if isinstance(a, TurnAnalysis)]
        started = time.perf_counter()
        scores = iter(self.scorer.score([a.features for a in ok]))
        seconds = time.perf_counter() - started
        out: list[Assessment | MultipaError] = []
        for analysis, (samples, _) in zip(analyses, turns):
            if isinstance(analysis, MultipaError):
                out.append(analysis)
                continue
            analysis.timings["score"] = seconds
            analysis.timings["total"] = analysis.timings.get("total", 0.0) + seconds  # wall time
            out.append(
                build_assessment(analysis, next(scores), self.scorer.thresholds, samples, diagnose=self.diagnose)
            )
        return out


def _whisper_device(asr: Any) -> str:
    """A CTranslate2 Whisper model's device, as torch writes it (``cuda:0``)."""
    model = asr.model.model
    return "cpu" if model.device == "cpu" else ",".join(f"{model.device}:{i}" for i in model.device_index)
