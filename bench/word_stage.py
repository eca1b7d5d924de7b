"""What moves the word stage: each variant cross-validated on the same held-out rows.

The rows are those of ``multipa fit-words`` (each fold network scoring the speakers it
never saw, both modes; read back from ``--workdir`` when there). For each variant the
stage is fitted per fold on the other folds' rows and scored on the fold's; the table
gives word accuracy and total PCC, mean ± sd over the folds, per mode and word rule,
and the pooled needs-improvement precision / recall of the rule mean - k sd.

    python bench/word_stage.py --workdir /work/cache/words --cache /work/cache/features \
        [--json-out bench/results/word_stage.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, emit, machine, table  # noqa: E402

from multipa_core import word_crossval as wc  # noqa: E402
from multipa_core.word_model import GOP_INPUTS, WordFit  # noqa: E402

SENTENCE = ("sentence_accuracy", "sentence_fluency", "sentence_prosody", "sentence_total")
ALIGNMENT = tuple(f"word_{n}" for n in ("levenshtein", "phone_distance", "phone_ratio", "paired", "aligned_words"))
VARIANTS: dict[str, dict] = {
    "stage (shipped)": {},
    "without goodness of pronunciation": {"drop": GOP_INPUTS},
    "without the sentence scores": {"drop": SENTENCE},
    "without agreement with ASR_r": {"drop": ALIGNMENT},
    "hidden 32": {"hidden": 32},
    "hidden 128": {"hidden": 128},
    "15 epochs": {"epochs": 15},
    "60 epochs": {"epochs": 60},
    "dropout 0.3": {"dropout": 0.3},
}


def _cell(report: dict, mode: str, rule: str, aspect: str) -> str:
    s = report[mode][rule][aspect]["across_folds"]["pcc"]
    return "-" if s["mean"] is None else f"{s['mean']:.3f} ± {s['std']:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--model", default="multipa-scorer")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--cache", default="")
    parser.add_argument("--per-speaker", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=[], help="run only these variants")
    parser.add_argument("--json-out", default="bench/results/word_stage.json")
    args = parser.parse_args()

    config = wc.WordStageConfig(
        data=args.data, workdir=args.workdir, model=args.model, cache=args.cache, per_speaker=args.per_speaker
    )
    rows = wc.held_out_rows(config)
    folds = sorted({int(f) for r in rows.values() for f in r["fold"]})
    labels = wc.fold_labels(config, folds)
    results, lines = {}, []
    chosen = {"network": None, **{k: v for k, v in VARIANTS.items() if not args.only or k in args.only}}
    for name, change in chosen.items():
        started = time.time()
        if change is None:
            predicted = {mode: r["pred"] for mode, r in rows.items()}
        else:
            predicted = wc.stage_predictions(rows, WordFit(**change))
        report = {}
        for mode, r in rows.items():
            report[mode] = wc.agreement_report(predicted[mode], r)
            report[mode]["needs_improvement"] = wc.rule_report(predicted[mode], r, labels)
        report["seconds"] = round(time.time() - started, 1)
        report["fit"] = (
            None if change is None else {k: list(v) if isinstance(v, tuple) else v for k, v in change.items()}
        )
        results[name] = report
        k1 = report["open"]["needs_improvement"]["1.0"]["word"]
        lines.append(
            [
                name,
                _cell(report, "open", "word", "accuracy"),
                _cell(report, "open", "word_levenshtein", "accuracy"),
                _cell(report, "open", "word", "total"),
                _cell(report, "closed", "word", "accuracy"),
                _cell(report, "closed", "word", "total"),
                f"{k1['precision']} / {k1['recall']}",
            ]
        )
        print(f"{name}: {report['seconds']} s", file=sys.stderr)
    result = {
        "benchmark": "word_stage",
        "machine": machine(),
        "words": {mode: int(len(r["pred"])) for mode, r in rows.items()},
        "folds": folds,
        "variants": results,
    }
    header = [
        "words by",
        "open acc. (overlap)",
        "open acc. (Lev.)",
        "open total",
        "closed acc.",
        "closed total",
        "open NI k=1 P / R",
    ]
    emit(result, table(lines, header), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
