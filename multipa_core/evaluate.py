"""``multipa evaluate``: agreement with the experts on a data folder.

Open mode (default) gives the model audio only: ASR_t's transcript is the
target, and its words are compared with the experts' by two rules reported side
by side: ``word``, each word scored against the mean of the reference words that
overlap it in time (reference words force-aligned to the audio; the paper's
rule), and ``word_levenshtein``, the recognized words aligned to the reference
words by Levenshtein alignment, matched and substituted pairs compared,
insertions and deletions left out (the open-response literature's rule). Closed
mode gives the reference text: its words are scored directly (both rules are the
same). Sentence targets are the median of the five experts. The needs-improvement
flags are measured as a detector of words whose expert median accuracy is below
10 (precision, recall, F1), and so is the diagnosis' word flag (a word whose
error type is ``mispronunciation``, or ``omission`` in closed mode; see
:mod:`multipa_core.diagnosis`), with the count of each error type. An utterance
that fails is logged with its id, counted, and given the lowest training scores
(the paper's rule).

Cross-validation: ``fold`` on a bagged checkpoint that records its folds (the
shipped scorer: network K trained without the speakers of fold K) scores the fold
with its own network alone, the probe blend left out (it was refitted on every
speaker) and the needs-improvement thresholds taken from the other folds' word
labels; ``per_speaker`` keeps the first N utterances of each speaker, a
deterministic subsample. :func:`multipa_core.crossval.evaluate_folds` runs every
fold so and pools them.

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
from .checkpoint_models import DEFAULT_RECOGNIZED, DEFAULT_TARGET
from .asr import Transcript
from .dataset import (
    closed_examples,
    levenshtein_word_targets,
    open_examples,
    open_word_targets,
    sentence_labels,
    word_labels,
)
from .errors import MultipaError
from .metrics import agreement
from .aspects import SENTENCE_NAMES as SENTENCE_HEADS, WORD_NAMES as WORD_HEADS
from .precompute import precompute
from .word_model import INPUTS as WORD_INPUTS

log = logging.getLogger(__name__)
NO_WORDS = np.zeros((0, len(WORD_HEADS)))  # the word scores of a turn with none


@dataclass(frozen=True)
class EvalConfig:
    """Options of one evaluation."""

    data: str  # data folder (speechocean762 layout)
    mode: str = "open"  # open (audio only) or closed (reference text given)
    limit: int = 0  # first N utterances only (0 = all)
    part: str = "all"  # part of the older fixed split (train, validation, development) or all; "auto" reads as all
    fold: int = -1  # evaluate only the speakers of this cross-validation fold (-1: every utterance of the folder)
    folds: str = ""  # folds file ("" = multipa_core/splits/speechocean762-folds.json)
    model: str = "multipa-scorer"  # scorer checkpoint, or "probe" for the ridge baseline
    probe_blend: bool = True  # False: the checkpoint's networks alone, its ridge probe left out (an ablation)
    cache: str = ""  # feature cache root ("" = the default cache directory)
    per_speaker: int = 0  # first N utterances of each speaker only, in the folder's order (0 = all)
    diagnose: bool = True  # also run the diagnosis and score its word flag and error types
    word_stage: bool = True  # False: the networks' word scores, the checkpoint's word stage left out


def _utterances(config: EvalConfig) -> list[data.Utterance]:
    items = data.load_utterances(config.data)
    if config.fold >= 0:
        folds = data.load_folds(config.folds)
        if config.fold >= len(folds):
            raise MultipaError(f"fold {config.fold} out of range: the folds file has {len(folds)} folds")
        speakers = set(folds[config.fold])
        items = [u for u in items if u.speaker in speakers]
    else:
        items = data.select(items, "all" if config.part == "auto" else config.part)
    if config.per_speaker:
        seen: dict[str, int] = {}
        kept = []
        for u in items:
            seen[u.speaker] = seen.get(u.speaker, 0) + 1
            if seen[u.speaker] <= config.per_speaker:
                kept.append(u)
        items = kept
    return items[: config.limit] if config.limit else items


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run the evaluation and return the report (the ``--json`` object)."""
    return evaluate_with_predictions(config)[0]


