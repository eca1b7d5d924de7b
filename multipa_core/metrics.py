"""Agreement between predicted and reference scores: PCC, SCC and MSE."""

from __future__ import annotations

import math
import statistics

import numpy as np


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def agreement(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    """Pearson and Spearman correlation and mean squared error over finite pairs.

    A correlation that is undefined (fewer than 3 pairs, or a constant side) is None.
    """
    from scipy.stats import pearsonr, spearmanr

    p = np.asarray(predicted, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    keep = np.isfinite(p) & np.isfinite(r)
    p, r = p[keep], r[keep]
    if p.size == 0:
        return {"pcc": None, "scc": None, "mse": None, "n": 0}
    mse = float(np.mean((p - r) ** 2))
    if p.size < 3 or np.ptp(p) == 0 or np.ptp(r) == 0:
        return {"pcc": None, "scc": None, "mse": _finite(mse), "n": int(p.size)}
    return {
        "pcc": _finite(pearsonr(p, r)[0]),
        "scc": _finite(spearmanr(p, r)[0]),
        "mse": _finite(mse),
        "n": int(p.size),
    }


def spread(values: list[float | None]) -> dict[str, float | None]:
    """Mean and standard deviation of a metric across folds (None where undefined), rounded."""
    known = [v for v in values if v is not None]
    if not known:
        return {"mean": None, "std": None}
    return {
        "mean": round(statistics.fmean(known), 4),
        "std": round(statistics.stdev(known), 4) if len(known) > 1 else 0.0,
    }
