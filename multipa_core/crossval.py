"""``multipa crossval``: a recipe's accuracy by speaker-grouped cross-validation.

For each fold of ``multipa_core/splits/speechocean762-folds.json`` (5 folds over
all 125 speakers, stratified by proficiency) a scorer is trained with the fold's
speakers held out (:class:`multipa_core.train.TrainConfig` ``holdout_fold``: they
are never read, early stopping included) and evaluated on them, in both modes and
by both word rules. The report gives, per aspect, the mean and standard deviation
across folds of PCC, SCC and MSE, the same metrics pooled over every held-out
prediction, and the needs-improvement detector, with the threshold rule that the
pooled predictions favour for precision.

Every fold's checkpoint, evaluation and predictions are kept under ``workdir``:
a second run with the same recipe skips what is done, and a run killed half-way
resumes (training resumes per epoch).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint_models, data
from .evaluate import EvalConfig, evaluate_with_predictions, flag_detection, fold_flags, summarize
from .metrics import spread
from .train import TrainConfig, for_asr, train

log = logging.getLogger(__name__)

MODES = ("open", "closed")
# Candidate needs-improvement rules: a word is flagged below mean - k sd of the training word scores.
K_GRID = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
MIN_PRECISION = 0.90  # the rule chosen is the one with the best recall among those this precise


@dataclass(frozen=True)
class CrossvalConfig:
    """Options of one cross-validation run."""

    recipe: TrainConfig  # the recipe under test (its out, holdout_fold are set per fold)
    workdir: str  # fold checkpoints, evaluations and predictions (a rerun resumes from them)
    folds: tuple[int, ...] = ()  # which folds to run (empty: all)
    modes: tuple[str, ...] = MODES  # evaluation modes
    probe_blend: bool = True  # False: evaluate the networks alone (an ablation of the blend)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes recorded in the report


def _folds(config: CrossvalConfig) -> list[int]:
    """The folds to run: those asked for, else every fold of the recipe's folds file."""
    return list(config.folds) or list(range(len(data.load_folds(config.recipe.folds))))


def _tag(config: CrossvalConfig, mode: str) -> str:
    """The name of a fold's evaluation files for ``mode``."""
    return mode if config.probe_blend else f"{mode}-no-blend"


def _fold_recipe(config: CrossvalConfig, fold: int) -> TrainConfig:
    out = Path(config.workdir) / f"fold{fold}" / "scorer.pt"
    return replace(config.recipe, out=str(out), holdout_fold=fold)


def _trained(recipe: TrainConfig) -> bool:
    """Whether the fold's checkpoint exists and was trained with this very recipe."""
    out = Path(recipe.out)
    report = out.with_suffix(".json")
    if not (out.is_file() and report.is_file()):
        return False
    # a report older than a field of the recipe was trained with that field's default
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    recorded = {**json.loads(json.dumps(defaults)), **json.loads(report.read_text()).get("config", {})}
    return recorded == json.loads(json.dumps(asdict(recipe)))


def run_fold(config: CrossvalConfig, fold: int) -> dict[str, dict[str, Any]]:
    """Train (or reuse) the fold's scorer and evaluate it on the fold's speakers; returns the reports by mode."""
    recipe = _fold_recipe(config, fold)
    folder = Path(recipe.out).parent
    folder.mkdir(parents=True, exist_ok=True)
    if not _trained(recipe):
        log.info("fold %d: training", fold)
        for stale in folder.glob("eval-*"):
            stale.unlink()
        train(recipe)
    reports = {}
    for mode in config.modes:
        tag = _tag(config, mode)
        report_path, arrays_path = folder / f"eval-{tag}.json", folder / f"eval-{tag}.npz"
        if report_path.is_file() and arrays_path.is_file():
            reports[mode] = json.loads(report_path.read_text())
            continue
        evaluation = EvalConfig(
            data=recipe.data,
            mode=mode,
            model=recipe.out,
            fold=fold,
            folds=recipe.folds,
            cache=recipe.cache,
            probe_blend=config.probe_blend,
        )
        report, arrays = evaluate_with_predictions(evaluation)
        np.savez(arrays_path, allow_pickle=True, **arrays)  # allow_pickle named: no array is taken for it
        report_path.write_text(json.dumps(report, indent=1) + "\n")
        reports[mode] = report
    return reports