def evaluate_with_predictions(config: EvalConfig) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The report and the arrays behind it: ``sentence_pred``/``sentence_ref`` (n, 4),
    ``word_pred``/``word_ref`` (words, 3) by the overlap rule and ``word_lev_pred``/
    ``word_lev_ref`` by the Levenshtein rule, in the order of the heads (for plots and
    cross-validation); with a scorer, ``word_needs`` (words,) the needs-improvement flags,
    and with the diagnosis ``word_errors`` (words, types of ``diagnosis_eval.WORD_TYPES``;
    NaN where the diagnosis could not run) and ``turn_errors`` (n, ``TURN_TYPES``)."""
    if config.mode not in ("open", "closed"):
        raise MultipaError(f"mode must be open or closed, not {config.mode!r}")
    started = time.time()
    cache_root = config.cache or str(settings.cache_dir() / "features")
    utterances = _utterances(config)
    scorer, checkpoint = (None, {}) if config.model == "probe" else _scorer(config)
    layers = scorer is not None and scorer.encoder_layers
    models = scorer.asr if scorer is not None else None  # the ASR the checkpoint was trained with (probe: the defaults)
    pre = precompute(
        utterances,
        None,
        cache_root,
        recognized=True,
        target=config.mode == "open",
        layers=layers,
        desc="ASR",
        target_model=models.target.model if models is not None else DEFAULT_TARGET,
        recognized_model=models.recognized_model if models is not None else DEFAULT_RECOGNIZED,
    )
    diagnosed: list[tuple[np.ndarray, np.ndarray]] = []
    word_rows = None
    if scorer is None:
        predictions, failed = _probe_predictions(utterances, pre, cache_root)
    else:
        predictions, failed, word_rows = _scorer_predictions(utterances, pre, config, scorer)
        if config.diagnose:
            diagnosed = _diagnosed(utterances, pre, config, scorer, predictions)
    sentence_pred = np.array([p[0] for p in predictions])
    sentence_ref = (
        np.stack([sentence_labels(u) for u in utterances]) if utterances else np.zeros((0, len(SENTENCE_HEADS)))
    )
    arrays = {"sentence_pred": sentence_pred, "sentence_ref": sentence_ref}
    for name, index in (("word", 2), ("word_lev", 3)):
        arrays[f"{name}_pred"] = np.concatenate([p[1] for p in predictions]) if predictions else NO_WORDS
        arrays[f"{name}_ref"] = np.concatenate([p[index] for p in predictions]) if predictions else NO_WORDS
    thresholds = scorer.thresholds if scorer is not None else {}
    if scorer is not None:
        arrays["word_needs"] = needs_flags(arrays["word_pred"], thresholds)
    if word_rows is not None:
        arrays["word_inputs"] = word_rows
    if diagnosed:
        arrays["word_errors"] = np.concatenate([d[0] for d in diagnosed])
        arrays["turn_errors"] = np.stack([d[1] for d in diagnosed])
    report = summarize(arrays, thresholds)
    report = {
        "n": len(utterances),
        "failed": failed,
        "mode": config.mode,
        **checkpoint,
        **report,
        "seconds_per_utterance": round((time.time() - started) / max(1, len(utterances)), 4),
    }
    return report, arrays


def summarize(arrays: dict[str, np.ndarray], thresholds: dict[str, float]) -> dict[str, Any]:
    """Sentence and word agreement (both word rules) and needs-improvement detection of
    a set of predictions (the arrays of :func:`evaluate_with_predictions`)."""
    sentence_pred, sentence_ref = arrays["sentence_pred"], arrays["sentence_ref"]
    report: dict[str, Any] = {
        "sentence": {h: _metrics(sentence_pred[:, i], sentence_ref[:, i]) for i, h in enumerate(SENTENCE_HEADS)},
        "word": {h: _metrics(arrays["word_pred"][:, i], arrays["word_ref"][:, i]) for i, h in enumerate(WORD_HEADS)},
        "word_levenshtein": {
            h: _metrics(arrays["word_lev_pred"][:, i], arrays["word_lev_ref"][:, i]) for i, h in enumerate(WORD_HEADS)
        },
    }
    if thresholds:
        report["needs_improvement"] = detection(arrays["word_pred"], arrays["word_ref"], thresholds)
        report["needs_improvement_levenshtein"] = detection(arrays["word_lev_pred"], arrays["word_lev_ref"], thresholds)
    elif "word_needs" in arrays:  # pooled folds, each judged with its own thresholds
        report["needs_improvement"] = flag_detection(arrays["word_needs"], arrays["word_ref"])
        report["needs_improvement_levenshtein"] = flag_detection(arrays["word_needs"], arrays["word_lev_ref"])
    if "word_errors" in arrays:
        report["diagnosis"] = diagnosis_detection(arrays)
    return report


NEEDS_WORK_BELOW = 10.0  # a word needs work when its expert median accuracy is below this


def detection(word_pred: np.ndarray, word_ref: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    """The needs-improvement flags as a detector of words the experts scored below 10 in
    accuracy: precision, recall and F1 over the words with a label, and the precision
    of flagging every word (the base rate)."""
    return {
        **flag_detection(needs_flags(word_pred, thresholds), word_ref),
        "thresholds": {k: round(v, 4) for k, v in thresholds.items()},
    }


def needs_flags(word_pred: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """The needs-improvement flag (0/1) of each row of word scores."""
    from .scorer import needs_improvement

    return np.array(
        [needs_improvement({h: float(row[i]) for i, h in enumerate(WORD_HEADS)}, thresholds) for row in word_pred],
        dtype=float,
    )


def fold_flags(word_pred: np.ndarray, fold_of_word: np.ndarray, thresholds: dict[int, dict[str, float]]) -> np.ndarray:
    """The needs-improvement flags of pooled held-out words, each fold's words judged with
    that fold's thresholds (``thresholds``: fold -> thresholds); NaN for a word of no fold listed."""
    flags = np.full(len(word_pred), np.nan)
    for fold, fold_thresholds in thresholds.items():
        rows = fold_of_word == fold
        flags[rows] = needs_flags(word_pred[rows], fold_thresholds)
    return flags


