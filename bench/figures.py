"""The rows a calibration benchmark prints: each figure measured against its target and a baseline from the same
runs, as one table, and the exit code that says whether every target was met."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    label: str
    measured: str
    target: str
    baseline: str
    ok: bool | None  # None: reported, no target


def print_figures(rows: list[Figure], *, label_width: int, target_width: int, baseline_width: int) -> None:
    header = (
        f"{'figure':{label_width}} {'measured':16} {'target':{target_width}} "
        f"{'baseline (same runs)':{baseline_width}} result"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        result = "-" if row.ok is None else "PASS" if row.ok else "FAIL"
        print(
            f"{row.label:{label_width}} {row.measured:16} {row.target:{target_width}} "
            f"{row.baseline:{baseline_width}} {result}"
        )


def exit_on_targets(rows: list[Figure]) -> None:
    sys.exit(0 if all(row.ok is not False for row in rows) else 1)
