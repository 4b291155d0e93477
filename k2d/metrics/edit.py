"""Levenshtein alignment of unit sequences with substitution, deletion and insertion counts.

    >>> counts = error_counts(list("abcd"), list("axcdd"))
    >>> (counts.substitutions, counts.deletions, counts.insertions, counts.reference_length)
    (1, 0, 1, 4)
"""

from __future__ import annotations

from dataclasses import dataclass

EPS = "*"  # shown for the missing side of an insertion or deletion


@dataclass
class ErrorCounts:
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per reference unit; an empty reference gives 0 if the hypothesis is empty too, else 1."""
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.reference_length

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions, self.deletions + other.deletions,
            self.insertions + other.insertions, self.reference_length + other.reference_length,
        )


def align(reference: list[str], hypothesis: list[str]) -> list[tuple[str, str, str]]:
    """Minimum-edit alignment as (op, ref_unit, hyp_unit) with op in C (correct), S, D, I.

    Ties prefer a match/substitution, then deletion, then insertion, so the alignment is deterministic.
    """
    n, m = len(reference), len(hypothesis)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = i
    for j in range(1, m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        row, prev = cost[i], cost[i - 1]
        ref = reference[i - 1]
        for j in range(1, m + 1):
            diagonal = prev[j - 1] + (ref != hypothesis[j - 1])
            row[j] = min(diagonal, prev[j] + 1, row[j - 1] + 1)
    ops = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            ops.append(("C" if reference[i - 1] == hypothesis[j - 1] else "S", reference[i - 1], hypothesis[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            ops.append(("D", reference[i - 1], EPS))
            i -= 1
        else:
            ops.append(("I", EPS, hypothesis[j - 1]))
            j -= 1
    return ops[::-1]


def counts_from_alignment(ops: list[tuple[str, str, str]]) -> ErrorCounts:
    kinds = [op for op, _, _ in ops]
    return ErrorCounts(kinds.count("S"), kinds.count("D"), kinds.count("I"), len(ops) - kinds.count("I"))


def error_counts(reference: list[str], hypothesis: list[str]) -> ErrorCounts:
    return counts_from_alignment(align(reference, hypothesis))


def error_rate(reference: list[str], hypothesis: list[str]) -> float:
    return error_counts(reference, hypothesis).rate
