"""``multipa evaluate``: agreement with the experts on a data folder.

Open mode (default) gives the model audio only: ASR_t's transcript is the
target, and each of its words is scored against the mean of the reference words
that overlap it in time (reference words force-aligned to the audio). Closed
mode gives the reference text: its words are scored directly. Sentence targets
are the median of the five experts. An utterance that fails is logged with its
id, counted, and given the lowest training scores (the paper's rule).

ASR outputs and encoder frames come from the shared feature cache, so a second
evaluation of the same folder costs only the aligner, the features and the
scorer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from . import data, settings
from .asr import Transcript
from .dataset import open_word_targets, sentence_labels, word_labels
from .errors import MultipaError
from .metrics import agreement
from .model import SENTENCE_HEADS, WORD_HEADS
from .precompute import precompute

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Options of one evaluation."""

    data: str  # data folder (speechocean762 layout)
    mode: str = "open"  # open (audio only) or closed (reference text given)
    limit: int = 0  # first N utterances only (0 = all)
    part: str = "auto"  # split part; auto: development when the folder has development speakers, else all
    model: str = "multipa-scorer"  # scorer checkpoint, or "probe" for the ridge baseline
    probe_blend: bool = True  # False: the checkpoint's networks alone, its ridge probe left out (an ablation)
    cache: str = ""  # feature cache root ("" = the default cache directory)


def _utterances(config: EvalConfig) -> list[data.Utterance]:
    items = data.load_utterances(config.data)
    part = config.part
    if part == "auto":
        dev = set(data.load_split()["development"])
        part = "development" if any(u.speaker in dev for u in items) else "all"
    items = data.select(items, part)
    return items[: config.limit] if config.limit else items


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run the evaluation and return the report (the ``--json`` object)."""
    return evaluate_with_predictions(config)[0]


def evaluate_with_predictions(config: EvalConfig) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The report and the arrays behind it: ``sentence_pred``/``sentence_ref`` (n, 4) and
    ``word_pred``/``word_ref`` (words, 3), in the order of the heads (for plots)."""
    if config.mode not in ("open", "closed"):
        raise MultipaError(f"mode must be open or closed, not {config.mode!r}")
    started = time.time()
    cache_root = config.cache or str(settings.cache_dir() / "features")
    utterances = _utterances(config)
    scorer = None if config.model == "probe" else _scorer(config)
    layers = scorer is not None and scorer.encoder_layers
    pre = precompute(utterances, None, cache_root, recognized=True, target=config.mode == "open", layers=layers, desc="ASR")
    if scorer is None:
        predictions, failed = _probe_predictions(utterances, pre, cache_root)
    else:
        predictions, failed = _scorer_predictions(utterances, pre, config, scorer)
    sentence_pred = np.array([p[0] for p in predictions])
    sentence_ref = np.stack([sentence_labels(u) for u in utterances]) if utterances else np.zeros((0, 4))
    word_pred = np.concatenate([p[1] for p in predictions]) if predictions else np.zeros((0, 3))
    word_ref = np.concatenate([p[2] for p in predictions]) if predictions else np.zeros((0, 3))
    report: dict[str, Any] = {
        "n": len(utterances),
        "failed": failed,
        "mode": config.mode,
        "sentence": {h: _metrics(sentence_pred[:, i], sentence_ref[:, i]) for i, h in enumerate(SENTENCE_HEADS)},
        "word": {h: _metrics(word_pred[:, i], word_ref[:, i]) for i, h in enumerate(WORD_HEADS)},
        "seconds_per_utterance": round((time.time() - started) / max(1, len(utterances)), 4),
    }
    return report, {"sentence_pred": sentence_pred, "sentence_ref": sentence_ref, "word_pred": word_pred, "word_ref": word_ref}


def _metrics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    m = agreement(predicted, reference)
    return {"pcc": m["pcc"], "scc": m["scc"], "mse": m["mse"]}


Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]  # sentence (4,), words (W, 3), word targets (W, 3)