def _across(reports: list[dict[str, Any]], level: str) -> dict[str, Any]:
    """Mean and standard deviation across folds of each metric of each aspect of ``level``."""
    aspects = reports[0].get(level, {})
    return {a: {m: spread([r[level][a][m] for r in reports]) for m in ("pcc", "scc", "mse")} for a in aspects}


def _word_stats(fold_dir: Path) -> dict[str, dict[str, float]]:
    report = json.loads((fold_dir / "scorer.json").read_text())
    return report.get("word_label_stats") or {}


def choose_rule(
    pooled: dict[str, np.ndarray], stats: list[dict[str, dict[str, float]]], fold_of_word: dict[str, np.ndarray]
) -> dict[str, Any]:
    """The needs-improvement rule (k in mean - k sd) the pooled held-out words favour:
    the best recall among the rules at least ``MIN_PRECISION`` precise (else the most
    precise). Each fold's words are judged with that fold's training statistics."""
    from .scorer import thresholds_from_stats

    table = []
    for k in K_GRID:
        by_fold = {f: thresholds_from_stats(fold_stats, k) for f, fold_stats in enumerate(stats)}
        d = flag_detection(fold_flags(pooled["word_pred"], fold_of_word["word"], by_fold), pooled["word_ref"])
        table.append({"k": k, **{m: d[m] for m in ("precision", "recall", "f1", "flagged")}})
    precise = [row for row in table if row["precision"] is not None and row["precision"] >= MIN_PRECISION]
    # no rule that precise: the paper's (k = 1) rather than one that flags almost nothing and silences the feedback
    best = (
        max(precise, key=lambda row: (row["recall"] or 0.0))
        if precise
        else next(row for row in table if row["k"] == 1.0)
    )
    return {
        "rule": "accuracy or total below mean - k sd of the training word scores",
        "min_precision": MIN_PRECISION,
        "chosen_k": best["k"],
        "meets_min_precision": bool(precise),
        "table": table,
    }


def crossval(config: CrossvalConfig) -> dict[str, Any]:
    """Run (or resume) every fold and return the aggregated report."""
    started = time.time()
    config = replace(config, recipe=for_asr(config.recipe))  # as train() will see it, for _trained
    folds = _folds(config)
    per_fold = {f: run_fold(config, f) for f in folds}
    report: dict[str, Any] = {
        "recipe": asdict(config.recipe),
        "folds": folds,
        "probe_blend": config.probe_blend,
        **config.extra,
    }
    stats = [_word_stats(Path(config.workdir) / f"fold{f}") for f in folds]
    for mode in config.modes:
        reports = [per_fold[f][mode] for f in folds]
        tag = _tag(config, mode)
        loaded = [dict(np.load(Path(config.workdir) / f"fold{f}" / f"eval-{tag}.npz")) for f in folds]
        pooled = {k: np.concatenate([a[k] for a in loaded]) for k in loaded[0]}
        fold_of_word = {
            name: np.concatenate([np.full(len(a[f"{name}_pred"]), i) for i, a in enumerate(loaded)])
            for name in ("word", "word_lev")
        }
        summary: dict[str, Any] = {
            "n": sum(r["n"] for r in reports),
            "failed": sum(r["failed"] for r in reports),
            "across_folds": {level: _across(reports, level) for level in ("sentence", "word", "word_levenshtein")},
            "pooled": summarize(pooled, {}),
            "per_fold": [
                {
                    level: {a: m["pcc"] for a, m in r[level].items()}
                    for level in ("sentence", "word", "word_levenshtein")
                }
                for r in reports
            ],
        }
        for key in ("needs_improvement", "needs_improvement_levenshtein"):
            if all(key in r for r in reports):
                summary[key] = {m: spread([r[key][m] for r in reports]) for m in ("precision", "recall", "f1")}
                summary[key]["precision_flagging_every_word"] = spread(
                    [r[key]["precision_flagging_every_word"] for r in reports]
                )
        if all(stats):
            summary["needs_improvement_rule"] = choose_rule(pooled, stats, fold_of_word)
        report[mode] = summary
    report["seconds"] = round(time.time() - started, 1)
    return report


DETECTORS = ("needs_improvement", "needs_improvement_levenshtein")