def flag_detection(flags: np.ndarray, word_ref: np.ndarray) -> dict[str, Any]:
    """Word flags (0/1, NaN: no verdict) as a detector of words the experts scored below 10
    in accuracy: precision, recall and F1 over the words with a label and a verdict, and
    the precision of flagging every word (the base rate)."""
    known = np.isfinite(word_ref[:, 0]) & np.isfinite(flags)
    truth = word_ref[known, 0] < NEEDS_WORK_BELOW
    flagged = flags[known] > 0
    hits = int(np.sum(flagged & truth))
    precision = hits / int(flagged.sum()) if flagged.any() else None
    recall = hits / int(truth.sum()) if truth.any() else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    r = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    return {
        "precision": r(precision),
        "recall": r(recall),
        "f1": r(f1),
        "words": int(known.sum()),
        "need_work": int(truth.sum()),
        "flagged": int(flagged.sum()),
        "true_positives": hits,
        "precision_flagging_every_word": r(truth.mean()) if len(truth) else None,
    }


def diagnosis_detection(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The diagnosis' word flag as a detector (both word rules), and each error type's count
    and the share of its words that the experts scored below 10."""
    from .diagnosis_eval import PROBLEM_TYPES, TURN_TYPES, WORD_TYPES, problem_flags

    errors = arrays["word_errors"]
    flags = problem_flags(errors)
    known = np.isfinite(flags)
    truth = arrays["word_ref"][:, 0] < NEEDS_WORK_BELOW
    labelled = known & np.isfinite(arrays["word_ref"][:, 0])
    types: dict[str, Any] = {}
    for k, name in enumerate(WORD_TYPES):
        has = known & (np.nan_to_num(errors[:, k]) > 0)
        hits = int(np.sum(has & labelled & truth))
        with_label = int(np.sum(has & labelled))
        types[name] = {
            "words": int(has.sum()),
            "labelled": with_label,
            "below_10": hits,
            "precision": round(hits / with_label, 4) if with_label else None,
        }
    turns = arrays.get("turn_errors", np.zeros((0, len(TURN_TYPES))))
    # a turn the diagnosis could not analyse word for word is a row of NaN: counted apart
    types["insertion"] = {"words": int(np.nansum(turns[:, TURN_TYPES.index("insertion")]))}
    types["monotone"] = {"turns": int(np.nansum(turns[:, TURN_TYPES.index("monotone")]))}
    return {
        "word_flag": " or ".join(PROBLEM_TYPES),
        "words": int(len(flags)),
        "not_diagnosed": int((~known).sum()),
        "turns": int(len(turns)),
        "turns_not_diagnosed": int(np.isnan(turns).any(axis=1).sum()) if len(turns) else 0,
        "detection": flag_detection(flags, arrays["word_ref"]),
        "detection_levenshtein": flag_detection(flags, arrays["word_lev_ref"]),
        "error_types": types,
    }


def _metrics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    m = agreement(predicted, reference)
    return {"pcc": m["pcc"], "scc": m["scc"], "mse": m["mse"], "n": m["n"]}


Prediction = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray
]  # sentence (aspects,), words (W, aspects), word targets by overlap and by Levenshtein (W, aspects)


def _scorer(config: EvalConfig) -> tuple[Any, dict[str, Any]]:
    """The scorer, and what the report says of it: with ``fold`` on a bagged checkpoint
    that records its folds, only the networks trained without that fold, no probe blend
    and thresholds from the other folds' word labels (a cross-validated evaluation)."""
    from .scorer import Scorer

    scorer = Scorer(config.model)
    if not config.probe_blend:
        scorer.probe = None
    if not config.word_stage:
        scorer.word_model, scorer.fold_word_models = None, {}
    folds = scorer.metadata.get("folds") or []
    if config.fold < 0 or config.fold not in folds or len(scorer.nets) % len(folds):
        return scorer, {
            "cross_validated": False,
            "probe_blend": scorer.probe is not None,
            "word_stage": scorer.word_model is not None,
        }
    per_fold = len(scorer.nets) // len(folds)  # the bag is the folds' networks in the order of ``folds``
    at = folds.index(config.fold) * per_fold
    scorer.nets = scorer.nets[at : at + per_fold]
    scorer.probe = None  # refitted on every speaker: it has seen this fold
    scorer.word_model = scorer.fold_word_models.get(config.fold)  # fitted without this fold's speakers, if at all
    k = float(scorer.metadata.get("needs_improvement_k", 1.0))
    scorer.thresholds = _fold_thresholds(config, k)
    return scorer, {
        "cross_validated": True,
        "member": config.fold,
        "members": per_fold,
        "probe_blend": False,
        "word_stage": scorer.word_model is not None,
        "thresholds_from": "mean - k sd of the other folds' word labels",
        "needs_improvement_k": k,
    }


def _fold_thresholds(config: EvalConfig, k: float) -> dict[str, float]:
    """The needs-improvement thresholds of the speakers outside ``config.fold``."""
    from .scorer import training_thresholds

    held = set(data.load_folds(config.folds)[config.fold])
    return training_thresholds(outside_labels(data.load_utterances(config.data), held), k)


def outside_labels(utterances: list[data.Utterance], held: set[str]) -> np.ndarray:
    """(words, aspects) the word labels of the utterances whose speaker is not in ``held``:
    what a fold's needs-improvement thresholds are computed from."""
    return np.concatenate([word_labels(u) for u in utterances if u.speaker not in held])


def _diagnosed(
    utterances: list[data.Utterance], pre: Any, config: EvalConfig, scorer: Any, predictions: list[Prediction]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each utterance's diagnosis (``diagnosis_eval.word_error_matrix``) with the scores
    it was given; NaN rows where the turn cannot be analysed again word for word."""
    from . import audio as audio_io
    from .diagnosis_eval import TURN_TYPES, WORD_TYPES, word_error_matrix
    from .pipeline import FeatureBuilder

    builder = FeatureBuilder(aligner=scorer.aligner, text_model=scorer.text_model)
    out = []
    skipped = 0
    for utt, p in zip(tqdm(utterances, desc=f"diagnosis ({config.mode})", unit="utt", dynamic_ncols=True), predictions):
        words = p[1]
        found = (np.full((len(words), len(WORD_TYPES)), np.nan), np.full(len(TURN_TYPES), np.nan))
        if len(words) and utt.utt in pre.frames and utt.utt in pre.recognized:
            try:
                target = pre.target[utt.utt] if config.mode == "open" else Transcript(utt.text)
                samples = audio_io.load(utt.audio_path)
                analysis = builder.analyze(
                    pre.frames[utt.utt].astype(np.float32),
                    target,
                    pre.recognized[utt.utt],
                    mode=config.mode,
                    duration=len(samples) / 16000,
                    recognizer_frames=pre.recognizer_frames.get(utt.utt),
                )
                if len(analysis.target_alignment.words) == len(words):
                    found = word_error_matrix(analysis, words, scorer.thresholds, samples)
            except MultipaError as exc:
                log.warning("utterance %s: no diagnosis: %s", utt.utt, exc)
        skipped += bool(len(words)) and bool(np.isnan(found[0]).any())
        out.append(found)
    if skipped:
        log.warning("%d utterances could not be diagnosed word for word", skipped)
    return out


def _scorer_predictions(
    utterances: list[data.Utterance], pre: Any, config: EvalConfig, scorer: Any
) -> tuple[list[Prediction], int, np.ndarray]:
    """Score every utterance; turn features come from the shared feature cache (the
    ones training made, same aligner) and are scored in batches. An utterance the
    cache cannot hold (a closed-mode reference the aligner could not fit word for
    word) is analysed on its own, as a live turn would be. Also returns the word
    stage's input rows (:mod:`multipa_core.word_model`) of every scored word, in order."""
    from .pipeline import FeatureBuilder

    cache_root = config.cache or str(settings.cache_dir() / "features")
    builder = FeatureBuilder(aligner=scorer.aligner, text_model=scorer.text_model)
    floor = np.array([scorer.floor.get(h, 0.0) for h in SENTENCE_HEADS])
    make = open_examples if config.mode == "open" else closed_examples
    usable = [u for u in utterances if u.utt not in pre.failed and u.utt in pre.frames]
    examples = {e.utt: e for e in make(usable, pre, builder, cache_root, desc=f"features ({config.mode})")[0]}
    cached = [u for u in utterances if u.utt in examples]
    scored: dict[str, Prediction] = {}
    inputs: dict[str, np.ndarray] = {}
    for start in tqdm(range(0, len(cached), 32), desc=f"evaluating ({config.mode})", unit="batch", dynamic_ncols=True):
        batch = [examples[u.utt] for u in cached[start : start + 32]]
        for e, scores, rows in zip(batch, *scorer.score_with_inputs([e.features for e in batch])):
            sentence, words = _arrays(scores)
            inputs[e.utt] = rows
            if config.mode == "open":
                by_words = e.words_levenshtein if e.words_levenshtein is not None else np.full_like(words, np.nan)
                scored[e.utt] = (sentence, words, e.words, by_words)
            else:
                scored[e.utt] = (sentence, words, e.words, e.words)
    out: list[Prediction] = []
    failed = 0
    rows_out: list[np.ndarray] = []
    for utt in utterances:
        if utt.utt in scored:
            out.append(scored[utt.utt])
            rows_out.append(inputs[utt.utt])
            continue
        try:
            if utt.utt in pre.failed or utt.utt not in pre.frames:
                raise MultipaError("the audio could not be decoded or transcribed")
            target = pre.target[utt.utt] if config.mode == "open" else Transcript(utt.text)
            analysis = builder.analyze(
                pre.frames[utt.utt].astype(np.float32),
                target,
                pre.recognized[utt.utt],
                mode=config.mode,
                duration=0.0,
                recognizer_frames=pre.recognizer_frames.get(utt.utt),
                encoder_layers=pre.encoder_layers.get(utt.utt),
            )
            (scores,), (rows,) = scorer.score_with_inputs([analysis.features])
            sentence, words = _arrays(scores)
        except MultipaError as exc:
            log.warning("utterance %s failed: %s", utt.utt, exc)
            failed += 1
            out.append((floor, NO_WORDS, NO_WORDS, NO_WORDS))
            rows_out.append(np.zeros((0, len(WORD_INPUTS))))
            continue
        rows_out.append(rows)
        if config.mode == "open":
            targets = open_word_targets(analysis, utt, builder)
            by_words = levenshtein_word_targets([w.text for w in analysis.target_alignment.words], utt)
        else:
            labels = word_labels(utt)
            targets = by_words = labels if len(labels) == len(words) else np.full_like(words, np.nan)
        out.append((sentence, words, targets, by_words))
    return out, failed, np.concatenate(rows_out) if rows_out else np.zeros((0, len(WORD_INPUTS)))


def _arrays(scores: Any) -> tuple[np.ndarray, np.ndarray]:
    sentence = np.array([scores.sentence[h] for h in SENTENCE_HEADS])
    words = np.array([[w[h] for h in WORD_HEADS] for w in scores.words]).reshape(-1, len(WORD_HEADS))
    return sentence, words


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
            out.append((fit_y[0].min(axis=0), NO_WORDS, NO_WORDS, NO_WORDS))
            continue
        sentence = np.clip(model.predict(probe.summarise(pre.frames[utt.utt]))[0], 0, 10)
        out.append((sentence, NO_WORDS, NO_WORDS, NO_WORDS))
    return out, failed


def format_table(report: dict[str, Any]) -> str:
    """A readable table of a report."""

    def cell(v: float | None) -> str:
        return "   -  " if v is None else f"{v:6.3f}"

    lines = [
        f"mode {report['mode']}   n {report['n']}   failed {report['failed']}   {report['seconds_per_utterance']:.3f} s/utterance",
        "",
        f"{'':<26}{'PCC':>7}{'SCC':>7}{'MSE':>7}",
    ]
    for level, label in (("sentence", "sentence"), ("word", "word"), ("word_levenshtein", "word (lev.)")):
        for aspect, m in report.get(level, {}).items():
            lines.append(f"{label + ' ' + aspect:<26}{cell(m['pcc']):>7}{cell(m['scc']):>7}{cell(m['mse']):>7}")
    for key, label in (
        ("needs_improvement", "needs improvement"),
        ("needs_improvement_levenshtein", "needs improvement (lev.)"),
    ):
        if report.get(key):
            d = report[key]
            lines.append(
                f"{label:<26} precision {cell(d['precision'])}  recall {cell(d['recall'])}  F1 {cell(d['f1'])}  ({d['flagged']} flagged of {d['words']} words, {d['need_work']} need work)"
            )
    diagnosis = report.get("diagnosis")
    if diagnosis:
        for key, label in (("detection", "diagnosis flag"), ("detection_levenshtein", "diagnosis flag (lev.)")):
            d = diagnosis[key]
            lines.append(
                f"{label:<26} precision {cell(d['precision'])}  recall {cell(d['recall'])}  F1 {cell(d['f1'])}  ({d['flagged']} flagged of {d['words']} words)"
            )
        counts = ", ".join(f"{k} {v.get('words', v.get('turns'))}" for k, v in diagnosis["error_types"].items())
        lines.append(f"{'error types':<26} {counts}")
    if report.get("cross_validated"):
        lines.insert(
            1, f"cross-validated: fold {report.get('member', report.get('folds'))}'s own network, no probe blend"
        )
    return "\n".join(lines)
