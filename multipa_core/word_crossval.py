"""``multipa fit-words``: fit the word stage (:mod:`multipa_core.word_model`) on held-out
predictions, cross-validate it, and ship it into a scorer checkpoint.

1. Held-out rows. For every fold K of a bagged checkpoint that records its folds, the
   network trained without fold K scores fold K's speakers (``multipa evaluate
   --fold K``, no probe blend, no word stage), in both modes; each scored word gives
   one input row and its expert labels (open mode: the overlap rule). Saved under
   ``--workdir``, keyed by the networks' weights, the data and the folds
   (:func:`rows_key`), so a rerun reads them back and a new bag makes new rows.
2. Cross-validation. For each fold K, the stage is fitted on the rows of the other
   folds and predicts fold K's; PCC, SCC and MSE of word accuracy, stress and total,
   both word rules, per fold (mean ± sd) and pooled, beside the networks' own, and the
   needs-improvement rules mean - k sd over the other folds' labels for each k.
3. Shipping. Fitted once on every row (what a live turn uses) and once per fold
   without it (what ``multipa evaluate --fold K`` uses), written into the checkpoint.

The rows of fold J were predicted by network J, which trained on fold K's speakers; the
stage fitted for fold K never reads fold K's labels, but its inputs elsewhere come from
networks that did. This is the usual cross-validated stacking; a fully nested scheme
would need networks trained without two folds at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import data
from .aspects import WORD_NAMES as WORD_HEADS
from .errors import MultipaError
from .evaluate import EvalConfig, evaluate_with_predictions, flag_detection, fold_flags, outside_labels
from .metrics import agreement, spread
from .word_model import INPUTS, WordFit, fit

log = logging.getLogger(__name__)
MODES = ("open", "closed")
RULE_KS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


@dataclass(frozen=True)
class WordStageConfig:
    data: str
    workdir: str
    model: str = "multipa-scorer"  # a bagged checkpoint that records its folds
    cache: str = ""  # feature cache root
    folds: str = ""  # folds file ("" = the project's)
    per_speaker: int = 0  # first N utterances of each speaker (0: all)
    fit: WordFit = field(default_factory=WordFit)


def held_out_rows(config: WordStageConfig) -> dict[str, dict[str, np.ndarray]]:
    """Per mode: ``inputs`` (N, F), ``pred`` (N, 3) the networks' word scores, ``ref`` and
    ``lev_ref`` (N, 3) the expert labels by each word rule, ``fold`` (N,) the row's fold."""
    from .scorer import Scorer

    scorer = Scorer(config.model)
    folds = scorer.metadata.get("folds") or []
    if not folds:
        raise MultipaError(f"{config.model} records no cross-validation folds: fit-words needs a bagged checkpoint")
    key = rows_key(scorer, config)
    out = {}
    for mode in MODES:
        path = Path(config.workdir) / f"rows-{mode}-{key}.npz"
        if path.is_file():
            with np.load(path) as saved:
                out[mode] = {k: saved[k] for k in saved.files}
            continue
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("inputs", "pred", "ref", "lev_ref", "fold")}
        for f in folds:
            evaluation = EvalConfig(
                data=config.data,
                mode=mode,
                fold=int(f),
                folds=config.folds,
                model=config.model,
                cache=config.cache,
                per_speaker=config.per_speaker,
                diagnose=False,
                word_stage=False,
            )
            _, arrays = evaluate_with_predictions(evaluation)
            parts["inputs"].append(arrays["word_inputs"])
            parts["pred"].append(arrays["word_pred"])
            parts["ref"].append(arrays["word_ref"])
            parts["lev_ref"].append(arrays["word_lev_ref"])
            parts["fold"].append(np.full(len(arrays["word_pred"]), int(f)))
        out[mode] = {k: np.concatenate(v) for k, v in parts.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out[mode])
    return out