def evaluate_folds(config: EvalConfig, folds: tuple[int, ...] = ()) -> dict[str, Any]:
    """``multipa evaluate --fold all``: each fold evaluated as ``config`` says with ``fold`` set
    (on a bagged checkpoint, its own network and no probe blend), then pooled: the metrics
    of every held-out prediction together (each fold's words flagged with that fold's
    thresholds), and mean ± sd across folds.

    Returns:
        the pooled report; ``per_fold`` holds each fold's own report.
    """
    started = time.time()
    chosen = list(folds) or list(range(len(data.load_folds(config.folds))))
    reports, loaded = [], []
    for f in chosen:
        log.info("fold %d", f)
        report, arrays = evaluate_with_predictions(replace(config, fold=f))
        reports.append(report)
        loaded.append(arrays)
    shared = [k for k in loaded[0] if all(k in a for a in loaded)]
    pooled = {k: np.concatenate([a[k] for a in loaded]) for k in shared}
    levels = ("sentence", "word", "word_levenshtein")
    out: dict[str, Any] = {
        "n": sum(r["n"] for r in reports),
        "failed": sum(r["failed"] for r in reports),
        "mode": config.mode,
        "folds": chosen,
        "per_speaker": config.per_speaker,
        "cross_validated": all(r.get("cross_validated") for r in reports),
        "probe_blend": any(r.get("probe_blend") for r in reports),
        **summarize(pooled, {}),
        "across_folds": {level: _across(reports, level) for level in levels},
    }
    for key in DETECTORS:
        if all(key in r for r in reports):
            out["across_folds"][key] = {m: spread([r[key][m] for r in reports]) for m in ("precision", "recall", "f1")}
    if all("diagnosis" in r for r in reports):
        out["across_folds"]["diagnosis"] = {
            rule: {m: spread([r["diagnosis"][rule][m] for r in reports]) for m in ("precision", "recall", "f1")}
            for rule in ("detection", "detection_levenshtein")
        }
    out["per_fold"] = reports
    out["seconds"] = round(time.time() - started, 1)
    out["seconds_per_utterance"] = round(out["seconds"] / max(1, out["n"]), 4)
    return out


def format_table(report: dict[str, Any]) -> str:
    """A readable table: PCC and SCC mean ± sd across folds, per mode and aspect."""

    def cell(m: dict[str, Any]) -> str:
        return "     -      " if m["mean"] is None else f"{m['mean']:.3f}±{m['std']:.3f}"

    lines = [f"cross-validation over folds {report['folds']}"]
    for mode in MODES:
        if mode not in report:
            continue
        s = report[mode]
        lines += ["", f"{mode} mode   n {s['n']}   failed {s['failed']}", f"{'':<28}{'PCC':>13}{'SCC':>13}{'MSE':>13}"]
        for level, label in (("sentence", "sentence"), ("word", "word"), ("word_levenshtein", "word (lev.)")):
            for aspect, m in s["across_folds"][level].items():
                lines.append(f"{label + ' ' + aspect:<28}{cell(m['pcc']):>13}{cell(m['scc']):>13}{cell(m['mse']):>13}")
        for key, label in (
            ("needs_improvement", "needs improvement"),
            ("needs_improvement_levenshtein", "needs improvement (lev.)"),
        ):
            if key in s:
                d = s[key]
                lines.append(
                    f"{label:<28} precision {cell(d['precision'])}  recall {cell(d['recall'])}  F1 {cell(d['f1'])}"
                )
        if "needs_improvement_rule" in s:
            rule = s["needs_improvement_rule"]
            why = (
                f"best recall at precision >= {MIN_PRECISION}"
                if rule.get("meets_min_precision")
                else f"no k reaches precision {MIN_PRECISION}: the paper's k = 1"
            )
            lines.append(f"{'needs-improvement rule':<28} k = {rule['chosen_k']} ({why})")
    return "\n".join(lines)


