"""Same scores: this checkout's assessments against another checkout's, on the same turns.

Runs the in-process ``Assessor`` of this checkout and of ``--tree`` (another checkout,
e.g. ``git worktree add /tmp/old REV``) on the same shared utterances, open and closed
mode, with the same scorer checkpoint, each in its own process; reports whether the
words are the same and the largest difference of any sentence or word score.

    python bench/same_scores.py --tree /tmp/old [--utterances 6] [--scorer PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, emit, load_utterances, machine, table, tree_env  # noqa: E402

ASSESS = """
import json, sys
from multipa_core import audio
from multipa_core.assess import Assessor
a = Assessor(scorer=sys.argv[1])
out = {}
for utt, text in json.loads(sys.argv[2]):
    samples = audio.load(sys.argv[3] + "/audio/" + utt + ".flac")
    for mode, reference in (("open", None), ("closed", text)):
        d = a.assess(samples, reference=reference).to_dict()
        words = [(w.get("text", w.get("word")), {k: w.get(k) for k in ("accuracy", "stress", "total")}) for w in d["words"]]
        out[utt + "/" + mode] = {"sentence": d["sentence"], "words": words}
print(json.dumps(out))
"""


def assess(items: list[tuple[str, str]], scorer: str, env: dict[str, str] | None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", ASSESS, scorer, json.dumps(items), str(DATA)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/tmp",
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def compare(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    same_words, largest, values = 0, 0.0, 0
    for key, turn in old.items():
        other = new[key]
        pairs = [(v, other["sentence"][k]) for k, v in turn["sentence"].items() if isinstance(v, (int, float))]
        if [w for w, _ in turn["words"]] == [w for w, _ in other["words"]]:
            same_words += 1
            for (_, a), (_, b) in zip(turn["words"], other["words"]):
                pairs += [(a[h], b[h]) for h in a if a[h] is not None]
        values += len(pairs)
        largest = max([largest, *(abs(a - b) for a, b in pairs)])
    return {"turns": len(old), "same_words": same_words, "values": values, "largest_difference": round(largest, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", required=True, help="the other checkout's root")
    parser.add_argument("--utterances", type=int, default=6, help="shared utterances, every 150th")
    parser.add_argument("--scorer", default=str(ROOT / "multipa_core" / "checkpoints" / "scorer.pt"))
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    rows = load_utterances()[::150][: args.utterances]
    items = [(r["utt"], r["text"]) for r in rows]
    new = assess(items, args.scorer, None)
    old = assess(items, args.scorer, tree_env(args.tree))
    result = {"benchmark": "same_scores", "machine": machine(), "tree": args.tree, "scorer": args.scorer}
    result |= compare(old, new)
    readable = table(
        [[result["turns"], result["same_words"], result["values"], result["largest_difference"]]],
        ["turns", "same words", "scores compared", "largest difference"],
    )
    emit(result, readable, args.json_out)


if __name__ == "__main__":
    main()
