"""Which inputs the blended sentence probe reads: each choice fitted on the training
speakers and measured on the validation speakers (development speakers are not read).

The probe is a ridge regression blended into the scorer's sentence scores
(``multipa train --probe-inputs``); this is how its inputs were chosen. Examples
are made as training makes them (``--transcripts both``: each utterance with the
reference text and with ASR_t's transcript), from the shared feature cache.

    python bench/probe_inputs.py --cache DIR [--json-out bench/results/probe_inputs.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, emit, machine, table  # noqa: E402

from multipa_core.aspects import SENTENCE_NAMES as ASPECTS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--cache", default="", help="feature cache root (as given to multipa train)")
    parser.add_argument("--json-out", default="bench/results/probe_inputs.json")
    args = parser.parse_args()

    from multipa_core import probe
    from multipa_core.metrics import agreement
    from multipa_core.train import TrainConfig, prepare

    # the richest inputs, so that the precompute step also fills the encoder-layer statistics
    train_ex, val_ex, _ = prepare(
        TrainConfig(data=args.data, out="", cache=args.cache, transcripts="both", probe_inputs="encoder-layers")
    )
    y_train, y_val = np.stack([e.sentence for e in train_ex]), np.stack([e.sentence for e in val_ex])
    # one row per validation utterance (its open-mode example: what the product meets)
    val_open = [i for i, e in enumerate(val_ex) if e.mode == "open"]
    results, rows = {}, []
    for inputs in probe.INPUTS:
        x_train = np.stack([probe.describe(e.features, inputs) for e in train_ex])
        x_val = np.stack([probe.describe(e.features, inputs) for e in val_ex])
        ridge, mse = probe.fit_choosing_alpha(x_train, y_train, x_val, y_val, inputs)
        predicted = ridge.predict(x_val)[val_open]
        pcc = {a: agreement(predicted[:, i], y_val[val_open, i])["pcc"] for i, a in enumerate(ASPECTS)}
        results[inputs] = {
            "alpha": ridge.alpha,
            "dims": int(x_train.shape[1]),
            "validation_mse": round(mse, 4),
            "validation_pcc": pcc,
        }
        rows.append([inputs, x_train.shape[1], ridge.alpha, *(f"{pcc[a]:.3f}" for a in ASPECTS)])
    result = {
        "benchmark": "probe_inputs",
        "machine": machine(),
        "config": {"data": args.data, "part": "validation speakers", "utterances": len(val_open)},
        "inputs": results,
    }
    emit(result, table(rows, ["inputs", "dims", "alpha", *ASPECTS]), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