def ship(config: CrossvalConfig, out: str, k: float, report: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shipped scorer: the networks of every fold, bagged.

    Each fold's networks trained on four fifths of the speakers, so every speaker
    trains most of the ensemble and no training is run again. The probe is refitted
    on every speaker with the folds' median alpha; its blend weights are the mean of
    the folds' (each chosen on that fold's early-stopping speakers); the
    needs-improvement rule is mean - ``k`` sd of every speaker's word labels.
    """
    import torch

    from . import probe
    from .model import ScorerConfig, build_scorer
    from .scorer import save_scorer, training_thresholds, word_label_stats
    from .train import prepare

    config = replace(config, recipe=for_asr(config.recipe))
    recipe = config.recipe
    models = checkpoint_models.current(recipe.asr_target, recipe.asr_recognized)
    folds = _folds(config)
    nets, alphas, weights, epochs = [], [], [], []
    for f in folds:
        path = Path(config.workdir) / f"fold{f}" / "scorer.pt"
        if not _trained(_fold_recipe(config, f)):
            raise ValueError(f"fold {f} is not trained with this recipe; run multipa crossval first")
        state = torch.load(path, map_location="cpu", weights_only=False)
        for member in state["members"]:
            net = build_scorer(ScorerConfig(**state["config"]))
            net.load_state_dict({name: value.float() for name, value in member.items()})
            nets.append(net.eval())
        fold_report = json.loads(path.with_suffix(".json").read_text())
        epochs += [m["best_epoch"] for m in fold_report["members"]]
        if fold_report.get("probe_blend"):
            alphas.append(fold_report["probe_blend"]["alpha"])
            weights.append(fold_report["probe_blend"]["weight"])
    everyone, _, skipped = prepare(replace(recipe, holdout_fold=-1, validation_speakers=0))
    blend = None
    if recipe.blend_probe and alphas:
        x = np.stack([probe.describe(e.features, recipe.probe_inputs) for e in everyone])
        y = np.stack([e.sentence for e in everyone])
        blend = (
            probe.fit_ridge(x, y, float(np.median(alphas)), recipe.probe_inputs),
            [round(float(w), 4) for w in np.mean(weights, axis=0)],
        )
    labelled = [e for e in everyone if e.mode == "closed"] or everyone
    labels = np.concatenate([e.words for e in labelled])
    sentences = np.stack([e.sentence for e in everyone])
    from .aspects import SENTENCE_NAMES

    utterances = len({e.utt for e in everyone})
    metadata = {
        "members": len(nets),
        "recipe": "the networks of every cross-validation fold, bagged",
        "folds": folds,
        "train_utterances": utterances,
        "transcripts": recipe.transcripts,
        "seed": recipe.seed,
        "needs_improvement_k": k,
        "word_label_stats": word_label_stats(labels),
        "crossval_estimate": None if report is None else {m: report[m]["across_folds"] for m in MODES if m in report},
    }
    save_scorer(
        out,
        nets,
        recipe.net,
        thresholds=training_thresholds(labels, k),
        floor={a: float(sentences[:, i].min()) for i, a in enumerate(SENTENCE_NAMES)},
        aligner=recipe.aligner,
        text_model=recipe.text_model,
        metadata=metadata,
        probe=blend,
        asr=models,
    )
    summary = {
        "config": asdict(recipe),
        "shipped_from": str(config.workdir),
        "folds": folds,
        "members": len(nets),
        "best_epochs": epochs,
        "train_utterances": utterances,
        "train_examples": len(everyone),
        "skipped": skipped,
        "needs_improvement_k": k,
        "probe_blend": None
        if blend is None
        else {"alpha": blend[0].alpha, "inputs": blend[0].inputs, "weight": blend[1], "refitted_on": "every speaker"},
        "parameters": sum(p.numel() for net in nets for p in net.parameters()),
        "asr": models.to_dict(),
    }
    Path(out).with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def markdown(report: dict[str, Any]) -> str:
    """The cross-validation tables of ``docs/models.md``: PCC and SCC (mean ± sd across
    folds) per mode, aspect and word rule, then the needs-improvement detector."""

    def cell(m: dict[str, Any]) -> str:
        return "-" if m["mean"] is None else f"{m['mean']:.3f} ± {m['std']:.3f}"

    lines = [
        "| mode | metric | sent. accuracy | fluency | prosody | total | word accuracy | word stress | word total | word accuracy (Lev.) | word total (Lev.) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        if mode not in report:
            continue
        a = report[mode]["across_folds"]
        for metric in ("pcc", "scc", "mse"):
            cells = [cell(a["sentence"][x][metric]) for x in a["sentence"]] + [
                cell(a["word"][x][metric]) for x in a["word"]
            ]
            cells += [cell(a["word_levenshtein"][x][metric]) for x in ("accuracy", "total")]
            lines.append(f"| {mode} | {metric.upper()} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| mode | word rule | precision | recall | F1 | precision of flagging every word |",
        "|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        for key, rule in (("needs_improvement", "overlap"), ("needs_improvement_levenshtein", "Levenshtein")):
            d = report.get(mode, {}).get(key)
            if d:
                lines.append(
                    f"| {mode} | {rule} | {cell(d['precision'])} | {cell(d['recall'])} | {cell(d['f1'])} | {cell(d['precision_flagging_every_word'])} |"
                )
    return "\n".join(lines)