def rows_key(scorer: Any, config: WordStageConfig) -> str:
    """What the held-out rows depend on: the networks' weights (not the word stage a
    checkpoint may already hold), the data folder, the folds file and ``per_speaker``."""
    digest = hashlib.sha256(f"{Path(config.data).resolve()}|{config.folds}|{config.per_speaker}".encode())
    for net in scorer.nets:
        for name, tensor in sorted(net.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def _training(rows: dict[str, dict[str, np.ndarray]], keep: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both modes' rows that ``keep(mode_rows)`` selects, with a label by the overlap rule."""
    xs, ys = [], []
    for r in rows.values():
        chosen = keep(r) & np.isfinite(r["ref"][:, 0])
        xs.append(r["inputs"][chosen])
        ys.append(r["ref"][chosen])
    return np.concatenate(xs), np.concatenate(ys)


def stage_predictions(rows: dict[str, dict[str, np.ndarray]], config: WordFit) -> dict[str, np.ndarray]:
    """Each row's word scores from the stage fitted without its fold."""
    folds = sorted({int(f) for r in rows.values() for f in r["fold"]})
    out = {mode: np.zeros_like(r["pred"]) for mode, r in rows.items()}
    for k in folds:
        x, y = _training(rows, lambda r: r["fold"] != k)
        model = fit(x, y, config)
        for mode, r in rows.items():
            held = r["fold"] == k
            out[mode][held] = model.predict(r["inputs"][held])
    return out


def agreement_report(pred: np.ndarray, r: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per word rule and aspect: pooled PCC / SCC / MSE and their mean ± sd over the folds."""
    folds = sorted({int(f) for f in r["fold"]})
    out: dict[str, Any] = {}
    for rule, ref in (("word", r["ref"]), ("word_levenshtein", r["lev_ref"])):
        out[rule] = {}
        for i, aspect in enumerate(WORD_HEADS):
            per_fold = [agreement(pred[r["fold"] == k, i], ref[r["fold"] == k, i]) for k in folds]
            out[rule][aspect] = {
                "pooled": agreement(pred[:, i], ref[:, i]),
                "across_folds": {m: spread([f[m] for f in per_fold]) for m in ("pcc", "scc", "mse")},
            }
    return out


def rule_report(pred: np.ndarray, r: dict[str, np.ndarray], labels: dict[int, np.ndarray]) -> dict[str, Any]:
    """The needs-improvement rule mean - k sd (thresholds from the other folds' word labels)
    as a detector of words the experts scored below 10, pooled over the folds, per k."""
    from .scorer import training_thresholds

    out = {}
    for k in RULE_KS:
        flags = fold_flags(pred, r["fold"], {fold: training_thresholds(other, k) for fold, other in labels.items()})
        out[str(k)] = {"word": flag_detection(flags, r["ref"]), "word_levenshtein": flag_detection(flags, r["lev_ref"])}
    return out


def fold_labels(config: WordStageConfig, folds: list[int]) -> dict[int, np.ndarray]:
    """Per fold: the word labels of every utterance outside it (the thresholds' basis)."""
    listed = data.load_folds(config.folds)
    items = data.load_utterances(config.data)
    return {k: outside_labels(items, set(listed[k])) for k in folds}


def crossvalidate(config: WordStageConfig) -> dict[str, Any]:
    """Steps 1 and 2: the report (``multipa fit-words --json-out``)."""
    rows = held_out_rows(config)
    stage = stage_predictions(rows, config.fit)
    folds = sorted({int(f) for r in rows.values() for f in r["fold"]})
    labels = fold_labels(config, folds)
    report: dict[str, Any] = {
        "model": config.model,
        "per_speaker": config.per_speaker,
        "fit": asdict(config.fit),
        "inputs": list(INPUTS),
        "folds": folds,
    }
    for mode, r in rows.items():
        report[mode] = {
            "words": int(len(r["pred"])),
            "network": agreement_report(r["pred"], r),
            "stage": agreement_report(stage[mode], r),
            "needs_improvement": {
                "network": rule_report(r["pred"], r, labels),
                "stage": rule_report(stage[mode], r, labels),
            },
        }
    return report


def ship(config: WordStageConfig, out: str, report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Step 3: fit the stage on every row and once per fold without it, and write a copy of
    ``config.model`` with it to ``out``; the JSON report beside ``out`` (when there) gains
    what was shipped, with the cross-validated estimate of ``report`` when given."""
    import torch

    from . import registry

    rows = held_out_rows(config)
    folds = sorted({int(f) for r in rows.values() for f in r["fold"]})
    stage = {
        "all": fit(*_training(rows, lambda r: np.ones(len(r["fold"]), bool)), config.fit).to_state(),
        "folds": {str(k): fit(*_training(rows, lambda r: r["fold"] != k), config.fit).to_state() for k in folds},
        "fit": asdict(config.fit),
    }
    state = torch.load(registry.resolve(config.model, kind="scorer"), map_location="cpu", weights_only=False)
    state["word_model"] = stage
    torch.save(state, out)
    summary: dict[str, Any] = {
        "fit": asdict(config.fit),
        "inputs": list(INPUTS),
        "rows": {mode: int(np.isfinite(r["ref"][:, 0]).sum()) for mode, r in rows.items()},
        "folds": folds,
    }
    if report is not None:
        summary["crossval_estimate"] = {
            mode: {
                rule: {a: m["across_folds"] for a, m in report[mode]["stage"][rule].items()}
                for rule in ("word", "word_levenshtein")
            }
            for mode in MODES
        }
    beside = Path(out).with_suffix(".json")
    if beside.is_file():
        doc = json.loads(beside.read_text())
        doc["word_stage"] = summary
        beside.write_text(json.dumps(doc, indent=2) + "\n")
    return summary


def markdown(report: dict[str, Any]) -> str:
    """The tables of ``docs/models.md``: word PCC / SCC (mean ± sd over folds) of the
    networks and the stage, per mode and word rule."""
    lines = [
        "| mode | words by | word rule | accuracy PCC | accuracy SCC | stress PCC | total PCC | total SCC |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(m: dict[str, Any], metric: str) -> str:
        s = m["across_folds"][metric]
        return "-" if s["mean"] is None else f"{s['mean']:.3f} ± {s['std']:.3f}"

    for mode in MODES:
        for source in ("network", "stage"):
            for rule in ("word", "word_levenshtein"):
                if mode == "closed" and rule == "word_levenshtein":
                    continue
                a = report[mode][source][rule]
                lines.append(
                    f"| {mode} | {source} | {'overlap' if rule == 'word' else 'Levenshtein'} | "
                    f"{cell(a['accuracy'], 'pcc')} | {cell(a['accuracy'], 'scc')} | {cell(a['stress'], 'pcc')} | "
                    f"{cell(a['total'], 'pcc')} | {cell(a['total'], 'scc')} |"
                )
    return "\n".join(lines)


def with_fit(config: WordStageConfig, **changes: Any) -> WordStageConfig:
    return replace(config, fit=replace(config.fit, **changes))


def write_json(report: dict[str, Any], path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=1) + "\n")
