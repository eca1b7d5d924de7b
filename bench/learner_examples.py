"""What the diagnosis says of real learner words the experts scored low.

The first ``--words`` words with an expert median accuracy of at most ``--at-most``,
taken in the data's order from the first utterance of each speaker (no choice by
what the diagnosis says of them), each assessed in closed mode with the network of
the bagged scorer trained without the speaker's fold (no probe blend; as
``multipa evaluate --fold K`` scores it). Per word: the expected and heard phones in
IPA, the error types, the feedback sentences about it, and the scores.

    python bench/learner_examples.py --words 5 --json-out bench/results/learner-examples.json

ASR outputs come from (and go to) the shared feature cache.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine  # noqa: E402


def examples(words: int, at_most: float, cache: str) -> list[dict[str, Any]]:
    from multipa_core import audio as audio_io, data, settings
    from multipa_core.asr import Transcript
    from multipa_core.assess import build_assessment
    from multipa_core.evaluate import EvalConfig, _scorer
    from multipa_core.pipeline import FeatureBuilder
    from multipa_core.precompute import precompute

    root = cache or str(settings.cache_dir() / "features")
    folds = data.load_folds("")
    fold_of = {s: f for f, speakers in enumerate(folds) for s in speakers}
    seen: set[str] = set()
    picked: list[tuple[data.Utterance, int]] = []
    for u in data.load_utterances(settings.data_dir()):
        if u.speaker in seen:
            continue
        seen.add(u.speaker)
        picked += [(u, k) for k, w in enumerate(u.words) if w.median("accuracy") <= at_most]
        if len(picked) >= words:
            break
    scorers: dict[int, Any] = {}
    out = []
    for u, k in picked[:words]:
        fold = fold_of[u.speaker]
        if fold not in scorers:
            scorers[fold] = _scorer(EvalConfig(data=str(settings.data_dir()), fold=fold))[0]
        scorer = scorers[fold]
        pre = precompute([u], None, root, recognized=True, desc="ASR")
        samples = audio_io.load(u.audio_path)
        builder = FeatureBuilder(aligner=scorer.aligner, text_model=scorer.text_model)
        analysis = builder.analyze(
            pre.frames[u.utt].astype(np.float32),
            Transcript(u.text),
            pre.recognized[u.utt],
            mode="closed",
            duration=len(samples) / 16000,
            recognizer_frames=pre.recognizer_frames.get(u.utt),
        )
        a = build_assessment(analysis, scorer.score([analysis.features])[0], scorer.thresholds, samples).to_dict()
        w = a["words"][k]
        out.append(
            {
                "utt": u.utt,
                "fold": fold,
                "text": u.text,
                "recognized": a["transcript"],
                "word": w["text"],
                "expert_accuracy": [float(x) for x in u.words[k].scores["accuracy"]],
                "expert_median": u.words[k].median("accuracy"),
                "model_accuracy": w["accuracy"],
                "needs_improvement": w["needs_improvement"],
                "errors": w["errors"],
                "expected_ipa": " ".join(p["ipa"] for p in w["phones"]),
                "heard_ipa": " ".join(p["heard_ipa"] or "∅" for p in w["phones"] if p["error"] is not None),
                "phones": [(p["phone"], p["heard"], p["error"]) for p in w["phones"]],
                "inserted": [p["ipa"] for p in w["inserted_phones"]],
                "feedback": [f["sentence"] for f in a["feedback"] if f.get("word_index") == k],
                "command": f"multipa assess {u.audio_path} --text {u.text!r} --json",
            }
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=5)
    parser.add_argument("--at-most", type=float, default=5.0, help="expert median word accuracy at most this")
    parser.add_argument("--cache", default="", help="feature cache root (default: the MULTIPA cache directory)")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    found = examples(args.words, args.at_most, args.cache)
    result = {
        "benchmark": "learner_examples",
        "machine": machine(),
        "config": {"words": args.words, "at_most": args.at_most, "scorer": "bagged member of the speaker's fold"},
        "examples": found,
    }
    lines = [
        f"{e['utt']} {e['word']:<12} expert {e['expert_median']:>4} model {e['model_accuracy']:>5} "
        f"{'/'.join(e['errors']) or '-':<18} /{e['expected_ipa']}/ heard /{e['heard_ipa']}/  {' '.join(e['feedback'])}"
        for e in found
    ]
    emit(result, "\n".join(lines), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
