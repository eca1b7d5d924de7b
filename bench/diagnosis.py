"""The diagnosis against the experts and on controlled (espeak-ng) mispronunciations.

    python bench/diagnosis.py [--part development] [--limit 0] [--cache /work/cache/features --cache /work/cache/diag]
        [--skip-experts] [--skip-synthetic] [--json-out bench/results/diagnosis.json]

Expert agreement reads the ASR outputs from the feature caches only (``multipa
precompute``-style entries); utterances not cached are counted and skipped. The
synthetic part needs ``espeak-ng`` on the PATH. See ``multipa_core/diagnosis_eval.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/speechocean762")
    parser.add_argument("--part", default="development")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--cache", action="append", default=None, help="feature cache roots to read (repeatable)")
    parser.add_argument("--modes", default="closed,open")
    parser.add_argument("--skip-experts", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    from multipa_core import data, diagnosis_eval

    report: dict = {"command": "python " + " ".join(sys.argv)}
    started = time.time()
    if not args.skip_experts:
        utts = data.select(data.load_utterances(args.data), args.part)
        utts = utts[: args.limit] if args.limit else utts
        roots = args.cache or ["/work/cache/features"]
        report["experts"] = {m: diagnosis_eval.expert_agreement(utts, roots, m) for m in args.modes.split(",")}
    if not args.skip_synthetic:
        if not diagnosis_eval.espeak_available():
            report["synthetic"] = "espeak-ng is not installed"
        else:
            from multipa_core.assess import Assessor

            assessor = Assessor()
            report["synthetic"] = diagnosis_eval.synthetic_errors(
                lambda s, ref: assessor.assess(s, reference=ref).to_dict()
            )
    report["seconds"] = round(time.time() - started, 1)
    text = json.dumps(report, indent=1, ensure_ascii=False)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