def _scorer(config: EvalConfig) -> Any:
    from .scorer import Scorer

    scorer = Scorer(config.model)
    if not config.probe_blend:
        scorer.probe = None
    return scorer


def _scorer_predictions(utterances: list[data.Utterance], pre: Any, config: EvalConfig, scorer: Any) -> tuple[list[Prediction], int]:
    from .pipeline import FeatureBuilder

    builder = FeatureBuilder(aligner=scorer.aligner, text_model=scorer.text_model)
    floor = np.array([scorer.floor.get(h, 0.0) for h in SENTENCE_HEADS])
    out: list[Prediction] = []
    failed = 0
    for utt in tqdm(utterances, desc=f"evaluating ({config.mode})", unit="utt", dynamic_ncols=True):
        try:
            if utt.utt in pre.failed or utt.utt not in pre.frames:
                raise MultipaError("the audio could not be decoded or transcribed")
            target = pre.target[utt.utt] if config.mode == "open" else Transcript(utt.text)
            analysis = builder.analyze(pre.frames[utt.utt].astype(np.float32), target, pre.recognized[utt.utt], mode=config.mode, duration=0.0, recognizer_frames=pre.recognizer_frames.get(utt.utt), encoder_layers=pre.encoder_layers.get(utt.utt))
            scores = scorer.score([analysis.features])[0]
        except MultipaError as exc:
            log.warning("utterance %s failed: %s", utt.utt, exc)
            failed += 1
            out.append((floor, np.zeros((0, 3)), np.zeros((0, 3))))
            continue
        sentence = np.array([scores.sentence[h] for h in SENTENCE_HEADS])
        words = np.array([[w[h] for h in WORD_HEADS] for w in scores.words]).reshape(-1, 3)
        if config.mode == "open":
            targets = open_word_targets(analysis, utt, builder)
        else:
            labels = word_labels(utt)
            targets = labels if len(labels) == len(words) else np.full_like(words, np.nan)
        out.append((sentence, words, targets))
    return out, failed


def _probe_predictions(utterances: list[data.Utterance], pre: Any, cache_root: str) -> tuple[list[Prediction], int]:
    """The ridge baseline, fitted on the training and validation speakers of the default data."""
    from . import probe
    from .precompute import precompute as fill

    shared = data.load_utterances(settings.data_dir())
    fit_x, fit_y = [], []
    for part in ("train", "validation"):
        items = data.select(shared, part)
        frames = fill(items, None, cache_root, desc=f"frames {part}").frames
        fit_x.append(np.stack([probe.summarise(frames[u.utt]) for u in items if u.utt in frames]))
        fit_y.append(np.stack([sentence_labels(u) for u in items if u.utt in frames]))
    model = probe.fit_with_validation(fit_x[0], fit_y[0], fit_x[1], fit_y[1])
    out: list[Prediction] = []
    failed = 0
    for utt in utterances:
        if utt.utt not in pre.frames:
            failed += 1
            out.append((fit_y[0].min(axis=0), np.zeros((0, 3)), np.zeros((0, 3))))
            continue
        sentence = np.clip(model.predict(probe.summarise(pre.frames[utt.utt]))[0], 0, 10)
        out.append((sentence, np.zeros((0, 3)), np.zeros((0, 3))))
    return out, failed


def format_table(report: dict[str, Any]) -> str:
    """A readable table of a report."""
    def cell(v: float | None) -> str:
        return "   -  " if v is None else f"{v:6.3f}"

    lines = [f"mode {report['mode']}   n {report['n']}   failed {report['failed']}   {report['seconds_per_utterance']:.3f} s/utterance", "", f"{'':<22}{'PCC':>7}{'SCC':>7}{'MSE':>7}"]
    for level in ("sentence", "word"):
        for aspect, m in report[level].items():
            lines.append(f"{level + ' ' + aspect:<22}{cell(m['pcc']):>7}{cell(m['scc']):>7}{cell(m['mse']):>7}")
    return "\n".join(lines)
