"""Accuracy in both modes, with a plot of predicted against reference.

With ``--workdir`` (a ``multipa crossval`` folder), the held-out predictions of
every fold, pooled: each utterance scored by the fold scorer that never saw its
speaker. Without it, the project's own evaluation (``multipa evaluate``: open
mode, audio only; closed mode, reference text given) of ``--model`` on every
utterance of ``--data`` (a folder of speakers the model never saw). Prints PCC,
SCC and MSE per aspect (words by both rules) and writes, beside the JSON, a PNG
per mode: predicted against expert score for every sentence and word aspect.

    python bench/accuracy.py --workdir /work/cache/crossval [--json-out bench/results/accuracy.json]
    python bench/accuracy.py --data DIR [--limit N]

The feature cache (``MULTIPA_CACHE_DIR``) makes a second run fast; the first
transcribes every utterance with both Whisper models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, emit, machine, table  # noqa: E402


def plot(arrays: dict[str, np.ndarray], report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from multipa_core.evaluate import SENTENCE_HEADS, WORD_HEADS

    panels = [("sentence", h, i) for i, h in enumerate(SENTENCE_HEADS)] + [
        ("word", h, i) for i, h in enumerate(WORD_HEADS)
    ]
    fig, axes = plt.subplots(2, 4, figsize=(16, 8))
    for ax, (level, head, i) in zip(axes.flat, panels):
        pred, ref = arrays[f"{level}_pred"][:, i], arrays[f"{level}_ref"][:, i]
        keep = ~np.isnan(ref) & ~np.isnan(pred)
        ax.scatter(
            ref[keep] + np.random.default_rng(0).uniform(-0.12, 0.12, keep.sum()),
            pred[keep],
            s=6 if level == "word" else 12,
            alpha=0.35,
        )
        ax.plot([0, 10], [0, 10], color="grey", lw=1)
        m = report[level][head]
        ax.set_title(f"{level} {head}: PCC {_fmt(m['pcc'])}, SCC {_fmt(m['scc'])}")
        ax.set_xlim(-0.5, 10.5), ax.set_ylim(-0.5, 10.5)
        ax.set_xlabel("experts (median or mean; jittered)"), ax.set_ylabel("predicted")
    axes.flat[-1].axis("off")
    fig.suptitle(
        f"MultiPA, {report['mode']} mode, {report['n']} utterances, {report.get('source', 'held-out speakers')}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--limit", type=int, default=0, help="first N utterances only (smoke runs)")
    parser.add_argument(
        "--workdir",
        default="",
        help="a multipa crossval folder: plot its pooled held-out predictions instead of evaluating --model",
    )
    parser.add_argument("--model", default="multipa-scorer")
    parser.add_argument("--cache", default="")
    parser.add_argument("--json-out", default="bench/results/accuracy.json")
    args = parser.parse_args()

    from multipa_core.evaluate import EvalConfig, evaluate_with_predictions, summarize

    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    reports, rows = {}, []
    for mode in ("open", "closed"):
        if args.workdir:
            folds = sorted(Path(args.workdir).glob(f"fold*/eval-{mode}.npz"))
            loaded = [dict(np.load(f)) for f in folds]
            arrays = {k: np.concatenate([a[k] for a in loaded]) for k in loaded[0]}
            report = {
                "mode": mode,
                "n": len(arrays["sentence_pred"]),
                "failed": sum(json.loads(f.with_suffix(".json").read_text())["failed"] for f in folds),
                "source": f"held-out speakers of {len(folds)} cross-validation folds, pooled",
                **summarize(arrays, {}),
            }
        else:
            report, arrays = evaluate_with_predictions(
                EvalConfig(data=args.data, mode=mode, limit=args.limit, model=args.model, cache=args.cache)
            )
            report["source"] = f"every utterance of {args.data}"
        png = out.with_name(f"{out.stem}-{mode}.png")
        plot(arrays, report, png)
        report["plot"] = str(png)
        reports[mode] = report
        for level in ("sentence", "word", "word_levenshtein"):
            for head, m in report[level].items():
                rows.append([mode, f"{level} {head}", m["pcc"], m["scc"], m["mse"]])
    config = (
        {"workdir": args.workdir} if args.workdir else {"data": args.data, "limit": args.limit, "model": args.model}
    )
    result = {"benchmark": "accuracy", "machine": machine(), "config": config, "modes": reports}
    readable = table(
        [[r[0], r[1], *("-" if v is None else f"{v:.3f}" for v in r[2:])] for r in rows],
        ["mode", "aspect", "PCC", "SCC", "MSE"],
    )
    readable += "\n" + "  ".join(f"{m}: n={r['n']}, failed={r['failed']}, plot {r['plot']}" for m, r in reports.items())
    emit(result, readable, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
