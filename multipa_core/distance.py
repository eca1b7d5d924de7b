"""Edit distances and alignments between sequences (words, phones, characters)."""

from __future__ import annotations

from typing import Callable, Hashable, Sequence


def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Insertions, deletions and substitutions turning ``a`` into ``b``."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def align_pairs(a: Sequence[Hashable], b: Sequence[Hashable]) -> list[tuple[int | None, int | None]]:
    """A minimum-edit alignment of ``a`` and ``b``.

    Returns:
        (i, j) pairs in order: both set for a match or substitution, ``j`` None for a
        deletion of ``a[i]``, ``i`` None for an insertion of ``b[j]``. Among the
        minimum-edit alignments, one with the most exact matches is chosen (a
        substitution costs a hair more than one edit, never as much as two).
    """
    return align_weighted(len(a), len(b), lambda i, j: 0.0 if a[i] == b[j] else 1.0 + 1e-6)


def align_weighted(
    n: int, m: int, substitution: Callable[[int, int], float], *, indel: float = 1.0
) -> list[tuple[int | None, int | None]]:
    """A minimum-cost alignment of two sequences of lengths ``n`` and ``m``.

    Args:
        substitution: the cost of pairing item i of the first with item j of the second.
        indel: the cost of leaving an item unpaired.

    Returns:
        (i, j) pairs in order, as :func:`align_pairs`.
    """
    cost = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i * indel
    for j in range(m + 1):
        cost[0][j] = j * indel
    sub = [[substitution(i, j) for j in range(m)] for i in range(n)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j] + indel, cost[i][j - 1] + indel, cost[i - 1][j - 1] + sub[i - 1][j - 1])
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and abs(cost[i][j] - cost[i - 1][j - 1] - sub[i - 1][j - 1]) < 1e-9:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and abs(cost[i][j] - cost[i - 1][j] - indel) < 1e-9:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return pairs[::-1]
