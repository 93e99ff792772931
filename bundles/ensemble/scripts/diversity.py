"""How differently the members err: an ensemble gains only where members disagree.

Pairwise, on the same cases: the disagreement rate of their grades, Yule's Q-statistic of their
correctness (1 = they are right and wrong together, 0 = independent, < 0 = they fail on different
cases) with the 2x2 counts it rests on (Q = 1 follows from a single shared error when neither member
errs alone), and the correlation of their probability errors ``label - P(HGG)``. Per member: the recall of
each grade, so a member strong on LGG and one strong on HGG show up as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np

__all__ = ["correctness_counts", "diversity_report", "diversity_markdown", "q_statistic"]


def correctness_counts(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, int]:
    """The 2x2 table of two members' correctness: both right, both wrong, only the first, only the second."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    return {
        "both_right": int(np.sum(a & b)),
        "both_wrong": int(np.sum(~a & ~b)),
        "only_first_right": int(np.sum(a & ~b)),
        "only_second_right": int(np.sum(~a & b)),
    }


def q_statistic(correct_a: np.ndarray, correct_b: np.ndarray) -> float | None:
    """Yule's Q of two members' correctness; None when undefined (e.g. one member never errs)."""
    counts = correctness_counts(correct_a, correct_b)
    n11, n00 = float(counts["both_right"]), float(counts["both_wrong"])
    n10, n01 = float(counts["only_first_right"]), float(counts["only_second_right"])
    denominator = n11 * n00 + n01 * n10
    return None if denominator == 0 else (n11 * n00 - n01 * n10) / denominator


def _correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    if np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def diversity_report(
    names: Sequence[str], labels: Sequence[int], probs: np.ndarray, thresholds: np.ndarray | Sequence[float]
) -> dict:
    """Pairwise disagreement, Q-statistic and error correlation, and per-member recall of each grade.

    Args:
        names: member names (columns of ``probs``).
        labels: true labels, 1 = HGG.
        probs: ``(N, M)`` calibrated P(HGG) per member.
        thresholds: each member's threshold, ``(M,)`` or per case ``(N, M)``.
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=np.float64)
    grades = (p >= np.asarray(thresholds, dtype=np.float64)).astype(int)
    correct = grades == y[:, None]
    errors = y[:, None] - p
    pairs = []
    for i, j in combinations(range(len(names)), 2):
        pairs.append(
            {
                "members": [names[i], names[j]],
                "disagreement": float(np.mean(grades[:, i] != grades[:, j])),
                "q_statistic": q_statistic(correct[:, i], correct[:, j]),
                "counts": correctness_counts(correct[:, i], correct[:, j]),
                "error_correlation": _correlation(errors[:, i], errors[:, j]),
            }
        )
    recall = {}
    for k, name in enumerate(names):
        recall[name] = {
            grade: (float(np.mean(grades[y == label, k] == label)) if np.any(y == label) else None)
            for label, grade in ((1, "HGG"), (0, "LGG"))
        }
    return {"num_cases": int(len(y)), "pairs": pairs, "recall": recall}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def diversity_markdown(report: dict) -> str:
    lines = [
        f"## Member diversity ({report['num_cases']} cases)",
        "",
        "| members | disagreement | Q-statistic | both right / both wrong / only first / only second | "
        "error correlation |",
        "| --- | --- | --- | --- | --- |",
    ]
    for pair in report["pairs"]:
        n = pair["counts"]
        counts = f"{n['both_right']} / {n['both_wrong']} / {n['only_first_right']} / {n['only_second_right']}"
        lines.append(
            f"| {' / '.join(pair['members'])} | {_fmt(pair['disagreement'])} | {_fmt(pair['q_statistic'])} "
            f"| {counts} | {_fmt(pair['error_correlation'])} |"
        )
    lines += ["", "| member | recall HGG | recall LGG |", "| --- | --- | --- |"]
    for name, recall in report["recall"].items():
        lines.append(f"| {name} | {_fmt(recall['HGG'])} | {_fmt(recall['LGG'])} |")
    return "\n".join(lines) + "\n"
